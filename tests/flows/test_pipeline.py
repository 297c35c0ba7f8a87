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
from tasks.tracking import Tracker

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
    children = {r.info.run_name: r for r in tracker.child_runs(first["mlflow_run_id"])}
    assert set(children) == set(STAGES)
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
    assert "model" in {f.path for f in tracker.client.list_artifacts(children["pretrain"].info.run_id)}

    assert "evaluate-results" in asyncio.run(prefect_artifact_keys())
    view = asyncio.run(prefect_view(parent.data.tags["prefect_flow_run_id"]))
    ids = {name: result["artifact_id"] for name, result in stages.items()}
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

