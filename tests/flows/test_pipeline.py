"""End to end: the tiny preset through the real pipeline flow, real Prefect harness, real MLflow store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from tasks.artifacts import ArtifactStore, file_sha256
from tasks.config import load_config
from tasks.crawl.local_site import PYTHON_DOCS
from tasks.stages import STAGES
from tasks.tracking import Tracker, mlflow_uri

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (PYTHON_DOCS / "index.html").is_file(), reason="needs python3.11-doc (make python-docs)"),
]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    return load_config("tiny", [f"data_root={root / 'data'}", f"tracking.tracking_uri=sqlite:///{root / 'mlflow.db'}"])


def test_tiny_pipeline_builds_every_artifact_tracks_every_stage_and_then_hits_the_cache(prefect_harness, tiny_config):
    from flows.pipeline import pipeline_flow

    first = pipeline_flow(tiny_config)

    store = ArtifactStore(tiny_config.data_root)
    stages = first["stages"]
    assert list(stages) == list(STAGES)
    for name, result in stages.items():
        assert not result["cache_hit"], name
        artifact = store.get(name, result["artifact_id"])
        assert artifact.manifest["files"], f"{name} artifact lists no files"
        assert store.verify(name, result["artifact_id"]) == [], name
        assert artifact.manifest["config"] == getattr(tiny_config, name).model_dump(mode="json")
        assert artifact.inputs == {up: stages[up]["artifact_id"] for up in STAGES[name].inputs}
    assert (store.path("pretrain", stages["pretrain"]["artifact_id"]) / "model" / "config.json").is_file()
    assert (store.path("evaluate", stages["evaluate"]["artifact_id"]) / "results.md").is_file()

    tracker = Tracker(tiny_config.tracking.tracking_uri, tiny_config.tracking.experiment)
    parent = tracker.client.get_run(first["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    ids = {name: result["artifact_id"] for name, result in stages.items()}
    children = {r.data.tags["stage"]: r for r in tracker.child_runs(first["mlflow_run_id"])}
    assert set(children) == set(STAGES)
    assert_explained_in_mlflow(tracker, parent, children, ids)
    for name, run in children.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["artifact_id"] == stages[name]["artifact_id"]
        assert run.data.tags["prefect_flow_run_id"]
        assert run.data.tags["git_commit"]
        assert run.data.tags["cache_hit"] == "false"
        assert run.data.params, f"{name} run has no params"
        assert run.data.metrics, f"{name} run has no metrics"
        for up in STAGES[name].inputs:
            assert run.data.tags[f"input.{up}"] == stages[up]["artifact_id"]
    artifacts = {f.path for f in tracker.client.list_artifacts(children["evaluate"].info.run_id)}
    assert {"manifest.json", "results.md"} <= artifacts
    assert "validation_mlm_accuracy" in children["pretrain"].data.metrics
    assert children["pretrain"].data.tags["registered_model"] == "pretrainflow-bert/1"

    assert "evaluate-results" in asyncio.run(prefect_artifact_keys())
    view = asyncio.run(prefect_view(parent.data.tags["prefect_flow_run_id"]))
    assert view["name"] == f"pipeline-tiny-{ids['evaluate'][:8]}" and {"pipeline", "config:tiny"} <= view["tags"]
    assert view["subflows"] == {f"{name}-{ids[name]}": {f"stage:{name}", "config:tiny", f"artifact:{name}/{ids[name]}",
                                                         "built"} for name in STAGES}
    # the stages' main steps are task runs with durations; the project's own log lines are in the runs' logs
    assert {"read sources", "clean shards", "deduplicate", "write snapshot", "report", "train tokenizer",
            "encode shards", "generate train instances", "train", "fine-tune url-section pretrained",
            "fine-tune url-section scratch"} <= set(view["task_runs"])
    assert any(line.startswith(f"corpus: built {ids['corpus']} in ") for line in view["logs"]["tasks.stages"])
    assert any(line.startswith("pretraining ") for line in view["logs"]["model.train"])  # from the training thread
    assert view["logs"]["flows.pipeline"]  # the pipeline's own summary line
    summary = view["artifacts"]["pipeline-summary"]
    assert all(f"| {name} | built | `{ids[name]}` |" in summary for name in STAGES)
    assert "## Fine-tuning: pretrained vs. from scratch" in summary

    listing = subprocess.run(
        [sys.executable, "-m", "flows.cli", "artifacts", "--data-root", str(store.root), "--verify"],
        capture_output=True, text=True, timeout=120,
    )
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert "CORRUPT" not in listing.stdout
    for name, result in stages.items():
        assert f"{name}" in listing.stdout and result["artifact_id"] in listing.stdout
    assert f"from: tokenize/{stages['tokenize']['artifact_id']}" in listing.stdout

    before = sorted(p.relative_to(store.root) for p in store.root.rglob("*"))
    second = pipeline_flow(tiny_config)
    assert all(r["cache_hit"] for r in second["stages"].values())
    assert {n: r["artifact_id"] for n, r in second["stages"].items()} == {n: r["artifact_id"] for n, r in stages.items()}
    assert sorted(p.relative_to(store.root) for p in store.root.rglob("*")) == before
    second_children = tracker.child_runs(second["mlflow_run_id"])
    assert {r.data.tags["cache_hit"] for r in second_children} == {"true"}
    assert {r.info.run_name for r in second_children} == {f"{name}-{ids[name]} (cached)" for name in STAGES}
    cached_corpus = next(r for r in second_children if r.data.tags["stage"] == "corpus")
    evidence = {f.path for f in tracker.client.list_artifacts(cached_corpus.info.run_id)}
    assert {"manifest.json", "cleaning_report.md", "document_length.png", "languages.png"} <= evidence
    cached_tokenize = next(r for r in second_children if r.data.tags["stage"] == "tokenize")
    assert _datasets(tracker, cached_tokenize.info.run_id) == {(f"corpus/{ids['corpus']}", "input"),
                                                               (f"tokenize/{ids['tokenize']}", "output")}
    assert [str(v.version) for v in tracker.client.search_model_versions("name = 'pretrainflow-bert'")] == ["1"]
    cached = asyncio.run(prefect_view(tracker.client.get_run(second["mlflow_run_id"]).data.tags["prefect_flow_run_id"]))
    assert set(cached["subflows"]) == {f"{name}-{ids[name]} (cached)" for name in STAGES}
    assert all("cached" in tags and "built" not in tags for tags in cached["subflows"].values())
    assert "| corpus | cached |" in cached["artifacts"]["pipeline-summary"]


def test_stages_rebuilt_in_fresh_processes_are_byte_identical(prefect_harness, tiny_config, tmp_path):
    """Same input and config, same bytes: tokenize, instances and the exported model, rebuilt by
    `pretrainflow task` in new processes (each with its own hash seed), match the pipeline's artifacts."""
    from flows.pipeline import pipeline_flow

    stages = pipeline_flow(tiny_config)["stages"]  # cache hits after the test above
    store = ArtifactStore(tiny_config.data_root)
    built = {name: store.path(name, stages[name]["artifact_id"]) for name in STAGES}
    rebuilt = {"corpus": built["corpus"]}
    for seed, name in enumerate(("tokenize", "instances", "pretrain")):
        rebuilt[name] = tmp_path / name
        inputs = [f"--input={up}={rebuilt[up]}" for up in STAGES[name].inputs]
        run = subprocess.run(
            [sys.executable, "-m", "flows.cli", "task", name, "--config", "tiny", "--output", str(rebuilt[name]), *inputs],
            capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "PYTHONHASHSEED": str(seed)},
        )
        assert run.returncode == 0, run.stdout + run.stderr
    assert _digests(rebuilt["tokenize"]) == _digests(built["tokenize"])
    assert _digests(rebuilt["instances"]) == _digests(built["instances"])
    assert _digests(rebuilt["pretrain"] / "model") == _digests(built["pretrain"] / "model")


