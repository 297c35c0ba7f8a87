"""Damage done to a finished piece on disk, and the warnings a stage gives when it finds one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest


def flip_bytes(path: Path, count: int = 4) -> None:
    """Invert `count` bytes in the middle of a file, as a bad disk block would: its size stays the same."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for position in range(middle, min(middle + count, len(data))):
        data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The messages of the warnings captured so far."""
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def assert_rebuilt_as_clean(caplog: pytest.LogCaptureFixture, damaged: Path, out: Path, clean: Path) -> None:
    """One warning named the damaged piece as changed since it was written, and `out` holds the same files
    as the clean build `clean` (no checksum sidecar left)."""
    [warning] = warnings_of(caplog)
    assert str(damaged) in warning and "checksum differs from the one recorded when it was written" in warning
    files = {p.relative_to(out) for p in out.rglob("*")}
    assert files == {p.relative_to(clean) for p in clean.rglob("*")}


class Stopped(Exception):
    """The run was stopped after a step, as a crash would stop it."""


def stop_after(step: str):
    """A StepRunner that runs steps as run_inline does and raises Stopped once `step` is done."""
    def run_step(name, fn, /, *, retries=0, sharded=False):
        result = fn()
        if name == step:
            raise Stopped(name)
        return result
    return run_step
