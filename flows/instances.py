"""The instances stage as a Prefect flow (its work is tasks/instances/): MLM/NSP instances from token shards."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State

from flows.stage import run_stage_in_flow
from tasks.config import PipelineConfig


@flow(name="instances", log_prints=True, validate_parameters=False)
def instances_flow(config: PipelineConfig, parent_run_id: str | None = None) -> dict[str, Any] | State:
    """Generate MLM/NSP training instances from the token shards."""
    return run_stage_in_flow("instances", config, parent_run_id)
