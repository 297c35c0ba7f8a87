"""Planning a sweep: grid and named variants, validation of every variant up front, distinct and cached artifacts."""

from pathlib import Path

import pytest
import yaml

from tasks.artifacts import ArtifactStore
from tasks.errors import ConfigError
from tasks.stages import STAGES
from tasks.sweep.build_order import build_order, by_stage, remaining_builds
from tasks.sweep.plan import SweepPlan, parse_axes, parse_values, plan_sweep, read_sweep_yaml, validate_sweep
from tests.tasks.sweep.sweep_fixtures import base_config


def _sweep(tmp_path: Path, **fields) -> dict:
    return {"config": str(base_config(tmp_path)), **fields}


def _commit(store: ArtifactStore, stage: str, artifact_id: str) -> None:
    """A finished artifact as a stage leaves it: a file in the staging folder, then the manifest."""
    (store.staging_dir(stage, artifact_id) / "part.txt").write_text(artifact_id)
    store.commit(stage, artifact_id, config={}, inputs={}, stats={}, version="test")


def test_command_line_axis_values_are_read_as_yaml_scalars():
    axes = parse_axes(["corpus.near_dedup.enabled=true,false", "instances.objective=nsp,sop,mlm",
                       "tokenize.vocab_size=16000, 30000", "evaluate.learning_rates=[1e-3],[0.001, 0.01]"])
    assert axes == {"corpus.near_dedup.enabled": [True, False], "instances.objective": ["nsp", "sop", "mlm"],
                    "tokenize.vocab_size": [16000, 30000], "evaluate.learning_rates": [["1e-3"], [0.001, 0.01]]}
    assert parse_values("0,1,2") == [0, 1, 2]
    with pytest.raises(ConfigError) as caught:
        parse_axes(["instances.objective", "pretrain.seed=[1", "instances.objective=nsp"])
    message = str(caught.value)
    assert "2 problem(s)" in message
    assert "--axis 'instances.objective' is not of the form section.field=value1,value2" in message
    assert "--axis pretrain.seed: '[1' is not a comma-separated list of YAML values" in message


def test_the_grid_crosses_every_axis_with_every_seed(tmp_path):
    sweep = validate_sweep(_sweep(tmp_path, axes={"corpus.near_dedup.enabled": [True, False],
                                                  "instances.objective": ["nsp", "sop", "mlm"]}, seeds=[0, 1]))
    plan = plan_sweep(sweep)
    assert len(plan.variants) == 12
    by_name = {v.name: v for v in plan.variants}
    variant = by_name["near_dedup.enabled=false,objective=sop,seed=1"]
    assert variant.label == "near_dedup.enabled=false,objective=sop"
    assert variant.settings == {"near_dedup.enabled": "false", "objective": "sop"}
    assert (variant.config.corpus.near_dedup.enabled, variant.config.instances.objective) == (False, "sop")
    assert variant.config.pretrain.seed == 1 and variant.config.instances.seed == 12345  # the seed is pretrain's
    assert variant.config.pretrain.max_steps == 10  # the base config is kept
    assert plan.axes == {"near_dedup.enabled": ["true", "false"], "objective": ["nsp", "sop", "mlm"]}
    # seeds share the data artifacts: one corpus per dedup setting, one instances per (dedup, objective)
    assert {stage: len(ids) for stage, ids in plan.artifacts.items()} == {
        "corpus": 2, "tokenize": 2, "instances": 6, "pretrain": 12, "evaluate": 12}
    assert plan.summary() == ("12 variants (6 settings x 2 seeds): 2 corpus, 2 tokenize, 6 instances, 12 pretrain, "
                              "12 evaluate artifacts; 0 cached")


def test_axes_on_instances_share_the_corpus_and_tokenizer(tmp_path):
    plan = plan_sweep(validate_sweep(_sweep(tmp_path, axes={"instances.masking": ["static", "dynamic"],
                                                            "instances.whole_word_mask": [True, False]})))
    assert [len(plan.artifacts[s]) for s in STAGES] == [1, 1, 4, 4, 4]
    assert [v.name for v in plan.variants] == [
        "masking=static,whole_word_mask=true", "masking=static,whole_word_mask=false",
        "masking=dynamic,whole_word_mask=true", "masking=dynamic,whole_word_mask=false"]
    assert {v.seed for v in plan.variants} == {None}


