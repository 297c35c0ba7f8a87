"""Corpus sources other than the crawl, as documents.

Local files (.txt, .jsonl, .parquet, .html/.htm, by glob patterns), WARC/WET files in Common Crawl
layout (HTML responses extracted like crawled pages, WET conversion records taken as text) and
Hugging Face datasets (load_dataset or load_from_disk, offline, read in Arrow batches).
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
import re
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.clean import Document
from tasks.extract import ExtractConfig, decode_html, extract_html, extract_pages
from tasks.warc import WarcRecord, iter_warc_records

if TYPE_CHECKING:  # datasets is imported only when a Hugging Face source is read (offline mode must come first)
    from datasets import Dataset, IterableDataset

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".parquet", ".html", ".htm")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")


@dataclass(frozen=True, slots=True)
class HtmlPage:
    """An HTML page whose main text is not extracted yet (the corpus stage extracts it in its cleaning shards)."""

    url: str
    source: Literal["crawl", "local", "warc"]
    body: bytes
    content_type: str | None  # the HTTP Content-Type with its charset, if the page came with one
    fetched_at: datetime  # timezone-aware, UTC


def match_patterns(patterns: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Files matched by the glob patterns (sorted, unique) and the problems found, one line each.

    Problems: a pattern matching no file, a matched file with an unsupported suffix.
    """
    return _match_files(patterns, "local_files", _suffix_problem)


def _suffix_problem(path: Path) -> str | None:
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        return None
    return f"whose type is not supported (supported: {', '.join(SUPPORTED_SUFFIXES)})"


def _match_files(
    patterns: Iterable[str], field: str, problem_of: Callable[[Path], str | None]
) -> tuple[list[Path], list[str]]:
    """Glob each pattern; a pattern matching nothing and each file problem_of rejects is one problem line."""
    files: dict[Path, None] = {}
    problems: list[str] = []
    for pattern in patterns:
        matched = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not matched:
            problems.append(f"{field} pattern {pattern!r} matches no file")
        for path in matched:
            problem = problem_of(path)
            if problem:
                problems.append(f"{field} pattern {pattern!r} matches {str(path)!r}, {problem}")
            files[path.resolve()] = None
    return sorted(files), problems


def resolve_patterns(patterns: Iterable[str]) -> list[Path]:
    """Files matched by the glob patterns; raises ValueError listing every bad pattern or file."""
    files, problems = match_patterns(patterns)
    if problems:
        raise ValueError("; ".join(problems))
    return files


def _mtime(path: Path) -> datetime:
    """File modification time in UTC, microsecond precision (the snapshot's fetched_at)."""
    ns = path.stat().st_mtime_ns
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC) + timedelta(microseconds=ns // 1000 % 1_000_000)


def _paragraphs(text: str) -> str:
    """Plain text -> one paragraph per line.

    If the file separates paragraphs by blank lines, lines inside a paragraph are hard wraps and
    are joined; otherwise every line already is a paragraph.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not _BLANK_LINE.search(text.strip("\n")):
        return text
    blocks = _BLANK_LINE.split(text)
    return "\n".join(" ".join(line.strip() for line in block.split("\n") if line.strip()) for block in blocks)


def read_txt(path: Path) -> Iterator[Document]:
    """One document per .txt file (UTF-8; undecodable bytes are replaced)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    yield Document(url=path.as_uri(), source="local", title=None, text=_paragraphs(text), fetched_at=_mtime(path))


def _optional_str(record: dict, field: str, where: str) -> str | None:
    value = record.get(field)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")
    return value


def read_jsonl(path: Path) -> Iterator[Document]:
    """One document per line with a string 'text' field; optional 'url' and 'title'."""
    fetched_at = _mtime(path)
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc})") from exc
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{where}: expected a JSON object with a string 'text' field")
            url = _optional_str(record, "url", where) or f"{path.as_uri()}#line={number}"
            yield Document(url=url, source="local", title=_optional_str(record, "title", where),
                           text=record["text"], fetched_at=fetched_at)


