"""`pretrainflow compare`: two pipeline runs in a real SQLite MLflow store, lined up by param and metric name."""

from __future__ import annotations

import pytest

from flows.cli import main
from flows.compare import compare_runs
from tasks.config import load_config
from tasks.crawl.local_site import PYTHON_DOCS
from tasks.stages import run_stage
from tasks.tracking import Tracker, flatten

pytestmark = pytest.mark.skipif(not (PYTHON_DOCS / "index.html").is_file(),
                                reason="needs python3.11-doc (make python-docs)")


def pipeline_run(tracker: Tracker, root, min_words: int) -> str:
    """A pipeline parent run with its corpus stage built and tracked nested under it, as the flow does."""
    config = load_config("tiny", [
        f"data_root={root / 'data'}", "corpus.crawl.local_site=null",
        f"corpus.local_files=['{PYTHON_DOCS}/library/co*.html']", f"corpus.min_words={min_words}",
    ])
    with tracker.run("pipeline") as parent:
        tracker.log_params(parent, flatten(config.model_dump(mode="json")))
        result = run_stage("corpus", config, tracker=tracker, parent_run_id=parent)
        tracker.log_metrics(parent, {"stages_built": 1 - result.cache_hit, "stages_cached": int(result.cache_hit)})
    return parent


def test_compare_shows_the_differing_param_and_each_stages_metrics_side_by_side(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri)
    first, second = pipeline_run(tracker, tmp_path, 20), pipeline_run(tracker, tmp_path, 400)

    comparison = compare_runs(tracker, [first, second])
    rows = {(section, name): values for section, name, values in comparison.rows}
    assert rows[("params", "corpus.min_words")] == ["20", "400"]
    assert ("params", "data_root") not in rows  # equal params are not shown
    assert rows[("run", "stages_built")] == ["1", "1"]
    documents = rows[("corpus", "documents")]
    assert int(documents[0]) > int(documents[1])  # a higher min_words keeps fewer documents
    assert rows[("corpus", "cache_hit")] == ["false", "false"]
    first_id, second_id = rows[("corpus", "artifact_id")]
    assert first_id != second_id

    assert [name for name, _ in comparison.runs] == ["pipeline", "pipeline"]
    assert rows[("corpus", "artifact_id")] == [first_id, second_id]

    # two runs: only what differs, under the runs' names and ids
    assert main(["compare", first, second, "--tracking-uri", uri]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[2:] == ["pipeline", "pipeline"] and printed[1].split() == [first[:8], second[:8]]
    shown = {tuple(line.split()[:2]) for line in printed[3:]}
    assert {("params", "corpus.min_words"), ("corpus", "artifact_id"), ("corpus", "documents")} <= shown
    assert ("run", "stages_built") not in shown and ("corpus", "cache_hit") not in shown  # equal in both
    assert main(["compare", first, second, "--all", "--tracking-uri", uri]) == 0
    everything = {tuple(line.split()[:2]) for line in capsys.readouterr().out.splitlines()[3:]}
    assert {("run", "stages_built"), ("corpus", "cache_hit")} <= everything


def test_compare_refuses_an_unknown_run_id_naming_it(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Tracker(uri)  # compare reads an existing store only
    assert main(["compare", "0123456789abcdef", "--tracking-uri", uri]) == 2
    assert "no MLflow run '0123456789abcdef'" in capsys.readouterr().err
