"""Checkpoint integrity: the size and sha256 of every file a checkpoint wrote, checked before a resume.

`trainer_state.json`, written last, records `{"files": {name: {"bytes": n, "sha256": hex}}}` for the
weights, optimizer and RNG files beside it. A resume walks the complete checkpoints newest first and
deletes any whose files no longer match, so damaged weights are never trained on. Standard library
only: `artifacts --verify` imports this to check unfinished builds without loading torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from model.errors import ModelInputError

logger = logging.getLogger(__name__)

STEP_DIR = re.compile(r"^step-(\d+)$")
TRAINER_STATE = "trainer_state.json"  # written last inside the tmp dir: its presence marks a complete checkpoint
DISCARDED_SUFFIX = ".damaged"  # a damaged checkpoint is renamed to this before its files are deleted
HASH_CHUNK = 1 << 20  # bytes read per sha256 update


class CheckpointError(ModelInputError, RuntimeError):
    """A checkpoint could not be loaded; the message names its folder, the file and what to do."""


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


def file_digest(path: Path) -> dict[str, Any]:
    """{"bytes": size, "sha256": hex digest} of one file, read in 1 MiB chunks."""
    sha256 = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            sha256.update(chunk)
    return {"bytes": Path(path).stat().st_size, "sha256": sha256.hexdigest()}


def file_digests(folder: Path) -> dict[str, dict[str, Any]]:
    """Digests of every file in a checkpoint folder being written, by name, except trainer_state.json itself."""
    return {
        path.name: file_digest(path)
        for path in sorted(Path(folder).iterdir())
        if path.is_file() and path.name != TRAINER_STATE
    }


def _recorded_files(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """(the "files" record of a checkpoint or None when it predates digests, problems reading it)."""
    try:
        state = json.loads((Path(path) / TRAINER_STATE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, [f"{TRAINER_STATE}: unreadable ({err})"]
    if not isinstance(state, dict):
        return None, [f"{TRAINER_STATE}: unreadable (a JSON {type(state).__name__}, not an object)"]
    files = state.get("files")
    if files is not None and not isinstance(files, dict):
        return None, [f'{TRAINER_STATE}: unreadable ("files" is a {type(files).__name__}, not an object)']
    return files, []


def has_file_digests(path: Path) -> bool:
    """Whether the checkpoint's trainer_state.json records file digests (checkpoints before them do not)."""
    files, problems = _recorded_files(path)
    return files is not None and not problems


def verify_checkpoint(path: Path) -> list[str]:
    """What is wrong with a checkpoint's files, one line per file named as in the folder; [] when intact.

    A checkpoint written before digests were recorded also gives []: see `has_file_digests`.
    """
    path = Path(path)
    files, problems = _recorded_files(path)
    for name, recorded in sorted((files or {}).items()):
        file = path / name
        if not isinstance(recorded, dict) or not {"bytes", "sha256"} <= recorded.keys():
            problems.append(f"{name}: digest record unreadable ({recorded!r})")
        elif not file.is_file():
            problems.append(f"{name}: missing")
        elif (size := file.stat().st_size) != recorded["bytes"]:
            problems.append(f"{name}: size differs ({size} bytes on disk, {recorded['bytes']} recorded)")
        elif (sha256 := file_digest(file)["sha256"]) != recorded["sha256"]:
            problems.append(f"{name}: checksum differs (sha256 {sha256[:12]}... on disk, "
                            f"{recorded['sha256'][:12]}... recorded)")  # fmt: skip
    return problems


def discard_checkpoint(path: Path) -> None:
    """Delete a checkpoint folder: renamed out of the step-* namespace first, so a kill midway never
    leaves a half-deleted folder that still looks complete."""
    path = Path(path)
    discarded = path.with_name(path.name + DISCARDED_SUFFIX)
    if discarded.exists():  # left by a deletion killed midway
        shutil.rmtree(discarded)
    path.rename(discarded)
    shutil.rmtree(discarded)


def newest_intact_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The most advanced complete checkpoint whose files match their digests, or None.

    Damaged checkpoints met on the way, newest first, are logged (one warning each) and deleted, so a
    later run can write that step again. None when there is no checkpoint or none is intact.
    """
    checkpoints_dir = Path(checkpoints_dir)
    if checkpoints_dir.is_dir():
        for leftover in checkpoints_dir.glob(f"step-*{DISCARDED_SUFFIX}"):
            shutil.rmtree(leftover)
    found = list_checkpoints(checkpoints_dir)
    for _, path in reversed(found):
        problems = verify_checkpoint(path)
        if not problems:
            if not has_file_digests(path):
                logger.warning("checkpoint %s predates file digests: it cannot be verified, resuming from it as is",
                               path)  # fmt: skip
            return path
        logger.warning("checkpoint %s is damaged (%s): deleting it and trying an older one", path, "; ".join(problems))
        discard_checkpoint(path)
    if found:
        logger.warning("no intact checkpoint left in %s (%d damaged, deleted): training starts over from step 0",
                       checkpoints_dir, len(found))  # fmt: skip
    return None


def damaged_checkpoint_message(path: Path, name: str, error: BaseException) -> str:
    """The CheckpointError text for file `name` of checkpoint `path` failing to load with `error`."""
    return (
        f"cannot resume from checkpoint {path}: {Path(path) / name} failed to load "
        f"({type(error).__name__}: {error}). It is damaged or was written for another model or tokenizer: "
        f"delete the folder {path} to resume from the checkpoint before it (or to start over if it is the only one)"
    )
