"""One stage run as a Prefect flow (tasks/stages.py's run_stage, its main steps task runs, tracked in MLflow).

Every flow takes its config unvalidated (`validate_parameters=False`) and checks it on its first line:
a value that breaks a rule the server's schema check cannot see (pretrain.max_steps below warmup_steps)
ends the run Failed with one message naming the field, in the run's logs and state, without a traceback.
The run is then named after what it builds and tagged (flows.runs). The stage's main steps are task runs,
so the run graph shows them with their durations; sharded work runs in local processes inside its step,
or, on a Dask cluster, as one task run per shard (`flows.dask_map.shard_map`).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prefect import Flow, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.exceptions import Abort
from prefect.runtime import flow_run
from prefect.states import Failed

from flows.dask_map import shard_map
from flows.logs import send_project_logs
from flows.runs import label_flow_run, reap_dead_runs, run_name, run_tags
from flows.signals import redeliver_swallowed_sigterm
from tasks.config import PipelineConfig, validate_config
from tasks.errors import InputError, record_traceback, user_message
from tasks.parallel import StepRunner
from tasks.stages import resolve_ids, run_stage
from tasks.tracking import Tracker

log = logging.getLogger(__name__)
R = TypeVar("R")

# the module of each stage's flow (tokens, not tokenize: flows/tokens.py says why)
FLOW_MODULES = {"corpus": "flows.corpus", "tokenize": "flows.tokens", "instances": "flows.instances",
                "pretrain": "flows.pretrain", "evaluate": "flows.evaluate"}


def stage_flow(name: str) -> Flow:
    """Stage `name`'s flow, importing its module only: a run of one stage does not build the other flows
    (Prefect makes each flow's parameter schema, from the whole PipelineConfig, when it is defined)."""
    return getattr(importlib.import_module(FLOW_MODULES[name]), f"{name}_flow")


def tracker_for(config: PipelineConfig) -> Tracker:
    """The MLflow tracker this config points at."""
    return Tracker(config.tracking.tracking_uri, config.tracking.experiment)


def start_flow(config: PipelineConfig | dict[str, Any]) -> PipelineConfig:
    """A flow's first line: its log lines go to the run, its config is validated (raises ConfigError), and the
    Prefect and MLflow runs whose process died are marked Crashed and FAILED."""
    send_project_logs()
    redeliver_swallowed_sigterm()  # a deployment's flow process too: a stop must end the run
    if not isinstance(config, PipelineConfig):
        config = validate_config(config, "of this flow run")
    starter = f"flow run {flow_run.name}"
    try:
        reap_dead_runs(starter)
        for name in tracker_for(config).reap_dead_runs(starter):
            log.warning("MLflow run %s was left RUNNING by a process that is gone: marked FAILED", name)
    except Exception as err:  # a store refused or timed out: the run itself can go on
        log.warning("could not check for runs left running by dead processes: %s", err)
    return config


def refused(err: Exception | str) -> State:
    """End a flow Failed on a user's error (a bad config, bad input), with the problem as its state message.

    This run logs it once, and Prefect adds "Finished in state Failed('...')", without a traceback. A
    deployment run's process would add "Engine execution exited with unexpected exception" and a traceback
    for any Failed run; for a refusal, which says all there is, the state is set here and the engine is told
    it is settled (Abort carrying the state: it exits 0). A direct call or a subflow (a pipeline's stage)
    returns the Failed state: the caller reads its message (the CLI prints it, the pipeline fails with it).
    """
    message = err if isinstance(err, str) else user_message(err) or str(err)
    if isinstance(err, BaseException):  # the run that failed says why in its Logs tab (a pipeline passes it on)
        log.error("%s", message)
        record_traceback(err, f"flow run {flow_run.name}")  # where `--debug` would have printed it
    failed = Failed(message=message)
    context = FlowRunContext.get()
    if not (context and context.flow_run and context.flow_run.deployment_id):  # a direct call, or a subflow
        return failed
    with get_client(sync_client=True) as client:
        settled = client.set_flow_run_state(flow_run.id, failed, force=True).state
    abort = Abort(message)
    abort.state = settled  # the engine adopts it instead of reporting the run itself
    raise abort


def task_steps(on_dask: bool) -> StepRunner:
    """A step runner that makes each step a task run of the current flow (retried `retries` times, 10 s apart)."""

    def run_step(name: str, fn: Callable[[], R], /, *, retries: int = 0, sharded: bool = False) -> R:
        if sharded and on_dask:
            # its shards are the task runs: shards submitted from inside a task run would drag that run's
            # context (asyncio tasks) along and could not be pickled to the workers
            return fn()
        # no input hashing or result storage: the artifact store caches, by content id
        step = task(fn, name=name, task_run_name=name, cache_policy=NO_CACHE, retries=retries,
                    retry_delay_seconds=10, retry_condition_fn=_not_a_user_error)
        return step()

    return run_step


class Refused(InputError):
    """A flow run ended Failed on a user's error (see `refused`); the message is its state message."""


def result_of(state: State) -> Any:
    """A finished flow run's returned data; raises the exception it failed with (a bug: its traceback), or
    Refused with its state message when it refused bad input (its state holds no exception)."""
    if state.is_completed():
        return state.result()
    raised = state.result(raise_on_failure=False)
    if isinstance(raised, BaseException):
        raise raised
    raise Refused(state.message or f"flow run ended {state.type.value}")


def _not_a_user_error(task: object, task_run: object, state: State) -> bool:
    """Retry a step unless it failed on bad input: reading a binary file again gives the same error."""
    return user_message(state.data if isinstance(state.data, BaseException) else None) is None


def run_stage_in_flow(name: str, config: PipelineConfig | dict[str, Any], parent_run_id: str | None,
                      refresh: bool = False) -> dict[str, Any] | State:
    """Run stage `name` inside the current flow (refresh: a new snapshot on the newest one); return plain data."""
    try:
        config = start_flow(config)
        planned = resolve_ids(config)[name]
    except InputError as err:  # a bad config, or a damaged artifact found resolving the ids
        return refused(err)
    label_flow_run(run_name(name, config, planned), run_tags(name, config, planned))
    try:
        with shard_map(config.parallel) as map_shards:
            result = run_stage(
                name,
                config,
                tracker=tracker_for(config),
                parent_run_id=parent_run_id,
                tags={"prefect_flow_run_id": str(flow_run.id)},
                map_shards=map_shards,
                refresh=refresh,
                progress=ProgressArtifact(name),
                run_step=task_steps(on_dask=bool(config.parallel.dask_address)),
            )
    except Exception as err:
        if user_message(err) is None:
            raise  # a bug: Prefect logs its traceback
        return refused(err)
    label_flow_run(run_name(name, config, result.artifact_id, result.cache_hit),
                   run_tags(name, config, result.artifact_id, result.cache_hit),
                   drop=run_tags(name, config, planned))
    publish_reports(name, result.artifact_id, result.path)
    return {
        "stage": result.stage,
        "artifact_id": result.artifact_id,
        "path": str(result.path),
        "cache_hit": result.cache_hit,
        "stats": result.stats,
        "mlflow_run_id": result.mlflow_run_id,
        "mlflow_url": result.mlflow_url,
        "seconds": result.seconds,
    }


class ProgressArtifact:
    """A stage's (done, total) as a Prefect progress artifact, updated at most once per percent."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.artifact_id = None
        self.percent = -1

    def __call__(self, done: int, total: int) -> None:
        percent = int(100 * done / max(total, 1))
        if percent == self.percent:
            return
        self.percent = percent
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(float(percent), key=f"{self.stage}-progress",
                                                        description=f"{self.stage}: {done}/{total}")
        else:
            update_progress_artifact(self.artifact_id, float(percent), description=f"{self.stage}: {done}/{total}")


def publish_reports(stage: str, artifact_id: str, path: Path) -> None:
    """Show the artifact's top-level markdown reports (tables, cleaning report) in the Prefect UI."""
    for report in sorted(path.glob("*.md")):
        create_markdown_artifact(key=artifact_key(f"{stage}-{report.stem}"), markdown=report.read_text(),
                                 description=f"{stage}/{artifact_id}")


def artifact_key(text: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower())
