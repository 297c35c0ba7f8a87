"""The corpus stage: crawl, local, WARC/WET and HF sources -> extract -> clean -> dedup -> Parquet snapshot.

Sharded and streaming, in out_dir/work/ (deleted when the snapshot is complete):
1. split: every source, read once in a fixed order, into input shards of raw items (tasks/corpus/work_shards.py);
2. clean: map_shards(clean_shard) extracts, fixes, filters and redacts each shard (tasks/corpus/clean_shard.py);
3. dedup: exact then MinHash near-dedup, against the parent and within the snapshot, over a few
   fixed-size keys per document (tasks/corpus/dedup.py);
4. write: map_shards(write_shard) writes documents-NNNNN.parquet in (url, content_hash) order, then
   the minhash index, the cleaning report and, for a refresh, changes.json (tasks/corpus/write.py).
Every file is written under a temporary name and renamed when complete, so a run killed at any point
(SIGKILL included) resumes: the finished split and cleaned shards are reused, the rest redone. Each
reused piece is first checked against the size and sha256 recorded when it was written (tasks/pieces.py):
a damaged input shard is written again from the sources, a damaged cleaned shard cleaned again, a
damaged crawl batch fetched again. Those records stay out of the snapshot: work/ and the crawl's
sidecars are removed when it is complete.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.artifacts import remove_tree
from tasks.clean.c4 import C4_LINE_REASONS
from tasks.clean.langid import LANGUAGE_DROP_REASONS
from tasks.clean.minhash import INDEX_FILE, check_index
from tasks.clean.pii import PII_COUNTS
from tasks.clean.quality import QUALITY_DROP_REASONS
from tasks.clean.steps import Document, ExampleSample, StepCount
from tasks.corpus.clean_shard import (
    EXTRACT_DROP_REASONS,
    CleanShardSpec,
    clean_pipeline,
    clean_shard,
    read_account,
    url_hash,
)
from tasks.corpus.cleaning_report import write_cleaning_report_of
from tasks.corpus.config import CorpusConfig
from tasks.corpus.dedup import DEDUP_REASONS, DedupResult, dedup_shards
from tasks.corpus.hf_datasets import read_hf_datasets
from tasks.corpus.local_files import HtmlPage, local_items
from tasks.corpus.warc_files import WARC_COUNTS, warc_items
from tasks.corpus.work_shards import (
    WORK_DIR,
    damaged_input_shards,
    input_records,
    read_split,
    reset_work,
    rewrite_input_shards,
    split_sources,
    write_json_atomically,
)
from tasks.corpus.write import (
    SNAPSHOT_SCHEMA,
    WriteShardSpec,
    refresh_changes,
    write_dedup_dropped,
    write_index,
    write_plans,
    write_shard,
)
from tasks.crawl.run import crawl, saved_pages
from tasks.crawl.warc import forget_batch_digests
from tasks.parallel import ShardMap, StepRunner, run_inline, serial_map

__all__ = ["DROP_REASONS", "SNAPSHOT_SCHEMA", "CorpusConfig", "build_snapshot", "clean_pipeline", "read_snapshot"]

logger = logging.getLogger(__name__)

# every reason a document can be dropped for; each becomes a dropped_<reason> statistic
DROP_REASONS = (*EXTRACT_DROP_REASONS, "empty", "too_few_words", *LANGUAGE_DROP_REASONS, *QUALITY_DROP_REASONS,
                *DEDUP_REASONS)
_CRAWL_STATS = ("pages_fetched", "pages_disallowed_robots", "pages_failed")


def read_snapshot(snapshot_dir: Path) -> pa.Table:
    """All rows of a snapshot, in shard order."""
    shards = sorted(Path(snapshot_dir).glob("documents-*.parquet"))
    return pa.concat_tables([pq.read_table(s, schema=SNAPSHOT_SCHEMA) for s in shards])


def crawled_pages(raw_dir: Path) -> Iterator[HtmlPage]:
    """The HTML pages a crawl saved in raw_dir, one per url (the first saved), not extracted yet."""
    seen: set[int] = set()  # 64-bit url hashes: a url saved twice (e.g. by a resumed crawl) is read once
    for record in saved_pages(raw_dir):
        key = url_hash(record.url)
        if key not in seen:
            seen.add(key)
            yield HtmlPage(url=record.url, source="crawl", body=record.body,
                           content_type=record.content_type_with_charset, fetched_at=record.fetched_at)


def _source_items(cfg: CorpusConfig, raw_dir: Path, counts: Counter[str]) -> Iterator[Document | HtmlPage]:
    """Every source's items in a fixed order: crawled pages, local files, WARC/WET files, HF datasets; each
    configured source's count is counts["items_<source>"] (so an empty corpus can say which gave nothing)."""
    sources = {
        "crawl": (cfg.crawl.seeds or cfg.crawl.local_site) and (lambda: crawled_pages(raw_dir)),
        "local_files": cfg.local_files and (lambda: local_items(cfg.local_files, cfg.local_text_format)),
        "warc": cfg.warc.patterns and (lambda: warc_items(cfg.warc, counts)),
        "hf_datasets": cfg.hf_datasets and (lambda: read_hf_datasets(cfg.hf_datasets)),
    }
    for source, items in sources.items():
        if items:
            counts[f"items_{source}"] += 0
            for item in items():
                counts[f"items_{source}"] += 1
                yield item


