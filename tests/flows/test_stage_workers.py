"""Worker processes of the data stages, as a user's `pretrainflow task` starts them (parallel.workers: 0)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from tasks.crawl.local_site import PYTHON_DOCS

CLI = shutil.which("pretrainflow", path=str(Path(sys.executable).parent)) or "pretrainflow"


def run_watching_processes(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, dict[int, bool]]:
    """Run the CLI; every descendant process seen (sampled every 20 ms) -> whether it had torch's library mapped."""
    env = {**os.environ, "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    child = subprocess.Popen([CLI, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, bool] = {}
    done = threading.Event()

    def watch() -> None:
        root = psutil.Process(child.pid)
        while not done.wait(0.02):
            try:
                descendants = root.children(recursive=True)
            except psutil.Error:
                return
            for process in descendants:
                try:
                    has_torch = any("libtorch" in m.path for m in process.memory_maps())
                except psutil.Error:
                    continue
                seen[process.pid] = seen.get(process.pid, False) or has_torch

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = child.communicate(timeout=600)
    done.set()
    watcher.join()
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr), seen


@pytest.mark.skipif(not (PYTHON_DOCS / "index.html").is_file(), reason="needs python3.11-doc (make python-docs)")
def test_stages_on_a_tiny_input_start_no_workers_and_none_that_imports_torch(tmp_path):
    """With the default workers (chosen from the work), tokenizing and making instances of a dozen pages is
    less work than starting a worker costs: both run in the command's own process. The corpus stage's
    cleaning shards, whose size is not estimated, get one worker per core; none of them loads torch."""
    corpus, corpus_workers = run_watching_processes(
        ["task", "corpus", "--config", "tiny", "--set", "corpus.crawl.max_pages=12", "--output", str(tmp_path / "c")],
        tmp_path)
    assert corpus.returncode == 0, corpus.stderr
    assert not any(corpus_workers.values())
    tokens, tokenize_workers = run_watching_processes(
        ["task", "tokenize", "--config", "tiny", "--input", f"corpus={tmp_path / 'c'}", "--output", str(tmp_path / "t")],
        tmp_path)
    assert tokens.returncode == 0, tokens.stderr
    instances, instance_workers = run_watching_processes(
        ["task", "instances", "--config", "tiny", "--input", f"tokenize={tmp_path / 't'}", "--output",
         str(tmp_path / "i")], tmp_path)
    assert instances.returncode == 0, instances.stderr
    assert json.loads(instances.stdout)["train_instances"] > 0
    assert tokenize_workers == {} and instance_workers == {}
    assert "worker processes" not in tokens.stderr + instances.stderr