def test_an_axis_of_mappings_sets_the_fields_each_names(tmp_path):
    plan = plan_sweep(validate_sweep(_sweep(tmp_path, axes={
        "corpus.near_dedup": [{"enabled": False}, {"ngram": 3, "num_bands": 7}]})))
    off, coarse = plan.variants
    assert off.name == "near_dedup={enabled: false}" and not off.config.corpus.near_dedup.enabled
    assert off.config.corpus.near_dedup.ngram == 5  # the default the mapping did not name
    assert coarse.overrides == ("corpus.near_dedup.ngram=3", "corpus.near_dedup.num_bands=7")
    assert coarse.config.corpus.near_dedup.enabled and coarse.config.corpus.near_dedup.num_bands == 7


def test_seeds_can_redraw_the_instances_too(tmp_path):
    plan = plan_sweep(validate_sweep(_sweep(tmp_path, seeds=[3, 4], seed_fields=["pretrain.seed", "instances.seed"])))
    assert [v.name for v in plan.variants] == ["seed=3", "seed=4"]
    assert [v.config.instances.seed for v in plan.variants] == [3, 4]
    assert [len(plan.artifacts[s]) for s in STAGES] == [1, 1, 2, 2, 2]


def test_named_variants_from_a_sweep_file(tmp_path):
    base = base_config(tmp_path)
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "dedup-and-masking",
        "config": str(base),
        "overrides": ["pretrain.max_steps=20"],
        "variants": [
            {"name": "baseline"},
            {"name": "no-near-dedup", "overrides": {"corpus.near_dedup.enabled": False}},
            # a mapping sets the fields it names and keeps the base's others
            {"name": "wide-bands", "overrides": {"corpus": {"near_dedup": {"num_bands": 20}}, "pretrain.size": "mini"}},
        ],
        "seeds": [0, 1],
        "max_parallel": 2,
    }))
    sweep = validate_sweep(read_sweep_yaml(sweep_file), str(sweep_file))
    plan = plan_sweep(sweep)
    assert [v.name for v in plan.variants][:3] == ["variant=baseline,seed=0", "variant=baseline,seed=1",
                                                   "variant=no-near-dedup,seed=0"]
    wide = next(v for v in plan.variants if v.name == "variant=wide-bands,seed=1")
    assert wide.config.corpus.near_dedup.num_bands == 20 and wide.config.corpus.near_dedup.enabled
    assert wide.config.corpus.min_words == 5  # the rest of the base corpus section is kept
    assert wide.config.pretrain.hidden_size == 256  # pretrain.size fills the shape, as --set does
    assert all(v.config.pretrain.max_steps == 20 for v in plan.variants)
    assert wide.overrides == ("pretrain.max_steps=20", "corpus.near_dedup.num_bands=20", "pretrain.size=mini",
                              "pretrain.seed=1")
    assert plan.axes == {"variant": ["baseline", "no-near-dedup", "wide-bands"]}
    assert [len(plan.artifacts[s]) for s in STAGES] == [3, 3, 3, 6, 6]
    assert sweep.max_parallel == 2


def test_every_bad_variant_is_reported_at_once_before_anything_runs(tmp_path):
    sweep = validate_sweep(_sweep(tmp_path, axes={"instances.objective": ["nsp", "nsp-sop"],
                                                  "pretrain.max_steps": [1, 10],
                                                  "tokenize.vocab_sise": [100]}, seeds=[0, 1]))
    with pytest.raises(ConfigError) as caught:
        plan_sweep(sweep)
    problems = caught.value.problems
    assert str(caught.value).startswith("3 problem(s) in config sweep of ")  # each problem once, with its variants
    assert problems[0].startswith("tokenize.vocab_sise: unknown field (did you mean 'vocab_size'?); valid fields here: "
                                  "alphabet_min_frequency, batch_size") and problems[0].endswith("[every variant]")
    assert problems[1] == ("pretrain: warmup_steps=2 exceeds max_steps=1; valid: 0 <= warmup_steps <= max_steps "
                           "[variants objective=nsp,max_steps=1,vocab_sise=100,seed=0; "
                           "objective=nsp,max_steps=1,vocab_sise=100,seed=1; "
                           "objective=nsp-sop,max_steps=1,vocab_sise=100,seed=0; and 1 more]")
    assert problems[2].startswith("instances.objective: Input should be 'nsp', 'sop' or 'mlm' (got 'nsp-sop') "
                                  "[variants objective=nsp-sop,max_steps=1,vocab_sise=100,seed=0; ")
    assert not (tmp_path / "data").exists()  # nothing ran


