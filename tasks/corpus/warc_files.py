"""WARC and WET files in Common Crawl layout as corpus documents: HTML responses extracted like
crawled pages, WET conversion records taken as text."""

from __future__ import annotations

import gzip
import logging
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.clean.extract import ExtractConfig, extract_pages
from tasks.clean.steps import Document
from tasks.corpus.local_files import HtmlPage, match_files
from tasks.errors import InputError

if TYPE_CHECKING:
    from tasks.crawl.warc import WarcRecord

logger = logging.getLogger(__name__)

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
    return match_files(patterns, "warc.patterns", _warc_file_problem)


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
            raise InputError("; ".join(problems))
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
    from tasks.crawl.warc import iter_warc_records  # warcio: loaded by reading WARC files, not with a config

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
        raise InputError(message)
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
        raise InputError("; ".join(problems))
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


def _wet_documents(cfg: WarcSourceConfig, counts: Counter[str], warc_files: list[Path]) -> Iterator[Document]:
    """The WET files' documents, in file order; the WARC (response) files are appended to warc_files."""
    for item in _wet_documents_and_warc_files(cfg, counts):
        if isinstance(item, Path):
            warc_files.append(item)
        else:
            yield item


def read_warc_files(cfg: WarcSourceConfig, extract: ExtractConfig, counts: Counter[str]) -> Iterator[Document]:
    """Documents from every WARC and WET file the patterns match: WET files, then WARC files, each in path order.

    A file is read once, for the kind of its first document record (a Common Crawl file holds one
    kind). counts get warc_skipped_status / warc_skipped_content_type / warc_skipped_malformed for
    responses that are not extracted, extract_failed / extract_empty as for crawled pages, and
    warc_files_without_documents for a file with neither responses nor conversions (e.g. a WAT file).
    """
    warc_files: list[Path] = []
    yield from _wet_documents(cfg, counts, warc_files)
    if warc_files:  # one extract_pages call, so a worker pool is started once for all files
        yield from read_warc_responses(warc_files, cfg, extract, counts)


def warc_items(cfg: WarcSourceConfig, counts: Counter[str]) -> Iterator[Document | HtmlPage]:
    """Like read_warc_files (same order and counts), but HTML responses come as HtmlPage, not extracted yet."""
    warc_files: list[Path] = []
    yield from _wet_documents(cfg, counts, warc_files)
    pages = _WarcPages(warc_files, cfg, counts)
    for key, body, content_type in pages:
        url, fetched_at = pages.pending.pop(key)
        yield HtmlPage(url=url, source="warc", body=body, content_type=content_type, fetched_at=fetched_at)
