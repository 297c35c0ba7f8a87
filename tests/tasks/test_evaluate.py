import json
import random
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from pydantic import ValidationError
from tokenizers import BertWordPieceTokenizer
from transformers import AutoTokenizer, BertConfig, BertForPreTraining, BertTokenizerFast

from tasks.evaluate import (
    DownstreamTaskConfig,
    EvaluateConfig,
    build_task_dataset,
    chunk_token_ids,
    render_results_table,
    run_evaluation,
)

TOPICS = {
    "animals": "cat dog horse cow sheep goat duck goose fox wolf bear deer rabbit mouse owl",
    "cooking": "bake boil fry roast salt pepper flour butter sugar oven pan knife spoon recipe dough",
    "sport": "ball goal team match score referee player coach league stadium race sprint tennis golf",
}
FILLER = "the a of and to in is it that with on for as was at by this from or"


def synthetic_document(topic: str, rng: random.Random) -> str:
    """Paragraphs of topic words mixed with shared filler, ~100-200 words."""
    words = TOPICS[topic].split() + FILLER.split()
    paragraphs = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 40))) for _ in range(rng.randint(4, 6))]
    return "\n".join(paragraphs)


def write_snapshot(path: Path, documents: list[tuple[str, str]]) -> None:
    """A corpus snapshot shard per the data contract from (url, text) pairs."""
    ids = [sha256(text.encode()).hexdigest() for _, text in documents]
    table = pa.table(
        {
            "id": ids,
            "url": [url for url, _ in documents],
            "source": ["crawl"] * len(documents),
            "title": pa.array([None] * len(documents), pa.string()),
            "text": [text for _, text in documents],
            "fetched_at": pa.array([datetime(2024, 1, 1, tzinfo=timezone.utc)] * len(documents), pa.timestamp("us", "UTC")),
            "content_hash": ids,
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "documents-00000.parquet")


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory) -> Path:
    rng = random.Random(0)
    documents = [
        (f"http://h/{topic}/page-{i}.html", synthetic_document(topic, rng)) for topic in TOPICS for i in range(12)
    ]
    documents += [(f"http://h/rare/page-{i}.html", synthetic_document("sport", rng)) for i in range(2)]
    documents += [("http://h/index.html", synthetic_document("animals", rng))]  # no section: no label
    path = tmp_path_factory.mktemp("snapshot")
    write_snapshot(path, documents)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, snapshot_dir) -> Path:
    """A tiny BertForPreTraining plus a WordPiece tokenizer trained on the snapshot, in one folder."""
    path = tmp_path_factory.mktemp("model")
    texts = pq.read_table(snapshot_dir / "documents-00000.parquet")["text"].to_pylist()
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts, vocab_size=150, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    # transformers 5 takes `vocab=` (a dict or path); the old `vocab_file=` is silently ignored
    BertTokenizerFast(vocab=wordpiece.get_vocab()).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=wordpiece.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertForPreTraining(config).save_pretrained(path)
    return path


def tiny_config(**task) -> EvaluateConfig:
    return EvaluateConfig(
        task=DownstreamTaskConfig(min_documents_per_class=5, chunks_per_document=2, **task),
        max_seq_length=32,
        learning_rates=[3e-3, 1e-2],
        seeds=[0, 1],
        finetune={"max_steps": 40, "batch_size": 16, "device": "cpu"},
    )


def test_chunks_spread_through_document_and_drop_short_tail():
    tokens = list(range(100))
    assert chunk_token_ids(tokens, 30, max_chunks=10, min_chunk_tokens=16) == [
        tokens[0:30],
        tokens[30:60],
        tokens[60:90],
    ]  # the 10-token tail is dropped
    spread = chunk_token_ids(tokens, 10, max_chunks=3, min_chunk_tokens=1)
    assert [chunk[0] for chunk in spread] == [0, 40, 90]  # first, middle and last window
    assert chunk_token_ids(tokens[:5], 30, max_chunks=2, min_chunk_tokens=16) == []


