"""The sweep report: figures per variant over seeds, effects per axis with intervals, seed-noise marking."""

import json
import math
import statistics

import pytest

from tasks.artifacts import ArtifactStore
from tasks.sweep.plan import plan_sweep, validate_sweep
from tasks.sweep.report import (
    VariantResult,
    axis_effects,
    plot_report,
    read_result,
    render_report,
    seed_noise,
    t_quantile,
    variant_rows,
)
from tests.tasks.sweep.sweep_fixtures import base_config

AXES = {"near_dedup.enabled": ["true", "false"], "objective": ["nsp", "sop"]}
# test accuracy per (near_dedup, objective) and seed: dedup off costs ~0.10 everywhere, sop adds ~0.002 (noise)
SCORES = {
    ("true", "nsp"): [0.60, 0.62, 0.61],
    ("true", "sop"): [0.61, 0.60, 0.63],
    ("false", "nsp"): [0.50, 0.52, 0.51],
    ("false", "sop"): [0.51, 0.53, 0.50],
}


def _results() -> list[VariantResult]:
    results = []
    for (dedup, objective), scores in SCORES.items():
        label = f"near_dedup.enabled={dedup},objective={objective}"
        for seed, score in enumerate(scores):
            results.append(VariantResult(
                f"{label},seed={seed}", label, {"near_dedup.enabled": dedup, "objective": objective}, seed,
                metrics={"url-section": "accuracy"}, scores={"url-section": score}, scratch={"url-section": 0.45},
                mlm_accuracy=0.12 + seed / 100, tokens_seen=5.7e6, train_seconds=540.0 + seed))
    return results


def test_t_quantiles_match_the_table():
    for df, expected in {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 9: 2.262, 30: 2.042, 120: 1.980}.items():
        assert t_quantile(df) == pytest.approx(expected, abs=1e-3)


def test_a_row_per_variant_with_its_seeds_mean_and_std():
    rows = variant_rows(_results())
    assert [r.label for r in rows] == [f"near_dedup.enabled={d},objective={o}" for d, o in SCORES]
    first = rows[0]
    assert first.seeds == 3
    assert first.scores["url-section"].mean == pytest.approx(0.61)
    assert first.scores["url-section"].std == pytest.approx(0.01)
    assert first.gains["url-section"].mean == pytest.approx(0.16)
    assert first.mlm_accuracy.mean == pytest.approx(0.13) and first.train_seconds.mean == pytest.approx(541.0)


def test_seed_noise_is_pooled_within_variants():
    noise, df = seed_noise(_results(), "url-section")
    variances = [statistics.variance(s) for s in SCORES.values()]
    assert df == 8  # 4 variants x (3 seeds - 1)
    assert noise == pytest.approx(math.sqrt(sum(2 * v for v in variances) / 8))


def test_effects_are_paired_differences_with_t_intervals_marked_against_seed_noise():
    effects = {(e.axis, e.value): e for e in axis_effects(_results(), AXES)}
    reference = effects["near_dedup.enabled", "true"]
    assert reference.difference is None and reference.mean == pytest.approx(statistics.fmean(
        SCORES["true", "nsp"] + SCORES["true", "sop"]))
    no_dedup = effects["near_dedup.enabled", "false"]
    pairs = [b - a for cell in ("nsp", "sop") for a, b in zip(SCORES["true", cell], SCORES["false", cell])]
    assert no_dedup.runs == 6 and no_dedup.difference == pytest.approx(statistics.fmean(pairs))
    half = 2.571 * statistics.stdev(pairs) / math.sqrt(6)  # t(5) = 2.571
    assert no_dedup.ci == pytest.approx((no_dedup.difference - half, no_dedup.difference + half), abs=1e-4)
    noise, df = seed_noise(_results(), "url-section")
    assert no_dedup.noise == pytest.approx(t_quantile(df) * noise * math.sqrt(2 / 6))
    assert no_dedup.beyond_noise is True  # -0.10 against a noise band of ~0.014
    sop = effects["objective", "sop"]
    assert abs(sop.difference) < sop.noise and sop.beyond_noise is False


def test_one_seed_gives_no_noise_and_marks_nothing():
    single = [r for r in _results() if r.seed == 0]
    assert seed_noise(single, "url-section") is None
    effect = next(e for e in axis_effects(single, AXES) if e.value == "false")
    assert effect.difference == pytest.approx(-0.10) and effect.beyond_noise is None and effect.noise is None
    assert "Seed noise unknown: one seed per variant" in render_report(single, AXES)


def test_the_markdown_report_and_the_chart():
    markdown = render_report(_results(), AXES, title="Sweep dedup-x-objective")
    lines = markdown.splitlines()
    assert lines[0] == "## Sweep dedup-x-objective"
    assert ("| near_dedup.enabled=true,objective=nsp | 3 | 0.6100 ± 0.0100 | +0.1600 ± 0.0100 | 0.1300 ± 0.0100 | "
            "5.7M | 9.0 min |") in lines
    assert sum(line.startswith("| near_dedup.enabled=") for line in lines) == 4
    assert "| near_dedup.enabled | true | 6 | 0.6117 | reference | — | — |" in lines
    dedup_off = next(line for line in lines if line.startswith("| near_dedup.enabled | false |"))
    assert "**-0.1000**" in dedup_off
    sop = next(line for line in lines if line.startswith("| objective | sop |"))
    assert "**" not in sop
    png = plot_report(_results(), AXES)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_report(_results(), {}) is None  # nothing varies: no chart


def test_a_variants_figures_are_read_from_its_artifacts(tmp_path):
    plan = plan_sweep(validate_sweep({"config": str(base_config(tmp_path)), "seeds": [7]}))
    variant = plan.variants[0]
    store = ArtifactStore(plan.data_root)

    def commit(stage: str, files: dict[str, str], stats: dict, config: dict | None = None) -> None:
        staging = store.staging_dir(stage, variant.ids[stage])
        for name, text in files.items():
            (staging / name).write_text(text)
        store.commit(stage, variant.ids[stage], config=config or {}, inputs={}, stats=stats, version="test")

    # as the evaluate stage writes results.json (tasks/evaluate/evaluation.py _report), trimmed to what is read
    results = {"tasks": {"url-section": {"metrics": ["accuracy", "macro_f1"]}},
               "summary": {"url-section": {
                   "pretrained": {"accuracy_mean": 0.6348, "accuracy_std": 0.01, "macro_f1_mean": 0.31},
                   "scratch": {"accuracy_mean": 0.4551, "accuracy_std": 0.0, "macro_f1_mean": 0.09}}}}
    commit("evaluate", {"results.json": json.dumps(results)}, {"runs": 4})
    commit("pretrain", {"log.txt": "trained"},
           {"steps": 500, "train_seconds": 543.5, "validation_mlm_accuracy": 0.1194}, config={"batch_size": 64})
    commit("instances", {"part.txt": "instances"}, {"train_mean_length": 114.3})
    result = read_result(store, variant)
    assert (result.name, result.label, result.seed, result.settings) == ("seed=7", "base", 7, {})
    assert result.metrics == {"url-section": "accuracy"}
    assert result.scores == {"url-section": 0.6348} and result.scratch == {"url-section": 0.4551}
    assert result.mlm_accuracy == 0.1194 and result.train_seconds == 543.5
    assert result.tokens_seen == pytest.approx(500 * 64 * 114.3)  # steps x batch x mean instance length
