"""One stage run as a Prefect flow (tasks/stages.py's run_stage, its work a Prefect task, tracked in MLflow).

Sharded work goes to `flows.dask_map.shard_map`: local processes inside the stage's build task, or, on a
Dask cluster, the stage's work in the flow itself with one Prefect task run per shard.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.dask_map import shard_map
from tasks.config import PipelineConfig
from tasks.stages import STAGES, run_stage
from tasks.tracking import Tracker


def tracker_for(config: PipelineConfig) -> Tracker:
    """The MLflow tracker this config points at."""
    return Tracker(config.tracking.tracking_uri, config.tracking.experiment)


def run_stage_in_flow(name: str, config: PipelineConfig, parent_run_id: str | None,
                      refresh: bool = False) -> dict[str, Any]:
    """Run stage `name` inside the current flow (refresh: a new snapshot on the newest one); return plain data."""
    # Caching is the artifact store's job (content-addressed ids), not Prefect's: no input hashing.
    build = task(STAGES[name].work, name=f"build-{name}", cache_policy=NO_CACHE)
    # On Dask the stage's work runs in the flow itself and each shard is a task run of the flow: a shard
    # submitted from inside a task run drags that run's context (asyncio tasks) along and cannot be pickled.
    # Locally the whole work is one task run, its shards local processes.
    execute = None if config.parallel.dask_address else build
    with shard_map(config.parallel) as map_shards:
        result = run_stage(
            name,
            config,
            tracker=tracker_for(config),
            parent_run_id=parent_run_id,
            tags={"prefect_flow_run_id": str(flow_run.id)},
            execute=execute,
            map_shards=map_shards,
            refresh=refresh,
            progress=ProgressArtifact(name),
        )
    publish_reports(name, result.artifact_id, result.path)
    return {
        "stage": result.stage,
        "artifact_id": result.artifact_id,
        "path": str(result.path),
        "cache_hit": result.cache_hit,
        "stats": result.stats,
        "mlflow_run_id": result.mlflow_run_id,
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
        key = re.sub(r"[^a-z0-9-]+", "-", f"{stage}-{report.stem}".lower())  # Prefect's key alphabet
        create_markdown_artifact(key=key, markdown=report.read_text(), description=f"{stage}/{artifact_id}")
