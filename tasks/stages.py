"""The five stages: what each reads, how its artifact id is derived, and how one is run and tracked.

`run_stage` is the whole contract of a stage run, with no Prefect in it: resolve ids from the config
chain, report a cache hit if the artifact exists, otherwise build into the staging folder (resuming
whatever a killed attempt left there), commit the artifact and record the run in MLflow. Flows pass
in `execute` wrapped as a Prefect task; tests and the CLI call it plain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.artifacts import Artifact, ArtifactStore, artifact_id, code_version, folder_digest, remove_tree
from tasks.config import PipelineConfig
from tasks.errors import InputError, user_message
from tasks.lineage import record_stage_run
from tasks.output_checks import unusable_output
from tasks.parallel import ShardMap, StepRunner, run_inline, serial_map
from tasks.summary import StageOutcome, run_name, stage_line
from tasks.tracking import DESCRIPTION, MetricLogger, Tracker, flatten

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total), e.g. training steps


@dataclass(frozen=True)
class StageContext:
    """What a stage's work gets besides its config and folders: where it reports and how it fans out."""

    log_metrics: MetricLogger | None = None
    map_shards: ShardMap = serial_map  # sharded work: in-process, local processes or Dask
    progress: Progress | None = None  # long stages report (done, total) here (a Prefect progress artifact)
    run_step: StepRunner = run_inline  # the stage's main steps: plain calls, or Prefect task runs
    shared_dir: Path | None = None  # results this stage's builds share (ArtifactStore.shared_dir), if any


# (config, input artifact dirs, output dir, context) -> statistics
StageWork = Callable[[PipelineConfig, dict[str, Path], Path, StageContext], dict[str, Any]]


def _corpus(cfg: PipelineConfig, inputs: dict[str, Path], out: Path, ctx: StageContext) -> dict:
    from tasks.corpus.snapshot import build_snapshot

    return build_snapshot(cfg.corpus, out, parent_dir=inputs.get("parent"), map_shards=ctx.map_shards,
                          run_step=ctx.run_step)


def _tokenize(cfg: PipelineConfig, inputs: dict[str, Path], out: Path, ctx: StageContext) -> dict:
    from tasks.tokens.shards import build_token_shards

    return build_token_shards(cfg.tokenize, inputs["corpus"], out, map_shards=ctx.map_shards, run_step=ctx.run_step)


def _instances(cfg: PipelineConfig, inputs: dict[str, Path], out: Path, ctx: StageContext) -> dict:
    from tasks.instances.generate import build_instances

    return build_instances(cfg.instances, inputs["tokenize"], out, map_shards=ctx.map_shards, run_step=ctx.run_step)


def _pretrain(cfg: PipelineConfig, inputs: dict[str, Path], out: Path, ctx: StageContext) -> dict:
    tokenizer = inputs["tokenize"] / "tokenizer"
    if cfg.parallel.nproc_per_node > 1:
        from tasks.pretrain.torchrun import pretrain_under_torchrun

        return ctx.run_step("train under torchrun", lambda: pretrain_under_torchrun(
            cfg.pretrain, cfg.parallel.nproc_per_node, inputs["instances"], tokenizer, out, ctx.log_metrics))
    from model.train import pretrain

    return ctx.run_step("train", lambda: pretrain(cfg.pretrain, inputs["instances"], tokenizer, out, ctx.log_metrics,
                                                  ctx.progress))


