"""What a run reports about itself: a stage's headline statistics, one line per stage run, a pipeline's table.

The same words go to the Prefect run (a log line per stage, the pipeline's markdown artifact) and to the
terminal, so a run reads alike wherever it is looked at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

# Statistics that say what a stage produced, as glob patterns over its statistic names, in display order.
HEADLINE = {
    "corpus": ("documents", "words", "documents_in", "pages_fetched"),
    "tokenize": ("tokens", "vocab_size", "unk_rate"),
    "instances": ("train_instances", "validation_instances"),
    "pretrain": ("steps", "train_loss", "validation_mlm_loss", "validation_mlm_accuracy", "validation_perplexity"),
    "evaluate": ("*_pretrained_test_*", "*_pretrained_gain_*", "pretrained_mlm_accuracy"),
}
_HEADLINE_MAX = 6


@dataclass(frozen=True)
class StageOutcome:
    """One stage run as the summaries show it."""

    stage: str
    artifact_id: str
    cache_hit: bool
    seconds: float  # wall time of the stage run, cache check and tracking included
    stats: Mapping[str, Any]
    mlflow_run_id: str | None = None
    mlflow_url: str | None = None  # the run's page in the MLflow UI, when there is one


def run_name(kind: str, artifact_id: str, config_name: str | None = None, cached: bool = False) -> str:
    """What a run is called in Prefect and MLflow alike: `corpus-<artifact id>`, with ` (cached)` when the stage
    found its artifact built; `pipeline-<config name>-<first 8 of the evaluate id>` for a pipeline."""
    if kind == "pipeline":
        name = "-".join(part for part in ("pipeline", config_name, artifact_id[:8]) if part)
    else:
        name = f"{kind}-{artifact_id}"
    return name + (" (cached)" if cached else "")


def headline(stage: str, stats: Mapping[str, Any], limit: int | None = _HEADLINE_MAX) -> dict[str, Any]:
    """The statistics of HEADLINE[stage] present in stats (no _std spreads), in pattern order, at most `limit`."""
    chosen: dict[str, Any] = {}
    for pattern in HEADLINE.get(stage, ()):
        for name in sorted(stats):
            if fnmatchcase(name, pattern) and not name.endswith("_std") and name not in chosen:
                chosen[name] = stats[name]
    return dict(list(chosen.items())[:limit])


def pipeline_metrics(outcomes: Sequence[StageOutcome]) -> dict[str, float]:
    """A pipeline run's own metrics: each stage's headline statistics and duration, as `<stage>.<name>`."""
    metrics: dict[str, float] = {}
    for o in outcomes:
        metrics.update({f"{o.stage}.{k}": float(v) for k, v in headline(o.stage, o.stats, limit=None).items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
        metrics[f"{o.stage}.seconds"] = o.seconds
    return metrics


def format_value(value: Any) -> str:
    """12,345 for counts, 4 significant digits for fractions and losses."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.4g}"


def format_seconds(seconds: float) -> str:
    """'0.4 s', '42 s', '3 min 05 s', '1 h 02 min'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def stage_line(outcome: StageOutcome) -> str:
    """'corpus: built 1a2b... in 2 min 05 s (documents 442, words 1,221,666); MLflow run URL'."""
    what = "cached" if outcome.cache_hit else "built"
    stats = ", ".join(f"{k} {format_value(v)}" for k, v in headline(outcome.stage, outcome.stats).items())
    line = f"{outcome.stage}: {what} {outcome.artifact_id} in {format_seconds(outcome.seconds)}"
    line += f" ({stats})" if stats else ""
    if outcome.mlflow_url or outcome.mlflow_run_id:
        line += f"; MLflow run {outcome.mlflow_url or outcome.mlflow_run_id}"
    return line


def _run_link(run_id: str | None, url: str | None) -> str:
    return f"[{run_id[:8]}]({url})" if run_id and url else (run_id or "–")


def pipeline_markdown(title: str, outcomes: Sequence[StageOutcome], evaluation: str | None = None,
                      parent_run: tuple[str, str | None] | None = None) -> str:
    """The pipeline's summary: a row per stage (built or cached, artifact, duration, MLflow run, headline
    statistics), then the evaluation tables when there are some. parent_run: the MLflow (run id, url)."""
    rows = ["| stage | outcome | artifact | duration | MLflow run | headline |", "|---|---|---|---|---|---|"]
    for o in outcomes:
        stats = "; ".join(f"{k} {format_value(v)}" for k, v in headline(o.stage, o.stats).items()) or "–"
        rows.append(f"| {o.stage} | {'cached' if o.cache_hit else 'built'} | `{o.artifact_id}` | "
                    f"{format_seconds(o.seconds)} | {_run_link(o.mlflow_run_id, o.mlflow_url)} | {stats} |")
    total = sum(o.seconds for o in outcomes)
    built = sum(not o.cache_hit for o in outcomes)
    line = f"{built} of {len(outcomes)} stages built, {len(outcomes) - built} cached; {format_seconds(total)} in stages"
    if parent_run:
        line += f"; MLflow parent run {_run_link(*parent_run)}"
    parts = [f"# {title}", "", line + ".", "", *rows]
    if evaluation:
        parts += ["", evaluation.strip()]
    return "\n".join(parts) + "\n"


def evaluation_tables(results_md: str) -> str:
    """The evaluate stage's results.md up to its fill-mask examples: the fine-tuning and intrinsic tables."""
    kept = []
    for line in results_md.splitlines():
        if line.startswith("Fill-mask examples"):
            break
        kept.append(line)
    return "\n".join(kept).strip()
