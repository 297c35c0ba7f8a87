"""The evaluate stage as a Prefect flow (its work is tasks/evaluate/): fine-tune pretrained vs. from-scratch models."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State

from flows.stage import run_stage_in_flow
from tasks.config import PipelineConfig


@flow(name="evaluate", log_prints=True, validate_parameters=False)
def evaluate_flow(config: PipelineConfig, parent_run_id: str | None = None) -> dict[str, Any] | State:
    """Fine-tune on the downstream task, pretrained vs from scratch; results.md shows in the Prefect UI."""
    return run_stage_in_flow("evaluate", config, parent_run_id)