def _evaluate(cfg: PipelineConfig, inputs: dict[str, Path], out: Path, ctx: StageContext) -> dict:
    from tasks.evaluate.evaluation import run_evaluation

    return run_evaluation(cfg.evaluate, inputs["pretrain"] / "model", inputs["corpus"], out, ctx.log_metrics,
                          instances_dir=inputs["instances"], run_step=ctx.run_step,
                          shared_dir=ctx.shared_dir)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its inputs (upstream stages), version and the work that builds it."""

    name: str
    version: str  # bump when the stage's output changes for the same config: it changes every id
    inputs: tuple[str, ...]
    work: StageWork = field(repr=False)
    summary: str = ""
    refreshable: bool = False  # a refresh builds a new artifact from the newest one of its family


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("corpus", "3", (), _corpus, "crawl and read sources, extract, clean, dedup -> Parquet snapshot",
              refreshable=True),
        Stage("tokenize", "3", ("corpus",), _tokenize, "train WordPiece, split sentences -> Arrow token shards"),
        Stage("instances", "1", ("tokenize",), _instances, "MLM/NSP instances -> Arrow instance shards"),
        Stage("pretrain", "2", ("instances", "tokenize"), _pretrain, "train BERT -> Hugging Face model"),
        Stage("evaluate", "2", ("pretrain", "corpus", "instances"), _evaluate,
              "fine-tune pretrained vs scratch per task -> table"),
    )
}


def stage_config(cfg: PipelineConfig, stage: str) -> dict[str, Any]:
    """The resolved config of one stage as JSON-ready data (what is hashed, saved and logged)."""
    return getattr(cfg, stage).model_dump(mode="json")


def external_digests(cfg: PipelineConfig, stage: str) -> dict[str, str]:
    """Digests of the folders outside the store that a stage's config names, keyed by field.

    A given tokenizer or a model to compare can change in place under the same path; with its digest
    in the id, the next run rebuilds instead of finding the artifact made from the old folder. Corpus
    sources (sites, files, datasets) are not digested: a snapshot is refreshed (`--refresh`) instead.
    """
    if stage == "tokenize" and cfg.tokenize.tokenizer_path is not None:
        return {"tokenizer_path": folder_digest(cfg.tokenize.tokenizer_path)}
    if stage == "evaluate":
        return {f"compare_models[{i}]": folder_digest(path) for i, path in enumerate(cfg.evaluate.compare_models)}
    return {}


# Fields of a stage's config that only say how fast it runs (loader processes): left out of the id, so
# changing one finds the artifact already built (the stage's tests check the output does not move).
EXECUTION_ONLY = {"corpus": {("extract", "workers")}, "pretrain": {("num_workers",), ("cuda_device",)}}
# Fields added after artifacts were built, with the default that gives the output of before: left out of the
# id while they hold it, so adding an option does not rebuild every existing artifact.
ADDED_AT_DEFAULT: dict[str, dict[tuple[str, ...], Any]] = {"corpus": {("local_text_format",): "file"},
                                                         "pretrain": {("num_threads",): None}}


def hashed_config(cfg: PipelineConfig, stage: str) -> dict[str, Any]:
    """stage_config without what cannot change the output: its EXECUTION_ONLY fields, ADDED_AT_DEFAULT
    fields at that default, and the settings of a switched-off corpus step (a quality filter family, PII
    redaction), of which only enabled: false counts. This is what the artifact id is derived from."""
    config = stage_config(cfg, stage)
    for path in EXECUTION_ONLY.get(stage, ()):
        _parent(config, path).pop(path[-1])
    for path, default in ADDED_AT_DEFAULT.get(stage, {}).items():
        if _parent(config, path).get(path[-1]) == default:
            _parent(config, path).pop(path[-1])
    if stage == "corpus":
        switched = [(config["quality"], family) for family in config["quality"]] + [(config, "pii")]
        for parent, key in switched:
            if not parent[key]["enabled"]:
                parent[key] = {"enabled": False}
    return config


def _parent(config: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path[:-1]:
        config = config[key]
    return config


def _own_id(cfg: PipelineConfig, stage: Stage, inputs: dict[str, str]) -> str:
    return artifact_id(stage.name, hashed_config(cfg, stage.name), inputs, stage.version,
                       external_digests(cfg, stage.name))


def resolve_ids(cfg: PipelineConfig) -> dict[str, str]:
    """Artifact id of every stage, derived along the config chain (upstream first).

    A refreshable stage (the corpus) resolves to the newest refresh of the snapshot its config names, so
    after a refresh every later stage reads the refreshed snapshot (and gets a new id from it).
    """
    store = ArtifactStore(cfg.data_root)
    ids: dict[str, str] = {}
    for name, stage in STAGES.items():  # dict order is pipeline order
        inputs = {up: ids[up] for up in stage.inputs}
        ids[name] = _own_id(cfg, stage, inputs)
        if stage.refreshable:
            ids[name] = store.family_head(name, ids[name])
    return ids


@dataclass(frozen=True)
class Refresh:
    """A refresh build: the new artifact's id, the parent it refreshes and its manifest fields."""

    id: str
    parent_id: str
    manifest: dict[str, Any]


