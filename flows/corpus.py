"""The corpus flow: Crawl and read the configured sources, extract, clean and deduplicate into a Parquet snapshot."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.stage import run_stage_in_flow
from tasks.config import PipelineConfig


@flow(name="corpus", log_prints=True)
def corpus_flow(config: PipelineConfig, parent_run_id: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """Crawl and read the configured sources, extract, clean and deduplicate into a Parquet snapshot.

    refresh: build a new snapshot on top of the latest one (the `corpus-refresh` deployment sets it).
    """
    # TODO(lead): pass refresh=refresh to run_stage once run_stage accepts it (the incremental refresh
    # of the corpus issue); until then a refresh run is an ordinary, possibly cached, corpus run.
    return run_stage_in_flow("corpus", config, parent_run_id)
