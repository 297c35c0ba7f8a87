"""The sweep's comparison: per variant its downstream scores over seeds, per axis the effect of each setting.

read_result reads one variant's figures from its evaluate, pretrain and instances artifacts; everything
else is a pure function of those figures. The score of a task is the pretrained model's test score on
the task's first metric, itself the mean over the evaluate stage's fine-tuning seeds; the sweep's seeds
are pretraining seeds, and the spread over them is the "seed noise" an effect is measured against.
"""

from __future__ import annotations

import io
import json
import math
import statistics
from dataclasses import dataclass

from tasks.artifacts import ArtifactStore
from tasks.sweep.plan import Variant

CONFIDENCE = 0.95


@dataclass(frozen=True)
class VariantResult:
    """One variant at one seed, as the report reads it from its artifacts."""

    name: str
    label: str  # the variant without its seed: the report row
    settings: dict[str, str]  # axis -> value as text
    seed: int | None
    metrics: dict[str, str]  # task -> its headline metric (the first it reports), e.g. accuracy
    scores: dict[str, float]  # task -> pretrained model's test score on that metric, mean over fine-tuning seeds
    scratch: dict[str, float]  # task -> the from-scratch twin's test score, same metric
    mlm_accuracy: float | None = None  # pretrain's validation MLM accuracy, 0..1
    tokens_seen: float | None = None  # non-padding tokens trained on
    train_seconds: float | None = None  # pretraining time (wall seconds, pauses excluded, summed over resumes)


