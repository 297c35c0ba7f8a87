"""What a stage run records in MLflow beyond its params and metrics: the artifact's reports, the data it read
and wrote (as datasets) and, for pretrain and evaluate, the registered model's versions. A cache-hit run
records the same evidence (reports, plots, datasets) of the artifact it found as the run that built it.

Datasets: a corpus snapshot, token shards and instance shards are MLflow datasets named `<stage>/<id>` whose
digest is the artifact id, with their folder, column schema and row count; a run lists what it read
(context "input") and what it wrote (context "output": MLflow records datasets only among a run's inputs).

The registered model: every pretrained model becomes a version in MLflow's transformers flavour (a fill-mask
pipeline that `mlflow.pyfunc.load_model` and `mlflow models serve` answer), with a description and tags
(artifact ids of its corpus, tokenizer, instances and itself, size, held-out MLM metrics); alias `newest`
follows the newest version. The evaluate stage adds its downstream scores to the version of the model it
fine-tuned, and alias `best` moves to it when its first task's first metric beats the version `best` points
at (scores of another task or metric are not compared: `best` stays).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.artifacts import MANIFEST, Artifact
from tasks.tracking import DatasetRecord, Tracker

DATASET_FILES = {"corpus": "documents-*.parquet", "tokenize": "train/tokens-*.arrow",
                 "instances": "train/instances-*.arrow"}  # the shards whose schema a dataset shows
DATASET_ROWS = {"corpus": "documents", "tokenize": "documents", "instances": "instances"}
NEWEST, BEST = "newest", "best"
FILL_MASK_EXAMPLE = "the [MASK] of a function is the value it returns."
_MLFLOW_TYPES = {"string": "string", "large_string": "string", "bool": "boolean", "double": "double",
                 "float": "float", "int64": "long", "uint32": "long", "uint64": "long", "int32": "integer",
                 "int16": "integer", "int8": "integer", "uint16": "integer", "uint8": "integer"}


_REPORT_SUFFIXES = (".md", ".json", ".png", ".html")
_REPORT_MAX_BYTES = 5_000_000


def record_stage_run(tracker: Tracker, run_id: str, artifact: Artifact, inputs: dict[str, Artifact],
                     location: str, *, built: bool, registered_model: str | None, config_name: str | None,
                     lineage: dict[str, str]) -> None:
    """Log the artifact's manifest, reports and plots, the datasets the run read (`inputs`) and wrote, its
    fine-tuning runs (when it built them) and the registered model's version (pretrain: logged unless this
    store already holds it; evaluate: its scores). location: the data root, for the datasets' URIs."""
    log_reports(tracker, run_id, artifact)
    if built:
        _log_child_runs(tracker, run_id, artifact.path / "runs")
    read = [artifact_dataset(a, f"{location}/{a.stage}/{a.id}") for a in inputs.values()]
    tracker.log_datasets(run_id, [d for d in read if d is not None], "input")
    written = artifact_dataset(artifact, f"{location}/{artifact.stage}/{artifact.id}")
    tracker.log_datasets(run_id, [written] if written else [], "output")
    version = None
    if registered_model and artifact.stage == "pretrain" and (built or not is_registered(
            tracker, registered_model, artifact.id)):
        version = register_pretrained(tracker, run_id, artifact, registered_model, config_name, lineage)
    elif registered_model and artifact.stage == "evaluate":
        version = add_downstream_scores(tracker, registered_model, artifact)
    if version:
        tracker.set_tags(run_id, {"registered_model": f"{registered_model}/{version}"})


def log_reports(tracker: Tracker, run_id: str, artifact: Artifact) -> None:
    """Upload the manifest and the small top-level reports (tables, plots) of the artifact."""
    tracker.log_artifact(run_id, artifact.path / MANIFEST)
    for path in sorted(artifact.path.iterdir()):
        if (path.is_file() and path.name != MANIFEST and path.suffix in _REPORT_SUFFIXES
                and path.stat().st_size <= _REPORT_MAX_BYTES):
            tracker.log_artifact(run_id, path)


def _log_child_runs(tracker: Tracker, run_id: str, runs_dir: Path) -> None:
    """One nested run per runs/*.json record (the evaluate stage's fine-tuning runs): text and the
    learning rate/seed as params, every other number as a metric."""
    if not runs_dir.is_dir():
        return
    for path in sorted(runs_dir.glob("*.json")):
        record = json.loads(path.read_text())
        params = {k: v for k, v in record.items() if not isinstance(v, (int, float)) or k in ("learning_rate", "seed")}
        metrics = {k: float(v) for k, v in record.items() if k not in params and isinstance(v, (int, float))}
        with tracker.run(path.stem, run_id, {"stage_child": "true"}) as child:
            tracker.log_params(child, params)
            tracker.log_metrics(child, metrics)


