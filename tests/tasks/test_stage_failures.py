"""A stage run that fails on bad input: one message naming the cause, nothing committed, no empty staging
folder, a failed build told apart from a resumable one, and the MLflow run saying why it failed."""

from pathlib import Path

import pytest

from tasks.artifacts import ArtifactStore
from tasks.config import PipelineConfig
from tasks.errors import InputError
from tasks.output_checks import unusable_output
from tasks.stages import run_stage
from tasks.tracking import FAILED_BECAUSE, Tracker

WORDS = "the quick brown fox jumps over the lazy dog while the river runs past old mills and green fields"


def _config(tmp_path: Path, pattern: str, **corpus) -> PipelineConfig:
    return PipelineConfig(
        data_root=tmp_path / "data",
        corpus={"local_files": [pattern], "min_words": 5, "language": {"enabled": False},
                "quality": {f: {"enabled": False} for f in ("gopher_repetition", "gopher_quality", "c4", "fineweb")},
                "near_dedup": {"enabled": False}, **corpus},
    )


def _nothing_left(store: ArtifactStore) -> None:
    assert store.list() == [] and store.unfinished() == []
    assert not [p for p in store.root.rglob(".staging-*")]


def test_a_binary_txt_source_fails_the_corpus_naming_the_file_and_leaves_nothing(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(f"a {WORDS}.\n")
    (docs / "b.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16)
    cfg = _config(tmp_path, str(docs / "*.txt"))
    with pytest.raises(InputError, match=rf"^{docs / 'b.txt'}: a PNG image, not a \.txt text file"):
        run_stage("corpus", cfg)
    _nothing_left(ArtifactStore(cfg.data_root))


def test_a_corpus_whose_documents_are_all_dropped_is_not_committed_and_says_which_step(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a", "b", "c"):
        (docs / f"{name}.txt").write_text(f"{name} {WORDS}.\n")
    cfg = _config(tmp_path, str(docs / "*.txt"), min_words=100)
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="failures")
    with pytest.raises(InputError) as refused:
        run_stage("corpus", cfg, tracker=tracker)
    message = str(refused.value)
    assert message.startswith("the corpus is empty: all 3 documents the sources gave were dropped (3 by too_few_words)")
    assert "local_files gave 3 documents" in message and "loosen corpus.min_words" in message
    _nothing_left(ArtifactStore(cfg.data_root))
    [run] = tracker.client.search_runs([tracker.experiment_id])
    assert run.info.status == "FAILED" and run.data.tags[FAILED_BECAUSE] == message


def test_a_build_that_failed_after_writing_is_listed_as_failed_and_a_rerun_resumes_it(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(f"a {WORDS}.\n")
    cfg = _config(tmp_path, str(docs / "*.txt"))
    store = ArtifactStore(cfg.data_root)

    def fails_after_writing(cfg, inputs, out, ctx):
        (out / "piece-0.parquet").write_bytes(b"a finished piece")
        raise InputError(f"{docs / 'a.txt'}: damaged")

    with pytest.raises(InputError):
        run_stage("corpus", cfg, execute=fails_after_writing)
    [unfinished] = store.unfinished()
    assert unfinished.failed == f"{docs / 'a.txt'}: damaged" and unfinished.bytes == len(b"a finished piece")

    def resumes(cfg, inputs, out, ctx):
        assert (out / "piece-0.parquet").read_bytes() == b"a finished piece"
        return {"documents": 1}

    result = run_stage("corpus", cfg, execute=resumes)
    assert store.unfinished() == [] and sorted(store.get("corpus", result.artifact_id).manifest["files"]) == [
        "piece-0.parquet"]


def test_a_bug_keeps_its_staging_folder_unmarked(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(f"a {WORDS}.\n")
    cfg = _config(tmp_path, str(docs / "*.txt"))

    def bug(cfg, inputs, out, ctx):
        (out / "piece-0.parquet").write_bytes(b"half")
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run_stage("corpus", cfg, execute=bug)
    [unfinished] = ArtifactStore(cfg.data_root).unfinished()
    assert unfinished.failed is None  # killed or crashed: resumable as it was


def test_degenerate_outputs_are_named_with_their_inputs() -> None:
    assert unusable_output("corpus", {"documents": 0, "documents_in": 0, "items_local_files": 0}, {}) == (
        "the corpus is empty: no source gave a document (local_files gave 0 documents); check that the sources "
        "hold text in a readable format (see `pretrainflow config` for what is read)")
    only_specials = unusable_output("tokenize", {"vocab_size": 5, "vocab_character_tokens": 0, "tokens": 9},
                                    {"corpus": "c0ffee"})
    assert only_specials.startswith("the tokenizer built from corpus c0ffee has only special tokens (5 in all)")
    assert unusable_output("tokenize", {"vocab_character_tokens": 40, "tokens": 0, "documents": 3},
                           {"corpus": "c0ffee"}).startswith("tokenizing corpus c0ffee gave 0 tokens from 3 documents")
    assert unusable_output("instances", {"instances": 0, "train_instances": 0}, {"tokenize": "beef"}).startswith(
        "generating instances from tokenize beef gave 0 training instances")
    assert unusable_output("corpus", {"documents": 1}, {}) is None
    assert unusable_output("pretrain", {}, {"instances": "x"}) is None


def _files(artifact_dir: Path) -> dict[str, str]:
    from tasks.artifacts import MANIFEST, file_sha256

    return {str(p.relative_to(artifact_dir)): file_sha256(p) for p in sorted(artifact_dir.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def _flip(path: Path, offset: int, count: int = 16) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_artifact_is_set_aside_and_rebuilt_never_used(tmp_path: Path, caplog) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a", "b", "c"):
        (docs / f"{name}.txt").write_text(f"{name} {WORDS}.\n")
    cfg = _config(tmp_path, str(docs / "*.txt"))
    store = ArtifactStore(cfg.data_root)
    built = run_stage("corpus", cfg)
    clean = _files(built.path)

    shard = next(built.path.glob("documents-*.parquet"))
    _flip(shard, shard.stat().st_size // 2)
    with caplog.at_level("WARNING", logger="tasks.stages"):
        again = run_stage("corpus", cfg)  # not a cache hit on damaged bytes: rebuilt, equal to the clean build
    assert not again.cache_hit and _files(again.path) == clean
    damaged = f"corpus: artifact {built.artifact_id} is damaged ({shard.name}: checksum differs from manifest)"
    assert damaged in caplog.text
    assert (store.root / "corpus" / f".damaged-{built.artifact_id}" / shard.name).is_file()  # kept to look at

    (again.path / "manifest.json").write_text('{"stage": "corpus", "fi')  # cut short
    assert not run_stage("corpus", cfg).cache_hit and _files(again.path) == clean

    _flip(shard, 100)
    with pytest.raises(InputError, match=rf"stage 'tokenize' reads corpus/{built.artifact_id}, which is damaged "
                                         rf"\({shard.name}: checksum differs from manifest\); it was set aside"):
        run_stage("tokenize", cfg)
    assert not store.exists("corpus", built.artifact_id) and store.list("tokenize") == []