def test_the_sweep_itself_is_validated_as_a_whole(tmp_path):
    with pytest.raises(ConfigError) as caught:
        validate_sweep({"config": "tiny", "axes": {"data_root": ["a", "b"], "pretrain.batch_size": []},
                        "seeds": [1, 1], "max_paralel": 2})
    message = str(caught.value)
    assert "4 problem(s)" in message
    assert "axis 'data_root' is not a stage's field: give section.field with a section of corpus, tokenize" in message
    assert "axis pretrain.batch_size has no values" in message
    assert "seeds: seeds [1, 1] has duplicates" in message
    assert "max_paralel: unknown field (did you mean 'max_parallel'?)" in message
    with pytest.raises(ConfigError, match="give axes .* or named variants, not both"):
        validate_sweep({"axes": {"pretrain.seed": [1]}, "variants": [{"name": "a"}]})
    with pytest.raises(ConfigError, match=r"pretrain.seed is set by seeds \[0, 1\]"):
        validate_sweep({"axes": {"pretrain.seed": [1, 2]}, "seeds": [0, 1]})
    with pytest.raises(ConfigError, match=r"variant names \['a'\] repeat"):
        validate_sweep({"variants": [{"name": "a"}, {"name": "a", "overrides": {"pretrain.seed": 3}}]})


def test_variants_that_differ_in_nothing_an_artifact_id_holds_are_refused(tmp_path):
    sweep = validate_sweep(_sweep(tmp_path, axes={"pretrain.num_workers": [0, 2]}))
    with pytest.raises(ConfigError, match="variants num_workers=0; num_workers=2 build the same artifacts"):
        plan_sweep(sweep)


def test_cached_artifacts_are_counted_and_never_built_again(tmp_path):
    sweep = validate_sweep(_sweep(tmp_path, axes={"instances.objective": ["nsp", "sop"]}, seeds=[0, 1]))
    plan = plan_sweep(sweep)
    builds = build_order(plan)
    assert [(b.stage, len(b.variants)) for b in builds] == [
        ("corpus", 4), ("tokenize", 4), ("instances", 2), ("instances", 2),
        ("pretrain", 1), ("pretrain", 1), ("pretrain", 1), ("pretrain", 1),
        ("evaluate", 1), ("evaluate", 1), ("evaluate", 1), ("evaluate", 1)]
    assert len({(b.stage, b.artifact_id) for b in builds}) == len(builds)  # each distinct artifact once
    sop = next(b for b in builds if b.stage == "instances" and b.config.instances.objective == "sop")
    assert sop.variants == ("objective=sop,seed=0", "objective=sop,seed=1")

    # a sweep killed after the data stages and one pretraining: those are finished in the store
    store = ArtifactStore(plan.data_root)
    for build in builds[:5]:
        _commit(store, build.stage, build.artifact_id)
    store.staging_dir("pretrain", builds[5].artifact_id)  # a killed build: resumed by run_stage, not finished
    replanned = plan_sweep(sweep)
    assert replanned.summary().endswith("1 corpus, 1 tokenize, 2 instances, 4 pretrain, 4 evaluate artifacts; "
                                        "5 cached")
    assert replanned.cached["pretrain"] == {builds[4].artifact_id}
    left = remaining_builds(replanned, store)
    assert left == builds[5:]
    assert {stage: len(b) for stage, b in by_stage(left).items()} == {"pretrain": 3, "evaluate": 4}


def test_a_plan_is_the_same_every_time(tmp_path):
    sweep = validate_sweep(_sweep(tmp_path, axes={"tokenize.vocab_size": ["1000", 2000]}, seeds=[0]))
    first, second = plan_sweep(sweep), plan_sweep(sweep)
    assert isinstance(first, SweepPlan)
    assert [v.ids for v in first.variants] == [v.ids for v in second.variants]
    assert [v.name for v in first.variants] == ["vocab_size='1000',seed=0", "vocab_size=2000,seed=0"]
    assert first.variants[0].config.tokenize.vocab_size == 1000
