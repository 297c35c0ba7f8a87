import json

import pytest

from tasks.artifacts import MANIFEST, ArtifactError, ArtifactStore, artifact_id


def test_artifact_id_depends_on_config_inputs_and_version():
    base = artifact_id("tokenize", {"vocab_size": 100}, {"corpus": "abc"}, "1")
    assert base == artifact_id("tokenize", {"vocab_size": 100}, {"corpus": "abc"}, "1")
    assert base != artifact_id("tokenize", {"vocab_size": 101}, {"corpus": "abc"}, "1")
    assert base != artifact_id("tokenize", {"vocab_size": 100}, {"corpus": "abd"}, "1")
    assert base != artifact_id("tokenize", {"vocab_size": 100}, {"corpus": "abc"}, "2")


def test_commit_writes_manifest_last_and_renames_into_place(tmp_path):
    store = ArtifactStore(tmp_path)
    staging = store.staging_dir("corpus", "x1")
    (staging / "documents-00000.parquet").write_bytes(b"data")
    (staging / "half-written.tmp").write_bytes(b"junk")
    assert not store.exists("corpus", "x1")

    artifact = store.commit("corpus", "x1", config={"a": 1}, inputs={}, stats={"documents": 3}, version="1")

    assert store.exists("corpus", "x1") and not staging.exists()
    manifest = json.loads((artifact.path / MANIFEST).read_text())
    assert manifest["stats"] == {"documents": 3}
    assert list(manifest["files"]) == ["documents-00000.parquet"]
    assert not (artifact.path / "half-written.tmp").exists()
    assert store.verify("corpus", "x1") == []


def test_verify_reports_corrupt_and_missing_files(tmp_path):
    store = ArtifactStore(tmp_path)
    staging = store.staging_dir("corpus", "x1")
    (staging / "a.bin").write_bytes(b"aaaa")
    (staging / "b.bin").write_bytes(b"bbbb")
    artifact = store.commit("corpus", "x1", config={}, inputs={}, stats={}, version="1")
    (artifact.path / "a.bin").write_bytes(b"tampered")
    (artifact.path / "b.bin").unlink()
    assert sorted(store.verify("corpus", "x1")) == ["a.bin: checksum differs from manifest", "b.bin: missing"]


def test_folder_without_manifest_is_not_an_artifact(tmp_path):
    store = ArtifactStore(tmp_path)
    (tmp_path / "corpus" / "x1").mkdir(parents=True)
    assert not store.exists("corpus", "x1")
    assert store.list() == []
    with pytest.raises(ArtifactError, match="no finished corpus artifact x1"):
        store.get("corpus", "x1")


def test_lineage_follows_inputs(tmp_path):
    store = ArtifactStore(tmp_path)
    for stage, id, inputs in [("corpus", "c", {}), ("tokenize", "t", {"corpus": "c"}), ("instances", "i", {"tokenize": "t"})]:
        store.staging_dir(stage, id)
        store.commit(stage, id, config={}, inputs=inputs, stats={}, version="1")
    assert [(a.stage, a.id) for a in store.lineage("instances", "i")] == [
        ("instances", "i"), ("tokenize", "t"), ("corpus", "c")]
    assert {a.stage for a in store.list()} == {"corpus", "tokenize", "instances"}