def _crawl(cfg: CorpusConfig, out_dir: Path, parent_dir: Path | None) -> dict[str, int]:
    """Run the crawl into out_dir/raw; a refresh lets the crawler reuse the parent's raw pages if it can."""
    if parent_dir is not None and "previous_raw_dir" in inspect.signature(crawl).parameters:
        return crawl(cfg.crawl, out_dir / "raw", previous_raw_dir=Path(parent_dir) / "raw")
    return crawl(cfg.crawl, out_dir / "raw")


def check_parent(parent_dir: Path, cfg: CorpusConfig) -> None:
    """Raise ValueError unless parent_dir is a snapshot this build can dedup against (checked before any work)."""
    if not any(parent_dir.glob("documents-*.parquet")):
        raise ValueError(f"parent_dir {str(parent_dir)!r} holds no documents-*.parquet: not a corpus snapshot")
    if cfg.near_dedup.enabled and (parent_dir / INDEX_FILE).exists():
        check_index(parent_dir / INDEX_FILE, cfg.near_dedup)


def _fingerprint(cfg: CorpusConfig, parent_dir: Path | None) -> str:
    """What the work folder was made for: a finished split made for another config is not reused."""
    text = cfg.model_dump_json() + "\n" + str(parent_dir)
    return hashlib.sha256(text.encode()).hexdigest()


def _split(cfg: CorpusConfig, out_dir: Path, work: Path, parent_dir: Path | None) -> dict:
    """Crawl and split every source into input shards, unless a finished split for this config is in work/."""
    fingerprint = _fingerprint(cfg, parent_dir)
    done = read_split(work, fingerprint)
    if done is not None and _repair_input_shards(cfg, out_dir, work, done):
        logger.info("reusing the split in %s (%d shards)", work, done["shards"])
        return done
    crawl_stats: dict[str, int] = dict.fromkeys(_CRAWL_STATS, 0)
    if cfg.crawl.seeds or cfg.crawl.local_site:
        crawl_stats.update(_crawl(cfg, out_dir, parent_dir))
    reset_work(work)
    counts: Counter[str] = Counter()
    shards, items = split_sources(_source_items(cfg, out_dir / "raw", counts), work, cfg.work_shard_documents)
    record = {"fingerprint": fingerprint, "shards": shards, "items": items, "counts": dict(counts),
              "crawl": crawl_stats, "pieces": input_records(work, shards)}
    write_json_atomically(record, work / "split.json")
    logger.info("split %d source items into %d shards", items, shards)
    return record


def _repair_input_shards(cfg: CorpusConfig, out_dir: Path, work: Path, split: dict) -> bool:
    """Write again, from the sources, the input shards of a finished split damaged since; False when the
    split must be redone (a rewritten shard differs from its record: the sources changed)."""
    damaged = damaged_input_shards(work, split)
    if not damaged:
        return True
    items = _source_items(cfg, out_dir / "raw", Counter())  # the split's counts stay as recorded
    return rewrite_input_shards(items, work, cfg.work_shard_documents, split, damaged)


def _merge_accounts(work: Path, shards: int) -> tuple[list[StepCount], dict[str, ExampleSample], Counter[str]]:
    """The cleaning step table, dropped examples and counts of all shards, merged."""
    steps: list[StepCount] = []
    examples: dict[str, ExampleSample] = {}
    counts: Counter[str] = Counter()
    for shard in range(shards):
        account = read_account(work, shard)
        if not steps:
            steps = [StepCount(s.step) for s in account["steps"]]
        for total, part in zip(steps, account["steps"]):
            total.merge(part)
        for reason, dropped in account["drop_examples"].items():
            sample = examples.setdefault(reason, ExampleSample())
            for example in dropped:
                sample.offer(example)
        counts.update(account["counts"])
    return steps, examples, counts


@dataclass
class _Deduplicated:
    """The merged cleaning account of every shard, the dedup result and the output shard count."""

    steps: list[StepCount]
    examples: dict[str, ExampleSample]
    counts: Counter[str]
    dedup: DedupResult
    shards: int


