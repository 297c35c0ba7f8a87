"""Write the snapshot from the cleaned shards: documents-NNNNN.parquet, the minhash index, and refresh changes.

Output shard j holds the kept documents of ranks j*documents_per_shard.. (the (url, content_hash, seq)
order), so the same corpus gives byte-identical shards whatever the work shards, workers or map.
write_shard runs in a worker: its plan (work/plan-NNNNN.npy: (rank, cleaned shard, row) rows) says
which rows to read, and it takes them from the memory-mapped cleaned shards. A rerun after a crash in
the write step reuses a documents shard already written only if it matches the size and sha256 recorded
in work/written-NNNNN.json when it was written (tasks/pieces.py; the record goes with work/): a damaged
one is written again, with one warning. A shard with no record (written by older code) is reused if it reads.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.clean.minhash import INDEX_FILE, NearDedupConfig, index_metadata
from tasks.clean.text_stats import count_words
from tasks.corpus.clean_shard import key64, read_cleaned
from tasks.corpus.work_shards import write_json_atomically
from tasks.pieces import discard_piece, piece_damage, piece_record, unreadable

SNAPSHOT_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),  # sha256 of the dedup-normalised text (unique)
    pa.field("url", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),  # "crawl" | "local" | "warc" | "hf"
    pa.field("title", pa.string()),
    pa.field("text", pa.string(), nullable=False),  # paragraphs separated by "\n"
    pa.field("language", pa.string()),  # ISO 639 code from py3langid; null when language id is disabled
    pa.field("language_score", pa.float32()),  # py3langid's probability for `language`, 0..1
    pa.field("fetched_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("content_hash", pa.string(), nullable=False),  # sha256 of text
])
CHANGES_FILE = "changes.json"


@dataclass(frozen=True)
class WriteShardSpec:
    """One output shard: its number, plan file, the work and snapshot folders, and the hash settings."""

    shard: int
    work: Path
    out_dir: Path
    near_dedup: NearDedupConfig


def plan_path(work: Path, shard: int) -> Path:
    """work/plan-NNNNN.npy: (documents, 3) int64 rows of (rank, cleaned shard, row), in rank order."""
    return work / f"plan-{shard:05d}.npy"


def index_part_path(work: Path, shard: int) -> Path:
    """work/index-NNNNN.parquet: (url, signature) of one output shard's documents."""
    return work / f"index-{shard:05d}.parquet"


def documents_path(out_dir: Path, shard: int) -> Path:
    """out_dir/documents-NNNNN.parquet."""
    return out_dir / f"documents-{shard:05d}.parquet"


def written_path(work: Path, shard: int) -> Path:
    """work/written-NNNNN.json: size and sha256 of documents-NNNNN.parquet, recorded when it was written."""
    return work / f"written-{shard:05d}.json"


