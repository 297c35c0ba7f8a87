import shutil

import pytest
import torch
from transformers import AutoModelForPreTraining, BertTokenizerFast

from model.checkpoint import list_checkpoints
from model.distributed import DistributedContext
from model.inputs import load_inputs
from model.train import Trainer, pretrain
from tests.model.conftest import SPECIAL, make_instances, tiny_config, write_shards


class Recorder:
    """A log_metrics callback that keeps every call; optionally stops the run past a step."""

    def __init__(self, stop_after: int | None = None):
        self.calls: list[tuple[dict[str, float], int]] = []
        self.stop_after = stop_after

    def __call__(self, metrics, step):
        if self.stop_after is not None and step > self.stop_after:
            raise KeyboardInterrupt(f"killed at step {step}")
        self.calls.append((dict(metrics), step))

    def series(self, name):
        return [(step, m[name]) for m, step in self.calls if name in m]


def test_tiny_training_run_learns_and_exports(tmp_path, instances_dir, tokenizer_dir):
    recorder = Recorder()
    stats = pretrain(tiny_config(max_steps=30), instances_dir, tokenizer_dir, tmp_path, log_metrics=recorder)

    losses = recorder.series("train/loss")
    assert [s for s, _ in losses] == [5, 10, 15, 20, 25, 30]
    assert losses[-1][1] < losses[0][1] - 0.5, losses
    assert [s for s, _ in recorder.series("validation/mlm_accuracy")] == [10, 20, 30]
    for name in ("train/mlm_accuracy", "train/nsp_accuracy", "train/learning_rate", "train/sequences_per_second"):
        assert len(recorder.series(name)) == 6
    assert recorder.series("train/learning_rate")[-1][1] < recorder.series("train/learning_rate")[0][1]

    assert stats["steps"] == 30 and stats["resumed_from_step"] == 0
    assert stats["train_loss"] == losses[-1][1]
    assert stats["validation_mlm_accuracy"] > 1 / 40  # better than guessing among 40 words
    assert stats["validation_perplexity"] == pytest.approx(torch.tensor(stats["validation_mlm_loss"]).exp().item())
    assert stats["sequences_per_second"] > 0 and stats["train_seconds"] > 0 and stats["parameters"] > 0
    assert stats["train_instances"] == 600 and stats["validation_instances"] == 96
    assert all(isinstance(v, (int, float)) for v in stats.values())

    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [20, 30]
    model = AutoModelForPreTraining.from_pretrained(str(tmp_path / "model"))
    assert model.config.vocab_size == 45 and model.config.hidden_size == 32


def exported_state(out_dir):
    return AutoModelForPreTraining.from_pretrained(str(out_dir / "model")).state_dict()