def test_labels_come_from_url_section(snapshot_dir, model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = build_task_dataset(tiny_config().task, tokenizer, 32, snapshot_dir)
    assert dataset.class_names == ["animals", "cooking", "sport"]
    assert dataset.class_documents == {"animals": 12, "cooking": 12, "sport": 12}
    assert dataset.dropped["url_without_label"] == 1  # http://h/index.html
    assert dataset.dropped["class_not_kept"] == 2  # "rare" has 2 < 5 documents
    train = dataset.splits["train"]
    assert all(row[0] == tokenizer.cls_token_id and row[-1] == tokenizer.sep_token_id for row in train.input_ids)
    assert max(len(row) for row in train.input_ids) <= 32


def test_split_is_by_document_stratified_and_stable(snapshot_dir, model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    task = tiny_config().task
    dataset = build_task_dataset(task, tokenizer, 32, snapshot_dir)
    ids = dataset.split_doc_ids
    assert not set(ids["train"]) & set(ids["dev"])
    assert not set(ids["train"]) & set(ids["test"])
    assert not set(ids["dev"]) & set(ids["test"])
    assert sum(map(len, ids.values())) == 36
    for split in ("train", "dev", "test"):
        assert all(count > 0 for count in dataset.class_examples[split].values()), split
    assert build_task_dataset(task, tokenizer, 32, snapshot_dir).split_doc_ids == ids


def test_example_cap_keeps_many_documents(snapshot_dir, model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    task = DownstreamTaskConfig(min_documents_per_class=5, chunks_per_document=4, max_examples_per_class=12)
    dataset = build_task_dataset(task, tokenizer, 32, snapshot_dir)
    for label in dataset.class_names:
        assert sum(dataset.class_examples[split][label] for split in ("train", "dev", "test")) == 12
    assert sum(map(len, dataset.split_doc_ids.values())) == 36  # one chunk from each of the 12 documents


def test_run_evaluation_beats_chance_and_writes_reports(snapshot_dir, model_dir, tmp_path):
    cfg = tiny_config()
    logged: list[tuple[dict, int]] = []
    stats = run_evaluation(cfg, model_dir, snapshot_dir, tmp_path, log_metrics=lambda m, s: logged.append((m, s)))

    assert stats["classes"] == 3
    assert stats["runs"] == 6  # 2 inits x (2 learning rates + 1 extra seed)
    # chance is 1/3; a 1-layer, 32-wide model sometimes stalls on a two-class plateau in 40 steps
    assert stats["pretrained_test_accuracy"] > 0.5
    assert stats["scratch_test_accuracy"] > 0.5
    assert stats["gain_accuracy"] == pytest.approx(stats["pretrained_test_accuracy"] - stats["scratch_test_accuracy"])
    assert [step for _, step in logged] == list(range(6))
    assert "pretrained_dev_accuracy" in logged[0][0] and "scratch_test_macro_f1" in logged[-1][0]

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["classes"] == ["animals", "cooking", "sport"]
    assert set(results["chosen_learning_rate"]) == {"pretrained", "scratch"}
    assert len(results["runs"]) == 6
    assert sum(r["chosen"] for r in results["runs"] if r["phase"] == "lr_search") == 2
    assert results["split_examples"]["train"] == stats["train_examples"]
    table = (tmp_path / "results.md").read_text()
    assert table == render_results_table(results)
    assert "| url-section | pretrained |" in table and "| url-section | scratch |" in table
    assert "Pretraining gain" in table

    # a second attempt in the same out_dir reuses every finished run
    assert len(list((tmp_path / "runs").glob("*.json"))) == 6
    again = run_evaluation(cfg, model_dir, snapshot_dir, tmp_path)
    assert again["pretrained_test_accuracy"] == stats["pretrained_test_accuracy"]
    assert json.loads((tmp_path / "results.json").read_text())["runs"] == results["runs"]


def test_labels_from_data_files(tmp_path, model_dir):
    rng = random.Random(1)
    lines = [json.dumps({"text": synthetic_document(t, rng), "label": t}) for t in ("cooking", "sport") for _ in range(6)]
    data = tmp_path / "labelled.jsonl"
    data.write_text("\n".join(lines) + "\n")
    task = DownstreamTaskConfig(data_files=[data], min_documents_per_class=5)
    dataset = build_task_dataset(task, AutoTokenizer.from_pretrained(model_dir), 32, tmp_path / "unused")
    assert dataset.class_names == ["cooking", "sport"]
    assert sum(map(len, dataset.split_doc_ids.values())) == 12


def test_bad_config_is_reported_with_the_value(tmp_path):
    with pytest.raises(ValidationError, match="missing.jsonl does not exist"):
        DownstreamTaskConfig(data_files=[tmp_path / "missing.jsonl"])
    with pytest.raises(ValidationError, match="has no capture group"):
        DownstreamTaskConfig(label_from_url=r"^https?://[^/]+/")
    with pytest.raises(ValidationError, match="not a valid regex"):
        DownstreamTaskConfig(label_from_url=r"([a-z]+")
    with pytest.raises(ValidationError) as error:  # every problem at once
        EvaluateConfig(learning_rates=[0.0, 3e-4], seeds=[], max_seq_length=4)
    assert {e["loc"][0] for e in error.value.errors()} == {"learning_rates", "seeds", "max_seq_length"}
    with pytest.raises(ValidationError, match="set learning_rates instead"):
        EvaluateConfig(finetune={"learning_rate": 1e-3})
    with pytest.raises(ValidationError, match="extra"):
        EvaluateConfig(learning_rate=1e-3)


def test_missing_inputs_fail_before_training(tmp_path, model_dir):
    with pytest.raises(ValueError, match="has no config.json"):
        run_evaluation(tiny_config(), tmp_path / "nope", tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no documents-"):
        run_evaluation(tiny_config(), model_dir, tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ValueError, match="exceeds the model's 64 positions"):
        run_evaluation(EvaluateConfig(max_seq_length=128), model_dir, tmp_path, tmp_path / "out")