def _digests(folder) -> dict[str, str]:
    """sha256 of every file under folder but manifest.json (it records times), by relative path."""
    return {str(path.relative_to(folder)): file_sha256(path)
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != "manifest.json"}


async def prefect_artifact_keys() -> set[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return {a.key for a in await client.read_artifacts()}


async def prefect_view(flow_run_id: str) -> dict:
    """A pipeline flow run as the Prefect UI shows it: name, tags, its subflows (name -> tags), the task runs
    under them, their log lines by logger, and its artifacts' markdown."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
        subflows = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
        run_ids = [run.id, *(s.id for s in subflows)]
        task_runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)))
        logs: dict[str, list[str]] = {}
        for record in await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids))):
            logs.setdefault(record.name, []).append(record.message)
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    return {"name": run.name, "tags": set(run.tags), "subflows": {s.name: set(s.tags) for s in subflows},
            "task_runs": {t.name: t.total_run_time.total_seconds() for t in task_runs}, "logs": logs,
            "artifacts": {a.key: a.data for a in artifacts}}


def _datasets(tracker: Tracker, run_id: str) -> set[tuple[str, str]]:
    """(dataset name, context) of a run's datasets."""
    inputs = tracker.client.get_run(run_id).inputs.dataset_inputs
    return {(d.dataset.name, next(t.value for t in d.tags if t.key == "mlflow.data.context")) for d in inputs}


def assert_explained_in_mlflow(tracker: Tracker, parent, children: dict, ids: dict[str, str]) -> None:
    """What the MLflow UI shows of a tiny pipeline run: names, the parent's outcomes and summary, datasets,
    the experiment's kind, and a registered model version that loads as a pyfunc and fills a mask."""
    import mlflow

    assert parent.info.run_name == f"pipeline-tiny-{ids['evaluate'][:8]}"
    assert {name: run.info.run_name for name, run in children.items()} == {n: f"{n}-{i}" for n, i in ids.items()}
    metrics = parent.data.metrics
    for name in ("corpus.documents", "corpus.words", "tokenize.tokens", "instances.train_instances",
                 "pretrain.validation_mlm_loss", "pretrain.validation_mlm_accuracy", "pretrain.seconds",
                 "evaluate.url-section_pretrained_test_accuracy", "evaluate.url-section_pretrained_gain_accuracy"):
        assert name in metrics, name
    assert metrics["corpus.documents"] == children["corpus"].data.metrics["documents"]
    summary = tracker.client.download_artifacts(parent.info.run_id, "summary.md")
    text = open(summary).read()
    assert text.startswith(f"# pipeline-tiny-{ids['evaluate'][:8]}") and f"| corpus | built | `{ids['corpus']}` |" in text
    assert "## Fine-tuning: pretrained vs. from scratch" in text

    run_of = {name: run.info.run_id for name, run in children.items()}
    assert _datasets(tracker, run_of["corpus"]) == {(f"corpus/{ids['corpus']}", "output")}
    assert _datasets(tracker, run_of["tokenize"]) == {(f"corpus/{ids['corpus']}", "input"),
                                                      (f"tokenize/{ids['tokenize']}", "output")}
    assert _datasets(tracker, run_of["instances"]) == {(f"tokenize/{ids['tokenize']}", "input"),
                                                       (f"instances/{ids['instances']}", "output")}
    assert _datasets(tracker, run_of["pretrain"]) == {(f"tokenize/{ids['tokenize']}", "input"),
                                                      (f"instances/{ids['instances']}", "input")}
    assert _datasets(tracker, run_of["evaluate"]) == {(f"corpus/{ids['corpus']}", "input"),
                                                      (f"instances/{ids['instances']}", "input")}
    snapshot = next(d.dataset for d in tracker.client.get_run(run_of["tokenize"]).inputs.dataset_inputs
                    if d.dataset.name.startswith("corpus/"))
    assert snapshot.digest == ids["corpus"] and '"num_rows": ' in snapshot.profile and '"text"' in snapshot.schema

    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"].startswith("pretrainflow")

    version = tracker.client.get_model_version("pretrainflow-bert", "1")
    assert {f"artifact.{n}": ids[n] for n in ("corpus", "tokenize", "instances", "pretrain")}.items() <= \
        version.tags.items()
    assert {"validation_mlm_accuracy", "parameters", "shape", "url-section.test_accuracy",
            "url-section.gain_accuracy", "downstream.score"} <= set(version.tags)
    assert ids["corpus"] in version.description and "fill-mask" in version.description
    assert set(tracker.client.get_registered_model("pretrainflow-bert").aliases) == {"newest", "best"}
    with mlflow_uri(tracker.tracking_uri):
        fill_mask = mlflow.pyfunc.load_model("models:/pretrainflow-bert@best")
    [guess] = fill_mask.predict(["the [MASK] of a function is the value it returns."])
    assert isinstance(guess, str) and guess  # the tiny model's best guess for the masked word

