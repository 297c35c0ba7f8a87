"""The one MLflow seam: every run, param, metric, tag and artifact goes through here.

Everything is logged by run id with `MlflowClient`, never through mlflow's thread-local "active run":
Prefect runs tasks in worker threads where `mlflow.active_run()` is None and `mlflow.log_*` would
silently start a stray run (FACTS.md). Metrics and params go in batches: one `log_batch` costs about
what a single `log_metric` does, and 1000 single calls take ~53 s against a loopback server.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tasks import liveness
from tasks.errors import user_message

# mlflow is imported where a run is touched: resolving a store's URI (`serve`, `compare`'s checks) needs
# only this module, and mlflow costs ~1 CPU-s and ~60 MB to import
_BATCH = 900  # MLflow accepts at most 1000 metrics and 100 params per log_batch call
_PARAM_BATCH = 100
_PARAM_CHARS = 6000  # MLflow's limit on one param value
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The URI to use: explicit, else $MLFLOW_TRACKING_URI, else SQLite in the working folder."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"  # absolute, so a UI started elsewhere finds it


def missing_store(tracking_uri: str) -> str | None:
    """Why tracking_uri names no MLflow store that exists to be read (a SQLite file that is not there, a plain
    path to a SQLite file, which MLflow would take for a file-store folder), or None: reading never creates one."""
    scheme = urlparse(tracking_uri).scheme
    if scheme == "sqlite":
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            return (f"no SQLite MLflow store at {path} ({tracking_uri}); give the file the runs were logged to, "
                    f"as sqlite:///<absolute path>")
    elif scheme in ("", "file"):  # MLflow reads a plain path as a file-store folder
        path = Path(tracking_uri.removeprefix("file://"))
        if path.is_file() or path.suffix in _SQLITE_SUFFIXES:
            exists = "" if path.is_file() else " (which does not exist)"
            return (f"{tracking_uri} is a plain path{exists}, and MLflow reads a plain path as a file-store folder; "
                    f"for a SQLite store give sqlite:///{path.resolve()}")
        if not path.is_dir():
            return f"no MLflow store at {tracking_uri}; give sqlite:///<absolute path> or an http:// server URL"
    return None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


MetricLogger = Callable[[dict[str, float], int], None]


@dataclass(frozen=True)
class DatasetRecord:
    """An artifact as an MLflow dataset: the UI lists it among a run's datasets with its digest and context."""

    name: str  # stage/artifact id
    digest: str  # the artifact id: the same data has the same digest in every run that used it
    uri: str  # the artifact's folder (or fsspec URL)
    columns: list[dict[str, Any]]  # MLflow colspecs of its shards: {"name": ..., "type": ...[, "items": ...]}
    rows: int | None  # documents or instances


# The experiment holds model training runs: MLflow 3's UI opens it in its model-training layout (runs,
# models, datasets) instead of the GenAI one (traces, evaluation runs), and shows the description.
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.note.content": "pretrainflow: BERT pretraining from raw text. Each pipeline run is a parent run named "
                           "pipeline-CONFIG-ID with one nested run per stage (corpus, tokenize, instances, "
                           "pretrain, evaluate), each named after the artifact it built or found cached.",
}
# The UI opens a link in its model-training layout (runs, models, registry) with this query; its GenAI layout
# (traces, evaluation runs) is the default otherwise, whatever the experiment's kind.
ML_LAYOUT = "workflowType=machine_learning"
FAILED_BECAUSE = "pretrainflow.failed_because"  # why a run ended FAILED, when a user can fix it
DESCRIPTION = "mlflow.note.content"  # the tag MLflow's UI shows as a run's (or experiment's) description


@dataclass(frozen=True)
class RunRecord:
    """What one run holds, read back: its name, params, latest metric values and tags."""

    run_id: str
    name: str
    experiment_id: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


