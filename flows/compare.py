"""`pretrainflow compare RUN_ID...`: runs side by side, as MLflow's compare view lines them up.

Param and metric names are the same in every run (the flattened config, each stage's statistics), so runs
line up by name: the params that differ, then each run's own artifact, cache hit and metrics, then those of
its nested stage runs, matched by stage. Columns carry the runs' names as the MLflow UI shows them. With two
runs only the rows whose values differ are shown (`--all` shows every row); with more, every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tasks.stages import STAGES
from tasks.tracking import RunRecord, Tracker

MISSING = "-"


@dataclass(frozen=True)
class Comparison:
    """Rows of the table: (section, name, one value per run), and each run's (name, id)."""

    runs: list[tuple[str, str]]
    rows: list[tuple[str, str, list[str]]]

    def differing(self) -> Comparison:
        """Only the rows whose values are not all equal."""
        return Comparison(self.runs, [row for row in self.rows if len(set(row[2])) > 1])


def compare_runs(tracker: Tracker, run_ids: Sequence[str]) -> Comparison:
    """Params that differ; each run's artifact, cache hit and metrics; then its nested stage runs' by stage."""
    runs = [tracker.read_run(run_id) for run_id in run_ids]
    stages = [{_stage(child): child for child in tracker.nested_runs(run.run_id)} for run in runs]
    rows: list[tuple[str, str, list[str]]] = []
    for name in sorted(set().union(*(run.params for run in runs))):
        values = [run.params.get(name, MISSING) for run in runs]
        if len(set(values)) > 1:
            rows.append(("params", name, values))
    rows += _run_rows("run", runs)
    stage_names = [s for s in STAGES if any(s in by_stage for by_stage in stages)]
    stage_names += sorted({n for by_stage in stages for n in by_stage} - set(stage_names))  # stages added later
    for stage in stage_names:
        rows += _run_rows(stage, [by_stage.get(stage) for by_stage in stages])
    return Comparison([(run.name or run.run_id, run.run_id) for run in runs], rows)


def _stage(run: RunRecord) -> str:
    """A stage run's stage (its tag; older runs were named after it)."""
    return run.tags.get("stage") or run.name.split("-")[0]


def _run_rows(section: str, runs: Sequence[RunRecord | None]) -> list[tuple[str, str, list[str]]]:
    rows = []
    for tag in ("artifact_id", "cache_hit"):
        if any(r and tag in r.tags for r in runs):
            rows.append((section, tag, [r.tags.get(tag, MISSING) if r else MISSING for r in runs]))
    # system/* are the machine's load while the run ran (the UI's System metrics tab), not what it produced
    names = sorted(name for name in set().union(*(r.metrics for r in runs if r)) if not name.startswith("system/"))
    return rows + [(section, name, [_number(r.metrics.get(name)) if r else MISSING for r in runs]) for name in names]


def _number(value: float | None) -> str:
    if value is None:
        return MISSING
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"


def format_table(comparison: Comparison) -> str:
    """Fixed-width text: one column per run (its name, and its id's first 8 characters), one row per name."""
    header = ["section", "name", *(name for name, _ in comparison.runs)]
    ids = ["", "", *(run_id[:8] for _, run_id in comparison.runs)]
    body = [[section, name, *values] for section, name, values in comparison.rows]
    widths = [max(len(row[i]) for row in [header, ids, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, ids, *body]]
    lines.insert(2, "  ".join("-" * width for width in widths))
    if not comparison.rows:
        lines.append("(no differences)")
    return "\n".join(lines)
