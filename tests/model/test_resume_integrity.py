"""pretrain never resumes from damaged weights: it deletes the damaged checkpoint and resumes from an older one."""

import json
import logging
import os

import pytest
import torch
import torch.multiprocessing as mp

from model.checkpoint import list_checkpoints
from model.train import pretrain
from tests.model.conftest import tiny_config
from tests.model.test_checkpoint_integrity import flip_bytes, tensor_data_offset
from tests.model.test_distributed import free_port
from tests.model.test_train import Recorder, exported_state

CONFIG = dict(max_steps=40)  # checkpoints every 10 steps, the last 2 kept, loss logged every 5


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, instances_dir, tokenizer_dir):
    """The stats and exported weights of the same run, never interrupted."""
    out = tmp_path_factory.mktemp("straight")
    stats = pretrain(tiny_config(**CONFIG), instances_dir, tokenizer_dir, out)
    return stats, exported_state(out)


@pytest.fixture(scope="module")
def straight_weights(straight_run):
    return straight_run[1]


class FolderRecorder(Recorder):
    """A Recorder that also lists the checkpoints folder when the first metrics arrive."""

    def __init__(self, checkpoints):
        super().__init__()
        self.checkpoints, self.first_listing = checkpoints, None

    def __call__(self, metrics, step):
        if self.first_listing is None:
            self.first_listing = sorted(p.name for p in self.checkpoints.iterdir())
        super().__call__(metrics, step)


def interrupted_run(out, instances_dir, tokenizer_dir, stop_after):
    """Train until the first log past `stop_after`, then die as a kill would: no checkpoint of the last steps."""
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_config(**CONFIG), instances_dir, tokenizer_dir, out, log_metrics=Recorder(stop_after=stop_after))
    return out / "checkpoints"


def resume(out, instances_dir, tokenizer_dir, caplog):
    recorder = FolderRecorder(out / "checkpoints")
    with caplog.at_level(logging.WARNING, logger="model.checkpoint_integrity"):
        stats = pretrain(tiny_config(**CONFIG), instances_dir, tokenizer_dir, out, log_metrics=recorder)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return stats, recorder, warnings


def assert_same_weights(out, straight_weights):
    resumed = exported_state(out)
    assert resumed.keys() == straight_weights.keys()
    for name in straight_weights:
        assert torch.equal(resumed[name], straight_weights[name]), name


def test_flipped_bytes_in_the_newest_weights_resume_from_the_older_checkpoint(
    tmp_path, instances_dir, tokenizer_dir, straight_weights, caplog
):
    checkpoints = interrupted_run(tmp_path, instances_dir, tokenizer_dir, stop_after=20)
    assert [s for s, _ in list_checkpoints(checkpoints)] == [10, 20]
    weights = checkpoints / "step-000020" / "model.safetensors"
    flip_bytes(weights, tensor_data_offset(weights) + 256)  # inside the tensor data: the file still loads

    stats, recorder, warnings = resume(tmp_path, instances_dir, tokenizer_dir, caplog)
    (warning,) = warnings
    assert f"checkpoint {checkpoints / 'step-000020'} is damaged (model.safetensors: checksum differs" in warning
    assert recorder.first_listing == ["step-000010"]  # the damaged folder is gone, nothing half-deleted left
    assert stats["resumed_from_step"] == 10 and recorder.calls[0][1] == 15
    assert [s for s, _ in list_checkpoints(checkpoints)] == [30, 40]  # step 20 written again, then pruned
    assert_same_weights(tmp_path, straight_weights)


def test_tokens_seen_counts_every_trained_token_once_across_a_resume(
    tmp_path, instances_dir, tokenizer_dir, straight_run, caplog
):
    straight_stats, _ = straight_run
    config = tiny_config(**CONFIG)
    # every sequence holds at least [CLS] A [SEP] B [SEP] and at most max_position_embeddings real tokens
    assert 5 * 40 * config.batch_size <= straight_stats["tokens_seen"] <= 40 * config.batch_size * 64
    interrupted_run(tmp_path, instances_dir, tokenizer_dir, stop_after=25)  # killed after 25 steps, resumed at 20
    stats, _, _ = resume(tmp_path, instances_dir, tokenizer_dir, caplog)
    assert stats["resumed_from_step"] == 20
    assert stats["tokens_seen"] == straight_stats["tokens_seen"]  # steps 21-25 are counted once, not twice


