"""Corpus work shards: the layout of out_dir/work/ and the split of every source into input shards.

The split reads each source once, in a fixed order (crawled pages, local files, WARC/WET files, Hugging
Face datasets), and writes `work/input-NNNNN.parquet` of raw items: extracted text, or HTML bytes that
the cleaning shards extract. Memory holds one row group, never the corpus. Every file is written under
a temporary name and renamed when complete, and `work/split.json`, written last, marks the split done,
so a run killed at any point redoes an unfinished split and reuses a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.clean.steps import Document
from tasks.corpus.local_files import HtmlPage

WORK_DIR = "work"
SPLIT_MARKER = "split.json"
# one row per source item: text (already text) or html + content_type (to extract); seq = position in the split
INPUT_SCHEMA = pa.schema([
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("url", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("title", pa.string()),
    pa.field("fetched_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("text", pa.string()),
    pa.field("html", pa.binary()),
    pa.field("content_type", pa.string()),
])
_ROW_GROUP_BYTES = 8 << 20  # buffered item bytes before a row group is written: bounds the split's memory


def input_path(work: Path, shard: int) -> Path:
    """work/input-NNNNN.parquet."""
    return work / f"input-{shard:05d}.parquet"


def write_json_atomically(data: object, path: Path) -> None:
    """Write JSON to path via a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_split(work: Path, fingerprint: str) -> dict | None:
    """The finished split's record (shards, items, counts) if it was made for this fingerprint, else None."""
    marker = work / SPLIT_MARKER
    if not marker.exists():
        return None
    record = json.loads(marker.read_text())
    return record if record.get("fingerprint") == fingerprint else None


def reset_work(work: Path) -> None:
    """Remove a stale or unfinished work folder and create an empty one."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)


class _ShardWriter:
    """Writes input shards of `per_shard` rows each, in row groups, each shard renamed into place when full."""

    def __init__(self, work: Path, per_shard: int) -> None:
        self.work = work
        self.per_shard = per_shard
        self.shards = 0  # finished shards
        self.rows_in_shard = 0
        self.buffer: list[dict] = []
        self.buffer_bytes = 0
        self.writer: pq.ParquetWriter | None = None

    def add(self, row: dict, size: int) -> None:
        self.buffer.append(row)
        self.buffer_bytes += size
        self.rows_in_shard += 1
        if self.buffer_bytes >= _ROW_GROUP_BYTES:
            self._flush()
        if self.rows_in_shard == self.per_shard:
            self._close()

    def _flush(self) -> None:
        if self.writer is None:
            tmp = input_path(self.work, self.shards).with_suffix(".parquet.tmp")
            self.writer = pq.ParquetWriter(tmp, INPUT_SCHEMA, compression="zstd")
        if self.buffer:
            self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=INPUT_SCHEMA))
        self.buffer, self.buffer_bytes = [], 0

    def _close(self) -> None:
        self._flush()
        assert self.writer is not None
        self.writer.close()
        final = input_path(self.work, self.shards)
        os.replace(final.with_suffix(".parquet.tmp"), final)
        self.writer, self.rows_in_shard = None, 0
        self.shards += 1

    def finish(self) -> int:
        """Close the last shard; returns the number of shards (at least one, possibly empty)."""
        if self.rows_in_shard or self.shards == 0:
            self._close()
        return self.shards


def split_sources(items: Iterable[Document | HtmlPage], work: Path, per_shard: int) -> tuple[int, int]:
    """Write the items into work/input-NNNNN.parquet shards of per_shard rows; returns (shards, items)."""
    writer = _ShardWriter(work, per_shard)
    seq = 0
    for item in items:
        row = {"seq": seq, "url": item.url, "source": item.source, "fetched_at": item.fetched_at}
        if isinstance(item, HtmlPage):
            row.update(title=None, text=None, html=item.body, content_type=item.content_type)
            size = len(item.body)
        else:
            row.update(title=item.title, text=item.text, html=None, content_type=None)
            size = len(item.text)
        writer.add(row, size)
        seq += 1
    return writer.finish(), seq
