import json
import shutil

import pytest

from tasks.artifacts import MANIFEST, ArtifactError, ArtifactStore, artifact_id, remove_tree


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


# A remote data root, on fsspec's in-process memory filesystem (a real fsspec implementation, not a mock):
# the same code path an s3:// or gs:// root takes.


def _remote_store(tmp_path, name: str, cache: str = "cache") -> ArtifactStore:
    return ArtifactStore(f"memory://pretrainflow-tests/{name}", cache_dir=tmp_path / cache)


def _commit_one(store: ArtifactStore, stage: str = "corpus", id: str = "r1"):
    staging = store.staging_dir(stage, id)
    (staging / "sub").mkdir()
    (staging / "sub" / "documents-00000.parquet").write_bytes(b"rows")
    return store.commit(stage, id, config={}, inputs={}, stats={"documents": 1}, version="1")


def test_remote_root_uploads_manifest_last_and_fetches_verified_copies(tmp_path):
    writer = _remote_store(tmp_path, "a", "writer-cache")
    _commit_one(writer)
    fs = writer.fs
    assert fs.exists("/pretrainflow-tests/a/corpus/r1/manifest.json")
    assert fs.cat_file("/pretrainflow-tests/a/corpus/r1/sub/documents-00000.parquet") == b"rows"

    reader = _remote_store(tmp_path, "a", "reader-cache")  # another machine: an empty cache
    assert reader.exists("corpus", "r1") and [a.id for a in reader.list()] == ["r1"]
    assert not (reader.path("corpus", "r1")).exists()
    local = reader.fetch("corpus", "r1")
    assert (local / "sub" / "documents-00000.parquet").read_bytes() == b"rows"
    assert (local / MANIFEST).is_file() and reader.verify("corpus", "r1") == []

    fs.pipe_file("/pretrainflow-tests/a/corpus/r1/sub/documents-00000.parquet", b"tampered")
    assert reader.verify("corpus", "r1") == ["sub/documents-00000.parquet: checksum differs from manifest"]
    with pytest.raises(ArtifactError, match="checksum differs from its manifest"):
        _remote_store(tmp_path, "a", "third-cache").fetch("corpus", "r1")


def test_remote_upload_cut_short_is_finished_not_rebuilt(tmp_path):
    store = _remote_store(tmp_path, "b")
    _commit_one(store)
    store.fs.rm("/pretrainflow-tests/b/corpus/r1/manifest.json")  # the crash came before the manifest went up
    assert not store.exists("corpus", "r1")
    assert store.finish_upload("corpus", "r1")
    assert store.exists("corpus", "r1") and store.verify("corpus", "r1") == []
    assert not store.finish_upload("corpus", "r1")  # nothing left to do


def test_remove_tree_killed_midway_leaves_no_finished_looking_part(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    for name in ("split.json", "cleaned-00000.arrow", "cleaned-00001.arrow"):
        (work / name).write_text(name)
    real_rmtree = shutil.rmtree

    def killed(path, *args, **kwargs):  # dies after deleting one file, as a SIGKILL could
        next(p for p in sorted(path.iterdir()) if p.name.startswith("cleaned")).unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        remove_tree(work)
    assert not work.exists()  # the marker never sits beside missing files under the name a rerun reads
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    work.mkdir()  # the rerun's own work folder, deleted at its end with what the kill left
    remove_tree(work)
    assert list(tmp_path.iterdir()) == []
