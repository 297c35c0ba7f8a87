"""Near-duplicate removal with MinHash LSH, within a snapshot and against its parent snapshot.

Text -> normalised words -> word n-gram shingles -> one 31-bit hash per shingle -> num_bands x rows_per_band
MinHash values (min over shingles of a*x+b mod p) -> one key per band -> documents sharing any band key
are candidates -> (optionally verified by estimated Jaccard) -> union-find clusters -> one kept per cluster.

Everything is numpy over all shingles and hash functions at once: no Python loop runs per shingle or per
hash function (only one C call per word to hash it, and loops over n-gram positions, bands and chunks).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import regex
import xxhash

from tasks.clean.exact_dedup import content_hash
from tasks.clean.minhash_config import NearDedupConfig
from tasks.clean.steps import Document

INDEX_FILE = "minhash_index.parquet"  # saved next to a snapshot's documents-*.parquet
NEAR_DUPLICATE_REASONS = ("near_duplicate", "near_duplicate_of_parent")  # NearDedup's drop reasons
_INDEX_FORMAT = "1"
# p = 2^31 - 1: with x, a, b < p, a*x + b < 2^62 is exact in uint64 (2^61 - 1 would overflow a*x), so every
# h(x) = (a*x + b) mod p is a true permutation of Z_p and a signature value fits in uint32
_MERSENNE_PRIME = (1 << 31) - 1
# Letters and combining marks of every script, digits and "_"; everything else separates words. The
# regex module's \w keeps marks (Devanagari and Thai vowel signs) inside words; re's \w splits words
# at them and drops them, so Hindi texts that differ only in their vowels got equal signatures.
# \p{No} keeps what re's \w also took (superscript digits: "x²").
_WORD = regex.compile(r"[\w\p{No}]+")
_CHARS_PER_BATCH = 2_000_000  # text shingled together: ~350k words, ~20 MB of word objects and arrays
_SHINGLES_PER_CHUNK = 2048  # rows of the (shingles, hashes) matrix at a time: 2048 x 112 x 8 B = 1.8 MB


def normalize_for_shingles(text: str) -> str:
    """Lowercase, punctuation replaced by spaces, whitespace runs collapsed to one space."""
    return " ".join(_WORD.findall(text.lower()))


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over all 64 output bits (uint64 in, uint64 out)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _odd_multipliers(count: int, salt: int) -> np.ndarray:
    """Fixed random odd uint64 constants that make a weighted sum of hashes order-sensitive."""
    rng = np.random.default_rng([0x5EED, salt])
    return rng.integers(0, 2**64, size=count, dtype=np.uint64, endpoint=False) | np.uint64(1)


def shingle_hashes(texts: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes in [0, 2^31) of each text's word n-grams, concatenated, and offsets (len(texts) + 1,).

    A word n-gram's hash is a weighted sum of its words' xxh3 hashes (one C call per word, not per
    n-gram), finalised by splitmix64; a text with fewer than `ngram` words (or none) is one shingle.
    """
    # normalised words are separated by single ASCII spaces, so splitting the UTF-8 bytes is exact; "" -> [b""]
    if not texts:
        return np.empty(0, np.uint64), np.zeros(1, np.int64)
    word_lists = [normalize_for_shingles(t).encode("utf-8").split(b" ") for t in texts]
    lengths = np.fromiter(map(len, word_lists), dtype=np.int64, count=len(word_lists))
    total = int(lengths.sum())
    words = np.fromiter(map(xxhash.xxh3_64_intdigest, chain.from_iterable(word_lists)), np.uint64, total)
    doc_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    doc_end = np.repeat(doc_start + lengths, lengths)  # (words,) exclusive end of each word's document
    weights = _odd_multipliers(ngram, salt=1)
    padded = np.concatenate([words, np.zeros(ngram - 1, np.uint64)])
    position = np.arange(total)
    grams = np.zeros(total, np.uint64)  # (words,) hash of the n-gram starting at each word; wraps mod 2^64
    for j in range(ngram):
        # a word past its document's end counts as 0, so a short document hashes its whole text
        grams += np.where(position + j < doc_end, padded[j:j + total], np.uint64(0)) * weights[j]
    short = lengths < ngram
    valid = position + ngram <= doc_end
    valid[doc_start[short]] = True  # the one whole-text shingle of a short document
    counts = np.add.reduceat(valid.astype(np.int64), doc_start)
    hashes = mix64(grams[valid]) >> np.uint64(33)  # top 31 bits
    return hashes, np.concatenate([[0], np.cumsum(counts)])


