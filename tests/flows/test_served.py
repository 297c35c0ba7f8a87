"""Served for real: Prefect server, worker and MLflow server on loopback ports, deployments from
deployments/prefect.yaml, deployment runs triggered as a user does (`pretrainflow trigger`, and the API
the UI's form calls), then read back through Prefect's API as its UI shows them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from datetime import datetime, timezone

import pytest

from flows.serve import REPO_ROOT, ServeOptions, serve
from tasks.config import load_config
from tasks.crawl.local_site import PYTHON_DOCS
from tasks.stages import STAGES
from tasks.tracking import Tracker
from tests.flows.test_cli import CLI
from tests.flows.test_pipeline import assert_explained_in_mlflow, prefect_view

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (PYTHON_DOCS / "index.html").is_file(), reason="needs python3.11-doc (make python-docs)"),
]


def test_a_deployment_run_explains_itself_and_bad_configs_are_refused_before_they_run(tmp_path):
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_URL, temporary_settings

    data_root = tmp_path / "data"
    options = ServeOptions(prefect_port=0, mlflow_port=0, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                           artifact_root=tmp_path / "mlruns", data_root=str(data_root))
    env = {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}
    checkout_data = sorted((REPO_ROOT / "data").rglob("*")) if (REPO_ROOT / "data").is_dir() else []
    with serve(options, env) as served, temporary_settings({PREFECT_API_URL: served.prefect_api_url}):
        cli_env = {**os.environ, **env, "PREFECT_API_URL": served.prefect_api_url}

        def trigger(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([CLI, "trigger", "pipeline", "--config", "tiny", *args], cwd=tmp_path, env=cli_env,
                                  capture_output=True, text=True, timeout=900)

        # a cross-field rule broken on the command line: refused here, with `run`'s message, before a run exists
        refused_here = trigger("--set", "pretrain.max_steps=3")
        assert refused_here.returncode == 2 and "warmup_steps=5 exceeds max_steps=3" in refused_here.stderr
        assert asyncio.run(flow_run_names()) == []  # but the nightly refresh's scheduled ones

        built = trigger("--wait")  # the tiny preset in serve's homes: data root and MLflow server
        assert built.returncode == 0, built.stdout + built.stderr
        run_id = built.stdout.split("(", 1)[1].split(")", 1)[0]
        view = asyncio.run(prefect_view(run_id))
        # finished artifacts, not .shared/ (the scratch runs that evaluations share)
        artifacts = {name: [p.name for p in (data_root / name).iterdir() if not p.name.startswith(".")]
                     for name in STAGES}
        assert all(len(found) == 1 for found in artifacts.values()), artifacts  # one home: serve's data root
        ids = {name: found[0] for name, found in artifacts.items()}
        assert view["name"] == f"pipeline-tiny-{ids['evaluate'][:8]}"
        assert {"pretrainflow", "pipeline", "config:tiny"} <= view["tags"]  # the deployment's tags, then the run's
        assert set(view["subflows"]) == {f"{name}-{ids[name]}" for name in STAGES}
        assert {"read sources", "clean shards", "train tokenizer", "encode shards", "train"} <= set(view["task_runs"])
        corpus_line = next(line for line in view["logs"]["tasks.stages"] if line.startswith("corpus: built"))
        assert f"MLflow run {served.mlflow_url}/#/experiments/" in corpus_line
        assert all(f"| {name} | built | `{ids[name]}` |" in view["artifacts"]["pipeline-summary"] for name in STAGES)
        assert (sorted((REPO_ROOT / "data").rglob("*")) if (REPO_ROOT / "data").is_dir() else []) == checkout_data
        tracker = Tracker(served.mlflow_url)  # the same, through the MLflow server the UI shows
        [parent] = tracker.client.search_runs([tracker.experiment_id], f"tags.prefect_flow_run_id = '{run_id}'")
        children = {r.data.tags["stage"]: r for r in tracker.child_runs(parent.info.run_id)}
        assert_explained_in_mlflow(tracker, parent, children, ids)

        # the same rule broken in the form (the server's schema check cannot see it): the run is created,
        # and ends Failed at its first line with one message, in its state and logs, and no traceback
        form = load_config("tiny", [f"data_root={data_root}", f"tracking.tracking_uri={served.mlflow_url}"]
                           ).model_dump(mode="json", exclude_unset=True)
        cross_field = {"config": {**form, "pretrain": {**form["pretrain"], "max_steps": 3}}}
        bad_type = {"config": {**form, "pretrain": {**form["pretrain"], "max_steps": -5}}}
        failed, refused, scheduled, deployment_tags = asyncio.run(exercise(cross_field, bad_type))
        assert failed.state.is_failed() and "warmup_steps=5 exceeds max_steps=3" in failed.state.message
        failed_view = asyncio.run(prefect_view(str(failed.id)))
        for _ in range(30):  # the server stores log lines a moment after the run's final state
            if "flows.stage" in failed_view["logs"]:
                break
            time.sleep(1)
            failed_view = asyncio.run(prefect_view(str(failed.id)))
        assert any("warmup_steps=5 exceeds max_steps=3" in line for line in failed_view["logs"]["flows.stage"])
        tracebacks = [line for lines in failed_view["logs"].values() for line in lines if "Traceback" in line]
        assert tracebacks == []
        assert isinstance(refused, PrefectHTTPStatusError) and refused.response.status_code in (409, 422)
        assert "max_steps" in refused.response.text
        assert scheduled and all(r.expected_start_time > datetime.now(timezone.utc) for r in scheduled)
        assert deployment_tags["corpus-refresh"] == ["pretrainflow", "stage:corpus", "schedule:nightly"]
    assert all(not _alive(pid) for pid in served.pids.values())


async def flow_run_names() -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    async with get_client() as client:
        return [r.name for r in await client.read_flow_runs() if r.state.type != StateType.SCHEDULED]


async def exercise(cross_field: dict, bad_type: dict):
    """Create a corpus deployment run with a cross-field error and wait for it, try a value of the wrong type,
    and read corpus-refresh's scheduled runs and every deployment's tags."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import PrefectHTTPStatusError

    async with get_client() as client:
        corpus = await client.read_deployment_by_name("corpus/corpus")
        refresh = await client.read_deployment_by_name("corpus/corpus-refresh")
        assert refresh.schedules and refresh.schedules[0].schedule.cron == "0 3 * * *"
        assert "config" in corpus.parameter_openapi_schema["properties"]  # the UI's typed form

        started = await client.create_flow_run_from_deployment(corpus.id, parameters=cross_field)
        try:
            await client.create_flow_run_from_deployment(corpus.id, parameters=bad_type)
            refused = None
        except PrefectHTTPStatusError as err:
            refused = err
        runs_of_corpus = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[corpus.id])))
        assert [r.id for r in runs_of_corpus] == [started.id]  # the bad type never became a run

        deadline = time.monotonic() + 600
        flow_run = await client.read_flow_run(started.id)
        while not flow_run.state.is_final():
            assert time.monotonic() < deadline, f"deployment run still {flow_run.state.type} after 600 s"
            await asyncio.sleep(2)
            flow_run = await client.read_flow_run(started.id)

        only_scheduled = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))
        scheduled = []
        for _ in range(30):  # the scheduler service runs every 5 s here
            scheduled = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[refresh.id])),
                flow_run_filter=only_scheduled,
            )
            if scheduled:
                break
            await asyncio.sleep(2)
        tags = {d.name: d.tags for d in await client.read_deployments()}
        return flow_run, refused, scheduled, tags


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