def read_parquet(path: Path) -> Iterator[Document]:
    """One document per row of a 'text' column; optional 'url' and 'title' columns."""
    fetched_at = _mtime(path)
    parquet = pq.ParquetFile(path)
    names = set(parquet.schema_arrow.names)
    if "text" not in names:
        raise ValueError(f"{path}: no 'text' column (columns: {', '.join(sorted(names))})")
    columns = [c for c in ("text", "url", "title") if c in names]
    row = 0
    for batch in parquet.iter_batches(columns=columns, batch_size=1024):
        for record in batch.to_pylist():
            row += 1
            if record["text"] is None:
                continue
            url = record.get("url") or f"{path.as_uri()}#row={row}"
            yield Document(url=url, source="local", title=record.get("title"), text=record["text"],
                           fetched_at=fetched_at)


def extract_page(page: HtmlPage, cfg: ExtractConfig, counts: Counter[str]) -> Iterator[Document]:
    """The page's main text as one document; failures are counted like crawled pages."""
    try:
        extracted = extract_html(decode_html(page.body, page.content_type), page.url, cfg)
    except Exception as exc:  # one bad page must not stop a corpus build
        logger.warning("extraction failed for %s: %s: %s", page.url, type(exc).__name__, exc)
        counts["extract_failed"] += 1
        return
    if extracted is None:
        counts["extract_empty"] += 1
        return
    yield Document(url=page.url, source=page.source, title=extracted.title, text=extracted.text,
                   fetched_at=page.fetched_at)


def read_local_files(patterns: Iterable[str], cfg: ExtractConfig, counts: Counter[str]) -> Iterator[Document]:
    """Documents from every file the patterns match, in sorted path order, HTML extracted in place."""
    for item in local_items(patterns):
        if isinstance(item, HtmlPage):
            yield from extract_page(item, cfg, counts)
        else:
            yield item


def local_items(patterns: Iterable[str]) -> Iterator[Document | HtmlPage]:
    """Like read_local_files, but HTML files come as HtmlPage, not extracted yet."""
    for path in resolve_patterns(patterns):
        suffix = path.suffix.lower()
        if suffix == ".txt":
            yield from read_txt(path)
        elif suffix == ".jsonl":
            yield from read_jsonl(path)
        elif suffix == ".parquet":
            yield from read_parquet(path)
        else:
            yield HtmlPage(url=path.as_uri(), source="local", body=path.read_bytes(), content_type=None,
                           fetched_at=_mtime(path))


# ---------------------------------------------------------------------------------------------
# WARC and WET files (Common Crawl layout)

HTML_MEDIA_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# what read_warc_files counts besides extraction failures; each becomes a corpus statistic
WARC_COUNTS = ("warc_skipped_status", "warc_skipped_content_type", "warc_skipped_malformed", "warc_files_corrupt",
               "warc_files_without_documents")
_WARC_MAGIC = b"WARC/"
_GZIP_MAGIC = b"\x1f\x8b"


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as raw:
        return raw.read(2) == _GZIP_MAGIC


def _warc_problem(path: Path) -> str | None:
    """Why path is not a WARC/WET file (gzipped or plain), judged from its first bytes; None if it looks like one."""
    try:
        with path.open("rb") as raw:
            head = raw.read(2)
        if head == _GZIP_MAGIC:
            with gzip.open(path, "rb") as unzipped:
                head = unzipped.read(len(_WARC_MAGIC))
        else:
            with path.open("rb") as raw:
                head = raw.read(len(_WARC_MAGIC))
    except (OSError, EOFError, zlib.error) as exc:
        return f"cannot be read as a (gzipped) WARC file ({type(exc).__name__}: {exc})"
    if head != _WARC_MAGIC:
        return f"is not a WARC/WET file (it does not start with {_WARC_MAGIC.decode()!r}, gzipped or plain)"
    return None


def match_warc_patterns(patterns: Iterable[str]) -> tuple[list[Path], list[str]]:
    """WARC/WET files matched by the glob patterns (sorted, unique) and the problems found, one line each.

    Problems: a pattern matching no file, a matched file that does not start like a WARC file.
    """
    return _match_files(patterns, "warc.patterns", _warc_file_problem)


def _warc_file_problem(path: Path) -> str | None:
    problem = _warc_problem(path)
    return f"which {problem}" if problem else None


