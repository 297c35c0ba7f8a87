from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from tasks.clean.steps import Document
from tasks.corpus.local_files import HtmlPage
from tasks.corpus.work_shards import (
    INPUT_SCHEMA,
    damaged_input_shards,
    input_path,
    input_records,
    rewrite_input_shards,
    split_sources,
)
from tests.tasks.piece_fixtures import flip_bytes, warnings_of

WHEN = datetime(2024, 1, 2, tzinfo=UTC)


def test_split_writes_full_shards_in_order_with_text_or_html(tmp_path: Path) -> None:
    items = [Document(url=f"u{i}", source="local", title=None, text=f"text {i}", fetched_at=WHEN) for i in range(5)]
    items.insert(2, HtmlPage(url="page", source="crawl", body=b"<p>hi</p>", content_type="text/html", fetched_at=WHEN))
    assert split_sources(items, tmp_path, per_shard=4) == (2, 6)
    first, second = (pq.read_table(input_path(tmp_path, s)) for s in range(2))
    assert first.schema.equals(INPUT_SCHEMA) and (first.num_rows, second.num_rows) == (4, 2)
    rows = first.to_pylist() + second.to_pylist()
    assert [r["seq"] for r in rows] == list(range(6))
    assert rows[2]["html"] == b"<p>hi</p>" and rows[2]["text"] is None and rows[2]["source"] == "crawl"
    assert rows[3]["text"] == "text 2" and rows[3]["html"] is None
    assert not list(tmp_path.glob("*.tmp"))


def test_an_empty_split_still_has_one_shard(tmp_path: Path) -> None:
    assert split_sources([], tmp_path, per_shard=4) == (1, 0)
    assert pq.read_table(input_path(tmp_path, 0)).num_rows == 0


def test_a_damaged_input_shard_is_written_again_as_it_was_unless_the_sources_changed(tmp_path: Path, caplog) -> None:
    items = [Document(url=f"u{i}", source="local", title=None, text=f"text {i}", fetched_at=WHEN) for i in range(10)]
    shards, _ = split_sources(items, tmp_path, per_shard=4)
    split = {"shards": shards, "pieces": input_records(tmp_path, shards)}
    assert damaged_input_shards(tmp_path, split) == []
    before = input_path(tmp_path, 1).read_bytes()

    flip_bytes(input_path(tmp_path, 1))
    assert damaged_input_shards(tmp_path, split) == [1]
    [warning] = warnings_of(caplog)
    assert str(input_path(tmp_path, 1)) in warning and "checksum differs" in warning
    assert not input_path(tmp_path, 1).exists()
    assert rewrite_input_shards(items, tmp_path, 4, split, [1])
    assert input_path(tmp_path, 1).read_bytes() == before
    assert damaged_input_shards(tmp_path, split) == []

    input_path(tmp_path, 2).unlink()
    assert damaged_input_shards(tmp_path, split) == [2]
    changed = [*items[:8], Document(url="u8", source="local", title=None, text="edited", fetched_at=WHEN), items[9]]
    assert not rewrite_input_shards(changed, tmp_path, 4, split, [2])  # the split must be redone


def test_a_split_recorded_without_digests_is_used_unverified(tmp_path: Path) -> None:
    shards, _ = split_sources([], tmp_path, per_shard=4)
    flip_bytes(input_path(tmp_path, 0))
    assert damaged_input_shards(tmp_path, {"shards": shards}) == []
