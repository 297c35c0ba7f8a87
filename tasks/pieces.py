"""Resumable pieces: the size and sha256 of a finished piece, recorded when it is written and checked before reuse.

A stage builds into a staging folder, and a rerun after a crash (SIGKILL included) reuses the pieces
already finished: the corpus stage's input and cleaned shards, token shards, instance shards, the
crawl's WARC batches. Bytes damaged on disk since then must not be used: a piece that differs from its
record, or cannot be read, is removed with one warning naming it and what is wrong, and is built again.
A piece written by older code, which recorded nothing, is reused unverified.

A record is `{"bytes": size, "sha256": hex}` (as model/checkpoint_integrity.py records checkpoint files).
It lives in the piece's done-marker where there is one (work/split.json, work/cleaned-NNNNN.json), else
in a sidecar `<folder>/.digests/<piece name>.json` written after the piece. Sidecars are scratch: a
stage removes them (`forget_digests`) when its work is done, so its artifact holds the same files as before.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.artifacts import file_sha256, write_json_atomic

logger = logging.getLogger(__name__)

DIGESTS_DIRNAME = ".digests"


def piece_record(path: Path) -> dict[str, Any]:
    """{"bytes": size, "sha256": hex digest} of one finished piece (streamed, as manifests hash files)."""
    return {"bytes": Path(path).stat().st_size, "sha256": file_sha256(path)}


def piece_damage(path: Path, record: Mapping[str, Any] | None) -> str | None:
    """What is wrong with a finished piece, judged against the record made when it was written; None if nothing.

    record None: the piece's marker records digests but none for this piece.
    """
    path = Path(path)
    if not path.is_file():
        return "it is missing"
    if not isinstance(record, Mapping) or not {"bytes", "sha256"} <= record.keys():
        return "no checksum was recorded for it"
    size = path.stat().st_size
    if size != record["bytes"]:
        return f"it holds {size} bytes, {record['bytes']} when it was written"
    if piece_record(path)["sha256"] != record["sha256"]:
        return "its checksum differs from the one recorded when it was written"
    return None


def unreadable(err: Exception) -> str:
    """What is wrong with a piece that cannot be read, on one short line (the error may quote damaged bytes)."""
    message = "".join(c if c.isprintable() else "?" for c in " ".join(str(err).split()))
    return f"it cannot be read ({type(err).__name__}: {message[:160]})"


def discard_piece(path: Path, problem: str, then: str = "building it again") -> None:
    """Log one warning naming the damaged piece, what is wrong and what happens next; remove it and its sidecar."""
    logger.warning("damaged piece %s: %s; removing it and %s", path, problem, then)
    Path(path).unlink(missing_ok=True)
    _sidecar(Path(path)).unlink(missing_ok=True)


def record_piece(path: Path) -> None:
    """Record a piece just finished (renamed into place) in its sidecar, written atomically."""
    sidecar = _sidecar(Path(path))
    sidecar.parent.mkdir(exist_ok=True)
    write_json_atomic(sidecar, piece_record(path))


def sidecar_damage(path: Path) -> str | None:
    """What is wrong with a finished piece against its sidecar; None when it matches, or when it has no
    sidecar (written by older code, or killed between the piece and its sidecar: reused unverified)."""
    sidecar = _sidecar(Path(path))
    if not sidecar.is_file():
        return None
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return f"its checksum record {sidecar} cannot be read"
    return piece_damage(path, record)


def reusable_piece(path: Path, then: str = "building it again") -> bool:
    """True when a finished piece is there and matches its sidecar (or has none); a damaged one is discarded."""
    if not Path(path).is_file():
        _sidecar(Path(path)).unlink(missing_ok=True)  # left by a piece removed since: it must not judge the next one
        return False
    problem = sidecar_damage(path)
    if problem is not None:
        discard_piece(path, problem, then)
        return False
    return True


def forget_digests(folder: Path) -> None:
    """Remove the sidecars of a folder's pieces (its .digests/), once the stage no longer resumes from them."""
    shutil.rmtree(Path(folder) / DIGESTS_DIRNAME, ignore_errors=True)


def _sidecar(path: Path) -> Path:
    return path.parent / DIGESTS_DIRNAME / f"{path.name}.json"