class WarcSourceConfig(BaseModel):
    """WARC/WET files as a corpus source: HTML responses are extracted, WET conversion records taken as text."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    patterns: list[str] = Field(default=[])
    """Glob patterns of .warc(.gz) or .warc.wet(.gz) files ('**' recurses), e.g. Common Crawl segment files."""
    skip_corrupt: bool = False
    """On a file found damaged while read, keep its earlier records and count warc_files_corrupt instead of failing."""
    verify_gzip: bool = True
    """Decompress each gzipped file to its end once more: warcio reads a truncated one as a clean end of file."""

    @field_validator("patterns")
    @classmethod
    def _patterns_match(cls, patterns: list[str]) -> list[str]:
        _, problems = match_warc_patterns(patterns)
        if problems:
            raise ValueError("; ".join(problems))
        return patterns


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _payload_type(record: WarcRecord) -> str | None:
    """The declared HTTP Content-Type, else Common Crawl's sniffed WARC-Identified-Payload-Type."""
    declared = next((v for k, v in record.http_headers if k.lower() == "content-type"), None)
    return declared or record.warc_header("WARC-Identified-Payload-Type")


class _WarcPages:
    """The (key, body, content_type) pages of WARC responses worth extracting, remembering each key's url and date.

    The key is unique per record (url plus record position) because one url can be captured more
    than once; extract_pages yields in input order, so take() forgets failed pages as results arrive.
    """

    def __init__(self, files: list[Path], cfg: WarcSourceConfig, counts: Counter[str]) -> None:
        self.files = files
        self.cfg = cfg
        self.counts = counts
        self.pending: dict[str, tuple[str, datetime]] = {}  # key -> (url, fetched_at), in input order

    def __iter__(self) -> Iterator[tuple[str, bytes, str | None]]:
        for path in self.files:
            for number, record in _records(path, {"response"}, self.cfg, self.counts):
                if record.url is None or record.date is None:
                    self.counts["warc_skipped_malformed"] += 1
                elif record.status != 200:
                    self.counts["warc_skipped_status"] += 1
                elif _media_type(content_type := _payload_type(record)) not in HTML_MEDIA_TYPES:
                    self.counts["warc_skipped_content_type"] += 1
                else:
                    key = f"{record.url} (record {number} of {path.name})"  # also what a failed extraction logs
                    self.pending[key] = (record.url, record.date)
                    yield key, record.body, content_type

    def take(self, key: str) -> tuple[str, datetime]:
        """url and fetched_at of an extracted page; pages before it (failed or empty) are forgotten."""
        while True:
            first = next(iter(self.pending))
            url_and_date = self.pending.pop(first)
            if first == key:
                return url_and_date


def _gzip_truncation(path: Path) -> str | None:
    """Why a gzip file is damaged (truncated member, bad CRC), found by decompressing it to the end; None if whole.

    warcio takes a gzip member cut short (an interrupted download) for a clean end of file, so
    without this check the last records of a truncated file would be lost silently.
    """
    try:
        with gzip.open(path, "rb") as unzipped:
            while unzipped.read(1 << 20):  # 1 MiB of decompressed bytes at a time
                pass
    except (EOFError, OSError, zlib.error) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _records(path: Path, record_types: set[str], cfg: WarcSourceConfig,
             counts: Counter[str]) -> Iterator[tuple[int, WarcRecord]]:
    """(record number, record) of one file; a damaged file raises ValueError naming it, or is counted and cut short."""
    number = 0
    try:
        for number, record in enumerate(iter_warc_records(path, record_types), start=1):
            yield number, record
        problem = _gzip_truncation(path) if cfg.verify_gzip and _is_gzip(path) else None
    except Exception as exc:  # warcio raises many types on damaged input (even AttributeError on a cut header)
        first_line = (str(exc).splitlines() or [""])[0][:160]  # warcio quotes the damaged bytes
        problem = f"{type(exc).__name__}: {first_line!r}"
    if problem is None:
        return
    message = f"{path}: corrupt WARC/WET file after {number} records ({problem})"
    if not cfg.skip_corrupt:
        raise ValueError(message)
    logger.warning("%s; skipping the rest of it", message)
    counts["warc_files_corrupt"] += 1


