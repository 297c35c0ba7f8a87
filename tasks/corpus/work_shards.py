"""Corpus work shards: the layout of out_dir/work/ and the split of every source into input shards.

The split reads each source once, in a fixed order (crawled pages, local files, WARC/WET files, Hugging
Face datasets), and writes `work/input-NNNNN.parquet` of raw items: extracted text, or HTML bytes that
the cleaning shards extract. Memory holds one row group, never the corpus. Every file is written under
a temporary name and renamed when complete, and `work/split.json`, written last, marks the split done
and records every input shard's size and sha256 (tasks/pieces.py), so a run killed at any point redoes
an unfinished split and reuses a finished one: an input shard damaged since is written again from the
sources (the split is deterministic), or, if it no longer comes out as recorded, the whole split is redone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Collection, Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.clean.steps import Document
from tasks.corpus.local_files import HtmlPage
from tasks.pieces import discard_piece, piece_damage, piece_record

logger = logging.getLogger(__name__)

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
    """Writes input shards of `per_shard` rows each, in row groups, each shard renamed into place when full.

    only: the shard numbers to write (the rows of the others are counted, not written); None = every shard.
    """

    def __init__(self, work: Path, per_shard: int, only: Collection[int] | None = None) -> None:
        self.work = work
        self.per_shard = per_shard
        self.only = only
        self.shards = 0  # finished shards
        self.rows_in_shard = 0
        self.buffer: list[dict] = []
        self.buffer_bytes = 0
        self.writer: pq.ParquetWriter | None = None

    def _writing(self) -> bool:
        return self.only is None or self.shards in self.only

    def add(self, row: dict, size: int) -> None:
        if self._writing():
            self.buffer.append(row)
            self.buffer_bytes += size
            if self.buffer_bytes >= _ROW_GROUP_BYTES:
                self._flush()
        self.rows_in_shard += 1
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
        if self._writing():
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


def _write_items(items: Iterable[Document | HtmlPage], writer: _ShardWriter, last_shard: int | None = None) -> int:
    """Add every item (up to the end of shard last_shard) to the writer as a row; returns the items added."""
    seq = 0
    for item in items:
        if last_shard is not None and seq // writer.per_shard > last_shard:
            break
        row = {"seq": seq, "url": item.url, "source": item.source, "fetched_at": item.fetched_at}
        if isinstance(item, HtmlPage):
            row.update(title=None, text=None, html=item.body, content_type=item.content_type)
            size = len(item.body)
        else:
            row.update(title=item.title, text=item.text, html=None, content_type=None)
            size = len(item.text)
        writer.add(row, size)
        seq += 1
    return seq


def split_sources(items: Iterable[Document | HtmlPage], work: Path, per_shard: int) -> tuple[int, int]:
    """Write the items into work/input-NNNNN.parquet shards of per_shard rows; returns (shards, items)."""
    writer = _ShardWriter(work, per_shard)
    seq = _write_items(items, writer)
    return writer.finish(), seq


def input_records(work: Path, shards: int) -> dict[str, dict]:
    """Size and sha256 of every input shard, by file name: what split.json records."""
    return {input_path(work, shard).name: piece_record(input_path(work, shard)) for shard in range(shards)}


def damaged_input_shards(work: Path, split: dict) -> list[int]:
    """Input shards of a finished split that differ from what split.json recorded, each removed with a warning.

    A split recorded before digests were (no "pieces" in split.json) is used unverified.
    """
    records = split.get("pieces")
    if records is None:
        return []
    damaged = []
    for shard in range(split["shards"]):
        path = input_path(work, shard)
        problem = piece_damage(path, records.get(path.name))
        if problem is not None:
            discard_piece(path, problem, "writing it again from the sources")
            damaged.append(shard)
    return damaged


def rewrite_input_shards(items: Iterable[Document | HtmlPage], work: Path, per_shard: int, split: dict,
                         shards: Collection[int]) -> bool:
    """Write the given input shards again from the same items; True when each comes out as split.json recorded.

    The split is deterministic, so unchanged sources give the same bytes; False means the sources changed
    since the split (the other shards may no longer match them either) and the split must be redone.
    """
    writer = _ShardWriter(work, per_shard, only=set(shards))
    _write_items(items, writer, last_shard=max(shards))
    writer.finish()
    for shard in shards:
        path = input_path(work, shard)
        if piece_damage(path, split["pieces"].get(path.name)) is not None:
            logger.warning("input shard %s written again differs from the one recorded: the sources changed "
                           "since they were split; splitting them again", path)
            return False
    return True