def read_result(store: ArtifactStore, variant: Variant) -> VariantResult:
    """A finished variant's figures: results.json of its evaluate artifact, its pretrain and instances manifests.

    Tokens seen: the pretrain stage's `tokens_seen` statistic (non-padding tokens, every rank). A pretrain
    artifact from before it counted them gets steps x batch_size x the instances' mean train length instead.
    """
    results = json.loads((store.get("evaluate", variant.ids["evaluate"]).path / "results.json").read_text())
    metrics = {task: info["metrics"][0] for task, info in results["tasks"].items()}
    summary = results["summary"]
    pretrain = store.get("pretrain", variant.ids["pretrain"])
    stats = pretrain.stats
    tokens = stats.get("tokens_seen")
    if tokens is None and "steps" in stats:
        mean_length = store.get("instances", variant.ids["instances"]).stats.get("train_mean_length")
        batch_size = pretrain.manifest.get("config", {}).get("batch_size")
        tokens = stats["steps"] * batch_size * mean_length if mean_length and batch_size else None
    return VariantResult(
        variant.name, variant.label, dict(variant.settings), variant.seed, metrics,
        {task: summary[task]["pretrained"][f"{metric}_mean"] for task, metric in metrics.items()},
        {task: summary[task]["scratch"][f"{metric}_mean"] for task, metric in metrics.items()},
        stats.get("validation_mlm_accuracy"), tokens, stats.get("train_seconds"),
    )


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of n values (std 0 for one value)."""

    mean: float
    std: float
    n: int


def spread(values: list[float]) -> Spread | None:
    """Spread of the values, None for none."""
    if not values:
        return None
    return Spread(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


@dataclass(frozen=True)
class VariantRow:
    """A variant's seeds taken together: one row of the report's table."""

    label: str
    settings: dict[str, str]
    seeds: int
    scores: dict[str, Spread]  # task -> over seeds
    gains: dict[str, Spread]  # task -> score minus scratch, over seeds
    mlm_accuracy: Spread | None
    tokens_seen: Spread | None
    train_seconds: Spread | None


def variant_rows(results: list[VariantResult]) -> list[VariantRow]:
    """One row per variant label, in first-seen order, its figures over seeds."""
    groups: dict[str, list[VariantResult]] = {}
    for result in results:
        groups.setdefault(result.label, []).append(result)
    rows = []
    for label, runs in groups.items():
        tasks = list(runs[0].metrics)
        rows.append(VariantRow(
            label, runs[0].settings, len(runs),
            {t: spread([r.scores[t] for r in runs if t in r.scores]) for t in tasks},
            {t: spread([r.scores[t] - r.scratch[t] for r in runs if t in r.scores and t in r.scratch]) for t in tasks},
            spread([r.mlm_accuracy for r in runs if r.mlm_accuracy is not None]),
            spread([r.tokens_seen for r in runs if r.tokens_seen is not None]),
            spread([r.train_seconds for r in runs if r.train_seconds is not None]),
        ))
    return rows


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student t critical value: P(|T| < t) = confidence with df degrees of freedom (df >= 1).

    P(|T| < t) has a closed form for integer df (Abramowitz & Stegun 26.7.3-4); it is inverted by bisection,
    so no scipy is needed. t_quantile(1) = 12.706, t_quantile(4) = 2.776, t_quantile(30) = 2.042.
    """
    if df < 1:
        raise ValueError(f"df={df}: a t interval needs at least one degree of freedom")

    def mass(t: float) -> float:
        theta = math.atan(t / math.sqrt(df))
        cos2 = math.cos(theta) ** 2
        if df % 2:  # odd: (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2.4/3.5 cos^4 + ...)), df-1)/2 terms in all
            term, total = 1.0, 0.0
            for k in range(1, (df - 1) // 2 + 1):
                total += term
                term *= cos2 * (2 * k) / (2 * k + 1)
            return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
        term, total = 1.0, 0.0  # even: sin (1 + 1/2 cos^2 + 1.3/2.4 cos^4 + ...), df/2 terms
        for k in range(1, df // 2 + 1):
            total += term
            term *= cos2 * (2 * k - 1) / (2 * k)
        return math.sin(theta) * total

    low, high = 0.0, 1e4
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if mass(middle) < confidence else (low, middle)
    return (low + high) / 2


def seed_noise(results: list[VariantResult], task: str) -> tuple[float, int] | None:
    """The seed noise of a task's score: the standard deviation within a variant over its seeds, pooled over
    variants (sqrt of sum (n_i - 1) s_i^2 / sum (n_i - 1)), with its degrees of freedom; None with one seed."""
    rows = [row.scores.get(task) for row in variant_rows(results)]
    df = sum(s.n - 1 for s in rows if s)
    if df == 0:
        return None
    return math.sqrt(sum((s.n - 1) * s.std**2 for s in rows if s) / df), df


@dataclass(frozen=True)
class SettingEffect:
    """One value of one axis on one task, averaged over the other axes' cells and the seeds."""

    axis: str
    value: str
    task: str
    mean: float  # mean score of the runs with this value
    runs: int
    difference: float | None = None  # mean paired difference from the axis's first value; None for that value
    ci: tuple[float, float] | None = None  # 95% t interval of the difference; None with fewer than 2 pairs
    noise: float | None = None  # 95% half-width of a difference made of seed noise alone
    beyond_noise: bool | None = None  # |difference| > noise; None when the noise is unknown (one seed)


def axis_effects(results: list[VariantResult], axes: dict[str, list[str]]) -> list[SettingEffect]:
    """Per task, per axis, per value: its mean score and its difference from the axis's first value.

    Method. Each run with value v is paired with the run of the first value that has the same values of
    the other axes and the same seed; the difference is the mean of those paired differences d_i, and its
    95% interval is the t interval mean(d) +- t(n-1) sd(d) / sqrt(n), which holds both the seed noise and
    how the effect varies across the other axes. A difference is marked beyond the seed noise when it is
    larger than t(df) s sqrt(2 / n), the half-width a mean of n differences of two independent runs would
    have from seed noise alone (s: seed_noise, pooled within variants, df its degrees of freedom). Runs of
    one seed share its seed, so their noise is correlated when only the pretraining seed differs: the
    marking is then conservative.
    """
    effects = []
    tasks = list(results[0].metrics) if results else []
    for task in tasks:
        noise = seed_noise(results, task)
        for axis, values in axes.items():
            scored = [r for r in results if task in r.scores]
            reference = {_pair_key(r, axis): r.scores[task] for r in scored if r.settings.get(axis) == values[0]}
            for value in values:
                runs = [r for r in scored if r.settings.get(axis) == value]
                if not runs:
                    continue
                mean = statistics.fmean(r.scores[task] for r in runs)
                if value == values[0]:
                    effects.append(SettingEffect(axis, value, task, mean, len(runs)))
                    continue
                pairs = [r.scores[task] - reference[k] for r in runs if (k := _pair_key(r, axis)) in reference]
                effects.append(_effect(axis, value, task, mean, len(runs), pairs, noise))
    return effects


def _pair_key(result: VariantResult, axis: str) -> tuple:
    """What a run shares with its partner of another value of `axis`: the other axes' values and the seed."""
    return tuple(sorted((a, v) for a, v in result.settings.items() if a != axis)), result.seed


def _effect(axis: str, value: str, task: str, mean: float, runs: int, pairs: list[float],
            noise: tuple[float, int] | None) -> SettingEffect:
    if not pairs:
        return SettingEffect(axis, value, task, mean, runs)
    difference = statistics.fmean(pairs)
    ci = None
    if len(pairs) > 1:
        half = t_quantile(len(pairs) - 1) * statistics.stdev(pairs) / math.sqrt(len(pairs))
        ci = (difference - half, difference + half)
    noise_half = None if noise is None else t_quantile(noise[1]) * noise[0] * math.sqrt(2 / len(pairs))
    beyond = None if noise_half is None else abs(difference) > noise_half
    return SettingEffect(axis, value, task, mean, runs, difference, ci, noise_half, beyond)


def _spread_text(s: Spread | None, digits: int = 4, sign: bool = False) -> str:
    if s is None:
        return "—"
    mean = f"{s.mean:+.{digits}f}" if sign else f"{s.mean:.{digits}f}"
    return mean if s.n == 1 else f"{mean} ± {s.std:.{digits}f}"


def _tokens_text(s: Spread | None) -> str:
    if s is None:
        return "—"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if s.mean >= scale:
            return f"{s.mean / scale:.1f}{unit}"
    return f"{s.mean:.0f}"


def _seconds_text(s: Spread | None) -> str:
    if s is None:
        return "—"
    if s.mean >= 3600:
        return f"{s.mean / 3600:.1f} h"
    return f"{s.mean / 60:.1f} min" if s.mean >= 60 else f"{s.mean:.0f} s"


def render_report(results: list[VariantResult], axes: dict[str, list[str]], title: str = "Sweep") -> str:
    """Markdown: the per-variant table, then per task the effect of every axis's settings."""
    rows = variant_rows(results)
    tasks = list(results[0].metrics) if results else []
    metric = results[0].metrics if results else {}
    lines = [f"## {title}", "",
             "Per variant: the pretrained model's test score per task (mean ± std over seeds), its gain over the "
             "same model fine-tuned from scratch, pretraining's validation MLM accuracy, tokens seen (non-padding tokens "
             "trained on) and pretraining time.", ""]
    header = ["variant", "seeds", *(f"{t} {metric[t]}" for t in tasks), *(f"{t} gain" for t in tasks),
              "MLM accuracy", "tokens seen", "pretrain time"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.label, str(row.seeds), *(_spread_text(row.scores.get(t)) for t in tasks),
                 *(_spread_text(row.gains.get(t), sign=True) for t in tasks), _spread_text(row.mlm_accuracy),
                 _tokens_text(row.tokens_seen), _seconds_text(row.train_seconds)]
        lines.append("| " + " | ".join(cells) + " |")
    effects = axis_effects(results, axes)
    for task in tasks:
        noise = seed_noise(results, task)
        noise_text = (f"Seed noise: std {noise[0]:.4f} within variants ({noise[1]} degrees of freedom)" if noise
                      else "Seed noise unknown: one seed per variant, so no difference can be told from it")
        lines += ["", f"### Effects on {task} ({metric[task]})", "",
                  "Per axis, each setting's mean score over the other axes and seeds, and its difference from the "
                  "axis's first setting, paired by other-axis cell and seed, with a 95% t interval; **bold** = "
                  f"larger than seed noise alone would make it (the ± column). {noise_text}.", "",
                  "| axis | setting | runs | mean | difference | 95% interval | seed noise ± |",
                  "|---|---|---|---|---|---|---|"]
        for e in (e for e in effects if e.task == task):
            difference = "reference" if e.difference is None and e.value == axes[e.axis][0] else (
                "—" if e.difference is None else f"{e.difference:+.4f}")
            if e.beyond_noise:
                difference = f"**{difference}**"
            interval = "—" if e.ci is None else f"[{e.ci[0]:+.4f}, {e.ci[1]:+.4f}]"
            noise_half = "—" if e.noise is None else f"{e.noise:.4f}"
            cells = [e.axis, e.value, str(e.runs), f"{e.mean:.4f}", difference, interval, noise_half]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_report(results: list[VariantResult], axes: dict[str, list[str]]) -> bytes | None:
    """A PNG: one panel per task and axis, each setting's difference from the first with its 95% interval,
    the band of seed noise shaded; None when no axis has two settings."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    effects = axis_effects(results, axes)
    panels = [(task, axis) for task in (results[0].metrics if results else {}) for axis, values in axes.items()
              if len(values) > 1]
    if not panels:
        return None
    figure, grid = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 0.8, 3.4), squeeze=False)
    for panel, (task, axis) in zip(grid[0], panels):
        shown = [e for e in effects if e.task == task and e.axis == axis]
        differences = [e.difference or 0.0 for e in shown]
        errors = [[d - e.ci[0] if e.ci else 0.0 for d, e in zip(differences, shown)],
                  [e.ci[1] - d if e.ci else 0.0 for d, e in zip(differences, shown)]]
        colours = ["tab:orange" if e.beyond_noise else "tab:blue" for e in shown]
        panel.bar(range(len(shown)), differences, yerr=errors, capsize=3, color=colours)
        noise = max((e.noise for e in shown if e.noise is not None), default=None)
        if noise is not None:
            panel.axhspan(-noise, noise, color="grey", alpha=0.2, label="seed noise (95%)")
            panel.legend(fontsize="x-small")
        panel.axhline(0.0, color="black", linewidth=0.8)
        panel.set_xticks(range(len(shown)))
        panel.set_xticklabels([e.value for e in shown], rotation=20, fontsize="small")
        panel.set_title(f"{axis}\n{task}", fontsize="small")
    grid[0][0].set_ylabel("difference in test score\nfrom the first setting")
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100)
    plt.close(figure)
    return png.getvalue()
