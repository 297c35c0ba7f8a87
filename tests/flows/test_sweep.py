"""The sweep flow end to end: a 2x2 sweep of the tiny preset on a real Prefect API and MLflow store, killed
midway and restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.artifacts import ArtifactStore
from tasks.crawl.local_site import PYTHON_DOCS
from tasks.sweep.plan import plan_sweep, validate_sweep
from tasks.tracking import Tracker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (PYTHON_DOCS / "index.html").is_file(), reason="needs python3.11-doc (make python-docs)"),
]

REPO = Path(__file__).resolve().parents[2]


def sweep_spec(root: Path) -> dict:
    """Masking static vs dynamic, two pretraining seeds: 1 corpus, 1 tokenize, 2 instances, 4 pretrain, 4 evaluate."""
    return {
        "name": "masking",
        "config": "tiny",
        "overrides": [f"data_root={root / 'data'}", f"tracking.tracking_uri=sqlite:///{root / 'mlflow.db'}",
                      "pretrain.max_steps=6", "pretrain.eval_every=6", "pretrain.checkpoint_every=3",
                      "evaluate.finetune.max_steps=4"],
        "axes": {"instances.masking": ["static", "dynamic"]},
        "seeds": [0, 1],
    }


def finished(store: ArtifactStore) -> dict[tuple[str, str], float]:
    """(stage, id) -> manifest modification time of every finished artifact."""
    return {(a.stage, a.id): (a.path / "manifest.json").stat().st_mtime for a in store.list()}


def test_sweep_builds_shared_artifacts_once_resumes_after_a_kill_and_reports_every_variant(tmp_path, prefect_harness):
    from flows.sweep import sweep_flow

    spec = sweep_spec(tmp_path)
    plan = plan_sweep(validate_sweep(spec))
    assert plan.summary() == "4 variants (2 settings x 2 seeds): 1 corpus, 1 tokenize, 2 instances, 4 pretrain, " \
                             "4 evaluate artifacts; 0 cached"
    store = ArtifactStore(plan.data_root)

    # a first sweep in its own process, killed once the first model is trained
    script = f"import json\nfrom flows.sweep import sweep_flow\nsweep_flow(json.loads({json.dumps(json.dumps(spec))}))\n"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PYTHONPATH": str(REPO)}
    killed = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=(tmp_path / "killed.log").open("w"))
    deadline = time.monotonic() + 600
    while not any(stage == "pretrain" for stage, _ in finished(store)):
        assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no pretrain artifact after 10 minutes"
        time.sleep(0.5)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    before = finished(store)
    assert ("corpus", plan.variants[0].ids["corpus"]) in before

    result = sweep_flow({**spec, "max_parallel": 2})  # the rest in two lanes side by side
    after = finished(store)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing finished was built again
    expected = {(stage, i) for stage, ids in plan.artifacts.items() for i in ids}
    assert set(after) == expected
    assert result["built"] == len(expected) - len(before)

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "pretrainflow")
    children = {r.info.run_name: r for r in tracker.child_runs(result["mlflow_run_id"])}
    assert set(children) == {v.name for v in plan.variants}
    for variant in plan.variants:
        tags = children[variant.name].data.tags
        assert tags["sweep.masking"] == variant.settings["masking"] and tags["sweep.seed"] == str(variant.seed)
        assert {r.data.tags["stage"] for r in tracker.child_runs(children[variant.name].info.run_id)} == set(plan.artifacts)

    report = result["report"]
    rows = [line for line in report.splitlines() if line.startswith("| masking=")]
    assert [row.split(" | ")[0] for row in rows] == ["| masking=static", "| masking=dynamic"]
    scores = []  # the static rows' url-section score, mean over its two seeds, from the evaluate artifacts
    for variant in plan.variants[:2]:
        results = json.loads((store.path("evaluate", variant.ids["evaluate"]) / "results.json").read_text())
        task, info = next(iter(results["tasks"].items()))
        scores.append(results["summary"][task]["pretrained"][f"{info['metrics'][0]}_mean"])
    assert rows[0].split(" | ")[2].startswith(f"{sum(scores) / 2:.4f}")
    assert "sweep_report.md" in {f.path for f in tracker.client.list_artifacts(result["mlflow_run_id"])}


def test_builds_are_dealt_into_lanes_with_a_gpu_each_while_there_are_enough():
    from flows.sweep import lanes

    builds = list("abcde")
    assert lanes(builds, 2, 0) == [(None, ["a", "c", "e"]), (None, ["b", "d"])]  # CPU: lanes without a GPU
    assert lanes(builds, 4, 4) == [(0, ["a", "e"]), (1, ["b"]), (2, ["c"]), (3, ["d"])]
    assert lanes(builds, 3, 2) == [(0, ["a", "d"]), (1, ["b", "e"]), (0, ["c"])]  # more lanes than GPUs: shared
    assert lanes(["a"], 8, 8) == [(0, ["a"])]
