"""The corpus flow: Crawl and read the configured sources, extract, clean and deduplicate into a Parquet snapshot."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.stage import run_stage_in_flow
from tasks.config import PipelineConfig


@flow(name="corpus", log_prints=True)
def corpus_flow(config: PipelineConfig, parent_run_id: str | None = None) -> dict[str, Any]:
    """Crawl and read the configured sources, extract, clean and deduplicate into a Parquet snapshot."""
    return run_stage_in_flow("corpus", config, parent_run_id)