def hash_permutations(cfg: NearDedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of h_k(x) = (a_k * x + b_k) mod (2^31 - 1), each (num_hashes,) uint64, from cfg.seed."""
    rng = np.random.default_rng(cfg.seed)
    a = rng.integers(1, _MERSENNE_PRIME, size=cfg.num_hashes, dtype=np.uint64)
    b = rng.integers(0, _MERSENNE_PRIME, size=cfg.num_hashes, dtype=np.uint64)
    return a, b


def _signatures_of(hashes: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(docs, num_hashes) minimum over each document's shingles of every permutation, chunk by chunk."""
    signatures = np.full((len(offsets) - 1, len(a)), _MERSENNE_PRIME, np.uint64)
    prime = np.uint64(_MERSENNE_PRIME)
    buffer = np.empty((_SHINGLES_PER_CHUNK, len(a)), np.uint64)  # reused: in-place ops are ~3x faster here
    for s0 in range(0, len(hashes), _SHINGLES_PER_CHUNK):
        s1 = min(s0 + _SHINGLES_PER_CHUNK, len(hashes))
        permuted = buffer[:s1 - s0]  # (chunk, num_hashes)
        np.multiply(hashes[s0:s1, None], a, out=permuted)  # exact: a*x + b < 2^62
        permuted += b
        np.remainder(permuted, prime, out=permuted)
        d0 = int(np.searchsorted(offsets, s0, side="right")) - 1  # documents overlapping [s0, s1)
        d1 = int(np.searchsorted(offsets, s1, side="left"))
        starts = np.maximum(offsets[d0:d1], s0) - s0
        signatures[d0:d1] = np.minimum(signatures[d0:d1], np.minimum.reduceat(permuted, starts, axis=0))
    return signatures


def _batches(texts: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) ranges of consecutive texts of about _CHARS_PER_BATCH characters (at least one text each)."""
    ranges, start, chars = [], 0, 0
    for end, text in enumerate(texts):
        if chars and chars + len(text) > _CHARS_PER_BATCH:
            ranges.append((start, end))
            start, chars = end, 0
        chars += len(text)
    return ranges + [(start, len(texts))] if len(texts) else ranges


def minhash_signatures(texts: Sequence[str], cfg: NearDedupConfig) -> np.ndarray:
    """(docs, num_bands * rows_per_band) uint32 MinHash signatures; the same seed gives the same values.

    Memory is bounded by the batch size, whatever the number of texts (plus 4 bytes per value of the result).
    """
    a, b = hash_permutations(cfg)
    out = np.empty((len(texts), cfg.num_hashes), np.uint32)
    for start, end in _batches(texts):
        out[start:end] = _signatures_of(*shingle_hashes(texts[start:end], cfg.ngram), a, b)
    return out


def band_keys(signatures: np.ndarray, cfg: NearDedupConfig) -> np.ndarray:
    """(docs, num_bands) uint64: one 64-bit hash of each band's rows (equal rows give equal keys)."""
    rows = signatures.reshape(len(signatures), cfg.num_bands, cfg.rows_per_band).astype(np.uint64)
    return mix64((rows * _odd_multipliers(cfg.rows_per_band, salt=2)).sum(axis=2, dtype=np.uint64))


def candidate_pairs(keys: np.ndarray) -> np.ndarray:
    """(pairs, 2) int64 (first, other): in every band, each document is paired with the first sharing its key."""
    pairs = [np.empty((0, 2), np.int64)]
    for band in keys.T if len(keys) else []:
        order = np.argsort(band, kind="stable")
        sorted_keys = band[order]
        new_group = np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])
        first = order[np.flatnonzero(new_group)][np.cumsum(new_group) - 1]  # first member of each one's group
        member = first != order
        pairs.append(np.stack([first[member], order[member]], axis=1))
    return np.unique(np.concatenate(pairs).astype(np.int64), axis=0)