def read_warc_responses(files: list[Path], cfg: WarcSourceConfig, extract: ExtractConfig,
                        counts: Counter[str]) -> Iterator[Document]:
    """Documents from HTTP 200 HTML response records, main text extracted with trafilatura as crawled pages are."""
    pages = _WarcPages(files, cfg, counts)
    for key, page in extract_pages(pages, extract, counts):
        url, fetched_at = pages.take(key)
        yield Document(url=url, source="warc", title=page.title, text=page.text, fetched_at=fetched_at)


def read_wet_conversions(path: Path, cfg: WarcSourceConfig, counts: Counter[str]) -> Iterator[Document]:
    """Documents from the conversion records of a WET file: Common Crawl's extracted text, one line per block."""
    for _, record in _records(path, {"conversion"}, cfg, counts):
        if record.url is None or record.date is None:
            counts["warc_skipped_malformed"] += 1
            continue
        text = record.body.decode("utf-8", errors="replace")  # WET text is UTF-8
        yield Document(url=record.url, source="warc", title=record.warc_header("WARC-Title") or None,
                       text=text, fetched_at=record.date)


def _document_record_type(path: Path, cfg: WarcSourceConfig, counts: Counter[str]) -> str | None:
    """'response' for a WARC file, 'conversion' for a WET file: the type of its first such record, else None."""
    for _, record in _records(path, {"response", "conversion"}, cfg, counts):
        return record.record_type
    return None


def _wet_documents_and_warc_files(cfg: WarcSourceConfig, counts: Counter[str]) -> Iterator[Document | Path]:
    """WET conversion documents as their files come, and each WARC (response) file's path, in path order."""
    files, problems = match_warc_patterns(cfg.patterns)
    if problems:
        raise ValueError("; ".join(problems))
    for path in files:
        corrupt_before = counts["warc_files_corrupt"]
        kind = _document_record_type(path, cfg, counts)
        if counts["warc_files_corrupt"] > corrupt_before:
            continue  # damaged before its first document record: already counted
        if kind == "conversion":
            yield from read_wet_conversions(path, cfg, counts)
        elif kind == "response":
            yield path
        else:
            logger.warning("%s holds no response or conversion records", path)
            counts["warc_files_without_documents"] += 1


def read_warc_files(cfg: WarcSourceConfig, extract: ExtractConfig, counts: Counter[str]) -> Iterator[Document]:
    """Documents from every WARC and WET file the patterns match: WET files, then WARC files, each in path order.

    A file is read once, for the kind of its first document record (a Common Crawl file holds one
    kind). counts get warc_skipped_status / warc_skipped_content_type / warc_skipped_malformed for
    responses that are not extracted, extract_failed / extract_empty as for crawled pages, and
    warc_files_without_documents for a file with neither responses nor conversions (e.g. a WAT file).
    """
    warc_files: list[Path] = []
    for item in _wet_documents_and_warc_files(cfg, counts):
        if isinstance(item, Path):
            warc_files.append(item)
        else:
            yield item
    if warc_files:  # one extract_pages call, so a worker pool is started once for all files
        yield from read_warc_responses(warc_files, cfg, extract, counts)


def warc_items(cfg: WarcSourceConfig, counts: Counter[str]) -> Iterator[Document | HtmlPage]:
    """Like read_warc_files (same order and counts), but HTML responses come as HtmlPage, not extracted yet."""
    warc_files: list[Path] = []
    for item in _wet_documents_and_warc_files(cfg, counts):
        if isinstance(item, Path):
            warc_files.append(item)
        else:
            yield item
    pages = _WarcPages(warc_files, cfg, counts)
    for key, body, content_type in pages:
        url, fetched_at = pages.pending.pop(key)
        yield HtmlPage(url=url, source="warc", body=body, content_type=content_type, fetched_at=fetched_at)


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets (offline: a local folder, local data files, or a dataset already in the local cache)

