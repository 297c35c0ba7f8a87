"""Throughput and accuracy of MinHash LSH near-duplicate detection (tasks/clean/minhash.py); prints, asserts nothing.

On a snapshot (default: the demo's Python documentation) and on a synthetic corpus `--copies` times its
size: every document plus `copies - 1` variants with random word edits (substitute, insert, delete) at
rates from 0.5% to 50%. For each injected (original, variant) pair the exact shingle Jaccard is
computed, so recall is shown per Jaccard band next to the rate the LSH S-curve predicts; a false
positive is a document merged into a cluster whose kept document it shares under half its shingles with.

    PYTHONPATH=. python bench/dedup_bench.py
    PYTHONPATH=. python bench/dedup_bench.py --snapshot data/corpus/<id> --copies 5 --num-bands 20 --rows-per-band 5
"""

from __future__ import annotations

import argparse
import glob
import random
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tasks.clean.minhash import (
    INDEX_FILE,
    MinHashIndex,
    NearDedupConfig,
    load_index,
    minhash_signatures,
    near_duplicate_clusters,
    save_index,
    shingle_hashes,
)
from tasks.clean.pii import PiiConfig, RedactPii

EDIT_RATES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5)  # fraction of words edited per variant
JACCARD_BANDS = ((0.9, 1.01), (0.8, 0.9), (0.72, 0.8), (0.6, 0.72), (0.5, 0.6), (0.0, 0.5))


def perturb(text: str, rate: float, rng: random.Random, vocabulary: Sequence[str]) -> str:
    """The text with about `rate` of its words substituted, deleted or preceded by an inserted word."""
    out = []
    for word in text.split(" "):
        if rng.random() >= rate:
            out.append(word)
            continue
        edit = rng.randrange(3)
        if edit == 0:
            out.append(rng.choice(vocabulary))
        elif edit == 1:
            out.extend([rng.choice(vocabulary), word])
        # edit == 2: deleted
    return " ".join(out)


def synthetic_corpus(texts: list[str], copies: int, seed: int) -> tuple[list[str], list[int]]:
    """Originals first, then copies - 1 perturbed variants of each; returns texts and each one's original."""
    rng = random.Random(seed)
    vocabulary = sorted({w for t in texts[:50] for w in t.split()})
    out, family = list(texts), list(range(len(texts)))
    for copy in range(1, copies):
        for index, text in enumerate(texts):
            out.append(perturb(text, EDIT_RATES[(copy - 1 + index) % len(EDIT_RATES)], rng, vocabulary))
            family.append(index)
    return out, family


def shingle_sets(texts: list[str], ngram: int) -> list[set[int]]:
    hashes, offsets = shingle_hashes(texts, ngram)
    return [set(hashes[offsets[i]:offsets[i + 1]].tolist()) for i in range(len(texts))]


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def timed_dedup(texts: list[str], cfg: NearDedupConfig) -> tuple[np.ndarray, float, float]:
    """Clusters, seconds for signatures, seconds for banding + union-find."""
    start = time.perf_counter()
    signatures = minhash_signatures(texts, cfg)
    signed = time.perf_counter()
    clusters = near_duplicate_clusters(signatures, cfg)
    return clusters, signed - start, time.perf_counter() - signed


def peak_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def report_speed(name: str, texts: list[str], cfg: NearDedupConfig) -> np.ndarray:
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    words = sum(len(t.split()) for t in texts)
    clusters, sign_s, lsh_s = timed_dedup(texts, cfg)
    total = sign_s + lsh_s
    # one process, numpy single-threaded elementwise: these figures are per core
    print(f"{name}: {len(texts)} docs, {megabytes:.1f} MB, {words / 1e6:.2f} M words | signatures {sign_s:.2f} s, "
          f"LSH + union-find {lsh_s:.3f} s | {len(texts) / total:,.0f} docs/s, {megabytes / total:.2f} MB/s per core "
          f"| clusters with >1 doc: {int((np.bincount(clusters) > 1).sum())}, docs dropped: "
          f"{len(texts) - len(np.unique(clusters))} | peak memory so far {peak_megabytes():.0f} MB")
    return clusters


