"""The pipeline flow: the five stage flows in order, under one MLflow parent run, summed up in one artifact."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from flows.runs import label_flow_run, run_name, run_tags
from flows.stage import Refused, refused, result_of, stage_flow, start_flow, tracker_for
from tasks.config import PipelineConfig
from tasks.errors import InputError
from tasks.stages import STAGES, resolve_ids
from tasks.summary import StageOutcome, evaluation_tables, pipeline_markdown, pipeline_metrics, stage_line
from tasks.tracking import DESCRIPTION, Tracker, flatten

# named, not __name__: a worker loads this file as its deployments' entrypoint under another module name
log = logging.getLogger("flows.pipeline")

STAGE_FLOWS = {name: stage_flow(name) for name in STAGES}  # pipeline order


@flow(name="pipeline", log_prints=True, validate_parameters=False)
def pipeline_flow(config: PipelineConfig) -> dict[str, Any] | State:
    """Corpus -> tokenize -> instances -> pretrain -> evaluate; each stage is skipped if cached."""
    try:
        config = start_flow(config)
        ids = resolve_ids(config)
    except InputError as err:
        return refused(err)
    name = run_name("pipeline", config, ids["evaluate"])
    label_flow_run(name, run_tags("pipeline", config))
    tracker = tracker_for(config)
    tags = {"prefect_flow_run_id": str(flow_run.id), **{f"artifact.{k}": v for k, v in ids.items()}}
    results: dict[str, Any] = {}
    try:
        with tracker.run(name, tags={**tags, "stage": "pipeline"}) as parent_run_id:
            tracker.log_params(parent_run_id, flatten(config.model_dump(mode="json")))
            for stage, subflow in STAGE_FLOWS.items():
                results[stage] = result_of(subflow(config, parent_run_id=parent_run_id, return_state=True))
                log.info("%s", stage_line(_outcome(results[stage])))
            summary = _summarize(tracker, name, parent_run_id, results)
    except Refused as err:  # the stage run failed on bad input: the pipeline fails with its message
        return refused(str(err))
    cache_hits = sum(r["cache_hit"] for r in results.values())
    create_markdown_artifact(key="pipeline-summary", markdown=summary,
                             description=f"{len(results)} stages, {cache_hits} cached; MLflow run {parent_run_id}")
    log.info("pipeline %s: %d stages built, %d cached; MLflow parent run %s", name, len(results) - cache_hits,
             cache_hits, tracker.run_url(parent_run_id) or parent_run_id)
    return {"mlflow_run_id": parent_run_id, "prefect_flow_run_id": str(flow_run.id), "stages": results}


def _summarize(tracker: Tracker, name: str, parent_run_id: str, results: dict[str, Any]) -> str:
    """Log the pipeline's outcome metrics, summary.md and description on its MLflow run; the summary."""
    cache_hits = sum(r["cache_hit"] for r in results.values())
    outcomes = [_outcome(r) for r in results.values()]
    results_md = Path(results["evaluate"]["path"]) / "results.md"
    summary = pipeline_markdown(name, outcomes,
                                evaluation_tables(results_md.read_text()) if results_md.is_file() else None,
                                parent_run=(parent_run_id, tracker.run_url(parent_run_id)))
    # what the pipeline produced, so the runs table sorts and compares pipelines by it
    tracker.log_metrics(parent_run_id, {"stages_cached": cache_hits, "stages_built": len(results) - cache_hits,
                                        **pipeline_metrics(outcomes)})
    tracker.log_text(parent_run_id, summary, "summary.md")
    tracker.set_tags(parent_run_id, {DESCRIPTION: summary})  # shown on the run's overview page
    return summary


def _outcome(result: dict[str, Any]) -> StageOutcome:
    """A stage flow's returned data as the summaries show it."""
    return StageOutcome(result["stage"], result["artifact_id"], result["cache_hit"], result["seconds"],
                        result["stats"], result["mlflow_run_id"], result["mlflow_url"])