class Tracker:
    """Runs of one MLflow experiment, addressed by run id."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = "pretrainflow", create: bool = True):
        """create=False only reads: the experiment is not created (experiment_id None when it does not exist)."""
        from mlflow.tracking import MlflowClient

        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found or not create:
            self.experiment_id = found.experiment_id if found else None
        else:
            self.experiment_id = self.client.create_experiment(experiment, tags=EXPERIMENT_TAGS)
        if found and create and any(found.tags.get(k) is None for k in EXPERIMENT_TAGS):  # made by an older version
            for key, value in EXPERIMENT_TAGS.items():
                self.client.set_experiment_tag(self.experiment_id, key, value)
        self.experiment = experiment

    def start_run(
        self, name: str, parent_run_id: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> str:
        """Create a run (nested under parent_run_id if given) and return its id."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        all_tags = {**liveness.this_process(), **{k: str(v) for k, v in (tags or {}).items()}}
        if parent_run_id:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        return run.info.run_id

    def run_url(self, run_id: str) -> str | None:
        """The run's page in the MLflow UI when the store is a tracking server; None for a local store (no UI)."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return None
        return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{run_id}?{ML_LAYOUT}"

    def reap_dead_runs(self, starter: str) -> list[str]:
        """End FAILED every RUNNING run of this experiment whose process (of this host) is gone, tagged with why;
        returns their names. `starter` says who noticed, for the tag."""
        if self.experiment_id is None:
            return []
        reaped = []
        for run in self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'", max_results=500):
            label = run.data.tags
            if not liveness.on_this_host(label) or not liveness.is_gone(label):
                continue
            self.set_tags(run.info.run_id, {FAILED_BECAUSE: (
                f"the process that ran it ({liveness.describe(label)}) is gone: killed, or the machine restarted; "
                f"marked FAILED when {starter} started")})
            self.end_run(run.info.run_id, failed=True)
            reaped.append(run.info.run_name or run.info.run_id)
        return reaped

    def log_datasets(self, run_id: str, datasets: Sequence[DatasetRecord], context: str) -> None:
        """Record artifacts as datasets of the run, with `context` ("input": it read them; "output": it wrote them,
        as MLflow records datasets only among a run's inputs)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        entries = [DatasetInput(Dataset(
            name=d.name, digest=d.digest, source_type="local" if "://" not in d.uri else d.uri.split("://")[0],
            source=json.dumps({"uri": d.uri}),
            schema=json.dumps({"mlflow_colspec": d.columns}),
            profile=json.dumps({"num_rows": d.rows}) if d.rows is not None else None,
        ), tags=[InputTag("mlflow.data.context", context)]) for d in datasets]
        if entries:
            with _stops_held():
                self.client.log_inputs(run_id, datasets=entries)

    def end_run(self, run_id: str, failed: bool = False) -> None:
        with _stops_held():
            self.client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")

    @contextmanager
    def run(
        self, name: str, parent_run_id: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> Iterator[str]:
        """A run that ends FINISHED, or FAILED if the block raises (a user's error says why in a tag).

        A stop (SIGTERM, Ctrl-C) that arrives while the run is being created is held until its id is known,
        then raised: otherwise it could leave the store a RUNNING run that nothing ends. Writes to the store
        hold stops the same way: one raised inside a SQLite commit left the store locked, so the run's FAILED
        update failed and the run stayed RUNNING."""
        run_id = None
        try:
            with _stops_held():
                run_id = self.start_run(name, parent_run_id, tags)
            yield run_id
        except BaseException as err:
            if run_id is not None:
                if message := user_message(err):
                    self.set_tags(run_id, {FAILED_BECAUSE: message})
                self.end_run(run_id, failed=True)
            raise
        self.end_run(run_id)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log flat params in batches; long values are cut to MLflow's limit."""
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in sorted(params.items())]
        for start in range(0, len(items), _PARAM_BATCH):
            with _stops_held():  # a stop inside a SQLite commit left the store locked for the run's FAILED update
                self.client.log_batch(run_id, params=items[start : start + _PARAM_BATCH])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log numeric metrics in one batch; non-numbers are skipped."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        for start in range(0, len(items), _BATCH):
            with _stops_held():
                self.client.log_batch(run_id, metrics=items[start : start + _BATCH])

    @contextmanager
    def system_metrics(self, run_id: str, interval_s: float) -> Iterator[None]:
        """MLflow's system metrics for `run_id` while the block runs: CPU, memory, disk and network (GPU
        utilisation and memory too with the `gpu` extra's nvidia-ml-py), sampled every interval_s seconds
        on a background thread and logged as system/* (the run's "System metrics" tab)."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, tracking_uri=self.tracking_uri)
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()  # stops the thread and flushes what it sampled

    def metric_logger(self, run_id: str) -> MetricLogger:
        """A plain `log(metrics, step)` callable for code that must not import mlflow."""
        return lambda metrics, step: self.log_metrics(run_id, metrics, step)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        with _stops_held():
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """Upload one file, or a folder's contents, to the run's artifact store."""
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def _ensure_registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

        try:
            self.client.create_registered_model(name)
        except MlflowException as err:
            if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise

    def log_fill_mask_model(self, run_id: str, model_dir: Path, registered_model: str | None,
                            example: str) -> str | None:
        """Log a Hugging Face BERT folder as MLflow's transformers flavour (a fill-mask pipeline, with a
        signature and `example` as input example), so `mlflow.pyfunc.load_model` and `mlflow models serve`
        answer fill-mask requests; register it as a new version of `registered_model` and return the version."""
        import mlflow
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema
        from transformers import pipeline
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()  # the pooler and NSP head a fill-mask pipeline drops: expected
        fill_mask = pipeline("fill-mask", model=str(model_dir))
        signature = ModelSignature(inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")]))
        if registered_model:
            self._ensure_registered_model(registered_model)
        with mlflow_uri(self.tracking_uri):  # log_model writes through mlflow's module-level client
            info = mlflow.transformers.log_model(
                transformers_model=fill_mask, name="fill-mask-model", signature=signature, input_example=[example],
                pip_requirements=[f"mlflow=={mlflow.__version__}", _requirement("transformers"),
                                  _requirement("torch"), _requirement("tokenizers")],
                registered_model_name=registered_model, run_id=run_id,
            )
        return str(info.registered_model_version) if registered_model else None

    def update_model_version(self, name: str, version: str, description: str | None = None,
                             tags: Mapping[str, Any] | None = None) -> None:
        """Set a registered version's description and tags."""
        if description is not None:
            self.client.update_model_version(name, version, description=description)
        for key, value in (tags or {}).items():
            self.client.set_model_version_tag(name, version, key, str(value))

    def model_versions(self, name: str, tag: str, value: str) -> list[tuple[str, dict[str, str]]]:
        """(version, tags) of the versions of `name` whose tag equals value, newest first."""
        found = self.client.search_model_versions(f"name = '{name}' and tags.`{tag}` = '{value}'")
        return [(str(v.version), dict(v.tags)) for v in sorted(found, key=lambda v: -int(v.version))]

    def aliased_version(self, name: str, alias: str) -> tuple[str, dict[str, str]] | None:
        """(version, tags) that `alias` points at, or None."""
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None
        return str(version.version), dict(version.tags)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def run_exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:
            return False
        return True

    def read_run(self, run_id: str) -> RunRecord:
        """One run by id, in any experiment of this store."""
        return _record(self.client.get_run(run_id))

    def nested_runs(self, parent_run_id: str) -> list[RunRecord]:
        """The runs nested directly under a parent run (in the parent's experiment), oldest first."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        parent = self.client.get_run(parent_run_id)
        runs = self.client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
            order_by=["attributes.start_time ASC"],
        )
        return [_record(run) for run in runs]

    def child_runs(self, parent_run_id: str) -> list[Any]:
        """The runs nested directly under a parent run."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'"
        )


