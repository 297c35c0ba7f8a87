"""Refresh runs of the corpus stage: a new artifact per refresh, chained to its parent, followed downstream."""

from pathlib import Path

import pytest

from tasks.artifacts import ArtifactStore
from tasks.config import PipelineConfig
from tasks.stages import hashed_config, resolve_ids, run_stage

WORDS = "the quick brown fox jumps over the lazy dog while the river runs past old mills and green fields"


def _config(tmp_path: Path) -> PipelineConfig:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a", "b"):
        (docs / f"{name}.txt").write_text(f"{name} {WORDS} {name}.\n")
    return PipelineConfig(
        data_root=tmp_path / "data",
        corpus={"local_files": [str(docs / "*.txt")], "min_words": 5, "language": {"enabled": False},
                "quality": {f: {"enabled": False} for f in ("gopher_repetition", "gopher_quality", "c4", "fineweb")},
                "near_dedup": {"enabled": False}},
    )


def test_refresh_chains_snapshots_and_later_stages_follow_the_newest(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    store = ArtifactStore(cfg.data_root)
    first = run_stage("corpus", cfg, refresh=True)  # nothing to refresh yet: builds the first snapshot
    assert not first.cache_hit
    base = store.get("corpus", first.artifact_id)
    assert (base.manifest["family"], base.manifest["generation"]) == (first.artifact_id, 0)

    (tmp_path / "docs" / "c.txt").write_text(f"c {WORDS} c, and a new page.\n")
    second = run_stage("corpus", cfg, refresh=True)
    assert second.artifact_id != first.artifact_id
    refreshed = store.get("corpus", second.artifact_id)
    assert refreshed.manifest["parent"] == first.artifact_id
    assert refreshed.manifest["family"] == first.artifact_id and refreshed.manifest["generation"] == 1
    assert refreshed.inputs == {"corpus": first.artifact_id}  # lineage walks back to the parent
    assert [a.id for a in store.lineage("corpus", second.artifact_id)] == [second.artifact_id, first.artifact_id]
    assert second.stats["documents"] == 3

    # a plain run of the same config is now a cache hit on the refresh, and tokenize reads it
    ids = resolve_ids(cfg)
    assert ids["corpus"] == second.artifact_id
    assert run_stage("corpus", cfg).artifact_id == second.artifact_id
    assert run_stage("corpus", cfg).cache_hit

    third = run_stage("corpus", cfg, refresh=True)  # every refresh is a new generation
    assert store.get("corpus", third.artifact_id).manifest["generation"] == 2
    assert resolve_ids(cfg)["tokenize"] != ids["tokenize"]


def test_only_the_corpus_refreshes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"stage 'tokenize' cannot be refreshed; only \['corpus'\] can"):
        run_stage("tokenize", _config(tmp_path), refresh=True)


def test_stages_run_on_a_remote_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """corpus then tokenize with data_root on fsspec's memory filesystem: inputs fetched, outputs uploaded."""
    monkeypatch.setenv("PRETRAINFLOW_CACHE_DIR", str(tmp_path / "cache"))
    cfg = _config(tmp_path).model_copy(update={"data_root": "memory://pretrainflow-tests/stages"})
    cfg = cfg.model_copy(update={"tokenize": cfg.tokenize.model_copy(update={"vocab_size": 100, "min_frequency": 1})})
    corpus = run_stage("corpus", cfg)
    tokens = run_stage("tokenize", cfg)
    store = ArtifactStore(cfg.data_root)
    assert store.remote == "memory://pretrainflow-tests/stages"
    assert {(a.stage, a.id) for a in store.list()} == {("corpus", corpus.artifact_id), ("tokenize", tokens.artifact_id)}
    assert store.verify("tokenize", tokens.artifact_id) == []
    assert run_stage("tokenize", cfg).cache_hit


def test_a_crawl_refresh_revalidates_pages_and_records_what_changed(tmp_path: Path) -> None:
    """Two refresh runs of the corpus stage over a live 127.0.0.1 site that changes in between."""
    import json

    from tests.tasks.site_fixtures import make_site, serve_site

    site_root = make_site(tmp_path / "site")
    with serve_site(site_root) as site:
        cfg = PipelineConfig(
            data_root=tmp_path / "data",
            corpus={"crawl": {"seeds": [site.base_url], "allow_private_addresses": True, "delay_seconds": 0.0},
                    "min_words": 8, "language": {"languages": ["en", "fr"]},
                    "quality": {f: {"enabled": False} for f in ("gopher_repetition", "gopher_quality", "c4", "fineweb")}},
        )
        first = run_stage("corpus", cfg, refresh=True)
        a_html = (site_root / "a.html").read_text()
        (site_root / "a.html").write_text(a_html.replace("A second paragraph", "A rewritten second paragraph"))
        index = (site_root / "index.html").read_text()
        (site_root / "d.html").write_text(a_html.replace("Alpha", "Delta").replace("A second paragraph",
                                                                                    "Delta's own paragraph"))
        (site_root / "index.html").write_text(index.replace('<a href="b.html">', '<a href="d.html">d</a> <a href="b.html">'))
        (site_root / "broken.html").unlink()
        second = run_stage("corpus", cfg, refresh=True)

    stats = second.stats
    assert second.artifact_id != first.artifact_id
    assert stats["pages_new"] == 1  # d.html
    assert stats["pages_gone"] == 1  # broken.html
    assert stats["pages_not_modified"] >= 3  # b, dup, c, mojibake answered 304 and were reused
    changes = json.loads((ArtifactStore(cfg.data_root).path("corpus", second.artifact_id) / "changes.json").read_text())
    assert changes["parent"] == first.artifact_id
    assert [u.rsplit("/", 1)[1] for u in changes["added"]] == ["d.html"]
    assert [u.rsplit("/", 1)[1] for u in changes["changed"]] == ["", "a.html"]  # the site root (index) and a.html
    assert [u.rsplit("/", 1)[1] for u in changes["removed"]] == ["broken.html"]
    assert stats["documents_unchanged"] >= 3 and stats["documents_added"] == 3  # d, and the changed index and a


