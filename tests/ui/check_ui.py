"""The Prefect and MLflow UIs in a real browser (`make ui-check`): Debian's headless Chromium, driven by
Playwright, looks at a served pipeline run as a user does and fails when something they should see is missing.

Not collected by `make test` (the file name does not start with test_): it needs Debian's chromium and the
playwright package (`make ui-check` installs both) and takes about 2-3 minutes. It serves everything on
127.0.0.1 (`flows.serve.serve`) and runs the tiny pipeline through its deployment (`pretrainflow trigger`).
In Prefect it opens the pipeline run (graph, logs, subflows, artifacts), the corpus stage's run (its steps and
log lines), the summary artifact and the deployment's form, and submits the form as it stands (the work pool
is paused, so the run is only created: its parameters must pass the flow's own check). In MLflow it opens
the runs table, the pipeline run (its summary and outcomes), a stage run's datasets and the registered model
and its version. Screenshots of every page go to $UI_CHECK_DIR (default: ui-check/ in the checkout).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from flows.serve import REPO_ROOT, ServeOptions, serve
from tasks.config import validate_config
from tasks.crawl.local_site import PYTHON_DOCS
from tests.flows.test_cli import CLI

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("UI_CHECK_DIR", REPO_ROOT / "ui-check"))
# headless Chromium offline: no background traffic to Google's hosts (refused here, and slow to fail)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="needs Debian's chromium (make ui-check installs it)"),
    pytest.mark.skipif(not (PYTHON_DOCS / "index.html").is_file(), reason="needs python3.11-doc (make python-docs)"),
]


@pytest.fixture(scope="module")
def served_pipeline(tmp_path_factory):
    """serve on free ports with a finished tiny pipeline run: (served addresses, serve options, flow run id)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    SHOTS.mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("ui")
    options = ServeOptions(prefect_port=0, mlflow_port=0, tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
                           artifact_root=root / "mlruns", data_root=str(root / "data"))
    env = {"PREFECT_HOME": str(root / "prefect"), "PREFECT_WORKER_QUERY_SECONDS": "2"}
    with serve(options, env) as served, temporary_settings({PREFECT_API_URL: served.prefect_api_url}):
        done = subprocess.run([CLI, "trigger", "pipeline", "--config", "tiny", "--wait"], cwd=root, text=True,
                              env={**os.environ, **env, "PREFECT_API_URL": served.prefect_api_url},
                              capture_output=True, timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
        yield served, options, done.stdout.split("(", 1)[1].split(")", 1)[0]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_a_pipeline_run_reads_in_the_prefect_ui(served_pipeline, browser):
    from playwright.sync_api import expect
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate

    served, options, run_id = served_pipeline
    with get_client(sync_client=True) as client:
        pipeline = client.read_flow_run(run_id)
        corpus = next(r for r in client.read_flow_runs() if r.name.startswith("corpus-"))
        summary = next(a for a in client.read_artifacts() if a.key == "pipeline-summary")
        deployment = client.read_deployment_by_name("pipeline/pipeline")
    ui = served.prefect_ui_url
    page = browser.new_page(viewport={"width": 1400, "height": 1000})

    page.goto(f"{ui}/runs/flow-run/{run_id}", wait_until="networkidle")
    expect(page.get_by_text(pipeline.name, exact=True).first).to_be_visible()
    expect(page.get_by_text("config:tiny", exact=True).first).to_be_visible()
    expect(page.locator("canvas").first).to_be_visible()  # the run graph
    expect(page.get_by_text("Can't connect to Server API")).to_have_count(0)
    page.screenshot(path=SHOTS / "pipeline-run.png")
    stage_line = page.get_by_text("corpus: built ").first  # the project's lines, in the run's logs
    expect(stage_line).to_be_visible()
    stage_line.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "pipeline-logs.png")
    page.get_by_text("Subflow Runs", exact=True).first.click()
    expect(page.get_by_text(corpus.name).first).to_be_visible()
    page.screenshot(path=SHOTS / "pipeline-subflows.png")
    page.get_by_text("Artifacts", exact=True).first.click()
    expect(page.get_by_text("pipeline-summary").first).to_be_visible()
    page.screenshot(path=SHOTS / "pipeline-artifacts.png")

    page.goto(f"{ui}/runs/flow-run/{corpus.id}", wait_until="networkidle")
    expect(page.get_by_text("stage:corpus", exact=True).first).to_be_visible()
    expect(page.get_by_text("corpus: building artifact").first).to_be_visible()
    page.screenshot(path=SHOTS / "corpus-run.png")
    page.get_by_text("Task Runs", exact=True).first.click()
    for step in ("read sources", "clean shards", "deduplicate", "write snapshot", "report"):
        expect(page.get_by_text(step, exact=True).first).to_be_visible()
    page.screenshot(path=SHOTS / "corpus-steps.png")

    page.goto(f"{ui}/artifacts/artifact/{summary.id}", wait_until="networkidle")
    expect(page.get_by_role("heading", name=pipeline.name)).to_be_visible()
    expect(page.get_by_role("heading", name="Fine-tuning: pretrained vs. from scratch")).to_be_visible()
    page.screenshot(path=SHOTS / "pipeline-summary.png", full_page=True)

    page.goto(f"{ui}/deployments/deployment/{deployment.id}/run", wait_until="networkidle")
    expect(page.get_by_text("data/pretrain/ID/model", exact=False).first).to_be_visible()  # <...> survives
    expect(page.get_by_text("Where every stage's artifacts live, as STAGE/ID/").first).to_be_visible()
    page.screenshot(path=SHOTS / "deployment-form.png")
    with get_client(sync_client=True) as client:  # the form's run is created, not run
        client.update_work_pool("pretrainflow", WorkPoolUpdate(is_paused=True))
        before = {r.id for r in client.read_flow_runs()}
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/deployments/deployment/**tab=Runs")  # the UI shows the deployment's runs
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 30
        while not (new := [r for r in client.read_flow_runs() if r.id not in before]):
            assert time.monotonic() < deadline, "submitting the form created no flow run"
            time.sleep(1)
        page.screenshot(path=SHOTS / "form-submitted.png")
        [submitted] = new
        client.delete_flow_run(submitted.id)
        client.update_work_pool("pretrainflow", WorkPoolUpdate(is_paused=False))
    page.close()
    config = validate_config(submitted.parameters["config"], "the form's submission")
    assert config.name == "demo" and config.data_root == options.data_root  # the form's values are serve's
    print(f"screenshots: {SHOTS}")


def test_the_same_run_reads_in_the_mlflow_ui(served_pipeline, browser):
    from playwright.sync_api import expect

    from tasks.tracking import ML_LAYOUT, Tracker

    served, _, run_id = served_pipeline
    tracker = Tracker(served.mlflow_url, create=False)
    [parent] = tracker.client.search_runs([tracker.experiment_id], f"tags.prefect_flow_run_id = '{run_id}'")
    tokenize = next(r for r in tracker.child_runs(parent.info.run_id) if r.data.tags["stage"] == "tokenize")
    corpus_id = tokenize.data.tags["input.corpus"]
    experiment = f"{served.mlflow_url}/#/experiments/{tracker.experiment_id}"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})

    def open_page(url: str) -> None:  # the MLflow UI polls, so the network is never idle: wait for its content
        page.goto(url, wait_until="load")
        expect(page.get_by_text("Model training", exact=True).first).to_be_visible(timeout=30_000)

    open_page(f"{experiment}/runs?{ML_LAYOUT}")
    expect(page.get_by_text(parent.info.run_name).first).to_be_visible()
    expect(page.get_by_text("Model registry").first).to_be_visible()  # the model-training layout's navigation
    page.screenshot(path=SHOTS / "mlflow-runs.png")

    open_page(f"{experiment}/runs/{parent.info.run_id}?{ML_LAYOUT}")
    expect(page.get_by_text("5 of 5 stages built").first).to_be_visible()  # the summary as its description
    expect(page.get_by_text("corpus.documents", exact=True).first).to_be_visible()  # the stages' outcomes
    page.screenshot(path=SHOTS / "mlflow-pipeline-run.png", full_page=True)

    open_page(f"{experiment}/runs/{tokenize.info.run_id}?{ML_LAYOUT}")
    expect(page.get_by_text(f"corpus/{corpus_id}").first).to_be_visible()  # the dataset it read
    expect(page.get_by_text("tokenize: built ").first).to_be_visible()  # its summary line as description
    page.screenshot(path=SHOTS / "mlflow-tokenize-run.png")

    open_page(f"{served.mlflow_url}/#/models/pretrainflow-bert?{ML_LAYOUT}")
    expect(page.get_by_text("@ newest").first).to_be_visible()
    expect(page.get_by_text("@ best").first).to_be_visible()
    expect(page.get_by_text(corpus_id).first).to_be_visible()  # the version's lineage tags
    page.screenshot(path=SHOTS / "mlflow-registered-model.png")
    open_page(f"{served.mlflow_url}/#/models/pretrainflow-bert/versions/1?{ML_LAYOUT}")
    expect(page.get_by_text("A fill-mask pipeline").first).to_be_visible()
    page.screenshot(path=SHOTS / "mlflow-model-version.png")
    page.close()