@contextmanager
def _stops_held() -> Iterator[None]:
    """SIGTERM and SIGINT received in the block are sent again when it ends, to the handlers that were there.

    Only in the main thread, where Python runs signal handlers (elsewhere the block runs as is)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {number: signal.signal(number, lambda received, frame: held.append(received))
                for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in held:
            os.kill(os.getpid(), number)  # handled by the restored handler, in the caller's try block


def _record(run: Any) -> RunRecord:
    return RunRecord(run.info.run_id, run.info.run_name or "", run.info.experiment_id, dict(run.data.params),
                     dict(run.data.metrics), dict(run.data.tags))


@contextmanager
def mlflow_uri(tracking_uri: str) -> Iterator[None]:
    """mlflow's module-level functions (log_model, pyfunc.load_model) on `tracking_uri` inside the block only.

    mlflow.set_tracking_uri also sets $MLFLOW_TRACKING_URI, which every process started later would inherit
    (a torchrun launch, the CLI's next run in a test): both are put back on the way out.
    """
    import mlflow

    environ = os.environ.get("MLFLOW_TRACKING_URI")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if environ is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = environ


def _requirement(package: str) -> str:
    from importlib import metadata

    return f"{package}=={metadata.version(package).split('+')[0]}"  # torch 2.13.0+cpu: the CPU wheel's suffix dropped


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _PARAM_CHARS else text[: _PARAM_CHARS - 3] + "..."
