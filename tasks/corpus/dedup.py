"""Global, deterministic dedup over the cleaned shards, holding a few fixed-size numbers per document.

Every kept-after-cleaning document gets a rank: its position in (url, content_hash, seq) order, found by
a streaming k-way merge of the cleaned shards (each sorted that way). The smaller rank wins every
duplicate group, so the result depends neither on the number of shards or workers nor on crawl order.
Steps, in order: exact duplicates of the parent, near-duplicates of the parent (both only against a
parent document with a *different* url: a refresh keeps the current version of every page it already
had), exact duplicates within the snapshot, near-duplicates within the snapshot (MinHash LSH band
collisions -> union-find, the smallest rank of each cluster kept).

Memory per document: ~41 bytes in RAM (shard and row: 8, exact key: 8, url hash: 8, text bytes: 8,
example key: 8, drop reason: 1) plus, while one LSH band is processed, ~40 bytes (band key, sort
order, group starts, union-find parent); the num_bands band keys (8 bytes each) live in a memory-mapped
file, one band contiguous, and so do the parent's.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.clean.minhash import (
    INDEX_FILE,
    NearDedupConfig,
    band_keys,
    candidate_pairs,
    check_index,
    connected_components,
    mix64,
)
from tasks.clean.steps import EXAMPLES_PER_REASON, EXCERPT_CHARS, Example, StepCount
from tasks.corpus.clean_shard import cleaned_path, key64, read_cleaned, signature_array, url_hash

# drop reason per code; code 0 = kept
DEDUP_REASONS = ("duplicate_of_parent", "near_duplicate_of_parent", "duplicate", "near_duplicate")
_KEPT, _DUP_PARENT, _NEAR_PARENT, _DUP, _NEAR = range(5)
_MERGE_BATCH = 1024  # rows per shard held by the k-way merge


@dataclass
class DedupResult:
    """Each document's place (by rank) and fate, and the dedup steps' counts and examples."""

    shard_of_rank: np.ndarray  # (docs,) int32: the cleaned shard holding the document of each rank
    row_of_rank: np.ndarray  # (docs,) int32: its row there
    reason: np.ndarray  # (docs,) uint8: 0 kept, else 1 + index in DEDUP_REASONS
    steps: list[StepCount] = field(default_factory=list)
    drop_examples: dict[str, list[Example]] = field(default_factory=dict)
    kept_examples: list[Example] = field(default_factory=list)

    @property
    def kept_ranks(self) -> np.ndarray:
        """(kept,) int64 ranks of the kept documents, ascending (the snapshot's row order)."""
        return np.flatnonzero(self.reason == _KEPT)

    def counts(self) -> dict[str, int]:
        """Documents dropped per dedup reason."""
        found = np.bincount(self.reason, minlength=len(DEDUP_REASONS) + 1)
        return {name: int(found[code]) for code, name in enumerate(DEDUP_REASONS, start=1)}


def dedup_shards(work: Path, shards: int, cfg: NearDedupConfig, parent_dir: Path | None) -> DedupResult:
    """Rank every cleaned document and decide which ones dedup drops (see the module docstring)."""
    tables = _CleanedShards(work, shards)
    shard_of_rank, row_of_rank, ranks_by_shard = global_order(tables)
    result = DedupResult(shard_of_rank, row_of_rank, np.zeros(len(shard_of_rank), np.uint8))
    docs = _DocumentKeys.gather(tables, ranks_by_shard)
    bands = _band_file(work / "bands.npy", tables, ranks_by_shard, cfg) if cfg.enabled else None
    signatures = _Signatures(tables, shard_of_rank, row_of_rank, cfg) if cfg.enabled else None
    if parent_dir is not None:
        parent_keys, parent_urls = _parent_documents(Path(parent_dir))
        _step(result, docs, "duplicate_of_parent", _DUP_PARENT,
              lambda alive: alive[_matches_other_url(docs.dedup_key[alive], docs.url_hash[alive],
                                                     parent_keys, parent_urls)])
        index = Path(parent_dir) / INDEX_FILE
        if cfg.enabled and index.exists():
            parent_bands = _ParentBands.load(index, cfg, work / "parent_bands.npy")
            _step(result, docs, "near_duplicate_of_parent", _NEAR_PARENT,
                  lambda alive: parent_bands.near_duplicates(alive, docs.url_hash, bands, signatures, cfg))
    _step(result, docs, "duplicate", _DUP, lambda alive: _exact_duplicates(alive, docs.dedup_key))
    if cfg.enabled:
        _step(result, docs, "near_duplicate", _NEAR,
              lambda alive: _near_duplicates(alive, bands, signatures, cfg))
    _examples(result, tables, docs)
    return result


class _CleanedShards(Sequence[pa.Table]):
    """The cleaned shards, each memory-mapped afresh when used and unmapped when dropped.

    Pages of a memory map that were read count in the process's RSS until it is unmapped, so no map
    is held longer than one use.
    """

    def __init__(self, work: Path, shards: int) -> None:
        self.work, self.shards = work, shards

    def __len__(self) -> int:
        return self.shards

    def __getitem__(self, shard: int) -> pa.Table:  # type: ignore[override]
        if not 0 <= shard < self.shards:
            raise IndexError(shard)
        return read_cleaned(self.work, int(shard))

    def rows(self, shard: int, columns: list[str], rows_per_read: int) -> Iterator[list[list]]:
        """The shard's `columns` as Python lists, about rows_per_read rows at a time, in order.

        Each list comes from a fresh memory map, unmapped before it is yielded, and reads only the record
        batches it needs (building the whole table on every read costs ~2.7 ms per 100 k-row shard).
        """
        batch = 0
        while True:
            with pa.memory_map(str(cleaned_path(self.work, shard))) as source:
                values, batch = _read_columns(pa.ipc.open_file(source), batch, columns, rows_per_read)
            if not values[0]:
                return
            yield values


def _read_columns(reader: pa.ipc.RecordBatchFileReader, batch: int, columns: list[str],
                  rows_per_read: int) -> tuple[list[list], int]:
    """(columns as lists, from record batch `batch` on until about rows_per_read rows; the next batch)."""
    values: list[list] = [[] for _ in columns]
    while batch < reader.num_record_batches and len(values[0]) < rows_per_read:
        for out, column in zip(values, reader.get_batch(batch).select(columns).columns):
            out += column.to_pylist()
        batch += 1
    return values, batch


def global_order(shards: _CleanedShards) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(shard_of_rank, row_of_rank, ranks_by_shard) of the documents in (url, content_hash, seq) order.

    Each shard is sorted that way already, so one streaming k-way merge of their sort keys ranks them all.
    The merge holds about _MERGE_BATCH keys per shard, not the shards: each batch of keys is read from a
    fresh memory map that is closed at once, so the key pages read stay out of RSS and one map is open
    at a time however many shards there are.
    """
    sizes = [shards[shard].num_rows for shard in range(len(shards))]
    merged = heapq.merge(*(_sort_keys(shards, shard) for shard in range(len(shards))))
    shard_of_rank = np.fromiter((key[3] for key in merged), np.int32, count=sum(sizes))
    order = np.argsort(shard_of_rank, kind="stable")  # ranks grouped by shard, ascending within each
    starts = np.concatenate([[0], np.cumsum(sizes)])
    row_of_rank = np.empty(len(order), np.int32)
    row_of_rank[order] = np.arange(len(order)) - np.repeat(starts[:-1], sizes)
    return shard_of_rank, row_of_rank, [order[starts[s]:starts[s + 1]] for s in range(len(shards))]


def _sort_keys(shards: _CleanedShards, shard: int) -> Iterator[tuple[str, str, int, int]]:
    """(url, content_hash, seq, shard) of each row of one shard, in order."""
    for urls, hashes, seqs in shards.rows(shard, ["url", "content_hash", "seq"], _MERGE_BATCH):
        yield from zip(urls, hashes, seqs, itertools.repeat(shard))


@dataclass
class _DocumentKeys:
    """Fixed-size keys of every document, in rank order."""

    dedup_key: np.ndarray  # (docs,) uint64
    url_hash: np.ndarray  # (docs,) uint64
    text_bytes: np.ndarray  # (docs,) int64
    example_key: np.ndarray  # (docs,) uint64

    @classmethod
    def gather(cls, tables: Sequence[pa.Table], ranks_by_shard: list[np.ndarray]) -> _DocumentKeys:
        total = sum(len(r) for r in ranks_by_shard)
        columns = {"dedup_key": np.uint64, "url_hash": np.uint64, "text_bytes": np.int64, "example_key": np.uint64}
        arrays = {name: np.empty(total, dtype) for name, dtype in columns.items()}
        for table, ranks in zip(tables, ranks_by_shard):
            for name in columns:
                arrays[name][ranks] = table.column(name).to_numpy()
        return cls(**arrays)


def _band_file(path: Path, tables: Sequence[pa.Table], ranks_by_shard: list[np.ndarray],
               cfg: NearDedupConfig) -> np.ndarray:
    """(num_bands, docs) uint64 LSH band keys in rank order, memory-mapped from path (one band is contiguous)."""
    total = sum(len(r) for r in ranks_by_shard)
    bands = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint64, shape=(cfg.num_bands, max(total, 1)))
    for table, ranks in zip(tables, ranks_by_shard):
        bands[:, ranks] = band_keys(signature_array(table, cfg.num_hashes), cfg).T
    bands.flush()
    return bands[:, :total]


class _Signatures:
    """MinHash signatures of chosen ranks, read from the cleaned shards (for Jaccard verification only)."""

    def __init__(self, tables: Sequence[pa.Table], shard_of_rank: np.ndarray, row_of_rank: np.ndarray,
                 cfg: NearDedupConfig) -> None:
        self.tables, self.shard_of_rank, self.row_of_rank, self.cfg = tables, shard_of_rank, row_of_rank, cfg

    def of(self, ranks: np.ndarray) -> np.ndarray:
        """(len(ranks), num_hashes) uint32."""
        out = np.empty((len(ranks), self.cfg.num_hashes), np.uint32)
        shards = self.shard_of_rank[ranks]
        for shard in np.unique(shards):
            where = np.flatnonzero(shards == shard)
            rows = self.tables[shard].select(["signature"]).take(pa.array(self.row_of_rank[ranks[where]]))
            out[where] = signature_array(rows, self.cfg.num_hashes)
        return out


def _step(result: DedupResult, docs: _DocumentKeys, name: str, code: int, drop) -> None:
    """Run one dedup step on the documents still kept: drop(alive ranks) -> ranks to drop; record its counts."""
    alive = np.flatnonzero(result.reason == _KEPT)
    dropped = np.unique(drop(alive)) if len(alive) else np.empty(0, np.int64)
    result.reason[dropped] = code
    bytes_in = int(docs.text_bytes[alive].sum())
    result.steps.append(StepCount(name, docs_in=len(alive), docs_out=len(alive) - len(dropped), bytes_in=bytes_in,
                                  bytes_out=bytes_in - int(docs.text_bytes[dropped].sum())))


def _pair_hash(keys: np.ndarray, urls: np.ndarray) -> np.ndarray:
    return mix64(keys ^ mix64(urls))


def _matches_other_url(keys: np.ndarray, urls: np.ndarray, ref_keys: np.ndarray, ref_urls: np.ndarray) -> np.ndarray:
    """(len(keys),) bool: some reference entry has the same key and a different url hash."""
    sorted_keys, sorted_pairs = np.sort(ref_keys), np.sort(_pair_hash(ref_keys, ref_urls))
    pairs = _pair_hash(keys, urls)
    same_key = np.searchsorted(sorted_keys, keys, "right") - np.searchsorted(sorted_keys, keys, "left")
    same_key_and_url = np.searchsorted(sorted_pairs, pairs, "right") - np.searchsorted(sorted_pairs, pairs, "left")
    return same_key > same_key_and_url


def _pairs_with_other_url(keys: np.ndarray, urls: np.ndarray, ref_keys: np.ndarray,
                          ref_urls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into keys, index into ref_keys) of every pair with equal keys and different url hashes."""
    order = np.argsort(ref_keys, kind="stable")
    sorted_keys = ref_keys[order]
    left = np.searchsorted(sorted_keys, keys, "left")
    found = np.searchsorted(sorted_keys, keys, "right") - left
    mine = np.repeat(np.arange(len(keys)), found)
    offsets = np.arange(int(found.sum())) - np.repeat(np.cumsum(found) - found, found)
    theirs = order[np.repeat(left, found) + offsets]
    other = ref_urls[theirs] != urls[mine]
    return mine[other], theirs[other]


def _exact_duplicates(alive: np.ndarray, dedup_keys: np.ndarray) -> np.ndarray:
    """Ranks (among alive) whose exact-dedup key a smaller rank also has."""
    keys = dedup_keys[alive]
    order = np.lexsort((alive, keys))  # by key, then rank
    sorted_keys = keys[order]
    repeat = np.concatenate([[False], sorted_keys[1:] == sorted_keys[:-1]])
    return alive[order[repeat]]


def _near_duplicates(alive: np.ndarray, bands: np.ndarray, signatures: _Signatures,
                     cfg: NearDedupConfig) -> np.ndarray:
    """Ranks (among alive) in an LSH cluster with a smaller rank: candidates per band, then union-find."""
    pairs = [np.empty((0, 2), np.int64)]
    for band in range(cfg.num_bands):
        pairs.append(candidate_pairs(np.asarray(bands[band])[alive][:, None]))  # indices into alive
    pairs = np.unique(np.concatenate(pairs), axis=0)
    if cfg.jaccard_threshold is not None and len(pairs):
        similar = (signatures.of(alive[pairs[:, 0]]) == signatures.of(alive[pairs[:, 1]])).mean(axis=1)
        pairs = pairs[similar >= cfg.jaccard_threshold]
    roots = connected_components(len(alive), pairs)
    return alive[roots != np.arange(len(alive))]


@dataclass
class _ParentBands:
    """The parent snapshot's LSH band keys (memory-mapped) and url hashes, from its minhash index."""

    bands: np.ndarray  # (num_bands, parent docs) uint64
    url_hash: np.ndarray  # (parent docs,) uint64
    index: Path

    @classmethod
    def load(cls, index: Path, cfg: NearDedupConfig, scratch: Path) -> _ParentBands:
        check_index(index, cfg)
        parquet = pq.ParquetFile(index)
        total = parquet.metadata.num_rows
        bands = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint64, shape=(cfg.num_bands, max(total, 1)))
        urls = np.empty(total, np.uint64)
        start = 0
        for batch in parquet.iter_batches(batch_size=4096, columns=["url", "signature"]):
            end = start + batch.num_rows
            urls[start:end] = [url_hash(u) for u in batch.column("url").to_pylist()]
            flat = batch.column("signature").flatten().to_numpy(zero_copy_only=False)
            bands[:, start:end] = band_keys(flat.astype(np.uint32).reshape(batch.num_rows, cfg.num_hashes), cfg).T
            start = end
        bands.flush()
        return cls(bands=bands[:, :total], url_hash=urls, index=index)

    def near_duplicates(self, alive: np.ndarray, url_hashes: np.ndarray, bands: np.ndarray,
                        signatures: _Signatures, cfg: NearDedupConfig) -> np.ndarray:
        """Ranks (among alive) sharing a band key with a parent document of another url (and, with
        jaccard_threshold, similar enough to it)."""
        urls = url_hashes[alive]
        dropped = np.zeros(len(alive), bool)
        for band in range(cfg.num_bands):
            keys, parent_keys = np.asarray(bands[band])[alive], np.asarray(self.bands[band])
            if cfg.jaccard_threshold is None:
                dropped |= _matches_other_url(keys, urls, parent_keys, self.url_hash)
                continue
            mine, theirs = _pairs_with_other_url(keys, urls, parent_keys, self.url_hash)
            if len(mine):
                similar = (signatures.of(alive[mine]) == self._signatures(theirs, cfg)).mean(axis=1)
                dropped[mine[similar >= cfg.jaccard_threshold]] = True
        return alive[dropped]

    def _signatures(self, rows: np.ndarray, cfg: NearDedupConfig) -> np.ndarray:
        table = pq.read_table(self.index, columns=["signature"])
        return signature_array(table, cfg.num_hashes)[rows]


