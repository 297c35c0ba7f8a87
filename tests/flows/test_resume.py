"""A stage killed midway leaves no artifact, and a rerun resumes from what it had finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from model.checkpoint import list_checkpoints
from tasks.artifacts import ArtifactStore
from tasks.config import load_config
from tasks.crawl.local_site import PYTHON_DOCS
from tasks.stages import resolve_ids, run_stage

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (PYTHON_DOCS / "index.html").is_file(), reason="needs python3.11-doc (make python-docs)"),
]

KILLED_RUN = """
import sys
from tasks.config import load_config
from tasks.stages import run_stage
run_stage("pretrain", load_config("tiny", sys.argv[1:]))
"""


def test_pretrain_killed_midway_leaves_no_artifact_and_rerun_resumes(tmp_path):
    overrides = [f"data_root={tmp_path / 'data'}", "pretrain.max_steps=120", "pretrain.checkpoint_every=10",
                 "pretrain.eval_every=120"]
    config = load_config("tiny", overrides)
    for upstream in ("corpus", "tokenize", "instances"):
        run_stage(upstream, config)
    store = ArtifactStore(config.data_root)
    pretrain_id = resolve_ids(config)["pretrain"]
    checkpoints = store.root / "pretrain" / f".staging-{pretrain_id}" / "checkpoints"

    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, *overrides], start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list_checkpoints(checkpoints):  # a complete one: a step-*.tmp folder may be mid-write
            assert child.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()

    assert not store.exists("pretrain", pretrain_id)
    assert store.list("pretrain") == []
    kept = [step for step, _ in list_checkpoints(checkpoints)]
    assert kept, "the killed run's checkpoints were lost"

    result = run_stage("pretrain", config)
    assert not result.cache_hit
    assert store.exists("pretrain", pretrain_id) and store.verify("pretrain", pretrain_id) == []
    assert result.stats["steps"] == 120
    assert result.stats["resumed_from_step"] == kept[-1]  # the latest complete checkpoint