def estimated_jaccard(signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(pairs,) fraction of equal MinHash values: an unbiased estimate of each pair's shingle Jaccard."""
    return (signatures[pairs[:, 0]] == signatures[pairs[:, 1]]).mean(axis=1)


def connected_components(num_nodes: int, pairs: np.ndarray) -> np.ndarray:
    """(nodes,) int64: the smallest node index of each node's component (union-find by hooking roots)."""
    parent = np.arange(num_nodes)
    while len(pairs):
        roots = parent[pairs]  # parent is fully compressed here, so these are roots
        low, high = roots.min(axis=1), roots.max(axis=1)
        merging = low != high
        if not merging.any():
            break
        np.minimum.at(parent, high[merging], low[merging])  # a root only ever points to a smaller root
        while True:  # pointer jumping until every node points at its root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return parent


def near_duplicate_clusters(signatures: np.ndarray, cfg: NearDedupConfig) -> np.ndarray:
    """(docs,) int64 cluster id per document: the index of the cluster's first document."""
    pairs = candidate_pairs(band_keys(signatures, cfg))
    if cfg.jaccard_threshold is not None and len(pairs):
        pairs = pairs[estimated_jaccard(signatures, pairs) >= cfg.jaccard_threshold]
    return connected_components(len(signatures), pairs)


@dataclass(frozen=True)
class MinHashIndex:
    """The signatures of a snapshot's documents, saved next to it so a later snapshot can dedup against it."""

    urls: list[str]
    signatures: np.ndarray  # (docs, num_hashes) uint32
    config: NearDedupConfig


def index_metadata(cfg: NearDedupConfig) -> dict[bytes, bytes]:
    """The Parquet schema metadata of a minhash index built with cfg (the hash settings)."""
    return {f"minhash.{k}".encode(): v.encode() for k, v in _index_params(cfg).items()}


def check_index(path: Path, cfg: NearDedupConfig) -> None:
    """Raise ValueError if the minhash index at path was built with other hash settings than cfg."""
    metadata = pq.read_schema(path).metadata or {}
    saved = {k.decode().removeprefix("minhash."): v.decode() for k, v in metadata.items() if k.startswith(b"minhash.")}
    wanted = _index_params(cfg)
    wrong = [f"{k}={saved.get(k)!r} (this run uses {v!r})" for k, v in wanted.items() if saved.get(k) != v]
    if wrong:
        raise ValueError(f"{path}: minhash index built with other settings, so not comparable: {', '.join(wrong)}")


def _index_params(cfg: NearDedupConfig) -> dict[str, str]:
    # what makes two signatures comparable; enabled and jaccard_threshold do not
    return {"format": _INDEX_FORMAT, "num_bands": str(cfg.num_bands), "rows_per_band": str(cfg.rows_per_band),
            "ngram": str(cfg.ngram), "seed": str(cfg.seed)}


def save_index(index: MinHashIndex, snapshot_dir: Path) -> Path:
    """Write snapshot_dir/minhash_index.parquet atomically (url, signature) with the hash settings as metadata."""
    path = Path(snapshot_dir) / INDEX_FILE
    width = index.config.num_hashes
    flat = pa.array(np.ascontiguousarray(index.signatures, np.uint32).reshape(-1), pa.uint32())
    table = pa.table({"url": pa.array(index.urls, pa.string()),
                      "signature": pa.FixedSizeListArray.from_arrays(flat, width)})
    meta = index_metadata(index.config)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")
    os.replace(tmp, path)
    return path


def load_index(snapshot_dir: Path, cfg: NearDedupConfig) -> MinHashIndex:
    """Read a snapshot's minhash index; raises ValueError if it was built with other hash settings."""
    path = Path(snapshot_dir) / INDEX_FILE
    check_index(path, cfg)
    table = pq.read_table(path)
    flat = table.column("signature").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    signatures = flat.astype(np.uint32).reshape(table.num_rows, cfg.num_hashes)
    return MinHashIndex(urls=table.column("url").to_pylist(), signatures=signatures, config=cfg)


class NearDedup:
    """Drop near-duplicates: of each cluster keep the document with the smallest (url, content hash).

    With a parent index, a document in the same cluster as any parent document is dropped as
    "near_duplicate_of_parent". A parent document whose url is in this batch is left out, as the batch
    holds its current version, and that version wins its cluster over pages new to this snapshot, so a
    refresh keeps the pages it already had. After run(), `index` holds the kept documents' signatures.
    """

    name = "near_duplicate"
    reasons = NEAR_DUPLICATE_REASONS

    def __init__(self, cfg: NearDedupConfig, parent: MinHashIndex | None = None) -> None:
        if parent is not None and _index_params(parent.config) != _index_params(cfg):
            raise ValueError("parent minhash index was built with other hash settings than this NearDedup")
        self.cfg = cfg
        self.parent = parent
        self.counts: Counter[str] = Counter(dict.fromkeys(self.reasons, 0))
        self.index = MinHashIndex(urls=[], signatures=np.empty((0, cfg.num_hashes), np.uint32), config=cfg)

    def run(self, docs: Sequence[Document]) -> list[Document]:
        """The kept documents, in their input order; counts[reason] says how many were dropped why."""
        if not self.cfg.enabled:
            return list(docs)
        parent_urls = set(self.parent.urls) if self.parent is not None else set()
        order = sorted(range(len(docs)),
                       key=lambda i: (docs[i].url not in parent_urls, docs[i].url, content_hash(docs[i].text)))
        canonical = [docs[i] for i in order]  # the keep rule and the clusters do not depend on input order
        signatures = minhash_signatures([d.text for d in canonical], self.cfg)
        parent_signatures = self._parent_signatures({d.url for d in canonical})
        num_parent = len(parent_signatures)
        clusters = near_duplicate_clusters(np.concatenate([parent_signatures, signatures]), self.cfg)[num_parent:]
        keep = np.zeros(len(docs), bool)
        for position, (doc_index, root) in enumerate(zip(order, clusters.tolist())):
            if root < num_parent:
                self.counts["near_duplicate_of_parent"] += 1
            elif root != num_parent + position:
                self.counts["near_duplicate"] += 1
            else:
                keep[doc_index] = True
        kept_positions = [p for p, i in enumerate(order) if keep[i]]
        self.index = MinHashIndex(urls=[canonical[p].url for p in kept_positions],
                                  signatures=signatures[kept_positions], config=self.cfg)
        return [doc for doc, kept in zip(docs, keep) if kept]

    def _parent_signatures(self, urls_here: set[str]) -> np.ndarray:
        if self.parent is None:
            return np.empty((0, self.cfg.num_hashes), np.uint32)
        still_there = [i for i, url in enumerate(self.parent.urls) if url not in urls_here]
        return self.parent.signatures[still_there]
