"""DistributedDataParallel on CPU: 2 gloo processes on 127.0.0.1 train like 1 process with the same global batch."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from transformers import AutoModelForPreTraining

from model.checkpoint import list_checkpoints
from model.train import pretrain
from tests.model.conftest import tiny_config
from tests.model.test_train import Recorder

# Tolerance: with dropout off, the 2-process gradient is the average of two half-batch gradients, each
# normalised by the global batch's masked-token count, so it equals the 1-process gradient up to float32
# summation order. Over 10 steps losses agree to 1e-5 relative and weights to 1e-4 absolute.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-4


def config():
    return tiny_config(
        max_steps=10, log_every=1, eval_every=10, checkpoint_every=5,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, world_size, port, instances_dir, tokenizer_dir, out_dir, losses_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))  # fmt: skip
    torch.set_num_threads(1)

    def log_metrics(metrics, step):
        if "train/loss" in metrics:
            with open(losses_path, "a") as f:
                f.write(json.dumps([step, metrics["train/loss"], rank]) + "\n")

    stats = pretrain(config(), instances_dir, tokenizer_dir, out_dir, log_metrics=log_metrics)
    assert stats["world_size"] == world_size


@pytest.mark.timeout(600)
def test_two_gloo_processes_match_one_process(tmp_path, instances_dir, tokenizer_dir):
    single = Recorder()
    pretrain(config(), instances_dir, tokenizer_dir, tmp_path / "single", log_metrics=single)

    losses_path = tmp_path / "losses.jsonl"
    args = (2, free_port(), instances_dir, tokenizer_dir, tmp_path / "ddp", losses_path)
    mp.spawn(worker, args=args, nprocs=2, join=True)

    logged = [json.loads(line) for line in losses_path.read_text().splitlines()]
    assert {rank for _, _, rank in logged} == {0}  # only rank 0 reports
    assert [step for step, _, _ in logged] == list(range(1, 11))
    expected = [loss for _, loss in single.series("train/loss")]
    assert [loss for _, loss, _ in logged] == pytest.approx(expected, rel=LOSS_RTOL)

    one = AutoModelForPreTraining.from_pretrained(str(tmp_path / "single" / "model")).state_dict()
    two = AutoModelForPreTraining.from_pretrained(str(tmp_path / "ddp" / "model")).state_dict()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=WEIGHT_ATOL, msg=name)
    # Rank 0 wrote the checkpoints, with one RNG file per rank.
    assert [s for s, _ in list_checkpoints(tmp_path / "ddp" / "checkpoints")] == [5, 10]
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints" / "step-000010").glob("rng-*.pt")) == [
        "rng-0.pt",
        "rng-1.pt",
    ]
