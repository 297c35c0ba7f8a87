"""The corpus stage as a Prefect flow (its work is tasks/corpus/): sources -> cleaned, deduplicated Parquet snapshot."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State

from flows.stage import run_stage_in_flow
from tasks.config import PipelineConfig


@flow(name="corpus", log_prints=True, validate_parameters=False)
def corpus_flow(config: PipelineConfig, parent_run_id: str | None = None,
                refresh: bool = False) -> dict[str, Any] | State:
    """Crawl and read the configured sources, extract, clean and deduplicate into a Parquet snapshot.

    refresh: re-crawl with conditional requests on top of the newest snapshot of this config and write a
    new snapshot that names it as parent (the `corpus-refresh` deployment sets it).
    """
    return run_stage_in_flow("corpus", config, parent_run_id, refresh=refresh)
