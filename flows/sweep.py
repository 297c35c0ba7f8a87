"""The sweep flow: every variant of an ablation through the stage flows, each distinct artifact built once,
then one report that compares them.

Plan (tasks/sweep/plan.py): every variant's config is validated and its artifact ids resolved before
anything runs. Build (tasks/sweep/build_order.py): stage by stage, each distinct artifact once, by the stage
flow of the first variant that reads it, under that variant's MLflow child run; every other variant then
runs the same stage flow and hits the cache, so each child run holds all five stages as a pipeline run
does. Pretraining runs in `max_parallel` lanes side by side (default: one per GPU, 1 on CPU): Prefect
tasks on a thread pool, each running the pretrain flow of its builds one after another, on its own GPU. A restarted sweep plans again: finished artifacts are cache
hits, a killed build resumes from its staging folder. Report (tasks/sweep/report.py): a markdown table and
a PNG, as a Prefect artifact and on the sweep's MLflow parent run.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.pipeline import STAGE_FLOWS
from flows.runs import label_flow_run
from flows.stage import Refused, refused, result_of, start_flow, tracker_for
from tasks.artifacts import ArtifactStore
from tasks.config import PipelineConfig
from tasks.errors import InputError
from tasks.sweep.build_order import Build, build_order
from tasks.sweep.plan import SweepConfig, SweepPlan, Variant, plan_sweep, validate_sweep
from tasks.sweep.report import plot_report, read_result, render_report
from tasks.tracking import DESCRIPTION, Tracker

# named, not __name__: a worker loads this file as its deployment's entrypoint under another module name
log = logging.getLogger("flows.sweep")


@flow(name="sweep", log_prints=True, validate_parameters=False)
def sweep_flow(sweep: SweepConfig | dict[str, Any]) -> dict[str, Any] | State:
    """Build every variant's pipeline (shared artifacts once) and compare the variants in one report."""
    try:
        sweep = sweep if isinstance(sweep, SweepConfig) else validate_sweep(sweep, "of this flow run")
        plan = plan_sweep(sweep)
        start_flow(plan.variants[0].config)  # logs to the run, marks runs of dead processes as ended
    except InputError as err:
        return refused(err)
    name = sweep.name or "sweep"
    label_flow_run(f"sweep-{name}", ["sweep", f"sweep:{name}"])
    log.info("sweep %s: %s", name, plan.summary())
    tracker = tracker_for(plan.variants[0].config)
    try:
        with tracker.run(name, tags={"stage": "sweep", "prefect_flow_run_id": str(flow_run.id)}) as sweep_run:
            tracker.log_params(sweep_run, {"variants": len(plan.variants), "summary": plan.summary(),
                                           **{f"axis.{axis}": ",".join(values) for axis, values in plan.axes.items()}})
            results = _run_variants(plan, tracker, sweep_run)
            report = _report(plan, tracker, sweep_run, name)
    except Refused as err:  # a stage refused its input: the sweep fails with its message
        return refused(str(err))
    create_markdown_artifact(key="sweep-report", markdown=report, description=f"sweep {name}: {plan.summary()}")
    built = sum(not r["cache_hit"] for stages in results.values() for r in stages.values())
    log.info("sweep %s: %d artifacts built, MLflow parent run %s", name, built,
             tracker.run_url(sweep_run) or sweep_run)
    return {"mlflow_run_id": sweep_run, "prefect_flow_run_id": str(flow_run.id), "summary": plan.summary(),
            "built": built, "variants": results, "report": report}


def _run_variants(plan: SweepPlan, tracker: Tracker, sweep_run: str) -> dict[str, dict[str, Any]]:
    """Every variant's five stages under its own child run (named after its settings, tagged with them)."""
    runs = {v.name: tracker.start_run(v.name, sweep_run, tags={"stage": "pipeline", **_tags(v)})
            for v in plan.variants}
    results: dict[str, dict[str, Any]] = {v.name: {} for v in plan.variants}
    failed = True
    try:
        for v in plan.variants:
            tracker.log_params(runs[v.name], {"overrides": " ".join(v.overrides)})
        builds = build_order(plan)
        for stage in STAGE_FLOWS:
            stage_builds = [b for b in builds if b.stage == stage]
            parallel = _pretrain_lanes(plan) if stage == "pretrain" else 1
            for build, result in _build_all(stage_builds, runs, parallel, _cuda_devices(plan) if parallel > 1 else 0):
                results[build.variants[0]][stage] = result
            for v in plan.variants:  # the others read what was built: cache hits recorded in their runs
                if stage not in results[v.name]:
                    results[v.name][stage] = _stage(stage, v.config, runs[v.name])
        failed = False
    finally:
        for run_id in runs.values():
            tracker.end_run(run_id, failed=failed)
    return results


