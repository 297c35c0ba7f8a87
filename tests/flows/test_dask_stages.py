"""The corpus and tokenize stage flows on a 2-worker Dask LocalCluster write byte-identical artifacts
to the same stages run in one process: where shards run never changes what a stage writes."""

from __future__ import annotations

import pytest

from tasks.artifacts import ArtifactStore
from tasks.config import load_config
from tasks.crawl.local_site import PYTHON_DOCS
from tasks.parallel import serial_map
from tasks.stages import run_stage

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (PYTHON_DOCS / "index.html").is_file(), reason="needs python3.11-doc (make python-docs)"),
]


def config_for(root, *parallel):
    # local files, not the crawl: a crawl stamps fetch times into its WARC and rows; file mtimes are stable
    return load_config("tiny", [
        f"data_root={root / 'data'}", f"tracking.tracking_uri=sqlite:///{root / 'mlflow.db'}",
        "corpus.crawl.local_site=null", f"corpus.local_files=['{PYTHON_DOCS}/library/c*.html']",
        "corpus.documents_per_shard=8", "tokenize.documents_per_shard=4", *parallel,
    ])


def test_corpus_and_tokenize_on_dask_match_the_single_process_run_byte_for_byte(prefect_harness, tmp_path):
    from flows.corpus import corpus_flow
    from flows.tokens import tokenize_flow

    # WordPiece training itself is not byte-reproducible across processes (tasks/tokens/tokenizer.py,
    # huggingface/tokenizers#1794), so both runs tokenize with one tokenizer trained here first
    training = config_for(tmp_path / "serial", "parallel.workers=1")
    run_stage("corpus", training)
    trained = run_stage("tokenize", training)
    tokenizer = f"tokenize.tokenizer_path={trained.path / 'tokenizer'}"
    serial = config_for(tmp_path / "serial", "parallel.workers=1", tokenizer)
    on_dask = config_for(tmp_path / "dask", "parallel.workers=2", "parallel.dask_address=local", tokenizer)

    expected = {name: run_stage(name, serial, map_shards=serial_map) for name in ("corpus", "tokenize")}
    got = {"corpus": corpus_flow(on_dask), "tokenize": tokenize_flow(on_dask)}

    for name, want in expected.items():
        assert not got[name]["cache_hit"]
        assert got[name]["artifact_id"] == want.artifact_id  # parallel is not part of any id
        built = ArtifactStore(on_dask.data_root).get(name, got[name]["artifact_id"])
        reference = ArtifactStore(serial.data_root).get(name, want.artifact_id)
        assert len(reference.manifest["files"]) > 1, name
        assert built.manifest["files"] == reference.manifest["files"], f"{name}: files differ"  # sha256 per file
        assert built.stats == reference.stats, name
    assert got["corpus"]["stats"]["documents"] > 8  # more than one documents shard
