"""The corpus stage: crawl, local, WARC/WET and HF sources -> extract -> clean -> dedup -> Parquet snapshot."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.clean import CleaningAccount, CleanPipeline, Document, account_batch_step, default_pipeline, sample_examples
from tasks.corpus_report import write_cleaning_report
from tasks.crawl import CrawlConfig, crawl, saved_pages
from tasks.dedup import ExactDedup, content_hash, dedup_key
from tasks.extract import ExtractConfig, extract_pages
from tasks.filters import C4_LINE_REASONS, QUALITY_DROP_REASONS, C4LineFilter, QualityConfig, quality_steps
from tasks.langid import LANGUAGE_DROP_REASONS, LanguageConfig, language_steps
from tasks.minhash import (
    INDEX_FILE, NEAR_DUPLICATE_REASONS, MinHashIndex, NearDedup, NearDedupConfig, load_index, save_index,
)
from tasks.pii import PII_COUNTS, PiiConfig, RedactPii
from tasks.sources import (
    WARC_COUNTS, HuggingFaceSource, WarcSourceConfig, match_patterns, read_hf_datasets, read_local_files,
    read_warc_files,
)

logger = logging.getLogger(__name__)

# the snapshot contract (see ARCHITECTURE.md): one row per document
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
# every reason a document can be dropped for; each becomes a dropped_<reason> statistic
DROP_REASONS = ("extract_failed", "extract_empty", "empty", "too_few_words", *LANGUAGE_DROP_REASONS,
                *QUALITY_DROP_REASONS, "duplicate", *NEAR_DUPLICATE_REASONS)
_CRAWL_STATS = ("pages_fetched", "pages_disallowed_robots", "pages_failed")


class CorpusConfig(BaseModel):
    """Where documents come from and how they are cleaned into a snapshot."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    """Web crawl (seeds and/or a local site served on 127.0.0.1)."""
    local_files: list[str] = Field(default=[])
    """Glob patterns of local .txt, .jsonl, .parquet or .html/.htm files ('**' recurses)."""
    warc: WarcSourceConfig = Field(default_factory=WarcSourceConfig)
    """WARC/WET files (Common Crawl layout): HTML responses extracted, WET conversion text taken as is."""
    hf_datasets: list[HuggingFaceSource] = Field(default=[])
    """Hugging Face dataset splits (load_dataset or load_from_disk), read offline in batches."""
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    """HTML main-text extraction (crawled pages, local HTML files and WARC responses)."""
    min_words: int = Field(default=20, ge=0)
    """Drop documents with fewer whitespace-separated words than this, after cleaning."""
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    """Language identification (py3langid) and which languages are kept."""
    quality: QualityConfig = Field(default_factory=QualityConfig)
    """Quality filters with their published defaults: Gopher repetition and quality, C4, FineWeb."""
    near_dedup: NearDedupConfig = Field(default_factory=NearDedupConfig)
    """MinHash LSH near-duplicate removal, within the snapshot and against its parent."""
    pii: PiiConfig = Field(default_factory=PiiConfig)
    """E-mail and IP address redaction in the kept documents."""
    documents_per_shard: int = Field(default=10_000, ge=1)
    """Rows per documents-NNNNN.parquet file."""

    @field_validator("local_files")
    @classmethod
    def _patterns_match(cls, patterns: list[str]) -> list[str]:
        _, problems = match_patterns(patterns)
        if problems:
            raise ValueError("; ".join(problems))
        return patterns

    @model_validator(mode="after")
    def _has_source(self) -> CorpusConfig:
        if not (self.crawl.seeds or self.crawl.local_site or self.local_files or self.warc.patterns
                or self.hf_datasets):
            raise ValueError("no corpus source: set crawl.seeds, crawl.local_site, local_files, warc.patterns "
                             "or hf_datasets")
        return self


def crawled_documents(raw_dir: Path, cfg: ExtractConfig, counts: Counter[str]) -> Iterator[Document]:
    """Documents from the HTML pages a crawl saved in raw_dir; extraction failures go to counts."""
    pages = {record.url: record for record in saved_pages(raw_dir)}
    extracted = extract_pages(((r.url, r.body, r.content_type_with_charset) for r in pages.values()), cfg, counts)
    for url, page in extracted:
        yield Document(url=url, source="crawl", title=page.title, text=page.text, fetched_at=pages[url].fetched_at)


def clean_pipeline(cfg: CorpusConfig) -> CleanPipeline:
    """Fixes, empty/short filters, language id and filter, quality filters, PII redaction, in that order."""
    steps = default_pipeline(cfg.min_words).steps
    # PII last: only documents that survive the filters pay for it, and dedup sees the redacted text
    return CleanPipeline([*steps, *language_steps(cfg.language), *quality_steps(cfg.quality), RedactPii(cfg.pii)])


def clean_documents(docs: Iterable[Document], pipeline: CleanPipeline, near_dedup: NearDedup,
                    counts: Counter[str], account: CleaningAccount | None = None) -> list[Document]:
    """Fix, normalise and filter, sort by url, drop exact duplicates (the first url wins), then near-duplicates.

    With account, every step's documents and bytes in and out and a few dropped documents are added to it.
    """
    cleaned = sorted(pipeline.run(docs), key=lambda d: (d.url, content_hash(d.text)))
    dedup = CleanPipeline([ExactDedup()])
    unique = list(dedup.run(cleaned))
    kept = near_dedup.run(unique)
    if account is not None:
        account.add_pipeline(pipeline)
        account.add_pipeline(dedup)
        if near_dedup.cfg.enabled:
            account.add(*account_batch_step(near_dedup.name, unique, kept, near_dedup.counts))
    counts.update(pipeline.counts)
    counts.update(dedup.counts)
    counts.update(near_dedup.counts)
    for step in pipeline.steps:
        if isinstance(step, C4LineFilter):
            counts.update(step.lines_removed)
        if isinstance(step, RedactPii):
            counts.update(step.counts)
    return kept


def _rows(docs: Iterable[Document]) -> list[dict]:
    return [
        {"id": dedup_key(d.text), "url": d.url, "source": d.source, "title": d.title, "text": d.text,
         "language": d.language, "language_score": d.language_score, "fetched_at": d.fetched_at,
         "content_hash": content_hash(d.text)}
        for d in docs
    ]


def write_snapshot(docs: list[Document], out_dir: Path, documents_per_shard: int) -> int:
    """Write documents-NNNNN.parquet shards atomically, skipping shards already there; returns the count.

    An empty corpus still gets one (empty) shard, so readers always find the schema.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    chunks = [docs[i:i + documents_per_shard] for i in range(0, len(docs), documents_per_shard)] or [[]]
    for index, chunk in enumerate(chunks):
        final = out_dir / f"documents-{index:05d}.parquet"
        if final.exists():
            logger.info("shard %s already written, reusing it", final.name)
            continue
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(_rows(chunk), schema=SNAPSHOT_SCHEMA), tmp, compression="zstd")
        os.replace(tmp, final)
    return len(chunks)