def test_a_corrupt_safetensors_header_resumes_from_the_older_checkpoint(
    tmp_path, instances_dir, tokenizer_dir, straight_weights, caplog
):
    checkpoints = interrupted_run(tmp_path, instances_dir, tokenizer_dir, stop_after=20)
    flip_bytes(checkpoints / "step-000020" / "model.safetensors", 8)  # the JSON header: a SafetensorError to load

    stats, recorder, warnings = resume(tmp_path, instances_dir, tokenizer_dir, caplog)
    (warning,) = warnings
    assert f"checkpoint {checkpoints / 'step-000020'} is damaged (model.safetensors: checksum differs" in warning
    assert recorder.first_listing == ["step-000010"]
    assert stats["resumed_from_step"] == 10
    assert_same_weights(tmp_path, straight_weights)


def test_damage_to_the_only_checkpoint_starts_over(tmp_path, instances_dir, tokenizer_dir, straight_weights, caplog):
    checkpoints = interrupted_run(tmp_path, instances_dir, tokenizer_dir, stop_after=10)
    assert [s for s, _ in list_checkpoints(checkpoints)] == [10]
    weights = checkpoints / "step-000010" / "model.safetensors"
    flip_bytes(weights, tensor_data_offset(weights))

    stats, recorder, warnings = resume(tmp_path, instances_dir, tokenizer_dir, caplog)
    damaged, starting_over = warnings
    assert f"checkpoint {checkpoints / 'step-000010'} is damaged (model.safetensors" in damaged
    assert f"no intact checkpoint left in {checkpoints}" in starting_over and "starts over" in starting_over
    assert recorder.first_listing == []
    assert stats["resumed_from_step"] == 0 and recorder.calls[0][1] == 5
    assert_same_weights(tmp_path, straight_weights)


# --- two processes: rank 0 chooses, every rank resumes from its choice -------------------------------


def distributed_config():
    return tiny_config(max_steps=20, log_every=1, eval_every=20, checkpoint_every=5,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip


def resume_worker(rank, world_size, port, instances_dir, tokenizer_dir, out_dir, stats_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))  # fmt: skip
    torch.set_num_threads(1)
    stats = pretrain(distributed_config(), instances_dir, tokenizer_dir, out_dir)
    with open(stats_path, "a") as f:
        f.write(json.dumps([rank, stats["resumed_from_step"]]) + "\n")


@pytest.mark.timeout(600)
def test_every_rank_resumes_from_the_checkpoint_rank_0_verified(tmp_path, instances_dir, tokenizer_dir):
    with pytest.raises(KeyboardInterrupt):
        pretrain(distributed_config(), instances_dir, tokenizer_dir, tmp_path, log_metrics=Recorder(stop_after=10))
    checkpoints = tmp_path / "checkpoints"
    assert [s for s, _ in list_checkpoints(checkpoints)] == [5, 10]
    (checkpoints / "step-000010" / "optimizer.pt").unlink()

    stats_path = tmp_path / "stats.jsonl"
    mp.spawn(resume_worker, args=(2, free_port(), instances_dir, tokenizer_dir, tmp_path, stats_path), nprocs=2)
    resumed = sorted(json.loads(line) for line in stats_path.read_text().splitlines())
    assert resumed == [[0, 5], [1, 5]]
    assert [s for s, _ in list_checkpoints(checkpoints)] == [15, 20]
    files = json.loads((checkpoints / "step-000020" / "trainer_state.json").read_text())["files"]
    assert sorted(files) == ["model.safetensors", "optimizer.pt", "rng-0.pt", "rng-1.pt"]  # each rank's RNG file