_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")  # read by huggingface_hub and datasets at import time
_SAVED_DATASET_FILES = ("state.json", "dataset_dict.json")  # what Dataset(Dict).save_to_disk writes at the top
_VALID_HF_SOURCES = ("valid: from_disk = a folder written by save_to_disk; or name = a local dataset folder, a "
                     "packaged builder (json, csv, parquet, text, arrow) with data_files, or a hub dataset id "
                     "already in the local Hugging Face cache (with streaming = false)")


class HuggingFaceSource(BaseModel):
    """One Hugging Face dataset split as a corpus source, read offline in batches."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str | None = None
    """load_dataset's path: a local dataset folder, a packaged builder ('json', 'parquet', ...) or a cached hub id."""
    config: str | None = None
    """load_dataset's configuration name (e.g. 'en' for allenai/c4); None for the default."""
    data_files: list[str] = Field(default=[])
    """Glob patterns of local data files for a packaged builder (load_dataset's data_files)."""
    data_dir: str | None = None
    """load_dataset's data_dir: a subfolder of the dataset holding the files."""
    from_disk: str | None = None
    """A folder written by Dataset.save_to_disk or DatasetDict.save_to_disk (load_from_disk), instead of name."""
    split: str = Field(default="train", min_length=1)
    """The split to read (ignored for a from_disk folder holding a single Dataset, but named in synthetic urls)."""
    streaming: bool = True
    """Read data files lazily, writing no Arrow cache; false loads through the cache (a cached hub id needs it)."""
    text_column: str = Field(default="text", min_length=1)
    """Column holding the document text; rows whose text is null are skipped."""
    url_column: str | None = None
    """Column holding the document url; None (or a null value) gives hf://<label>/<split>/<row index>."""
    title_column: str | None = None
    """Column holding the document title; None for no titles."""
    label: str | None = Field(default=None, min_length=1)
    """Name in synthetic urls; default: the from_disk or local folder's name, the first data file's name, or name."""
    max_rows: int | None = Field(default=None, ge=1)
    """Read at most this many rows from the start of the split; None reads all."""
    batch_size: int = Field(default=1_000, ge=1)
    """Rows per Arrow batch turned into documents: memory holds one batch, never the split."""

    @model_validator(mode="after")
    def _one_location(self) -> HuggingFaceSource:
        problems = []
        if (self.name is None) == (self.from_disk is None):
            problems.append(f"set exactly one of name and from_disk (got name={self.name!r}, "
                            f"from_disk={self.from_disk!r}); {_VALID_HF_SOURCES}")
        if self.from_disk is not None:
            folder = Path(self.from_disk)
            if not any((folder / marker).is_file() for marker in _SAVED_DATASET_FILES):
                problems.append(f"from_disk {self.from_disk!r} is not a folder written by save_to_disk "
                                f"(no {' or '.join(_SAVED_DATASET_FILES)} in it)")
            if self.data_files or self.data_dir or self.config:
                problems.append("config, data_files and data_dir apply to name (load_dataset), not to from_disk")
        problems += [f"data_files pattern {p!r} matches no file" for p in self.data_files
                     if not any(Path(f).is_file() for f in glob.glob(p, recursive=True))]
        if self.data_dir is not None and "://" in self.data_dir:
            problems.append(f"data_dir {self.data_dir!r} must be a local folder: nothing is downloaded")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def display_name(self) -> str:
        """How errors and synthetic urls name this dataset."""
        if self.label:
            return self.label
        if self.from_disk is not None:
            return Path(self.from_disk).name
        if self.data_files:
            first = sorted(glob.glob(self.data_files[0], recursive=True))
            return Path(first[0]).name if first else str(self.name)
        return Path(str(self.name)).name if Path(str(self.name)).is_dir() else str(self.name)


def _offline_datasets() -> ModuleType:
    """The datasets module, imported in offline mode so nothing is ever downloaded."""
    if "datasets" not in sys.modules:
        for variable in _OFFLINE_ENV:
            os.environ[variable] = "1"
    import datasets  # imported here: only a corpus with Hugging Face sources pays for it

    return datasets