def plan_refresh(store: ArtifactStore, stage: Stage, cfg: PipelineConfig, parent_id: str) -> Refresh:
    """The refresh of `parent_id` (the family head): same config, the parent as its input."""
    parent = store.get(stage.name, parent_id)
    family = parent.manifest.get("family", parent_id)
    own_id = _own_id(cfg, stage, {stage.name: parent_id})
    generation = parent.manifest.get("generation", 0) + 1
    return Refresh(own_id, parent_id, {"family": family, "generation": generation, "parent": parent_id})


class MissingInputError(InputError):
    """A stage was asked to run before the artifact it reads exists."""

    traceback_helps = False


def check_inputs(name: str, store: ArtifactStore, ids: dict[str, str]) -> None:
    """Raise MissingInputError, saying which stage to run first, when an artifact stage `name` reads (ids:
    resolve_ids of the config) is not in store."""
    inputs = {up: ids[up] for up in STAGES[name].inputs}
    missing = [up for up, up_id in inputs.items() if not store.exists(up, up_id)]
    if missing:
        raise MissingInputError(
            f"stage {name!r} needs the {', '.join(missing)} artifact(s) "
            f"({', '.join(f'{m}/{inputs[m]}' for m in missing)}) under {store.location}, built with this same "
            f"config; run `pretrainflow run {missing[0]}` with it first (or `pretrainflow run pipeline`)"
        )


def check_intact(name: str, store: ArtifactStore, ids: dict[str, str]) -> None:
    """Verify the artifacts stage `name` would use (its own, as a cache hit, and its inputs) against their
    manifests; a damaged one is set aside. Its own is then rebuilt; a damaged input raises InputError saying
    which stage rebuilds it. Local data roots only: a remote artifact is verified when it is fetched."""
    if store.fs is not None:
        return
    for stage in (name, *STAGES[name].inputs):
        if not store.exists(stage, ids[stage]) or not (problems := store.verify(stage, ids[stage])):
            continue
        aside = store.set_aside(stage, ids[stage])
        damage = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        if stage == name:
            log.warning("%s: artifact %s is damaged (%s): set aside as %s, building it again", name, ids[name],
                        damage, aside)
            continue
        raise InputError(f"stage {name!r} reads {stage}/{ids[stage]}, which is damaged ({damage}); it was set aside "
                         f"as {aside}: rebuild it with `pretrainflow run {stage}` and this config (or `pretrainflow "
                         f"run pipeline`), then run {name} again")


@dataclass
class StageResult:
    """What one stage run produced."""

    stage: str
    artifact_id: str
    path: Path
    cache_hit: bool
    stats: dict[str, Any]
    mlflow_run_id: str | None = None
    seconds: float = 0.0  # wall time of the whole stage run
    mlflow_url: str | None = None  # the MLflow run's page, when the store is a tracking server

    def outcome(self) -> StageOutcome:
        """The run as the summaries (log line, pipeline table) show it."""
        return StageOutcome(self.stage, self.artifact_id, self.cache_hit, self.seconds, self.stats,
                            self.mlflow_run_id, self.mlflow_url)


def run_stage(
    name: str,
    cfg: PipelineConfig,
    *,
    tracker: Tracker | None = None,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    execute: StageWork | None = None,
    map_shards: ShardMap = serial_map,
    refresh: bool = False,
    progress: Progress | None = None,
    run_step: StepRunner = run_inline,
) -> StageResult:
    """Build one stage's artifact (or find it cached) and record the run; its summary line is logged.

    refresh (corpus only): build a new snapshot from the newest one of this config's family (re-crawl
    with conditional requests, dedup against it); with no snapshot yet, build the first one.
    run_step runs the stage's main steps (plain calls, or a flow's task runs).
    """
    started = time.monotonic()
    result = _run_stage(name, cfg, tracker, parent_run_id, tags, execute, map_shards, refresh, progress, run_step)
    result.seconds = time.monotonic() - started
    line = stage_line(result.outcome())
    if tracker is not None and result.mlflow_run_id:
        result.mlflow_url = tracker.run_url(result.mlflow_run_id)
        tracker.set_tags(result.mlflow_run_id, {DESCRIPTION: line})  # the run's description in the UI
        line = stage_line(result.outcome())
    log.info("%s", line)
    return result


