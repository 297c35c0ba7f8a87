"""Runs that stop early: SIGKILL then resume (bitwise-equal losses), SIGTERM (checkpoint, clean stop), non-finite loss."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from model.checkpoint import list_checkpoints
from model.distributed import DistributedContext
from model.inputs import load_inputs
from model.metrics import TrainingWindow
from model.train import NonFiniteLossError, Trainer, pretrain
from tests.model.conftest import tiny_config
from tests.model.test_train import Recorder

REPO = Path(__file__).resolve().parents[2]

# A child training run that appends each step's loss to a file and slows itself down so it can be
# stopped mid-run; argv: instances_dir tokenizer_dir out_dir losses.jsonl config-json
CHILD = """
import json, sys, time
from model.config import PretrainConfig
from model.train import TrainingInterrupted, pretrain
instances, tokenizer, out, losses, config = sys.argv[1:]

def log_metrics(metrics, step):
    if "train/loss" in metrics:
        with open(losses, "a") as f:
            f.write(json.dumps([step, metrics["train/loss"]]) + "\\n")
    time.sleep(0.1)

try:
    pretrain(PretrainConfig.model_validate_json(config), instances, tokenizer, out, log_metrics=log_metrics)
except TrainingInterrupted as stopped:
    print(stopped, file=sys.stderr)
    sys.exit(143)
