"""Served for real: Prefect server, worker and MLflow server on loopback ports, deployments from
deployments/prefect.yaml, a deployment run triggered through the API as the UI does."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest

from flows.serve import ServeOptions, serve
from tasks.config import load_config
from tasks.crawl.local_site import PYTHON_DOCS
from tasks.tracking import Tracker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (PYTHON_DOCS / "index.html").is_file(), reason="needs python3.11-doc (make python-docs)"),
]


def test_deployed_corpus_run_is_tracked_bad_parameters_are_refused_and_the_refresh_is_scheduled(tmp_path):
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_URL, temporary_settings

    options = ServeOptions(prefect_port=0, mlflow_port=0, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                           artifact_root=tmp_path / "mlruns")
    env = {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}
    with serve(options, env) as served, temporary_settings({PREFECT_API_URL: served.prefect_api_url}):
        config = load_config("tiny", [
            f"data_root={tmp_path / 'data'}", f"tracking.tracking_uri={served.mlflow_url}",
            "corpus.crawl.local_site=null", f"corpus.local_files=['{PYTHON_DOCS}/library/c*.html']",
        ]).model_dump(mode="json", exclude_unset=True)  # what the preset names, as the deployment form holds it
        # (a full dump does not validate again: EvaluateConfig refuses an explicit finetune.learning_rate)
        good = {"config": config}
        bad = {"config": {**config, "pretrain": {**config["pretrain"], "max_steps": -5}}}

        flow_run, refused, scheduled = asyncio.run(exercise(good, bad))

        assert flow_run.state.is_completed(), flow_run.state
        assert isinstance(refused, PrefectHTTPStatusError) and refused.response.status_code in (409, 422)
        assert "max_steps" in refused.response.text
        assert scheduled and all(r.expected_start_time > datetime.now(timezone.utc) for r in scheduled)

        tracker = Tracker(served.mlflow_url)
        runs = tracker.client.search_runs([tracker.experiment_id],
                                          filter_string=f"tags.prefect_flow_run_id = '{flow_run.id}'")
        assert [r.info.run_name for r in runs] == ["corpus"]
        assert runs[0].info.status == "FINISHED" and runs[0].data.metrics["documents"] > 0
    assert all(not _alive(pid) for pid in served.pids.values())


async def exercise(good: dict, bad: dict):
    """Trigger the corpus deployment, try a bad parameter, and read corpus-refresh's scheduled runs."""
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

        started = await client.create_flow_run_from_deployment(corpus.id, parameters=good)
        try:
            await client.create_flow_run_from_deployment(corpus.id, parameters=bad)
            refused = None
        except PrefectHTTPStatusError as err:
            refused = err
        runs_of_corpus = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[corpus.id])))
        assert [r.id for r in runs_of_corpus] == [started.id]  # the bad one never became a run

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
        return flow_run, refused, scheduled


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
