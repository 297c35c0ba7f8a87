import json
import random
import re

import numpy as np
import pytest
import torch

from model.bert import build_model
from model.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from model.checkpoint_integrity import CheckpointError
from model.optim import build_optimizer, build_scheduler
from tests.model.conftest import tiny_config


def build(seed):
    cfg = tiny_config()
    torch.manual_seed(seed)
    model = build_model(cfg, vocab_size=45, pad_token_id=0)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    return model, optimizer, scheduler


def one_step(model, optimizer, scheduler):
    model.zero_grad()
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()
    scheduler.step()


def test_save_keeps_last_k_and_finds_latest(tmp_path):
    model, optimizer, scheduler = build(0)
    for step in (10, 20, 30):
        path = save_checkpoint(tmp_path, step, model, optimizer, scheduler, {"samples_seen": step * 4}, keep=2)
        assert path.name == f"step-{step:06d}"
    assert [s for s, _ in list_checkpoints(tmp_path)] == [20, 30]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000030"
    assert not list(tmp_path.glob("*.tmp"))


def test_a_checkpoint_is_on_disk_before_older_ones_are_pruned(tmp_path, monkeypatch):
    import os
    import shutil

    events = []
    real_fsync, real_rmtree = os.fsync, shutil.rmtree
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("sync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd)))
    monkeypatch.setattr(shutil, "rmtree", lambda path, *a, **k: (events.append(("prune", str(path))),
                                                                 real_rmtree(path, *a, **k)))
    model, optimizer, scheduler = build(0)
    save_checkpoint(tmp_path, 10, model, optimizer, scheduler, {}, keep=1)
    events.clear()
    save_checkpoint(tmp_path, 20, model, optimizer, scheduler, {}, keep=1)
    before_prune = events[: events.index(("prune", str(tmp_path / "step-000010")))]
    synced = {path for kind, path in before_prune if kind == "sync"}
    written = tmp_path / "step-000020.tmp"  # where the files were synced, before the rename
    assert {str(written / p.name) for p in (tmp_path / "step-000020").iterdir()} <= synced  # every file
    assert str(tmp_path) in synced  # and the rename into place


def test_incomplete_checkpoint_dirs_are_ignored(tmp_path):
    model, optimizer, scheduler = build(0)
    save_checkpoint(tmp_path, 10, model, optimizer, scheduler, {}, keep=2)
    (tmp_path / "step-000020.tmp").mkdir()  # a write killed before the rename
    (tmp_path / "step-000030").mkdir()  # no trainer_state.json: not complete
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000010"
    assert latest_checkpoint(tmp_path / "missing") is None
    # A later save at step 20 cleans the leftover tmp dir.
    save_checkpoint(tmp_path, 20, model, optimizer, scheduler, {}, keep=2)
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000020"


def test_load_restores_model_optimizer_scheduler_and_rngs(tmp_path):
    model, optimizer, scheduler = build(0)
    one_step(model, optimizer, scheduler)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    path = save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {"samples_seen": 16}, keep=2)
    expected_draws = (random.random(), np.random.rand(), torch.rand(3))

    other, other_optimizer, other_scheduler = build(99)
    state = load_checkpoint(path, other, other_optimizer, other_scheduler, torch.device("cpu"))
    assert state["step"] == 1 and state["samples_seen"] == 16
    assert (random.random(), np.random.rand()) == expected_draws[:2]
    assert torch.equal(torch.rand(3), expected_draws[2])
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert other_scheduler.state_dict()["last_epoch"] == 1
    # Same next update from the restored optimizer state.
    one_step(model, optimizer, scheduler)
    one_step(other, other_optimizer, other_scheduler)
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)
    # The tied decoder is still the word embedding after loading.
    assert other.cls.predictions.decoder.weight is other.bert.embeddings.word_embeddings.weight


class Payload:
    """Stands for an arbitrary object a tampered checkpoint could carry."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_checkpoints_are_safetensors_and_loading_refuses_pickled_objects(tmp_path):
    import pickle

    import pytest

    model, optimizer, scheduler = build(0)
    path = save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {}, keep=2)
    assert sorted(p.name for p in path.iterdir()) == ["model.safetensors", "optimizer.pt", "rng-0.pt",
                                                      "trainer_state.json"]  # fmt: skip
    torch.save({"optimizer": Payload(), "scheduler": {}}, path / "optimizer.pt")
    with pytest.raises(CheckpointError, match="optimizer.pt failed to load .*Weights only load failed") as refused:
        load_checkpoint(path, *build(1), torch.device("cpu"))
    assert isinstance(refused.value.__cause__, pickle.UnpicklingError)


def test_a_checkpoint_for_another_model_names_the_folder_and_file(tmp_path):
    model, optimizer, scheduler = build(0)
    path = save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {}, keep=2)
    cfg = tiny_config()
    other = build_model(cfg, vocab_size=50, pad_token_id=0)  # a tokenizer with 5 more tokens
    other_optimizer = build_optimizer(other, cfg)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path, other, other_optimizer, build_scheduler(other_optimizer, cfg), torch.device("cpu"))
    message = str(refused.value)
    assert f"checkpoint {path}: {path / 'model.safetensors'} failed to load" in message
    assert f"delete the folder {path} to resume from the checkpoint before it" in message


def test_a_corrupt_header_in_a_checkpoint_from_before_digests_names_the_folder_and_file(tmp_path):
    path = save_checkpoint(tmp_path, 1, *build(0), {}, keep=2)
    state = json.loads((path / "trainer_state.json").read_text())
    del state["files"]  # as written before digests were recorded: nothing to verify against
    (path / "trainer_state.json").write_text(json.dumps(state))
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:72] = bytes(b ^ 0xFF for b in data[8:72])  # the start of the JSON header
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=re.escape(f"{weights} failed to load (SafetensorError")):
        load_checkpoint(path, *build(1), torch.device("cpu"))
