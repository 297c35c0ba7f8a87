"""Checkpoint file digests: what verify_checkpoint reports, how newest_intact_checkpoint falls back."""

import json
import logging
import subprocess
import sys
from pathlib import Path

from model.checkpoint import save_checkpoint
from model.checkpoint_integrity import (
    has_file_digests,
    list_checkpoints,
    newest_intact_checkpoint,
    verify_checkpoint,
)
from tests.model.test_checkpoint import build

REPO = Path(__file__).resolve().parents[2]


def flip_bytes(path: Path, offset: int, count: int = 64) -> None:
    """Invert `count` bytes of a file in place from `offset`: same size, different content."""
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = bytes(b ^ 0xFF for b in data[offset : offset + count])
    path.write_bytes(bytes(data))


def tensor_data_offset(path: Path) -> int:
    """Where a safetensors file's tensor bytes start: after the 8-byte header length and the JSON header."""
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def checkpoints(tmp_path, steps, keep=3):
    model, optimizer, scheduler = build(0)
    return [save_checkpoint(tmp_path, step, model, optimizer, scheduler, {}, keep=keep) for step in steps]


def warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_an_intact_checkpoint_has_no_problems(tmp_path):
    (path,) = checkpoints(tmp_path, [10])
    assert verify_checkpoint(path) == []
    assert has_file_digests(path)


def test_verify_names_each_damaged_file_and_what_is_wrong(tmp_path):
    (path,) = checkpoints(tmp_path, [10])
    weights = path / "model.safetensors"
    flip_bytes(weights, tensor_data_offset(weights) + 100)
    (path / "optimizer.pt").write_bytes((path / "optimizer.pt").read_bytes()[:-10])  # truncated
    (path / "rng-0.pt").unlink()
    problems = verify_checkpoint(path)
    assert len(problems) == 3, problems
    assert problems[0].startswith("model.safetensors: checksum differs")
    assert problems[1].startswith("optimizer.pt: size differs")
    assert problems[2] == "rng-0.pt: missing"


def test_an_unreadable_trainer_state_is_a_problem(tmp_path):
    (path,) = checkpoints(tmp_path, [10])
    state = path / "trainer_state.json"
    state.write_text(state.read_text()[:40])  # cut short, as by a full disk
    (problem,) = verify_checkpoint(path)
    assert problem.startswith("trainer_state.json: unreadable")
    state.write_text("[1, 2]")
    assert verify_checkpoint(path) == ["trainer_state.json: unreadable (a JSON list, not an object)"]


def test_a_checkpoint_from_before_digests_cannot_be_verified_but_is_used(tmp_path, caplog):
    (path,) = checkpoints(tmp_path, [10])
    state = json.loads((path / "trainer_state.json").read_text())
    del state["files"]
    (path / "trainer_state.json").write_text(json.dumps(state))
    assert verify_checkpoint(path) == [] and not has_file_digests(path)
    with caplog.at_level(logging.WARNING):
        assert newest_intact_checkpoint(tmp_path) == path
    assert any("predates file digests" in w and str(path) in w for w in warnings(caplog))


def test_damaged_checkpoints_are_deleted_newest_first_until_an_intact_one(tmp_path, caplog):
    old, middle, new = checkpoints(tmp_path, [10, 20, 30])
    flip_bytes(new / "model.safetensors", tensor_data_offset(new / "model.safetensors"))
    (middle / "optimizer.pt").unlink()
    with caplog.at_level(logging.WARNING):
        assert newest_intact_checkpoint(tmp_path) == old
    first, second = warnings(caplog)  # one line per damaged checkpoint
    assert first.startswith(f"checkpoint {new} is damaged (model.safetensors: checksum differs")
    assert second == f"checkpoint {middle} is damaged (optimizer.pt: missing): deleting it and trying an older one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000010"]  # nothing left half-deleted


def test_no_intact_checkpoint_means_starting_over(tmp_path, caplog):
    (path,) = checkpoints(tmp_path, [10])
    flip_bytes(path / "rng-0.pt", 0)
    with caplog.at_level(logging.WARNING):
        assert newest_intact_checkpoint(tmp_path) is None
    assert "rng-0.pt: checksum differs" in warnings(caplog)[0]
    assert "training starts over from step 0" in warnings(caplog)[1]
    assert list(tmp_path.iterdir()) == []
    caplog.clear()
    assert newest_intact_checkpoint(tmp_path / "missing") is None and warnings(caplog) == []  # a fresh run


def test_a_deletion_killed_midway_leaves_nothing_that_looks_complete(tmp_path):
    old, new = checkpoints(tmp_path, [10, 20])
    half_deleted = new.rename(new.with_name("step-000020.damaged"))  # renamed, then killed during rmtree
    (half_deleted / "model.safetensors").unlink()
    assert [p for _, p in list_checkpoints(tmp_path)] == [old]
    assert newest_intact_checkpoint(tmp_path) == old
    assert not half_deleted.exists()  # cleaned up by the next resume


def test_importing_the_module_does_not_load_torch():
    # `artifacts --verify` checks unfinished builds' checkpoints without paying for torch.
    code = "import sys, model.checkpoint_integrity; print(sorted({'torch', 'numpy', 'safetensors'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_recorded_digests_cover_every_file_but_the_trainer_state(tmp_path):
    import hashlib

    (path,) = checkpoints(tmp_path, [10])
    files = json.loads((path / "trainer_state.json").read_text())["files"]
    assert sorted(files) == ["model.safetensors", "optimizer.pt", "rng-0.pt"]
    for name, recorded in files.items():
        data = (path / name).read_bytes()
        assert recorded == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