def artifact_dataset(artifact: Artifact, uri: str) -> DatasetRecord | None:
    """The artifact (stored at `uri`) as an MLflow dataset, or None for a stage whose output is not data."""
    if artifact.stage not in DATASET_FILES:
        return None
    shards = sorted(artifact.path.glob(DATASET_FILES[artifact.stage]))
    columns = [_column(field) for field in _schema(shards[0])] if shards else []
    rows = artifact.stats.get(DATASET_ROWS[artifact.stage])
    return DatasetRecord(f"{artifact.stage}/{artifact.id}", artifact.id, uri, columns,
                         int(rows) if rows is not None else None)


def _schema(path: Path) -> pa.Schema:
    if path.suffix == ".parquet":
        return pq.read_schema(path)
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_stream(source).schema


def _column(field: pa.Field) -> dict[str, Any]:
    """An MLflow colspec for one Arrow field: lists as arrays of their items."""
    return {"name": field.name, **_mlflow_type(field.type)}


def _mlflow_type(arrow: pa.DataType) -> dict[str, Any]:
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        return {"type": "array", "items": _mlflow_type(arrow.value_type)}
    if pa.types.is_timestamp(arrow):
        return {"type": "datetime"}
    return {"type": _MLFLOW_TYPES.get(str(arrow), "string")}


def register_pretrained(tracker: Tracker, run_id: str, artifact: Artifact, registered_model: str,
                        config_name: str | None, lineage: dict[str, str]) -> str:
    """Log the pretrain artifact's model as a fill-mask pipeline, register it with its lineage (stage -> artifact
    id of the data it came from), move `newest` to it."""
    version = tracker.log_fill_mask_model(run_id, artifact.path / "model", registered_model, FILL_MASK_EXAMPLE)
    stats, config = artifact.stats, artifact.manifest.get("config", {})
    shape = f"{config.get('num_hidden_layers', '?')} layers x {config.get('hidden_size', '?')}"
    tags = {f"artifact.{stage}": artifact_id for stage, artifact_id in {**lineage, "pretrain": artifact.id}.items()}
    tags.update({"size": config.get("size", shape), "shape": shape, "parameters": stats.get("parameters", ""),
                 "steps": stats.get("steps", ""), "config": config_name or ""})
    tags.update({key: f"{stats[key]:.4g}" for key in ("validation_mlm_accuracy", "validation_perplexity",
                                                      "validation_nsp_accuracy", "train_loss") if key in stats})
    description = (f"BERT, {shape} ({stats.get('parameters', 0):,} parameters), pretrained by pretrainflow for "
                   f"{stats.get('steps', '?')} steps on corpus {tags.get('artifact.corpus', '?')} (tokenizer "
                   f"{tags.get('artifact.tokenize', '?')}, instances {tags.get('artifact.instances', '?')}); "
                   f"held-out MLM accuracy {tags.get('validation_mlm_accuracy', '?')}, perplexity "
                   f"{tags.get('validation_perplexity', '?')}. A fill-mask pipeline: "
                   f"mlflow.pyfunc.load_model('models:/{registered_model}/{version}').predict(['... [MASK] ...']).")
    tracker.update_model_version(registered_model, version, description, tags)
    tracker.set_alias(registered_model, NEWEST, version)
    return version


def is_registered(tracker: Tracker, registered_model: str, pretrain_id: str) -> bool:
    """Whether a version of the model already holds this pretrain artifact (a cache hit need not log it again)."""
    return bool(tracker.model_versions(registered_model, "artifact.pretrain", pretrain_id))


def add_downstream_scores(tracker: Tracker, registered_model: str, evaluate: Artifact) -> str | None:
    """Tag the version of the model the evaluate artifact fine-tuned with its downstream scores and gains over
    scratch, and move `best` to it when its headline beats `best`'s; returns the version, or None if none holds
    that model (e.g. registered in another MLflow store)."""
    versions = tracker.model_versions(registered_model, "artifact.pretrain", evaluate.inputs.get("pretrain", ""))
    results_file = evaluate.path / "results.json"
    if not versions or not results_file.is_file():
        return None
    results = json.loads(results_file.read_text())
    version = versions[0][0]
    tags: dict[str, str] = {"artifact.evaluate": evaluate.id}
    for task, info in results["tasks"].items():
        row = results["summary"][task].get("pretrained", {})
        for metric in info["metrics"]:
            tags[f"{task}.test_{metric}"] = f"{row.get(f'{metric}_mean', float('nan')):.4f}"
            tags[f"{task}.gain_{metric}"] = f"{results['gain'][task]['pretrained'][metric]:+.4f}"
    first_task = next(iter(results["tasks"]))
    headline = f"{first_task} test {results['tasks'][first_task]['metrics'][0]}"
    score = float(tags[f"{first_task}.test_{results['tasks'][first_task]['metrics'][0]}"])
    tags.update({"downstream.metric": headline, "downstream.score": f"{score:.4f}"})
    tracker.update_model_version(registered_model, version, tags=tags)
    best = tracker.aliased_version(registered_model, BEST)
    if best is None or (best[1].get("downstream.metric") == headline
                        and score > float(best[1].get("downstream.score", "-inf"))):
        tracker.set_alias(registered_model, BEST, version)
    return version
