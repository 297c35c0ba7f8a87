"""The corpus stage's config (one section of tasks/config.py's PipelineConfig): sources, cleaning, sharding.

Every pretrainflow command loads it, so it imports config classes only; clean_shard.py builds the steps.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.clean.extract import ExtractConfig
from tasks.clean.langid import LanguageConfig
from tasks.clean.minhash_config import NearDedupConfig
from tasks.clean.normalize_config import NormalizeConfig
from tasks.clean.pii import PiiConfig
from tasks.clean.quality import QualityConfig
from tasks.corpus.hf_datasets import HuggingFaceSource
from tasks.corpus.local_files import TextFormat, match_patterns
from tasks.corpus.warc_files import WarcSourceConfig
from tasks.crawl.config import CrawlConfig


class CorpusConfig(BaseModel):
    """Where documents come from and how they are cleaned into a snapshot."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    """Web crawl (seeds and/or a local site served on 127.0.0.1)."""
    local_files: list[str] = Field(default=[])
    """Glob patterns of local .txt, .jsonl, .parquet or .html/.htm files ('**' recurses)."""
    local_text_format: TextFormat = "file"
    """How a local .txt file holds documents: 'file' (the file is one document), 'bert' (Google BERT's
    create_pretraining_data input: one sentence per line, a blank line between documents) or 'lines'
    (one document per line)."""
    warc: WarcSourceConfig = Field(default_factory=WarcSourceConfig)
    """WARC/WET files (Common Crawl layout): HTML responses extracted, WET conversion text taken as is."""
    hf_datasets: list[HuggingFaceSource] = Field(default=[])
    """Hugging Face dataset splits (load_dataset or load_from_disk), read offline in batches."""
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    """HTML main-text extraction (crawled pages, local HTML files and WARC responses)."""
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)
    """Full-width folding and quote uncurling: everywhere but in documents written mostly in CJK, by default."""
    min_words: int = Field(default=20, ge=0)
    """Drop documents with fewer words than this, after cleaning (whitespace-separated; each character in
    scripts written without spaces: Chinese, Japanese, Thai)."""
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
    work_shard_documents: int = Field(default=250, ge=1)
    """Source documents per work shard: the unit of parallel extraction and cleaning, and of resume."""
    write_dropped: bool = False
    """Also write dropped/dropped-NNNNN.parquet: every dropped document's url, text, step and reason."""

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
