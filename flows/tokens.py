"""The tokenize stage as a Prefect flow (its work is tasks/tokens/): a WordPiece tokenizer and Arrow token shards.

Named tokens.py, not tokenize.py, which would shadow the stdlib module when flows/ is on sys.path.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State

from flows.stage import run_stage_in_flow
from tasks.config import PipelineConfig


@flow(name="tokenize", log_prints=True, validate_parameters=False)
def tokenize_flow(config: PipelineConfig, parent_run_id: str | None = None) -> dict[str, Any] | State:
    """Train or load the WordPiece tokenizer and write the snapshot as Arrow token shards."""
    return run_stage_in_flow("tokenize", config, parent_run_id)
