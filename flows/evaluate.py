"""The evaluate flow: fine-tune the pretrained model and a from-scratch twin, publish the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.stage import run_stage_in_flow
from tasks.config import PipelineConfig


@flow(name="evaluate", log_prints=True)
def evaluate_flow(config: PipelineConfig, parent_run_id: str | None = None) -> dict[str, Any]:
    """Fine-tune on the downstream task, pretrained vs from scratch; the table becomes a Prefect artifact."""
    result = run_stage_in_flow("evaluate", config, parent_run_id)
    table = Path(result["path"]) / "results.md"
    if table.is_file():
        create_markdown_artifact(
            key="evaluation", markdown=table.read_text(), description=f"evaluate/{result['artifact_id']}"
        )
    return result
