from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from tasks.clean.steps import Document
from tasks.corpus.local_files import HtmlPage
from tasks.corpus.work_shards import INPUT_SCHEMA, input_path, split_sources

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