def test_interrupted_run_resumes_to_identical_weights(tmp_path, instances_dir, tokenizer_dir):
    cfg = tiny_config(max_steps=40)
    pretrain(cfg, instances_dir, tokenizer_dir, tmp_path / "straight")

    # Killed at step 25, after the step-20 checkpoint: steps 21-25 are lost and redone.
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, instances_dir, tokenizer_dir, tmp_path / "resumed", log_metrics=Recorder(stop_after=20))
    assert list_checkpoints(tmp_path / "resumed" / "checkpoints")[-1][0] == 20
    assert not (tmp_path / "resumed" / "model").exists()
    recorder = Recorder()
    stats = pretrain(cfg, instances_dir, tokenizer_dir, tmp_path / "resumed", log_metrics=recorder)
    assert stats["resumed_from_step"] == 20 and stats["steps"] == 40
    assert recorder.calls[0][1] == 25  # training continued where the checkpoint left off

    straight, resumed = exported_state(tmp_path / "straight"), exported_state(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name

    # A finished run called again trains nothing, re-evaluates and re-exports the same model.
    again = pretrain(cfg, instances_dir, tokenizer_dir, tmp_path / "resumed")
    assert again["resumed_from_step"] == 40
    assert again["validation_mlm_accuracy"] == stats["validation_mlm_accuracy"]


def test_resume_with_a_different_config_is_refused(tmp_path, instances_dir, tokenizer_dir):
    pretrain(tiny_config(max_steps=10), instances_dir, tokenizer_dir, tmp_path)
    with pytest.raises(ValueError, match=r"learning_rate: 0.003 -> 0.001"):
        pretrain(tiny_config(max_steps=10, learning_rate=1e-3), instances_dir, tokenizer_dir, tmp_path)


def test_inputs_are_checked_before_training(tmp_path, instances_dir):
    small_tokenizer = tmp_path / "small-tokenizer"
    vocab = {t: i for i, t in enumerate(SPECIAL + ["w0", "w1"])}
    BertTokenizerFast(vocab=vocab).save_pretrained(str(small_tokenizer))
    partial = tmp_path / "instances"
    shutil.copytree(instances_dir / "train", partial / "train")

    with pytest.raises(ValueError) as error:
        pretrain(tiny_config(max_position_embeddings=16), partial, small_tokenizer, tmp_path / "out")
    message = str(error.value)
    assert "has only 7 tokens" in message
    assert "max_position_embeddings=16" in message
    assert "validation/instances-*.arrow" in message
    assert not (tmp_path / "out").exists()


def test_nsp_labels_beyond_0_and_1_are_named(tmp_path, instances_dir, tokenizer_dir):
    # on a GPU such a label would end in a device-side assert inside cross-entropy
    bad = tmp_path / "instances"
    shutil.copytree(instances_dir, bad)
    instances = make_instances(8, seed=3)
    instances[2]["next_sentence_label"] = 2
    for path in (bad / "validation").glob("instances-*.arrow"):
        path.unlink()
    write_shards(bad, "validation", instances, per_shard=8)
    with pytest.raises(ValueError, match=r"validation instances hold next_sentence_label 2; valid: 0 .* 1 .* or -1"):
        pretrain(tiny_config(), bad, tokenizer_dir, tmp_path / "out")


def test_missing_tokenizer_dir_is_named(tmp_path, instances_dir):
    with pytest.raises(ValueError, match=r"tokenizer_dir=.*missing is not a directory"):
        pretrain(tiny_config(), instances_dir, tmp_path / "missing", tmp_path / "out")


def test_metrics_png_and_progress_callback(tmp_path, instances_dir, tokenizer_dir):
    recorder, progress = Recorder(), []
    pretrain(
        tiny_config(max_steps=10, log_every=5),
        instances_dir,
        tokenizer_dir,
        tmp_path,
        log_metrics=recorder,
        progress=lambda step, total: progress.append((step, total)),
    )
    assert progress == [(s, 10) for s in range(1, 11)]
    logged = recorder.calls[0][0]
    for name in ("train/grad_norm", "train/tokens_per_second", "train/sequences_per_second", "system/rss_mb"):
        assert logged[name] > 0, name
    assert "train/mfu" not in logged  # MFU is reported against a GPU's peak only
    png = tmp_path / "loss_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"validation/mlm_loss", "validation/perplexity", "validation/nsp_accuracy"} <= set(recorder.calls[-1][0])


def test_gradient_accumulation_matches_the_full_batch(tmp_path, instances_dir, tokenizer_dir):
    # Without dropout, 2 micro-batches of 8 give the gradient of the 16-sequence batch: the losses agree to
    # float32 summation-order noise (1e-5 relative).
    runs = {}
    for accumulation in (1, 2):
        recorder = Recorder()
        cfg = tiny_config(max_steps=8, log_every=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                          gradient_accumulation_steps=accumulation)  # fmt: skip
        pretrain(cfg, instances_dir, tokenizer_dir, tmp_path / str(accumulation), log_metrics=recorder)
        runs[accumulation] = [loss for _, loss in recorder.series("train/loss")]
        runs[accumulation].append(recorder.series("validation/mlm_loss")[-1][1])
    assert len(runs[1]) == 9
    assert runs[2] == pytest.approx(runs[1], rel=1e-5)  # validation too: the same sequences in smaller passes


def test_evaluation_uses_training_micro_batches_over_eval_batches_global_batches(tmp_path, instances_dir,
                                                                                 tokenizer_dir):
    # A global batch that only fits in memory as 4 accumulation steps must not be evaluated in one forward pass.
    cfg = tiny_config(batch_size=16, gradient_accumulation_steps=4, eval_batches=3)
    trainer = Trainer(cfg, load_inputs(cfg, instances_dir, tokenizer_dir), tokenizer_dir, tmp_path,
                      DistributedContext(), torch.device("cpu"))  # fmt: skip
    batches = [batch["input_ids"].shape[0] for batch in trainer.eval_loader]
    assert batches == [4] * 12  # 3 global batches of 16 sequences, as 12 passes of 4
    assert list(trainer.eval_loader.batch_sampler)[-1] == [44, 45, 46, 47]  # the same leading 48 sequences


def test_mlm_only_has_no_nsp_loss_or_metrics(tmp_path, instances_dir, tokenizer_dir):
    recorder = Recorder()
    cfg = tiny_config(max_steps=6, log_every=1, nsp=False)
    stats = pretrain(cfg, instances_dir, tokenizer_dir, tmp_path, log_metrics=recorder)
    assert not any("nsp" in name for metrics, _ in recorder.calls for name in metrics)
    mlm_losses = [m for _, m in recorder.series("train/mlm_loss")]
    assert [m for _, m in recorder.series("train/loss")] == pytest.approx(mlm_losses, rel=1e-6)
    assert "validation_nsp_accuracy" not in stats and stats["validation_mlm_accuracy"] > 0


def test_dynamic_masking_from_the_instances_manifest(tmp_path, tokenizer_dir):
    import json

    root = tmp_path / "instances"
    for split, count, seed in (("train", 200, 11), ("validation", 32, 12)):
        rows = make_instances(count, seed=seed)
        for row in rows:
            row["masked_lm_positions"], row["masked_lm_ids"] = [], []
            row["input_ids"] = [t if t != 4 else 5 for t in row["input_ids"]]  # no [MASK] left in the text
            row["next_sentence_label"] = -1 if seed == 11 and len(row["input_ids"]) % 2 else row["next_sentence_label"]
        write_shards(root, split, rows, per_shard=100)
    with pytest.raises(ValueError, match="hold no masked positions but no manifest.json"):
        pretrain(tiny_config(max_steps=4), root, tokenizer_dir, tmp_path / "refused")
    config = {"masking": "dynamic", "masked_lm_prob": 0.15, "max_predictions_per_seq": 5, "whole_word_mask": False}
    (root / "manifest.json").write_text(json.dumps({"config": config}))
    recorder = Recorder()
    stats = pretrain(tiny_config(max_steps=30), root, tokenizer_dir, tmp_path / "out", log_metrics=recorder)
    losses = recorder.series("train/mlm_loss")
    assert losses[-1][1] < losses[0][1] - 0.3, losses
    assert stats["validation_mlm_accuracy"] > 1 / 40


def test_worker_processes_and_length_bucketing_keep_the_run_deterministic(tmp_path, instances_dir, tokenizer_dir):
    runs = {}
    for workers in (0, 2):
        recorder = Recorder()
        cfg = tiny_config(max_steps=6, log_every=1, eval_every=6, num_workers=workers, length_bucketing=True)
        pretrain(cfg, instances_dir, tokenizer_dir, tmp_path / str(workers), log_metrics=recorder)
        runs[workers] = recorder.series("train/loss")
    assert len(runs[0]) == 6 and runs[2] == runs[0]


def test_model_inputs_drop_the_mask_only_when_no_row_is_padded():
    from model.device import model_inputs

    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    assert model_inputs(batch, torch.device("cpu"))["attention_mask"] is None
    batch["attention_mask"][1, 2] = 0
    inputs = model_inputs(batch, torch.device("cpu"))
    assert torch.equal(inputs["attention_mask"], batch["attention_mask"])
    assert torch.equal(inputs["input_ids"], batch["input_ids"])


@pytest.mark.slow
def test_compiled_run_matches_eager(tmp_path, instances_dir, tokenizer_dir):
    # torch.compile (inductor's C++ backend on CPU) with static shapes against the eager default: same
    # losses up to fused-kernel rounding. Without dropout, so both runs compute the same function.
    runs = {}
    torch._dynamo.utils.counters.clear()
    for compile in (False, True):
        recorder = Recorder()
        cfg = tiny_config(max_steps=6, log_every=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                          compile=compile)  # fmt: skip
        pretrain(cfg, instances_dir, tokenizer_dir, tmp_path / str(compile), log_metrics=recorder)
        runs[compile] = [loss for _, loss in recorder.series("train/loss")]
    assert len(runs[True]) == 6
    assert runs[True] == pytest.approx(runs[False], rel=1e-4)
    assert not torch._dynamo.utils.counters["graph_break"]  # one graph: no host sync inside the step on GPU


def test_num_threads_sets_torchs_threads_for_the_run_and_gives_them_back(tmp_path, instances_dir, tokenizer_dir):
    before = torch.get_num_threads()
    seen = []
    pretrain(tiny_config(max_steps=5, log_every=5, num_threads=1), instances_dir, tokenizer_dir, tmp_path,
             log_metrics=lambda metrics, step: seen.append(torch.get_num_threads()))
    assert seen and set(seen) == {1}  # every report (training, validation) came while 1 thread was set
    assert torch.get_num_threads() == before