def _parent_documents(parent_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(exact-dedup key, url hash) of every parent document, each (parent docs,) uint64."""
    shards = sorted(parent_dir.glob("documents-*.parquet"))
    if not shards:
        raise ValueError(f"parent_dir {str(parent_dir)!r} holds no documents-*.parquet: not a corpus snapshot")
    keys, urls = [], []
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=4096, columns=["id", "url"]):
            keys.append(np.fromiter(map(key64, batch.column("id").to_pylist()), np.uint64, batch.num_rows))
            urls.append(np.fromiter(map(url_hash, batch.column("url").to_pylist()), np.uint64, batch.num_rows))
    return np.concatenate(keys), np.concatenate(urls)


def _examples(result: DedupResult, tables: Sequence[pa.Table], docs: _DocumentKeys) -> None:
    """A few dropped documents per dedup reason and a few kept ones: the smallest example keys (as ExampleSample)."""
    def sample(code: int, step: str, reason: str) -> list[Example]:
        ranks = np.flatnonzero(result.reason == code)
        if len(ranks) > EXAMPLES_PER_REASON:
            ranks = ranks[np.argpartition(docs.example_key[ranks], EXAMPLES_PER_REASON)[:EXAMPLES_PER_REASON]]
        ranks = ranks[np.argsort(docs.example_key[ranks], kind="stable")]
        return [Example(step=step, reason=reason, url=url, excerpt=text[:EXCERPT_CHARS])
                for url, text in _url_and_text(tables, result, ranks)]

    for code, name in enumerate(DEDUP_REASONS, start=1):
        examples = sample(code, name, name)
        if examples:
            result.drop_examples[name] = examples
    result.kept_examples = sample(_KEPT, "kept", "kept")


def _url_and_text(tables: Sequence[pa.Table], result: DedupResult, ranks: np.ndarray) -> list[tuple[str, str]]:
    out = []
    for rank in ranks:
        row = tables[result.shard_of_rank[rank]].slice(int(result.row_of_rank[rank]), 1)
        out.append((row.column("url")[0].as_py(), row.column("text")[0].as_py()))
    return out