"""


def start_child(cfg, instances_dir, tokenizer_dir, out_dir, losses):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(instances_dir), str(tokenizer_dir), str(out_dir), str(losses),
         cfg.model_dump_json()],
        cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # bitwise equality across processes needs the same intra-op thread count as this process
        env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
    )  # fmt: skip


def wait_for_checkpoint(child, checkpoints, timeout=240):
    deadline = time.monotonic() + timeout
    while not list_checkpoints(checkpoints):
        assert child.poll() is None, f"training ended before it could be stopped: {child.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def test_sigkill_then_resume_gives_bitwise_equal_losses_without_replaying_data(tmp_path, instances_dir, tokenizer_dir):
    cfg = tiny_config(max_steps=40, log_every=1, checkpoint_every=10, eval_every=40)
    straight = Recorder()
    pretrain(cfg, instances_dir, tokenizer_dir, tmp_path / "straight", log_metrics=straight)
    expected = dict(straight.series("train/loss"))

    out = tmp_path / "killed"
    child = start_child(cfg, instances_dir, tokenizer_dir, out, tmp_path / "losses.jsonl")
    try:
        wait_for_checkpoint(child, out / "checkpoints")
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    killed_at = len((tmp_path / "losses.jsonl").read_text().splitlines())
    assert killed_at < 40, "the child finished before the kill"
    saved_step = list_checkpoints(out / "checkpoints")[-1][0]

    resumed = Recorder()
    stats = pretrain(cfg, instances_dir, tokenizer_dir, out, log_metrics=resumed)
    assert stats["resumed_from_step"] == saved_step
    steps = [s for s, _ in resumed.series("train/loss")]
    assert steps == list(range(saved_step + 1, 41))  # started at the saved data position: nothing replayed
    for step, loss in resumed.series("train/loss"):
        assert loss == expected[step], step  # bitwise on CPU
    for step, loss in (json.loads(line) for line in (tmp_path / "losses.jsonl").read_text().splitlines()):
        assert loss == expected[step], step


def test_sigterm_writes_a_checkpoint_and_stops_cleanly(tmp_path, instances_dir, tokenizer_dir):
    cfg = tiny_config(max_steps=200, log_every=1, checkpoint_every=10, eval_every=200)
    out = tmp_path / "out"
    child = start_child(cfg, instances_dir, tokenizer_dir, out, tmp_path / "losses.jsonl")
    try:
        wait_for_checkpoint(child, out / "checkpoints")
        time.sleep(0.35)  # a few steps past the periodic checkpoint
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 143, stderr
    assert "stopped by SIGTERM after step" in stderr
    last_logged = len((tmp_path / "losses.jsonl").read_text().splitlines())
    steps = [s for s, _ in list_checkpoints(out / "checkpoints")]
    assert steps[-1] == last_logged and steps[-1] % 10 != 0, steps  # the SIGTERM checkpoint, off the periodic grid
    assert not (out / "model").exists()  # stopped, not finished: nothing exported


def test_sigterm_to_the_process_group_with_loader_workers_still_checkpoints(tmp_path, instances_dir, tokenizer_dir):
    # A terminal's Ctrl-C-like stop or a scheduler signals every process of the group, DataLoader workers too.
    cfg = tiny_config(max_steps=10**6, log_every=1, checkpoint_every=10**6, eval_every=10**6, num_workers=1)
    config, metrics, out = tmp_path / "pretrain.yaml", tmp_path / "metrics.jsonl", tmp_path / "out"
    config.write_text(yaml.safe_dump({"pretrain": cfg.model_dump(mode="json")}))
    child = subprocess.Popen(
        [sys.executable, "-m", "model.launch", "--instances", str(instances_dir), "--tokenizer", str(tokenizer_dir),
         "--out", str(out), "--config", str(config), "--metrics-file", str(metrics)],
        cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not metrics.exists() or len(metrics.read_text().splitlines()) < 3:  # a few steps in, workers up
            assert child.poll() is None, f"training ended before it could be stopped: {child.stderr.read()}"
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGTERM)
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 143, stderr  # model.launch's "stopped by SIGTERM (a checkpoint was written)"
    assert "stopped by SIGTERM after step" in stderr
    logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [logged[-1]]  # the stop checkpoint


class PoisonedTrainer(Trainer):
    """Puts a NaN into the word embeddings before step `poison_at` (what a diverging run ends up with)."""

    poison_at = 13

    def train_step(self, micro_batches, window):
        if self.step + 1 == self.poison_at:
            with torch.no_grad():
                self.model.bert.embeddings.word_embeddings.weight[5:8] = float("nan")
        return super().train_step(micro_batches, window)


def test_non_finite_loss_stops_with_the_last_good_checkpoint_intact(tmp_path, instances_dir, tokenizer_dir):
    cfg = tiny_config(max_steps=30, checkpoint_every=5, log_every=10, eval_every=30)
    inputs = load_inputs(cfg, instances_dir, tokenizer_dir)
    trainer = PoisonedTrainer(cfg, inputs, tokenizer_dir, tmp_path, DistributedContext(), torch.device("cpu"))
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 13.*step-000010"):
        trainer.train()
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [5, 10]
    assert not (tmp_path / "model").exists()

    # The run resumes from step 10 with finite weights (poisoning happens only in PoisonedTrainer).
    stats = pretrain(cfg, instances_dir, tokenizer_dir, tmp_path)
    assert stats["resumed_from_step"] == 10 and math.isfinite(stats["train_loss"])


def test_absurd_learning_rate_is_stopped_before_any_checkpoint(tmp_path, instances_dir, tokenizer_dir):
    cfg = tiny_config(max_steps=20, learning_rate=1e30, warmup_steps=0, max_grad_norm=0.0)
    with pytest.raises(NonFiniteLossError, match=r"training loss is (nan|inf) at step \d+.*no checkpoint was written"):
        pretrain(cfg, instances_dir, tokenizer_dir, tmp_path)
    assert list_checkpoints(tmp_path / "checkpoints") == []


class NanGradientTrainer(Trainer):
    """Makes one weight's gradient NaN at step `poison_at`: that step's loss is finite, its update is not."""

    poison_at = 10

    def train_step(self, micro_batches, window):
        if self.step + 1 != self.poison_at:
            return super().train_step(micro_batches, window)
        hook = self.model.bert.embeddings.word_embeddings.weight.register_hook(lambda grad: grad * float("nan"))
        try:
            return super().train_step(micro_batches, window)
        finally:
            hook.remove()


def test_non_finite_gradient_norm_with_a_finite_loss_is_not_checkpointed(tmp_path, instances_dir, tokenizer_dir):
    # Step 10 is a checkpoint step: its loss is finite, but its NaN gradient has already made the weights NaN.
    cfg = tiny_config(max_steps=30, checkpoint_every=5, log_every=10, eval_every=30)
    inputs = load_inputs(cfg, instances_dir, tokenizer_dir)
    trainer = NanGradientTrainer(cfg, inputs, tokenizer_dir, tmp_path, DistributedContext(), torch.device("cpu"))
    with pytest.raises(NonFiniteLossError, match=r"gradient norm is nan at step 10.*step-000005"):
        trainer.train()
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [5]


def test_overflowing_gradient_norm_under_a_gradient_scaler_does_not_stop(tmp_path, instances_dir, tokenizer_dir):
    # fp16's GradScaler skips a step whose gradients overflowed (the weights stay as they were): not an error.
    cfg = tiny_config()
    inputs = load_inputs(cfg, instances_dir, tokenizer_dir)
    trainer = Trainer(cfg, inputs, tokenizer_dir, tmp_path, DistributedContext(), torch.device("cpu"))
    window = TrainingWindow(torch.device("cpu"))
    window.add_step(torch.tensor(2.5), torch.tensor(float("inf")), step=1)
    trainer.scaler = torch.amp.GradScaler("cpu", enabled=True)
    trainer.check_finite(window)
    trainer.scaler = torch.amp.GradScaler("cpu", enabled=False)  # fp32/bf16: the inf went into the weights
    with pytest.raises(NonFiniteLossError, match=r"gradient norm is inf at step 1"):
        trainer.check_finite(window)
