"""Prefect flow runs seen from the inside: what a run is called and tagged with, and runs whose process died.

A flow names its own run after what it does once its config is known (`corpus-1a2b3c4d5e6f7a8b`,
`pipeline-demo-1a2b3c4d`), and says `(cached)` when the stage found its artifact already built. Tags
carry the stage, the config's name and the artifact id, so the UI's filters find every run that built
or read an artifact.

A run whose process is killed (SIGKILL, a reboot, a worker stopped mid-run) cannot say so: Prefect shows
it Running forever. So every flow labels its run with the process running it (host, pid, process start
time), and every start of a flow, of `pretrainflow serve` or of the CLI's runs first marks Crashed the
runs of this host whose process is gone (`reap_dead_runs`), with a message saying why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.runtime import flow_run
from prefect.states import Cancelled, Cancelling, Crashed

from tasks import liveness
from tasks.config import PipelineConfig
from tasks.summary import run_name as _run_name

log = logging.getLogger(__name__)
_UNFINISHED = [StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]


def run_name(kind: str, config: PipelineConfig, artifact_id: str, cached: bool = False) -> str:
    """`corpus-<id>` for a stage (`... (cached)` on a cache hit), `pipeline-<config name>-<id[:8]>` for a pipeline
    (the names MLflow's runs get too)."""
    return _run_name(kind, artifact_id, config.name, cached)


def run_tags(kind: str, config: PipelineConfig, artifact_id: str | None = None,
             cached: bool | None = None) -> list[str]:
    """Tags of a flow run: the stage (or pipeline), the config's name, the artifact, built or cached."""
    tags = [f"stage:{kind}" if kind != "pipeline" else "pipeline"]
    if config.name:
        tags.append(f"config:{config.name}")
    if artifact_id:
        tags.append(f"artifact:{kind}/{artifact_id}")
    if cached is not None:
        tags.append("cached" if cached else "built")
    return tags


def label_flow_run(name: str, tags: Iterable[str], drop: Iterable[str] = ()) -> None:
    """Rename the current flow run, add tags to the ones it has (removing `drop`) and label it with this
    process; nothing outside a run."""
    run_id = flow_run.id
    if not run_id:
        return
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(run_id)
        kept = [tag for tag in current.tags if tag not in set(drop)]
        client.update_flow_run(run_id, name=name, tags=sorted({*kept, *tags}))
        client.update_flow_run_labels(run_id, liveness.this_process())


def reap_dead_runs(starter: str) -> list[str]:
    """Mark Crashed (Cancelled if it was cancelling) every unfinished flow run of this host whose process has
    ended, and its unfinished task runs; return the runs' names. `starter` says who noticed, for the message."""
    reaped = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_UNFINISHED))), limit=200)
        for run in runs:
            labels = dict(run.labels or {})
            if not liveness.on_this_host(labels) or not liveness.is_gone(labels):
                continue
            message = (f"the process that ran this flow ({liveness.describe(labels)}) is gone: killed, "
                       f"or the machine restarted; marked Crashed when {starter} started")
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            _crash_task_runs(client, run.id, message)
            reaped.append(run.name)
    for name in reaped:
        log.warning("flow run %s was left Running by a process that is gone: marked Crashed", name)
    return reaped


def _crash_task_runs(client: SyncPrefectClient, flow_run_id: UUID, message: str,
                     final: Callable[..., State] = Crashed) -> None:
    """Put the flow run's unfinished task runs in the `final` state (Crashed) with `message`."""
    unfinished = TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=_UNFINISHED)))
    flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    for task_run in client.read_task_runs(flow_run_filter=flow_filter, task_run_filter=unfinished):
        client.set_task_run_state(task_run.id, final(message=message), force=True)


def cancel_unfinished_runs(work_pool: str, timeout_s: float = 60.0) -> list[FlowRun]:
    """Ask the pool's worker to cancel every running or pending run of `work_pool`, wait until they end, and
    mark Cancelled the subflow runs their processes left behind; returns the runs still unfinished at the timeout."""
    with get_client(sync_client=True) as client:
        def unfinished() -> list[FlowRun]:
            return client.read_flow_runs(flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_UNFINISHED))), limit=200)

        runs = [r for r in unfinished() if r.work_pool_name == work_pool]
        pids = {dict(r.labels or {}).get(liveness.PID) for r in runs} - {None}
        for run in runs:
            if run.state.type != StateType.CANCELLING:
                client.set_flow_run_state(run.id, Cancelling(message="pretrainflow serve is stopping"), force=True)
            log.warning("cancelling flow run %s: pretrainflow serve is stopping", run.name)
        deadline = time.monotonic() + timeout_s
        while runs and time.monotonic() < deadline:
            time.sleep(1)
            runs = [r for r in unfinished() if r.work_pool_name == work_pool]
        for run in unfinished():  # subflows run in their parent's process: cancelled with it
            labels = dict(run.labels or {})
            if liveness.on_this_host(labels) and labels.get(liveness.PID) in pids and liveness.is_gone(labels):
                message = "cancelled with its parent flow run: pretrainflow serve stopped"
                client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
                _crash_task_runs(client, run.id, message, Cancelled)
        return runs
