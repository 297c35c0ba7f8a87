"""Resumable training checkpoints: `checkpoints/step-000200/` written atomically, the last K kept.

Nothing here unpickles arbitrary objects: weights are safetensors, and optimizer, scheduler, scaler
and RNG states are dicts of tensors and plain values read back with `torch.load(weights_only=True)`;
the trainer state (step, data position, config, metric history) is JSON. Each rank of a distributed
run writes its own RNG file (`rng-<rank>.pt`); rank 0 writes the rest, records every file's size and
sha256 in the trainer state (model/checkpoint_integrity.py checks them before a resume) and publishes
the folder.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from model.checkpoint_integrity import (
    TRAINER_STATE,
    CheckpointError,
    checkpoint_name,
    damaged_checkpoint_message,
    file_digests,
    list_checkpoints,
)

logger = logging.getLogger(__name__)


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The most advanced complete checkpoint, or None when there is none."""
    found = list_checkpoints(checkpoints_dir)
    return found[-1][1] if found else None


def read_trainer_state(path: Path) -> dict[str, Any]:
    """The JSON trainer state (step, data position, config, ...) of a checkpoint, without loading tensors."""
    return json.loads((Path(path) / TRAINER_STATE).read_text())


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (when present) CUDA generator states, as weights_only-loadable values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back generator states captured by `capture_rng_state`."""
    random.setstate(state["python"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sync_folder(folder: Path, files: bool = True) -> None:
    """fsync the folder's files (if `files`) and the folder entry itself, so they survive a power cut."""
    paths = [p for p in folder.iterdir() if p.is_file()] if files else []
    for path in [*paths, folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def begin_checkpoint(checkpoints_dir: Path, step: int) -> Path:
    """A fresh temporary folder for the checkpoint of `step` (rank 0 calls this before any rank writes)."""
    checkpoints_dir = Path(checkpoints_dir)
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    tmp = checkpoints_dir / f"{checkpoint_name(step)}.tmp"
    if tmp.exists():  # left by an attempt killed mid-write
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def write_rng_state(tmp: Path, rank: int) -> None:
    """This process's generator states into the checkpoint being written."""
    torch.save(capture_rng_state(), Path(tmp) / f"rng-{rank}.pt")


def finish_checkpoint(
    tmp: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler_state: dict[str, Any],
    trainer_state: dict[str, Any],
    keep: int,
) -> Path:
    """Write weights, optimizer, scheduler and the JSON state into `tmp`, publish it, prune to the last `keep`."""
    tmp = Path(tmp)
    final = tmp.with_name(tmp.name.removesuffix(".tmp"))
    save_model(model, str(tmp / "model.safetensors"))  # tied weights are stored once
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler_state},
        tmp / "optimizer.pt",
    )
    # Every rank's rng-<rank>.pt is in place by now (the caller's barrier): digests cover them all.
    trainer_state = {**trainer_state, "files": file_digests(tmp)}
    (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2, sort_keys=True))
    _sync_folder(tmp)  # on disk before older checkpoints are pruned: a power cut must leave one whole
    if final.exists():  # re-taken at the same step (e.g. a resumed run finishing): replace it
        shutil.rmtree(final)
    tmp.rename(final)
    _sync_folder(final.parent, files=False)  # the rename itself
    logger.info("saved checkpoint %s", final)

    for _, old in list_checkpoints(final.parent)[:-keep]:
        shutil.rmtree(old)
        logger.info("removed old checkpoint %s", old)
    return final


def save_checkpoint(
    checkpoints_dir: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    trainer_state: dict[str, Any],
    keep: int,
    scaler_state: dict[str, Any] | None = None,
) -> Path:
    """Single-process checkpoint of `step`: model, optimizer, scheduler, RNG and `trainer_state` (JSON)."""
    tmp = begin_checkpoint(checkpoints_dir, step)
    write_rng_state(tmp, rank=0)
    return finish_checkpoint(
        tmp, model, optimizer, scheduler, scaler_state or {}, {**trainer_state, "step": step}, keep
    )


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    rank: int = 0,
) -> dict[str, Any]:
    """Load a checkpoint into model/optimizer/scheduler, restore this rank's RNGs, return its trainer state.

    The returned state carries the saved scaler state under "scaler" (empty when none). A file that
    fails to load raises CheckpointError naming the checkpoint folder and the file.
    """
    path = Path(path)
    with _naming_the_file(path, "model.safetensors"):
        load_model(model, str(path / "model.safetensors"), strict=True, device=str(device))
    with _naming_the_file(path, "optimizer.pt"):
        optim_state = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
        # Kernel choices (fused/foreach) belong to this machine, not to the one that wrote the checkpoint.
        kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups]
        optimizer.load_state_dict(optim_state["optimizer"])
        for group, kernel in zip(optimizer.param_groups, kernels, strict=True):
            group.update(kernel)
        scheduler.load_state_dict(optim_state["scheduler"])
    rng_name = f"rng-{rank}.pt"
    if (path / rng_name).is_file():  # absent when resuming with more processes than wrote it: keep the fresh seed
        with _naming_the_file(path, rng_name):
            # RNG states must stay CPU ByteTensors whatever the training device.
            restore_rng_state(torch.load(path / rng_name, map_location="cpu", weights_only=True))
    logger.info("resumed from checkpoint %s", path)
    return {**read_trainer_state(path), "scaler": optim_state.get("scaler", {})}


@contextmanager
def _naming_the_file(path: Path, name: str) -> Iterator[None]:
    """Turn any failure loading file `name` of checkpoint `path` (SafetensorError, unpickling, a shape
    mismatch) into a CheckpointError that names both and says what to do."""
    try:
        yield
    except Exception as err:  # safetensors, torch.load and load_state_dict each raise their own kinds
        raise CheckpointError(damaged_checkpoint_message(path, name, err)) from err
