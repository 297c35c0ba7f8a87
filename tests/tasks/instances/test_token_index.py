import json
import random

import numpy as np
import pytest

from tasks.instances.generate import build_instances
from tasks.instances.masking import masking_vocabulary
from tasks.instances.token_index import ARRAY_FILES, LAYOUT, build_split_index
from tests.tasks.instances.test_generate import (
    CONFIG,
    random_documents,
    shard_bytes,
    tokenizer_dir,  # noqa: F401 (the fixture, shared)
    write_tokens,
)
from tests.tasks.piece_fixtures import Stopped, flip_bytes, stop_after, warnings_of


@pytest.fixture(scope="module")
def tokens_dir(tokenizer_dir, tmp_path_factory):  # noqa: F811 (a fixture)
    rng = random.Random(5)
    splits = {"train": [random_documents(rng, 30), random_documents(rng, 30)],
              "validation": [random_documents(rng, 10)]}
    return write_tokens(tmp_path_factory.mktemp("corpus") / "tokens", tokenizer_dir, splits, rows_per_batch=8)


def _index_files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("name", ARRAY_FILES)
def test_a_damaged_array_file_rebuilds_the_index(tokens_dir, tokenizer_dir, tmp_path, caplog, name):  # noqa: F811 (a fixture)
    is_continuation = masking_vocabulary(tokenizer_dir).is_continuation
    built = build_split_index(tokens_dir, "train", tmp_path / "index", is_continuation)
    folder = tmp_path / "index" / "train"
    clean = _index_files(folder)
    assert json.loads(clean[LAYOUT])["pieces"].keys() == set(ARRAY_FILES)
    del built
    flip_bytes(folder / name)

    arrays = build_split_index(tokens_dir, "train", tmp_path / "index", is_continuation)
    [warning] = warnings_of(caplog)
    assert str(folder / name) in warning and "checksum differs from the one recorded" in warning
    assert "rebuilding the token index" in warning
    assert _index_files(folder) == clean
    assert np.asarray(arrays.sentence_offsets)[-1] == len(arrays.ids)


def test_an_unreadable_layout_rebuilds_the_index(tokens_dir, tokenizer_dir, tmp_path, caplog):  # noqa: F811 (a fixture)
    is_continuation = masking_vocabulary(tokenizer_dir).is_continuation
    build_split_index(tokens_dir, "train", tmp_path / "index", is_continuation)
    folder = tmp_path / "index" / "train"
    clean = _index_files(folder)
    (folder / LAYOUT).write_text('{"tokens": 1')

    build_split_index(tokens_dir, "train", tmp_path / "index", is_continuation)
    [warning] = warnings_of(caplog)
    assert str(folder / LAYOUT) in warning and "cannot be read" in warning
    assert _index_files(folder) == clean


def test_an_index_with_no_record_is_used_unverified(tokens_dir, tokenizer_dir, tmp_path, caplog):  # noqa: F811 (a fixture)
    is_continuation = masking_vocabulary(tokenizer_dir).is_continuation
    build_split_index(tokens_dir, "train", tmp_path / "index", is_continuation)
    layout_path = tmp_path / "index" / "train" / LAYOUT
    layout = json.loads(layout_path.read_text())
    del layout["pieces"]  # as written by older code
    layout_path.write_text(json.dumps(layout))
    ids_written = (tmp_path / "index" / "train" / "ids.bin").stat().st_mtime_ns

    build_split_index(tokens_dir, "train", tmp_path / "index", is_continuation)
    assert warnings_of(caplog) == []
    assert (tmp_path / "index" / "train" / "ids.bin").stat().st_mtime_ns == ids_written


def test_instances_from_a_damaged_index_equal_a_clean_run(tokens_dir, tmp_path, caplog):
    clean = build_instances(CONFIG, tokens_dir, tmp_path / "clean")
    out = tmp_path / "out"
    with pytest.raises(Stopped):  # killed with the train index built, before any instance
        build_instances(CONFIG, tokens_dir, out, run_step=stop_after("index train tokens"))
    damaged = out / "_token_index" / "train" / "ids.bin"
    flip_bytes(damaged, count=64)

    assert build_instances(CONFIG, tokens_dir, out) == clean
    [warning] = warnings_of(caplog)
    assert str(damaged) in warning
    assert shard_bytes(out) == shard_bytes(tmp_path / "clean")
    assert {p.relative_to(out) for p in out.rglob("*")} == \
           {p.relative_to(tmp_path / "clean") for p in (tmp_path / "clean").rglob("*")}