def report_accuracy(texts: list[str], family: list[int], clusters: np.ndarray, cfg: NearDedupConfig) -> None:
    sets = shingle_sets(texts, cfg.ngram)
    originals = len(set(family))
    pairs = [(family[i], i) for i in range(originals, len(texts))]
    print(f"injected (original, variant) pairs: {len(pairs)}; LSH threshold (1/b)^(1/r) = {cfg.threshold:.3f}")
    print(f"{'true Jaccard':>14} {'pairs':>6} {'caught':>7} {'recall':>7} {'S-curve':>8}")
    similarity = np.array([jaccard(sets[a], sets[b]) for a, b in pairs])
    caught = np.array([clusters[a] == clusters[b] for a, b in pairs])
    for low, high in JACCARD_BANDS:
        in_band = (similarity >= low) & (similarity < high)
        if not in_band.any():
            continue
        predicted = np.mean(1 - (1 - similarity[in_band] ** cfg.rows_per_band) ** cfg.num_bands)
        print(f"{f'[{low:.2f}, {min(high, 1):.2f}]':>14} {in_band.sum():6d} {caught[in_band].sum():7d} "
              f"{caught[in_band].mean():7.3f} {predicted:8.3f}")
    kept = {int(root) for root in np.unique(clusters)}
    dropped = [i for i in range(len(texts)) if i not in kept]
    false_positives = sum(jaccard(sets[i], sets[clusters[i]]) < 0.5 for i in dropped)
    cross_family = sum(family[i] != family[clusters[i]] for i in dropped)
    print(f"dropped {len(dropped)}; false positives (Jaccard < 0.5 with the kept doc): {false_positives}; "
          f"merged across originals (the snapshot's own near-duplicates included): {cross_family}")


def report_index(texts: list[str], cfg: NearDedupConfig, folder: Path) -> None:
    signatures = minhash_signatures(texts, cfg)
    start = time.perf_counter()
    save_index(MinHashIndex(urls=[f"doc-{i}" for i in range(len(texts))], signatures=signatures, config=cfg), folder)
    saved = time.perf_counter()
    load_index(folder, cfg)
    size = (folder / INDEX_FILE).stat().st_size / 1e6
    print(f"minhash index of {len(texts)} docs: {size:.1f} MB, save {saved - start:.2f} s, "
          f"load {time.perf_counter() - saved:.2f} s")


def report_pii(texts: list[str]) -> None:
    redact = RedactPii(PiiConfig())
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    start = time.perf_counter()
    for text in texts:
        redact.fix(text)
    seconds = time.perf_counter() - start
    print(f"PII redaction: {len(texts) / seconds:,.0f} docs/s, {megabytes / seconds:.2f} MB/s per core | "
          f"{dict(redact.counts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshot", default="/tmp/demo1/data/corpus/*", help="snapshot folder (glob allowed)")
    parser.add_argument("--copies", type=int, default=10, help="synthetic corpus size as a multiple of the snapshot")
    parser.add_argument("--num-bands", type=int, default=NearDedupConfig().num_bands)
    parser.add_argument("--rows-per-band", type=int, default=NearDedupConfig().rows_per_band)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = NearDedupConfig(num_bands=args.num_bands, rows_per_band=args.rows_per_band)
    shards = sorted(glob.glob(f"{args.snapshot}/documents-*.parquet"))
    if not shards:
        raise SystemExit(f"no documents-*.parquet under {args.snapshot}")
    texts = [t for shard in shards for t in pq.read_table(shard, columns=["text"]).column("text").to_pylist()]
    report_speed("snapshot", texts, cfg)
    report_pii(texts)
    corpus, family = synthetic_corpus(texts, args.copies, args.seed)
    clusters = report_speed(f"synthetic {args.copies}x", corpus, cfg)
    report_accuracy(corpus, family, clusters, cfg)
    with tempfile.TemporaryDirectory() as folder:
        report_index(corpus, cfg, Path(folder))
    print(f"peak memory (the exact Jaccard sets of the accuracy check included): {peak_megabytes():.0f} MB")


if __name__ == "__main__":
    main()