def _run_stage(name: str, cfg: PipelineConfig, tracker: Tracker | None, parent_run_id: str | None,
               tags: dict[str, str] | None, execute: StageWork | None, map_shards: ShardMap, refresh: bool,
               progress: Progress | None, run_step: StepRunner) -> StageResult:
    stage = STAGES[name]
    if refresh and not stage.refreshable:
        refreshable = [s.name for s in STAGES.values() if s.refreshable]
        raise ValueError(f"stage {name!r} cannot be refreshed; only {refreshable} can")
    store = ArtifactStore(cfg.data_root)
    ids = resolve_ids(cfg)
    own_id = ids[name]
    inputs = {up: ids[up] for up in stage.inputs}
    store.finish_upload(name, own_id)  # a remote upload a crash cut short is finished, not rebuilt
    check_intact(name, store, ids)
    check_inputs(name, store, ids)
    input_paths = {up: store.fetch(up, up_id) for up, up_id in inputs.items()}
    manifest_extra: dict[str, Any] = {"family": own_id, "generation": 0} if stage.refreshable else {}
    if external := external_digests(cfg, name):
        manifest_extra["external_inputs"] = external  # the folders outside the store it was built from
    if refresh and store.exists(name, own_id):
        plan = plan_refresh(store, stage, cfg, own_id)
        own_id, inputs, manifest_extra = plan.id, {name: plan.parent_id}, plan.manifest
        input_paths = {"parent": store.fetch(name, plan.parent_id)}
        tags = {**(tags or {}), "refresh": "true", "parent_artifact_id": plan.parent_id}
        log.info("%s: refreshing %s as %s", name, plan.parent_id, own_id)
    run_tags = {
        "stage": name,
        "artifact_id": own_id,
        "artifact_path": str(store.path(name, own_id)),
        "inputs": ",".join(f"{k}/{v}" for k, v in inputs.items()) or "-",
        "git_commit": code_version()["git_commit"],
        **{f"input.{k}": v for k, v in inputs.items()},
        **(tags or {}),
    }
    config_dump = stage_config(cfg, name)
    lineage = {up: ids[up] for up in ("corpus", "tokenize", "instances")}  # the data a model came from

    def record(run_id: str, artifact: Artifact, built: bool) -> None:
        read = {up: store.get(up, up_id) for up, up_id in inputs.items()}
        record_stage_run(tracker, run_id, artifact, read, store.location, built=built, config_name=cfg.name,
                         registered_model=cfg.tracking.registered_model, lineage=lineage)

    if store.exists(name, own_id):
        artifact = store.get(name, own_id)
        log.info("%s: cache hit, artifact %s already at %s", name, own_id, artifact.path)
        run_id = None
        if tracker is not None:  # a short run saying the stage was skipped, with the evidence of what it found
            with tracker.run(run_name(name, own_id, cached=True), parent_run_id,
                             {**run_tags, "cache_hit": "true"}) as run_id:
                tracker.log_params(run_id, flatten(config_dump))
                tracker.log_metrics(run_id, artifact.stats)
                record(run_id, artifact, built=False)
        return StageResult(name, own_id, artifact.path, True, artifact.stats, run_id)

    staging = store.staging_dir(name, own_id)
    log.info("%s: building artifact %s in %s", name, own_id, staging)
    # the run ends FAILED if building or logging raises (a SIGKILL leaves it RUNNING, and no artifact)
    run = (tracker.run(run_name(name, own_id), parent_run_id, {**run_tags, "cache_hit": "false"}) if tracker
           else nullcontext(None))
    try:
        with run as run_id:
            if run_id:
                tracker.log_params(run_id, flatten(config_dump))
            metric_logger = tracker.metric_logger(run_id) if run_id else None
            context = StageContext(metric_logger, map_shards, progress, run_step, store.shared_dir(name))
            interval = cfg.tracking.system_metrics_interval_s
            with tracker.system_metrics(run_id, interval) if run_id and interval else nullcontext():
                stats = (execute or stage.work)(cfg, input_paths, staging, context)
            if problem := unusable_output(name, stats, inputs):
                remove_tree(staging)  # finished but unusable: nothing in it is worth resuming
                raise InputError(problem)  # an empty corpus is not cached, nor trained on
            artifact = store.commit(name, own_id, config=config_dump, inputs=inputs, stats=stats,
                                    version=stage.version, extra=manifest_extra)
            if run_id:
                tracker.log_metrics(run_id, stats)
                record(run_id, artifact, built=True)
    except Exception as err:
        if (reason := user_message(err)) is not None:  # bad input: nothing half-built looks resumable
            store.abandon(name, own_id, reason)
        raise
    log.info("%s: artifact %s written to %s", name, own_id, artifact.path)
    return StageResult(name, own_id, artifact.path, False, stats, run_id)
