"""flows/runs.py: what a flow run is named and tagged, and runs whose process was killed are marked Crashed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.runs import run_name, run_tags
from tasks.config import load_config
from tasks.crawl.local_site import PYTHON_DOCS
from tasks.tracking import Tracker
from tests.flows.test_cli import CLI


def test_names_and_tags_say_what_a_run_builds():
    tiny, nameless = load_config("tiny"), load_config("tiny", ["name=null"])
    assert run_name("corpus", tiny, "c0b5bf63db1349e5") == "corpus-c0b5bf63db1349e5"
    assert run_name("corpus", tiny, "c0b5bf63db1349e5", cached=True) == "corpus-c0b5bf63db1349e5 (cached)"
    assert run_name("pipeline", tiny, "fdcf309073bb4a6b") == "pipeline-tiny-fdcf3090"
    assert run_name("pipeline", nameless, "fdcf309073bb4a6b") == "pipeline-fdcf3090"
    assert run_tags("corpus", tiny, "c0b5bf63db1349e5", cached=False) == [
        "stage:corpus", "config:tiny", "artifact:corpus/c0b5bf63db1349e5", "built"]
    assert run_tags("pipeline", nameless) == ["pipeline"]


_STATES = """
from prefect.client.orchestration import get_client
import json
with get_client(sync_client=True) as client:
    print(json.dumps([[r.name, r.state.type.value, r.state.message or ""] for r in client.read_flow_runs()]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not (PYTHON_DOCS / "index.html").is_file(), reason="needs python3.11-doc (make python-docs)")
def test_a_run_whose_process_was_killed_is_marked_crashed_by_the_next_start(tmp_path: Path):
    """SIGKILL leaves a flow run Running in Prefect; the next `pretrainflow run` marks it Crashed, saying why."""
    env = {**os.environ, "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
           "PREFECT_HOME": str(tmp_path / "prefect")}
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        killed = subprocess.Popen([CLI, "run", "corpus", "--config", "tiny"], cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while "serving /usr/share/doc" not in log.read_text():  # named, labelled, tracked and crawling
            assert killed.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        os.killpg(killed.pid, signal.SIGKILL)  # the CLI, its temporary Prefect server and shard workers
        killed.wait()

    states = subprocess.run([sys.executable, "-c", _STATES], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300, check=True)
    [[name, state, _]] = json.loads(states.stdout.splitlines()[-1])
    assert name.startswith("corpus-") and state == "RUNNING"  # what Prefect shows with nobody left to say otherwise

    rerun = subprocess.run([CLI, "run", "corpus", "--config", "tiny"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"flow run {name} was left Running by a process that is gone: marked Crashed" in rerun.stderr
    states = subprocess.run([sys.executable, "-c", _STATES], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300, check=True)
    runs = sorted((state, run, message) for run, state, message in json.loads(states.stdout.splitlines()[-1]))
    assert [(state, run) for state, run, _ in runs] == [("COMPLETED", name), ("CRASHED", name)]  # the rerun finished
    assert f"(pid {killed.pid} on " in runs[1][2] and "is gone" in runs[1][2]

    # its MLflow run, left RUNNING too, is FAILED with a tag saying why
    assert f"MLflow run {name} was left RUNNING by a process that is gone: marked FAILED" in rerun.stderr
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", create=False)
    mlflow_runs = sorted((r.info.status, r.info.run_name, r.data.tags.get("pretrainflow.failed_because", ""))
                         for r in tracker.client.search_runs([tracker.experiment_id]))
    assert [(status, run) for status, run, _ in mlflow_runs] == [("FAILED", name), ("FINISHED", name)]
    assert f"(pid {killed.pid} on " in mlflow_runs[0][2]