def _cuda_devices(plan: SweepPlan) -> int:
    """GPUs torch sees here, when some variant may train on one (0 on CPU)."""
    if all(v.config.pretrain.device == "cpu" for v in plan.variants):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _pretrain_lanes(plan: SweepPlan) -> int:
    """--max-parallel, or one lane per GPU (1 on CPU)."""
    return plan.sweep.max_parallel or max(1, _cuda_devices(plan))


def lanes(builds: list[Build], parallel: int, gpus: int) -> list[tuple[int | None, list[Build]]]:
    """Builds dealt round-robin into `parallel` lanes that run side by side, each one build after another,
    with its GPU: lane i gets GPU i mod gpus (a GPU to itself while there are enough), None on CPU."""
    dealt = [builds[i::parallel] for i in range(min(parallel, len(builds)))]
    return [(i % gpus if gpus else None, lane) for i, lane in enumerate(dealt)]


def _on_device(config: PipelineConfig, cuda_device: int | None) -> PipelineConfig:
    # cuda_device is execution-only: the artifact id stays the variant's
    return config.model_copy(update={"pretrain": config.pretrain.model_copy(update={"cuda_device": cuda_device})})


def _build_all(builds: list[Build], runs: dict[str, str], parallel: int,
               gpus: int) -> list[tuple[Build, dict[str, Any]]]:
    """Each build by its first reader's stage flow: one after another, or in `parallel` lanes at a time."""
    if parallel <= 1 or len(builds) <= 1:
        return [(b, _stage(b.stage, b.config, runs[b.variants[0]])) for b in builds]
    planned = lanes(builds, parallel, gpus)
    with ThreadPoolTaskRunner(max_workers=len(planned)) as runner:
        futures = [runner.submit(
            _lane_task.with_options(task_run_name=f"{lane[0].stage}-lane-{i}" + ("" if gpu is None else f"-cuda:{gpu}")),
            parameters={"stage": lane[0].stage, "configs": [_on_device(b.config, gpu) for b in lane],
                        "parent_run_ids": [runs[b.variants[0]] for b in lane]})
            for i, (gpu, lane) in enumerate(planned)]
        results = [f.result() for f in futures]
    return [(b, result) for (_, lane), lane_results in zip(planned, results) for b, result in zip(lane, lane_results)]


def _stage(stage: str, config: PipelineConfig, parent_run_id: str) -> dict[str, Any]:
    """One stage flow of one variant as a subflow; a refusal raises Refused with the stage run's message."""
    return result_of(STAGE_FLOWS[stage](config, parent_run_id=parent_run_id, return_state=True))


@task(name="lane", cache_policy=NO_CACHE)  # its configs are no cache key: the artifact store is the cache
def _lane_task(stage: str, configs: list[PipelineConfig], parent_run_ids: list[str]) -> list[dict[str, Any]]:
    return [_stage(stage, config, parent_run_id) for config, parent_run_id in zip(configs, parent_run_ids)]


def _tags(variant: Variant) -> dict[str, str]:
    tags = {f"sweep.{axis}": value for axis, value in variant.settings.items()}
    if variant.seed is not None:
        tags["sweep.seed"] = str(variant.seed)
    return tags


def _report(plan: SweepPlan, tracker: Tracker, sweep_run: str, name: str) -> str:
    """The comparison of every variant, logged on the sweep's MLflow run (markdown, PNG, description)."""
    store = ArtifactStore(plan.data_root)
    results = [read_result(store, v) for v in plan.variants]
    report = render_report(results, plan.axes, title=f"Sweep {name}: {plan.summary()}")
    tracker.log_text(sweep_run, report, "sweep_report.md")
    tracker.set_tags(sweep_run, {DESCRIPTION: report})
    png = plot_report(results, plan.axes)
    if png is not None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "sweep_effects.png"
            path.write_bytes(png)
            tracker.log_artifact(sweep_run, path)
    return report
