"""Resumable training checkpoints: `checkpoints/step-000200/` written atomically, the last K kept."""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

STEP_DIR = re.compile(r"^step-(\d+)$")
TRAINER_STATE = "trainer_state.json"  # written last inside the tmp dir: its presence marks a complete checkpoint


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint taken after `step` optimizer steps."""
    return f"step-{step:06d}"


def list_checkpoints(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `checkpoints_dir` as (step, path), oldest first."""
    found = []
    if Path(checkpoints_dir).is_dir():
        for path in Path(checkpoints_dir).iterdir():
            match = STEP_DIR.match(path.name)
            if match and (path / TRAINER_STATE).is_file():
                found.append((int(match.group(1)), path))
    return sorted(found)


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


def save_checkpoint(
    checkpoints_dir: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    trainer_state: dict[str, Any],
    keep: int,
) -> Path:
    """Write model, optimizer, scheduler, RNG and `trainer_state` (JSON) for `step`; prune to the last `keep`."""
    checkpoints_dir = Path(checkpoints_dir)
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoints_dir / checkpoint_name(step)
    tmp = checkpoints_dir / f"{final.name}.tmp"
    if tmp.exists():  # left by an attempt killed mid-write
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(model.state_dict(), tmp / "model.pt")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
    torch.save(capture_rng_state(), tmp / "rng.pt")
    (tmp / TRAINER_STATE).write_text(json.dumps({**trainer_state, "step": step}, indent=2, sort_keys=True))
    if final.exists():  # re-taken at the same step (e.g. a resumed run finishing): replace it
        shutil.rmtree(final)
    tmp.rename(final)
    logger.info("saved checkpoint %s", final)

    for _, old in list_checkpoints(checkpoints_dir)[:-keep]:
        shutil.rmtree(old)
        logger.info("removed old checkpoint %s", old)
    return final


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> dict[str, Any]:
    """Load a checkpoint into model/optimizer/scheduler, restore the RNGs, and return its trainer state."""
    path = Path(path)
    model.load_state_dict(torch.load(path / "model.pt", map_location=device, weights_only=True))
    optim_state = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(optim_state["optimizer"])
    scheduler.load_state_dict(optim_state["scheduler"])
    # RNG states must stay CPU ByteTensors whatever the training device.
    restore_rng_state(torch.load(path / "rng.pt", map_location="cpu", weights_only=True))
    logger.info("resumed from checkpoint %s", path)
    return read_trainer_state(path)
