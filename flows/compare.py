"""`pretrainflow compare RUN_ID...`: pipeline runs side by side, as MLflow's compare view lines them up.

Param and metric names are the same in every run (the flattened config, each stage's statistics), so
runs line up by name: the params that differ between the runs, then every metric of the pipeline run
and of each nested stage run, matched by stage name, and the artifact each stage read or built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tasks.stages import STAGES
from tasks.tracking import RunRecord, Tracker

MISSING = "-"


@dataclass(frozen=True)
class Comparison:
    """Rows of the table: (section, name, one value per run)."""

    run_ids: list[str]
    rows: list[tuple[str, str, list[str]]]


def compare_runs(tracker: Tracker, run_ids: Sequence[str]) -> Comparison:
    """Params that differ, then metrics and artifact ids per scope (the runs, then their stages by name)."""
    runs = [tracker.read_run(run_id) for run_id in run_ids]
    stages = [{child.name: child for child in tracker.nested_runs(run.run_id)} for run in runs]
    rows: list[tuple[str, str, list[str]]] = []
    for name in sorted(set().union(*(run.params for run in runs))):
        values = [run.params.get(name, MISSING) for run in runs]
        if len(set(values)) > 1:
            rows.append(("params", name, values))
    rows += _metric_rows(runs[0].name or "run", runs)
    stage_names = [s for s in STAGES if any(s in by_name for by_name in stages)]
    stage_names += sorted({n for by_name in stages for n in by_name} - set(stage_names))  # stages added later
    for stage in stage_names:
        scoped = [by_name.get(stage) for by_name in stages]
        rows.append((stage, "artifact_id", [r.tags.get("artifact_id", MISSING) if r else MISSING for r in scoped]))
        rows.append((stage, "cache_hit", [r.tags.get("cache_hit", MISSING) if r else MISSING for r in scoped]))
        rows += _metric_rows(stage, scoped)
    return Comparison(list(run_ids), rows)


def _metric_rows(section: str, runs: Sequence[RunRecord | None]) -> list[tuple[str, str, list[str]]]:
    names = sorted(set().union(*(r.metrics for r in runs if r)))
    return [(section, name, [_number(r.metrics.get(name)) if r else MISSING for r in runs]) for name in names]


def _number(value: float | None) -> str:
    if value is None:
        return MISSING
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"


def format_table(comparison: Comparison) -> str:
    """Fixed-width text: one column per run (its id's first 8 characters), one row per name."""
    header = ["section", "name", *(run_id[:8] for run_id in comparison.run_ids)]
    body = [[section, name, *values] for section, name, values in comparison.rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
