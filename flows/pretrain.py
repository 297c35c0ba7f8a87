"""The pretrain stage as a Prefect flow (its work is model/ and tasks/pretrain/): train BERT, export a HF model."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State

from flows.stage import run_stage_in_flow
from tasks.config import PipelineConfig


@flow(name="pretrain", log_prints=True, validate_parameters=False)
def pretrain_flow(config: PipelineConfig, parent_run_id: str | None = None) -> dict[str, Any] | State:
    """Pretrain BERT on the instance shards and export a Hugging Face model."""
    return run_stage_in_flow("pretrain", config, parent_run_id)
