"""Bad input through the commands and flows users run: one `error:` block, exit code 2, the flow runs Failed
with that message as their state message, no traceback unless asked for, and nothing left behind."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import yaml

from tasks.artifacts import ArtifactStore
from tasks.config import load_config
from tests.flows.test_cli import CLI

WORDS = "the quick brown fox jumps over the lazy dog while the river runs past old mills and green fields"


def _bad_input_config(tmp_path: Path) -> tuple[Path, Path]:
    """A config whose local_files hold a PNG named .txt beside a good file; (config file, the PNG)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(f"a {WORDS}.\n")
    png = docs / "scan.txt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16)
    config = tmp_path / "bad-input.yaml"
    config.write_text(yaml.safe_dump({
        "name": "bad-input", "data_root": str(tmp_path / "data"),
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "corpus": {"local_files": [str(docs / "*.txt")], "min_words": 5, "language": {"enabled": False}},
    }))
    return config, png


def test_a_binary_source_ends_the_cli_with_one_error_block_and_exit_2(tmp_path: Path) -> None:
    config, png = _bad_input_config(tmp_path)
    env = {**os.environ, "PRETRAINFLOW_ERROR_LOG": str(tmp_path / "errors.log")}
    done = subprocess.run([CLI, "run", "pipeline", "--config", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    message = f"{png}: a PNG image, not a .txt text file"
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}")
    assert "Traceback" not in done.stderr
    assert f"(the traceback is in {tmp_path / 'errors.log'}; --debug prints it here)" in done.stderr
    assert "InputError" in (tmp_path / "errors.log").read_text()  # where --debug would have printed it
    store = ArtifactStore(tmp_path / "data")
    assert store.list() == [] and store.unfinished() == []

    debug = subprocess.run([CLI, "run", "corpus", "--config", str(config), "--debug"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and message in debug.stderr


def test_the_flow_runs_fail_with_the_message_as_their_state_and_the_step_is_not_retried(prefect_harness,
                                                                                          tmp_path: Path) -> None:
    from flows.cli import run_flow
    from tasks.errors import InputError

    config_file, png = _bad_input_config(tmp_path)
    config = load_config(str(config_file))
    try:
        run_flow("pipeline", config)
        raise AssertionError("the pipeline ran on a PNG")
    except InputError as err:
        message = str(err)
    assert message.startswith(f"{png}: a PNG image")
    runs = asyncio.run(_runs_named("pipeline", "corpus"))
    assert {name: (state, state_message) for name, state, state_message, _, _ in runs} == {
        "pipeline": ("FAILED", message), "corpus": ("FAILED", message)}
    [corpus] = [run for run in runs if run[0] == "corpus"]
    task_runs, logs = corpus[3], corpus[4]
    assert task_runs == {"read sources": ("FAILED", 1)}  # tried once: reading it again gives the same error
    assert not [line for line in logs if "Traceback" in line]
    assert any(message in line for line in logs)


async def _runs_named(*flow_names: str) -> list[tuple]:
    """(flow name, state, state message, {task run: (state, attempts)}, log lines) of the newest run of each."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    found = []
    async with get_client() as client:
        for name in flow_names:
            [run] = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
                                                sort=FlowRunSort.START_TIME_DESC, limit=1)
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            found.append((name, run.state.type.value, run.state.message,
                          {t.name: (t.state.type.value, t.run_count) for t in tasks}, [r.message for r in logs]))
    return found
