"""The README's commands, run as a user would: the installed `pretrainflow` console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.crawl.local_site import PYTHON_DOCS

CLI = shutil.which("pretrainflow", path=str(Path(sys.executable).parent)) or "pretrainflow"


def pretrainflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_config_prints_the_resolved_preset_with_overrides(tmp_path):
    done = pretrainflow("config", "--config", "tiny", "--set", "pretrain.max_steps=7", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "max_steps: 7" in done.stdout


def test_bad_config_exits_2_with_every_problem_before_any_work(tmp_path):
    done = pretrainflow("run", "pipeline", "--config", "tiny", "--set", "pretrain.max_step=7",
                        "--set", "instances.dupe_factor=0", cwd=tmp_path)
    assert done.returncode == 2
    assert "2 problem(s)" in done.stderr
    assert "pretrain.max_step: unknown field (did you mean 'max_steps'?)" in done.stderr
    assert "instances.dupe_factor: Input should be greater than or equal to 1 (got 0)" in done.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.skipif(not (PYTHON_DOCS / "index.html").is_file(), reason="needs python3.11-doc (make python-docs)")
def test_stage_work_runs_alone_without_prefect_or_mlflow(tmp_path):
    corpus = pretrainflow("task", "corpus", "--config", "tiny", "--set", "corpus.crawl.max_pages=12",
                          "--output", str(tmp_path / "corpus"), cwd=tmp_path)
    assert corpus.returncode == 0, corpus.stderr
    assert json.loads(corpus.stdout)["documents"] > 0
    tokens = pretrainflow("task", "tokenize", "--config", "tiny", "--input", f"corpus={tmp_path / 'corpus'}",
                          "--output", str(tmp_path / "tokens"), cwd=tmp_path)
    assert tokens.returncode == 0, tokens.stderr
    assert json.loads(tokens.stdout)["train_tokens"] > 0
    assert (tmp_path / "tokens" / "tokenizer").is_dir()
    assert not (tmp_path / "mlflow.db").exists()  # plain functions: nothing tracked

    missing = pretrainflow("task", "instances", "--config", "tiny", "--output", str(tmp_path / "inst"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "input folder does not exist" in missing.stderr and "--input STAGE=DIR" in missing.stderr


def test_malformed_input_is_refused_with_exit_2(tmp_path):
    done = pretrainflow("task", "tokenize", "--config", "tiny", "--input", str(tmp_path), "--output",
                        str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2 and "is not of the form STAGE=DIR" in done.stderr


def test_artifacts_lists_nothing_in_an_empty_root(tmp_path):
    done = pretrainflow("artifacts", "--data-root", str(tmp_path / "data"), cwd=tmp_path)
    assert done.returncode == 0 and "no artifacts under" in done.stdout


def test_artifacts_lists_unfinished_builds(tmp_path):
    staging = tmp_path / "data" / "pretrain" / ".staging-0123456789abcdef" / "checkpoints" / "step-000010"
    staging.mkdir(parents=True)
    (staging / "model.safetensors").write_bytes(b"x" * 3 * 2**20)
    done = pretrainflow("artifacts", "--data-root", str(tmp_path / "data"), cwd=tmp_path)
    assert done.returncode == 0 and "no artifacts under" in done.stdout
    assert "unfinished builds" in done.stdout
    [line] = [line for line in done.stdout.splitlines() if line.startswith("pretrain ")]
    assert "0123456789abcdef" in line and "3.0 MiB" in line and ".staging-0123456789abcdef" in line


def test_artifacts_tells_failed_builds_apart_and_verify_finds_a_damaged_checkpoint(tmp_path):
    import hashlib

    checkpoint = tmp_path / "data" / "pretrain" / ".staging-0123456789abcdef" / "checkpoints" / "step-000010"
    checkpoint.mkdir(parents=True)
    weights = b"w" * 1000
    (checkpoint / "model.safetensors").write_bytes(weights[:-1] + b"x")  # one byte changed after it was recorded
    (checkpoint / "trainer_state.json").write_text(json.dumps({"step": 10, "files": {"model.safetensors": {
        "bytes": len(weights), "sha256": hashlib.sha256(weights).hexdigest()}}}))
    failed = tmp_path / "data" / "corpus" / ".staging-fedcba9876543210"
    (failed / "work").mkdir(parents=True)
    (failed / "work" / "input-00000.parquet").write_bytes(b"kept")
    (failed / ".failed.json").write_text(json.dumps({"reason": "docs/scan.txt: a PNG image, not a .txt text file"}))

    listed = pretrainflow("artifacts", "--data-root", str(tmp_path / "data"), cwd=tmp_path)
    assert listed.returncode == 0
    unfinished, failed_builds = listed.stdout.split("failed builds")
    assert "pretrain   0123456789abcdef" in unfinished and "corpus     fedcba9876543210" in failed_builds
    assert "because: docs/scan.txt: a PNG image, not a .txt text file" in failed_builds

    verified = pretrainflow("artifacts", "--data-root", str(tmp_path / "data"), "--verify", cwd=tmp_path)
    assert verified.returncode == 1
    assert ("DAMAGED .staging-0123456789abcdef/checkpoints/step-000010: model.safetensors: checksum differs"
            in verified.stdout)


def test_compare_refuses_a_store_that_does_not_exist_and_creates_none(tmp_path):
    typo = tmp_path / "typo.db"
    done = pretrainflow("compare", "0123abcd", "--tracking-uri", f"sqlite:///{typo}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"no SQLite MLflow store at {typo}" in done.stderr and "Traceback" not in done.stderr
    plain = pretrainflow("compare", "0123abcd", "--tracking-uri", str(tmp_path / "mlflow.db"), cwd=tmp_path)
    assert plain.returncode == 2, plain.stderr
    assert f"for a SQLite store give sqlite:///{tmp_path / 'mlflow.db'}" in plain.stderr
    assert "Traceback" not in plain.stderr
    assert list(tmp_path.iterdir()) == []


def test_run_of_a_stage_whose_input_is_not_built_says_so_in_one_line_before_prefect_starts(tmp_path):
    done = pretrainflow("run", "instances", "--config", "tiny", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: stage 'instances' needs the tokenize artifact(s) (tokenize/")
    assert "run `pretrainflow run tokenize` with it first" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1  # no Prefect logs, no traceback
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "data").exists()


@pytest.mark.slow
def stage_runs(store: Path) -> list[tuple[str, str]]:
    """(stage tag, status) of every run in a SQLite MLflow store, read with sqlite3 (no MLflow in this process)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            return db.execute("SELECT tags.value, runs.status FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
                              "WHERE tags.key = 'stage'").fetchall()
    except sqlite3.Error:  # the store's tables are still being created
        return []


def test_sigterm_ends_the_runs_failed_and_crashed_not_running(tmp_path):
    """A scheduler's stop (SIGTERM) mid-stage: the MLflow runs end FAILED, the Prefect flow run CRASHED."""
    import signal
    import time

    from tasks.tracking import Tracker

    env = {**os.environ, "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
           "PREFECT_HOME": str(tmp_path / "prefect")}
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        process = subprocess.Popen([CLI, "run", "corpus", "--config", "tiny"], cwd=tmp_path, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while "corpus: building artifact" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.5)
        while not (tmp_path / "mlflow.db").exists() or not stage_runs(tmp_path / "mlflow.db"):  # its run exists
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()
    text = log.read_text()
    assert "Finished in state Crashed" in text and "Traceback" not in text
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="pretrainflow", create=False)
    runs = tracker.client.search_runs([e.experiment_id for e in tracker.client.search_experiments()])
    assert [(r.data.tags["stage"], r.info.status) for r in runs] == [("corpus", "FAILED")]