def build_snapshot(cfg: CorpusConfig, out_dir: Path, parent_dir: Path | None = None,
                   map_shards: ShardMap = serial_map, run_step: StepRunner = run_inline) -> dict[str, int | float]:
    """Build the corpus snapshot in out_dir (raw crawl in out_dir/raw); returns the stage statistics.

    With parent_dir (the previous snapshot), documents that duplicate or near-duplicate a parent
    document of another url are dropped, and changes.json lists the urls added, changed and removed.
    map_shards runs the cleaning and writing shards (in process, on local cores, or on a cluster);
    run_step runs the five steps: read sources, clean shards, deduplicate, write snapshot, report.
    """
    out_dir = Path(out_dir)
    parent_dir = Path(parent_dir) if parent_dir is not None else None
    clean_pipeline(cfg)  # built before any crawling, so a bad step (e.g. an unreadable file) fails at once
    if parent_dir is not None:
        check_parent(parent_dir, cfg)
    work = out_dir / WORK_DIR
    # the crawl reads over the network; a retry resumes it from the pages it archived
    split = run_step("read sources", lambda: _split(cfg, out_dir, work, parent_dir), retries=1)
    dropped_dir = out_dir / "dropped" if cfg.write_dropped else None
    specs = [CleanShardSpec(shard, work, cfg, dropped_dir) for shard in range(split["shards"])]
    cleaned = run_step("clean shards", lambda: map_shards(clean_shard, specs), sharded=True)
    deduplicated = run_step("deduplicate", lambda: _deduplicate(cfg, work, split, dropped_dir, parent_dir))
    written = run_step("write snapshot", lambda: _write_snapshot(cfg, work, out_dir, deduplicated.shards, map_shards),
                       sharded=True)
    stats = run_step("report", lambda: _report(out_dir, split, cleaned, deduplicated, written, parent_dir))
    remove_tree(work)
    forget_batch_digests(out_dir / "raw")  # the snapshot holds the same files as before digests were kept
    logger.info("snapshot %s: %d documents, %d words", out_dir, stats["documents"], stats["words"])
    return stats


def _deduplicate(cfg: CorpusConfig, work: Path, split: dict, dropped_dir: Path | None,
                 parent_dir: Path | None) -> _Deduplicated:
    """Merge the shards' cleaning accounts, rank and deduplicate every kept document, plan the output shards."""
    steps, examples, counts = _merge_accounts(work, split["shards"])
    counts.update(split["counts"])
    dedup = dedup_shards(work, split["shards"], cfg.near_dedup, parent_dir)
    counts.update(dedup.counts())
    if dropped_dir is not None:
        write_dedup_dropped(work, dropped_dir, dedup.shard_of_rank, dedup.row_of_rank, dedup.reason, DEDUP_REASONS,
                            split["shards"])
    shards = write_plans(work, dedup.kept_ranks, dedup.shard_of_rank, dedup.row_of_rank, cfg.documents_per_shard)
    return _Deduplicated(steps, examples, counts, dedup, shards)


def _write_snapshot(cfg: CorpusConfig, work: Path, out_dir: Path, shards: int, map_shards: ShardMap) -> list[dict]:
    """documents-NNNNN.parquet from the plans (one shard per item), then the minhash index."""
    written = map_shards(write_shard, [WriteShardSpec(s, work, out_dir, cfg.near_dedup) for s in range(shards)])
    if cfg.near_dedup.enabled:
        write_index(work, out_dir, shards, cfg.near_dedup)  # the next refresh dedups against this snapshot
    return written


def _report(out_dir: Path, split: dict, cleaned: list[bool], deduplicated: _Deduplicated, written: list[dict],
            parent_dir: Path | None) -> dict[str, int | float]:
    """The cleaning report and plots, changes.json for a refresh, and the stage statistics."""
    steps, examples, counts, dedup = deduplicated.steps, deduplicated.examples, deduplicated.counts, deduplicated.dedup
    words = array("q")
    languages: Counter[str | None] = Counter()
    for part in written:
        words.frombytes(part["words"].astype("int64").tobytes())
        languages.update(part["languages"])
    for reason, dropped in dedup.drop_examples.items():
        sample = examples.setdefault(reason, ExampleSample())
        for example in dropped:
            sample.offer(example)
    drop_counts = {reason: counts[reason] for reason in DROP_REASONS}
    write_cleaning_report_of(out_dir, [*steps, *dedup.steps], {r: s.examples() for r, s in examples.items()},
                             dedup.kept_examples, words, languages, drop_counts=drop_counts)

    stats: dict[str, int | float] = dict(split["crawl"])
    stats["documents_in"] = split["items"]
    stats.update({key: n for key, n in sorted(split["counts"].items()) if key.startswith("items_")})  # per source
    stats["work_shards"] = split["shards"]
    stats["shards_reused"] = sum(not fresh for fresh in cleaned)
    stats["shards"] = deduplicated.shards
    stats.update({f"dropped_{reason}": n for reason, n in drop_counts.items()})
    stats.update({f"lines_removed_{reason}": counts[reason] for reason in C4_LINE_REASONS})
    stats.update({kind: counts[kind] for kind in PII_COUNTS})
    stats.update({kind: counts[kind] for kind in WARC_COUNTS})
    stats["documents"] = len(words)
    stats["words"] = sum(words)
    stats["characters"] = sum(part["characters"] for part in written)
    stats["bytes_in"] = steps[0].bytes_in if steps else 0  # UTF-8 bytes of extracted text that went into cleaning
    stats["bytes_out"] = dedup.steps[-1].bytes_out if dedup.steps else 0  # UTF-8 bytes of text in the snapshot
    if parent_dir is not None:
        stats.update(refresh_changes(out_dir, parent_dir))
    return stats
