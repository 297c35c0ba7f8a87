"""The pipeline flow: the five stage flows in order, under one MLflow parent run."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.corpus import corpus_flow
from flows.evaluate import evaluate_flow
from flows.instances import instances_flow
from flows.pretrain import pretrain_flow
from flows.stage import tracker_for
from flows.tokens import tokenize_flow
from tasks.config import PipelineConfig
from tasks.stages import resolve_ids
from tasks.tracking import flatten

STAGE_FLOWS = {
    "corpus": corpus_flow,
    "tokenize": tokenize_flow,
    "instances": instances_flow,
    "pretrain": pretrain_flow,
    "evaluate": evaluate_flow,
}


@flow(name="pipeline", log_prints=True)
def pipeline_flow(config: PipelineConfig) -> dict[str, Any]:
    """Corpus -> tokenize -> instances -> pretrain -> evaluate; each stage is skipped if cached."""
    tracker = tracker_for(config)
    ids = resolve_ids(config)
    tags = {"prefect_flow_run_id": str(flow_run.id), **{f"artifact.{k}": v for k, v in ids.items()}}
    results: dict[str, Any] = {}
    with tracker.run("pipeline", tags=tags) as parent_run_id:
        tracker.log_params(parent_run_id, flatten(config.model_dump(mode="json")))
        for name, stage_flow in STAGE_FLOWS.items():
            results[name] = stage_flow(config, parent_run_id=parent_run_id)
        cache_hits = sum(r["cache_hit"] for r in results.values())
        tracker.log_metrics(parent_run_id, {"stages_cached": cache_hits, "stages_built": len(results) - cache_hits})
    return {"mlflow_run_id": parent_run_id, "stages": results}