def test_a_built_stage_records_system_metrics_and_a_cached_one_does_not(tmp_path: Path) -> None:
    import time

    from tasks.tracking import Tracker

    cfg = PipelineConfig.model_validate(
        {**_config(tmp_path).model_dump(), "tracking": {"system_metrics_interval_s": 0.2}}
    )
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="test")

    def slow_corpus(*args):
        from tasks.stages import STAGES

        time.sleep(1.0)
        return STAGES["corpus"].work(*args)

    built = run_stage("corpus", cfg, tracker=tracker, execute=slow_corpus)
    assert "system/cpu_utilization_percentage" in tracker.read_run(built.mlflow_run_id).metrics
    cached = run_stage("corpus", cfg, tracker=tracker)
    assert cached.cache_hit
    assert not any(k.startswith("system/cpu") for k in tracker.read_run(cached.mlflow_run_id).metrics)
    for run in (built, cached):  # both runs carry the artifact's manifest
        assert "manifest.json" in [a.path for a in tracker.client.list_artifacts(run.mlflow_run_id)]


def test_a_given_tokenizer_or_compared_model_edited_in_place_changes_the_ids(tmp_path: Path) -> None:
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForPreTraining, BertTokenizerFast

    folder = tmp_path / "given-tokenizer"
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator([WORDS] * 5, vocab_size=60, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                                               "[MASK]"])
    BertTokenizerFast(vocab=wordpiece.get_vocab()).save_pretrained(folder)
    model = tmp_path / "other-model"
    small = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertForPreTraining(small).save_pretrained(model)
    plain = _config(tmp_path)
    cfg = plain.model_copy(update={
        "tokenize": plain.tokenize.model_copy(update={"tokenizer_path": folder}),
        "evaluate": plain.evaluate.model_copy(update={"compare_models": [model]}),
    })
    before = resolve_ids(cfg)
    assert resolve_ids(cfg) == before  # the same folders, the same ids
    assert before["corpus"] == resolve_ids(plain)["corpus"]  # configs without such folders keep their ids

    tokenizer = folder / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"[UNK]"', '"[OOV]"'))  # the same path, another tokenizer
    edited = resolve_ids(cfg)
    assert edited["corpus"] == before["corpus"]
    assert all(edited[stage] != before[stage] for stage in ("tokenize", "instances", "pretrain", "evaluate"))

    config = model / "config.json"
    config.write_text(config.read_text().replace('"hidden_act"', '"x": 1, "hidden_act"'))
    assert resolve_ids(cfg)["evaluate"] != edited["evaluate"] and resolve_ids(cfg)["pretrain"] == edited["pretrain"]


def test_fields_that_only_set_the_speed_leave_the_ids_alone(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    faster = cfg.model_copy(update={
        "pretrain": cfg.pretrain.model_copy(update={"num_workers": 4}),
        "corpus": cfg.corpus.model_copy(update={"extract": cfg.corpus.extract.model_copy(update={"workers": 2})}),
    })
    assert resolve_ids(faster) == resolve_ids(cfg)
    longer = cfg.model_copy(update={"pretrain": cfg.pretrain.model_copy(update={"max_steps": 7})})
    assert resolve_ids(longer)["pretrain"] != resolve_ids(cfg)["pretrain"]


def test_the_local_text_format_is_in_the_corpus_id_and_manifest(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    bert = cfg.model_copy(update={"corpus": cfg.corpus.model_copy(update={"local_text_format": "bert"})})
    assert resolve_ids(bert)["corpus"] != resolve_ids(cfg)["corpus"]
    built = run_stage("corpus", bert)
    manifest = ArtifactStore(cfg.data_root).get("corpus", built.artifact_id).manifest
    assert manifest["config"]["local_text_format"] == "bert" and built.stats["documents"] == 2


def test_settings_of_a_switched_off_filter_leave_the_ids_alone(tmp_path: Path) -> None:
    cfg = _config(tmp_path)  # every quality family off
    quality = cfg.corpus.quality
    tuned = quality.model_copy(update={"c4": quality.c4.model_copy(update={"min_sentences": 9})})
    retuned = cfg.model_copy(update={"corpus": cfg.corpus.model_copy(update={"quality": tuned})})
    assert resolve_ids(retuned) == resolve_ids(cfg)
    on = tuned.model_copy(update={"c4": tuned.c4.model_copy(update={"enabled": True})})
    enabled = cfg.model_copy(update={"corpus": cfg.corpus.model_copy(update={"quality": on})})
    assert resolve_ids(enabled)["corpus"] != resolve_ids(cfg)["corpus"]


def test_a_field_added_at_its_old_behaviour_leaves_existing_ids_alone(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert cfg.corpus.local_text_format == "file"
    assert "local_text_format" not in hashed_config(cfg, "corpus")  # ids from before the field existed hold
    lines = cfg.model_copy(update={"corpus": cfg.corpus.model_copy(update={"local_text_format": "lines"})})
    assert hashed_config(lines, "corpus")["local_text_format"] == "lines"
