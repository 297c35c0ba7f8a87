import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from model.finetune import evaluate, finetune, total_steps
from model.finetune_data import FinetuneSettings, LabelledExamples
from tasks.evaluate.task_metrics import macro_f1, pearson, score


def tiny_classifier(seed: int, num_labels: int = 2) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=20,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def marker_task(n: int, seed: int) -> LabelledExamples:
    """Label = which marker token (5 or 6) the sequence contains; lengths vary so padding matters."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for _ in range(n):
        label = int(rng.integers(2))
        body = rng.integers(7, 20, size=int(rng.integers(3, 12))).tolist()
        body.insert(int(rng.integers(len(body) + 1)), 5 + label)
        rows.append([2, *body, 3])  # [CLS] ... [SEP]
        labels.append(label)
    return LabelledExamples(rows, labels)


def test_macro_f1_matches_hand_computation():
    labels = np.array([0, 0, 1, 1, 2])
    predictions = np.array([0, 1, 1, 1, 0])
    # class 0: P=1/2 R=1/2 F1=1/2; class 1: P=2/3 R=1 F1=4/5; class 2: F1=0
    assert macro_f1(predictions, labels) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert macro_f1(labels, labels) == 1.0  # classes absent from both sides are not averaged in


def test_total_steps_from_epochs_or_max_steps():
    assert total_steps(100, FinetuneSettings(batch_size=32, epochs=2)) == 8
    assert total_steps(100, FinetuneSettings(batch_size=32, epochs=0.5)) == 2
    assert total_steps(100, FinetuneSettings(batch_size=32, max_steps=7)) == 7


def test_finetune_learns_marker_task_and_is_deterministic():
    train, test = marker_task(256, seed=0), marker_task(64, seed=1)
    settings = FinetuneSettings(learning_rate=3e-3, max_steps=60, batch_size=16, device="cpu")
    metrics = lambda p, y: score(["accuracy", "macro_f1"], p, y)  # noqa: E731
    first = finetune(tiny_classifier(0), train, {"test": test}, settings, seed=0, score=metrics)
    assert first["test_accuracy"] >= 0.9
    assert first["test_macro_f1"] >= 0.9
    assert first["steps"] == 60
    again = finetune(tiny_classifier(0), train, {"test": test}, settings, seed=0, score=metrics)
    assert again["test_loss"] == first["test_loss"]
    assert again["train_loss"] == first["train_loss"]


def test_evaluate_is_independent_of_padding():
    model = tiny_classifier(3)
    examples = marker_task(20, seed=2)
    one_by_one = evaluate(model, examples, batch_size=1)
    padded = evaluate(model, examples, batch_size=20)
    assert padded["accuracy"] == one_by_one["accuracy"]
    assert padded["loss"] == pytest.approx(one_by_one["loss"], abs=1e-5)


def test_rejects_mismatched_examples_and_bad_settings():
    with pytest.raises(ValueError, match="2 input_ids rows but 1 labels"):
        LabelledExamples([[2, 3], [2, 3]], [0])
    with pytest.raises(ValueError, match="device"):
        FinetuneSettings(device="tpu")
    with pytest.raises(ValueError, match="at least one training example"):
        finetune(tiny_classifier(0), LabelledExamples([], []), {}, FinetuneSettings(), seed=0)


def pair_task(n: int, seed: int) -> LabelledExamples:
    """Label = whether segment B repeats segment A's marker token: only token_type_ids tell A from B."""
    rng = np.random.default_rng(seed)
    rows, types, labels = [], [], []
    for _ in range(n):
        marker_a, marker_b = int(rng.integers(5, 7)), int(rng.integers(5, 7))
        a = [marker_a, *rng.integers(7, 20, size=3).tolist()]
        b = [marker_b, *rng.integers(7, 20, size=3).tolist()]
        rows.append([2, *a, 3, *b, 3])
        types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
        labels.append(int(marker_a == marker_b))
    return LabelledExamples(rows, labels, types)


def test_pairs_carry_token_types():
    examples = pair_task(4, seed=0)
    assert examples.rows([1])[1] == [examples.token_type_ids[1]]
    with pytest.raises(ValueError, match="2 input_ids rows but 1 token_type_ids rows"):
        LabelledExamples([[2, 3], [2, 3]], [0, 1], [[0, 0]])


def test_regression_learns_a_count_with_mean_squared_error():
    """Label = how many 5 tokens the row holds (0..3): a single-output model trained with MSE."""
    rng = np.random.default_rng(0)

    def rows(n):
        ids, labels = [], []
        for _ in range(n):
            count = int(rng.integers(0, 4))
            body = [5] * count + rng.integers(7, 20, size=6 - count).tolist()
            rng.shuffle(body)
            ids.append([2, *body, 3])
            labels.append(float(count))
        return LabelledExamples(ids, labels)

    settings = FinetuneSettings(learning_rate=3e-3, max_steps=150, batch_size=16, device="cpu")
    metrics = finetune(tiny_classifier(0, num_labels=1), rows(256), {"test": rows(64)}, settings, seed=0,
                       score=lambda p, y: {"pearson": pearson(p, y)})
    assert metrics["test_pearson"] > 0.8
    assert metrics["test_loss"] < 0.5  # MSE on a 0..3 target (variance ~1.25)