def _is_local(source: HuggingFaceSource) -> bool:
    """Whether the dataset is read from local files only: a from_disk folder, a packaged builder or a local folder."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return source.from_disk is not None or source.name in _PACKAGED_DATASETS_MODULES or Path(source.name).exists()


def _source_files(source: HuggingFaceSource) -> list[Path]:
    """The local files the dataset is read from (for fetched_at); empty for a dataset in the hub cache."""
    if source.data_files:
        return [Path(f) for p in source.data_files for f in glob.glob(p, recursive=True) if Path(f).is_file()]
    if source.from_disk is not None:
        folder = Path(source.from_disk)
    elif Path(str(source.name)).is_dir():
        folder = Path(str(source.name)) / (source.data_dir or "")
    else:
        folder = Path(source.data_dir or str(source.name))  # a packaged builder reading data_dir
    return [f for f in folder.rglob("*") if f.is_file()] if folder.is_dir() else []


def load_hf_split(source: HuggingFaceSource) -> Dataset | IterableDataset:
    """The split as a datasets (Iterable)Dataset, loaded offline; a failure raises ValueError naming the dataset."""
    datasets = _offline_datasets()
    where = f"Hugging Face dataset {source.display_name!r}"
    if not datasets.config.HF_HUB_OFFLINE and not _is_local(source):
        raise ValueError(f"{where}: datasets was imported before offline mode could be set, so a hub id could be "
                         f"downloaded; set HF_HUB_OFFLINE=1 to read it from the local cache; {_VALID_HF_SOURCES}")
    try:
        if source.from_disk is not None:
            loaded = datasets.load_from_disk(source.from_disk)
            if isinstance(loaded, datasets.DatasetDict):
                if source.split not in loaded:
                    raise ValueError(f"no split {source.split!r} (splits: {', '.join(loaded)})")
                loaded = loaded[source.split]
            return loaded
        return datasets.load_dataset(source.name, source.config, data_dir=source.data_dir,
                                     data_files=source.data_files or None, split=source.split,
                                     streaming=source.streaming)
    except Exception as exc:  # datasets raises many types (and StopIteration for empty data files)
        raise ValueError(f"{where} cannot be loaded ({type(exc).__name__}: {exc}); {_VALID_HF_SOURCES}") from exc


def _columns(split: Dataset | IterableDataset, source: HuggingFaceSource) -> list[str]:
    """The columns to read; raises ValueError naming any configured column the dataset lacks."""
    wanted = [c for c in (source.text_column, source.url_column, source.title_column) if c is not None]
    available = split.column_names  # None for a streamed dataset whose features are unknown until read
    missing = [c for c in wanted if available is not None and c not in available]
    if missing:
        raise ValueError(f"Hugging Face dataset {source.display_name!r}: no column {', '.join(map(repr, missing))} "
                         f"(columns: {', '.join(available)})")
    return list(dict.fromkeys(wanted))


def _cell(batch: dict[str, list], column: str | None, row: int, where: str) -> str | None:
    if column is None:
        return None
    value = batch[column][row]
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where}: column {column!r} must hold strings, got {type(value).__name__}")
    return value


def read_hf_dataset(source: HuggingFaceSource) -> Iterator[Document]:
    """One document per row with a non-null text, in split order; fetched_at is the newest source file's mtime."""
    split = load_hf_split(source)
    columns = _columns(split, source)
    files = _source_files(source) or [Path(f["filename"]) for f in getattr(split, "cache_files", [])]
    fetched_at = max(map(_mtime, files)) if files else datetime.now(UTC)  # a streamed hub-cache dataset has no files
    prefix = f"hf://{source.display_name}/{source.split}"
    index = 0  # row index in the split, counting skipped rows, so synthetic urls are stable
    for batch in split.select_columns(columns).iter(batch_size=source.batch_size):
        for row in range(len(batch[source.text_column])):
            if source.max_rows is not None and index >= source.max_rows:
                return
            where = f"{prefix}/{index}"
            text = _cell(batch, source.text_column, row, where)
            if text is not None:
                yield Document(url=_cell(batch, source.url_column, row, where) or where, source="hf",
                               title=_cell(batch, source.title_column, row, where), text=text, fetched_at=fetched_at)
            index += 1


def read_hf_datasets(sources: Iterable[HuggingFaceSource]) -> Iterator[Document]:
    """Documents from every configured Hugging Face dataset, in order."""
    for source in sources:
        yield from read_hf_dataset(source)
