"""tasks/summary.py: the words a run reports itself in (a stage's line, the pipeline's table)."""

from tasks.summary import (
    StageOutcome,
    evaluation_tables,
    format_seconds,
    format_value,
    headline,
    pipeline_markdown,
    stage_line,
)

CORPUS = StageOutcome("corpus", "c0b5bf63db1349e5", False, 125.4,
                      {"documents": 442, "words": 1221666, "dropped_empty": 3, "documents_in": 494},
                      "a4862aff0d294a05", "http://127.0.0.1:5000/#/experiments/1/runs/a4862aff0d294a05")
EVALUATE = StageOutcome("evaluate", "138a40aea301f077", True, 0.42,
                        {"runs": 4, "url-section_pretrained_test_accuracy": 0.6348,
                         "url-section_pretrained_test_accuracy_std": 0.0, "url-section_pretrained_gain_accuracy": 0.1798,
                         "url-section_scratch_test_accuracy": 0.4551}, "e1", None)


def test_headline_picks_what_a_stage_produced_in_pattern_order_without_spreads():
    assert headline("corpus", CORPUS.stats) == {"documents": 442, "words": 1221666, "documents_in": 494}
    assert headline("evaluate", EVALUATE.stats) == {"url-section_pretrained_test_accuracy": 0.6348,
                                                    "url-section_pretrained_gain_accuracy": 0.1798}
    assert headline("unknown", {"x": 1}) == {}


def test_numbers_and_durations_read_as_people_write_them():
    assert [format_value(v) for v in (1221666, 442, 0.63481, 437.28, 2000.0, True, "x")] == [
        "1,221,666", "442", "0.6348", "437.3", "2,000", "True", "x"]
    assert [format_seconds(s) for s in (0.42, 42.4, 125.4, 3725)] == ["0.4 s", "42 s", "2 min 05 s", "1 h 02 min"]


def test_a_stage_line_says_built_or_cached_the_artifact_the_duration_and_the_mlflow_run():
    assert stage_line(CORPUS) == ("corpus: built c0b5bf63db1349e5 in 2 min 05 s (documents 442, words 1,221,666, "
                                  "documents_in 494); MLflow run http://127.0.0.1:5000/#/experiments/1/runs/a4862aff0d294a05")
    assert stage_line(EVALUATE).startswith("evaluate: cached 138a40aea301f077 in 0.4 s (")
    assert stage_line(EVALUATE).endswith("; MLflow run e1")  # a local store: the run id, no page to link


def test_the_pipeline_table_has_a_row_per_stage_links_and_the_evaluation_tables():
    results_md = "## Fine-tuning\n\n| task | model |\n|---|---|\n\n## Intrinsic\n\n| a |\n\nFill-mask examples (x)\n\n- `a`"
    markdown = pipeline_markdown("pipeline-demo-138a40ae", [CORPUS, EVALUATE], evaluation_tables(results_md),
                                 parent_run=("p123456789", "http://127.0.0.1:5000/#/experiments/1/runs/p123456789"))
    lines = markdown.splitlines()
    assert lines[0] == "# pipeline-demo-138a40ae"
    assert lines[2] == ("1 of 2 stages built, 1 cached; 2 min 06 s in stages; MLflow parent run "
                        "[p1234567](http://127.0.0.1:5000/#/experiments/1/runs/p123456789).")
    assert "| corpus | built | `c0b5bf63db1349e5` | 2 min 05 s | [a4862aff](http://127.0.0.1:5000/#/experiments/1/runs/" \
           "a4862aff0d294a05) | documents 442; words 1,221,666; documents_in 494 |" in lines
    assert any(line.startswith("| evaluate | cached | `138a40aea301f077` | 0.4 s | e1 |") for line in lines)
    assert "## Intrinsic" in markdown and "Fill-mask" not in markdown