def write_plans(work: Path, kept_ranks: np.ndarray, shard_of_rank: np.ndarray, row_of_rank: np.ndarray,
                documents_per_shard: int) -> int:
    """Cut the kept ranks into output shards and save each one's plan; returns the number of output shards.

    An empty corpus still gets one (empty) shard, so readers always find the schema.
    """
    count = max(1, -(-len(kept_ranks) // documents_per_shard))
    for shard in range(count):
        ranks = kept_ranks[shard * documents_per_shard:(shard + 1) * documents_per_shard]
        plan = np.stack([ranks, shard_of_rank[ranks], row_of_rank[ranks]], axis=1).astype(np.int64)
        tmp = plan_path(work, shard).with_suffix(".tmp.npy")
        np.save(tmp, plan)
        os.replace(tmp, plan_path(work, shard))
    return count


# Documents per Parquet row group of a snapshot file: a reader (the tokenize stage's planning and workers)
# holds one row group at a time, ~15 MB of text for 1,000 pages of the Python docs; a whole file of 10,000
# documents in one group would make readers' memory grow with the file.
ROW_GROUP_DOCUMENTS = 1000


def write_shard(spec: WriteShardSpec) -> dict:
    """Write documents-NNNNN.parquet (unless there, undamaged) and its index part; returns words per document
    and languages."""
    plan = np.load(plan_path(spec.work, spec.shard))
    table = _planned_rows(spec.work, plan, spec.near_dedup.enabled)
    final, record = documents_path(spec.out_dir, spec.shard), written_path(spec.work, spec.shard)
    if not _reusable_documents(final, record):
        record.unlink(missing_ok=True)  # a record of the shard replaced must not judge the new one
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(table.select(SNAPSHOT_SCHEMA.names).cast(SNAPSHOT_SCHEMA), tmp, compression="zstd",
                       row_group_size=ROW_GROUP_DOCUMENTS)
        os.replace(tmp, final)
        write_json_atomically(piece_record(final), record)
    if spec.near_dedup.enabled:
        part = index_part_path(spec.work, spec.shard)
        tmp = part.with_name(part.name + ".tmp")
        pq.write_table(table.select(["url", "signature"]), tmp, compression="zstd")
        os.replace(tmp, part)
    texts = table.column("text").to_pylist()
    languages = Counter(table.column("language").to_pylist())
    # words as the filters count them (count_words: each Chinese, Japanese or Thai character is one)
    return {"words": np.fromiter(map(count_words, texts), np.int64, len(texts)),
            "characters": sum(map(len, texts)), "languages": languages}


def _reusable_documents(final: Path, record: Path) -> bool:
    """True when a documents shard is already written and matches its record, or has none and reads; a
    damaged one is removed with one warning naming it and what is wrong."""
    if not final.is_file():
        return False
    if record.is_file():
        try:
            recorded = json.loads(record.read_text())
        except (OSError, ValueError) as err:
            problem = f"its checksum record {record} {unreadable(err).removeprefix('it ')}"
        else:
            problem = piece_damage(final, recorded)
    else:  # written by older code, or killed between the shard and its record: used unverified if it reads
        try:
            pq.read_table(final)
            problem = None
        except (OSError, pa.ArrowException) as err:
            problem = unreadable(err)
    if problem is None:
        return True
    discard_piece(final, problem, "writing it again")
    return False


def _planned_rows(work: Path, plan: np.ndarray, with_signature: bool) -> pa.Table:
    """The planned rows of the cleaned shards, in plan order (memory-mapped: only their pages are read)."""
    columns = [*SNAPSHOT_SCHEMA.names, *(["signature"] if with_signature else [])]
    pieces, positions = [], []
    for shard in np.unique(plan[:, 1]):
        where = np.flatnonzero(plan[:, 1] == shard)
        pieces.append(read_cleaned(work, int(shard)).select(columns).take(pa.array(plan[where, 2])))
        positions.append(where)
    if not pieces:
        return read_cleaned(work, 0).select(columns).slice(0, 0)  # every split has a shard 0
    table = pa.concat_tables(pieces)
    order = np.argsort(np.concatenate(positions), kind="stable")  # back to plan (rank) order
    return table.take(pa.array(order))


def write_index(work: Path, out_dir: Path, shards: int, cfg: NearDedupConfig) -> None:
    """Concatenate the index parts into out_dir/minhash_index.parquet (url, signature), streaming."""
    path = out_dir / INDEX_FILE
    tmp = path.with_name(path.name + ".tmp")
    schema = pa.schema([("url", pa.string()), ("signature", pa.list_(pa.uint32(), cfg.num_hashes))],
                       metadata=index_metadata(cfg))
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for shard in range(shards):
            writer.write_table(pq.read_table(index_part_path(work, shard)).cast(schema))
    os.replace(tmp, path)


def _url_hashes(snapshot_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """(url, content hashes) of a snapshot in url order (snapshots are sorted by url), streaming."""
    current, hashes = None, []
    for shard in sorted(snapshot_dir.glob("documents-*.parquet")):
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=4096, columns=["url", "content_hash"]):
            for url, digest in zip(batch.column("url").to_pylist(), batch.column("content_hash").to_pylist()):
                if url != current:
                    if current is not None:
                        yield current, hashes
                    current, hashes = url, []
                hashes.append(digest)
    if current is not None:
        yield current, hashes


def refresh_changes(out_dir: Path, parent_dir: Path) -> dict[str, int]:
    """Compare the snapshot with its parent: write changes.json (urls added, changed, removed); returns counts.

    documents_added / documents_unchanged: kept documents whose content hash is not / is in the parent;
    documents_removed: parent urls absent from this snapshot.
    """
    parent_hashes = np.unique(np.fromiter(
        (key64(h) for shard in sorted(parent_dir.glob("documents-*.parquet"))
         for h in pq.read_table(shard, columns=["content_hash"]).column(0).to_pylist()), np.uint64))
    added = unchanged = 0
    for shard in sorted(out_dir.glob("documents-*.parquet")):
        hashes = pc.utf8_slice_codeunits(pq.read_table(shard, columns=["content_hash"]).column(0), 0, 16)
        keys = np.fromiter((int(h, 16) for h in hashes.to_pylist()), np.uint64)
        known = np.isin(keys, parent_hashes)
        unchanged += int(known.sum())
        added += int((~known).sum())
    changes: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
    ours, theirs = _url_hashes(out_dir), _url_hashes(parent_dir)
    mine, old = next(ours, None), next(theirs, None)
    while mine is not None or old is not None:
        if old is None or (mine is not None and mine[0] < old[0]):
            changes["added"].append(mine[0])
            mine = next(ours, None)
        elif mine is None or old[0] < mine[0]:
            changes["removed"].append(old[0])
            old = next(theirs, None)
        else:
            if sorted(mine[1]) != sorted(old[1]):
                changes["changed"].append(mine[0])
            mine, old = next(ours, None), next(theirs, None)
    write_json_atomically({"parent": Path(parent_dir).name, **changes}, out_dir / CHANGES_FILE)
    return {"documents_added": added, "documents_unchanged": unchanged, "documents_removed": len(changes["removed"]),
            "urls_added": len(changes["added"]), "urls_changed": len(changes["changed"])}


def write_dedup_dropped(work: Path, dropped_dir: Path, shard_of_rank: np.ndarray, row_of_rank: np.ndarray,
                        reason: np.ndarray, reasons: tuple[str, ...], shards: int) -> None:
    """Write dropped/dedup-NNNNN.parquet per cleaned shard: url, text, step and reason of each document dedup dropped.

    reason: (docs,) uint8 per rank, 0 = kept, else 1 + index in reasons (the step is named like its reason).
    """
    dropped_dir.mkdir(parents=True, exist_ok=True)
    dropped = np.flatnonzero(reason > 0)
    by_shard = dropped[np.argsort(shard_of_rank[dropped], kind="stable")]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(shard_of_rank[dropped], minlength=shards))])
    for shard in range(shards):
        ranks = by_shard[bounds[shard]:bounds[shard + 1]]
        table = read_cleaned(work, shard).select(["url", "text"]).take(pa.array(row_of_rank[ranks]))
        names = pa.array([reasons[code - 1] for code in reason[ranks]], pa.string())
        table = table.append_column("step", names).append_column("reason", names)
        path = dropped_dir / f"dedup-{shard:05d}.parquet"
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)


def read_changes(out_dir: Path) -> dict:
    """The changes.json of a refreshed snapshot."""
    return json.loads((Path(out_dir) / CHANGES_FILE).read_text())
