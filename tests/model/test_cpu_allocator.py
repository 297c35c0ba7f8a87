"""glibc allocator thresholds for CPU training."""

from __future__ import annotations

import sys

from model.cpu_allocator import keep_freed_memory


def test_keep_freed_memory_applies_on_linux_glibc():
    applied = keep_freed_memory()
    assert applied == keep_freed_memory()  # idempotent
    if sys.platform.startswith("linux"):
        assert applied