def read_snapshot(snapshot_dir: Path) -> pa.Table:
    """All rows of a snapshot, in shard order."""
    shards = sorted(Path(snapshot_dir).glob("documents-*.parquet"))
    return pa.concat_tables([pq.read_table(s, schema=SNAPSHOT_SCHEMA) for s in shards])


def parent_index(parent_dir: Path | None, cfg: NearDedupConfig) -> MinHashIndex | None:
    """The parent snapshot's minhash index, if there is a parent and it has one."""
    if parent_dir is None or not cfg.enabled or not (Path(parent_dir) / INDEX_FILE).exists():
        return None
    return load_index(parent_dir, cfg)


def build_snapshot(cfg: CorpusConfig, out_dir: Path, parent_dir: Path | None = None) -> dict[str, int | float]:
    """Build the corpus snapshot in out_dir (raw crawl in out_dir/raw); returns the stage statistics.

    With parent_dir (the previous snapshot), documents that near-duplicate its documents are dropped.
    """
    out_dir = Path(out_dir)
    counts: Counter[str] = Counter()
    pipeline = clean_pipeline(cfg)  # built before any crawling, so a bad step fails at once
    near_dedup = NearDedup(cfg.near_dedup, parent=parent_index(parent_dir, cfg.near_dedup))
    stats: dict[str, int | float] = dict.fromkeys(_CRAWL_STATS, 0)
    docs: list[Document] = []
    if cfg.crawl.seeds or cfg.crawl.local_site:
        stats.update(crawl(cfg.crawl, out_dir / "raw"))
        docs.extend(crawled_documents(out_dir / "raw", cfg.extract, counts))
        logger.info("extracted %d documents from crawled pages", len(docs))
    if cfg.local_files:
        docs.extend(read_local_files(cfg.local_files, cfg.extract, counts))
    if cfg.warc.patterns:
        docs.extend(read_warc_files(cfg.warc, cfg.extract, counts))
    if cfg.hf_datasets:
        docs.extend(read_hf_datasets(cfg.hf_datasets))
    stats["documents_in"] = len(docs) + counts["extract_failed"] + counts["extract_empty"]
    account = CleaningAccount()
    kept = clean_documents(docs, pipeline, near_dedup, counts, account)
    stats["shards"] = write_snapshot(kept, out_dir, cfg.documents_per_shard)
    if cfg.near_dedup.enabled:
        save_index(near_dedup.index, out_dir)  # the next refresh dedups against this snapshot
    stats.update({f"dropped_{reason}": counts[reason] for reason in DROP_REASONS})
    stats.update({f"lines_removed_{reason}": counts[reason] for reason in C4_LINE_REASONS})
    stats.update({kind: counts[kind] for kind in PII_COUNTS})
    stats.update({kind: counts[kind] for kind in WARC_COUNTS})
    stats["documents"] = len(kept)
    stats["words"] = sum(len(d.text.split()) for d in kept)
    stats["characters"] = sum(len(d.text) for d in kept)
    stats["bytes_in"] = account.bytes_in  # UTF-8 bytes of extracted text that went into cleaning
    stats["bytes_out"] = account.bytes_out  # UTF-8 bytes of text in the snapshot
    write_cleaning_report(out_dir, account.steps, account.drop_examples, sample_examples(kept, "kept", "kept"), kept,
                          drop_counts={reason: counts[reason] for reason in DROP_REASONS})
    logger.info("snapshot %s: %d documents, %d words", out_dir, stats["documents"], stats["words"])
    return stats
