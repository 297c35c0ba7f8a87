"""Corpus sources other than the crawl, as documents: local files (.txt, .jsonl, .parquet, .html/.htm,
by glob patterns; a .txt file holds documents as its TextFormat says). WARC/WET files are read in
tasks/corpus/warc_files.py, Hugging Face datasets in tasks/corpus/hf_datasets.py; both use the pieces
shared here (HtmlPage, match_files, file_mtime).
"""

from __future__ import annotations

import codecs
import glob
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import Literal

from tasks.clean.charset import BOMS, decode_text, detect_codec
from tasks.clean.extract import ExtractConfig, decode_html, extract_html
from tasks.clean.steps import Document
from tasks.errors import InputError

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".parquet", ".html", ".htm")
_PARQUET_MAGIC = b"PAR1"  # a Parquet file starts and ends with it
# leading bytes of file types that turn up among text files by mistake
_BINARY_MAGIC = {
    b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (also .docx, .xlsx, .epub)", b"\x1f\x8b": "a gzip archive",
    b"BZh": "a bzip2 archive", b"\xfd7zXZ": "an xz archive", b"\x7fELF": "an executable",
    _PARQUET_MAGIC: "a Parquet file", b"SQLite format 3\x00": "an SQLite database",
}
_UNICODE_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")  # UTF-8, UTF-16 (and UTF-32) little/big endian
_SNIFF_BYTES = 8192
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads pairs valid surrogates; these are what is left
_CHECK_BYTES = 1 << 20  # bytes per read of the UTF-8 check of a .txt file read line by line

# How a .txt file holds documents. file: the whole file is one document; bert: Google BERT's
# create_pretraining_data input, one sentence per line and a blank line between documents; lines: one
# document per line.
TextFormat = Literal["file", "bert", "lines"]


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
    return match_files(patterns, "local_files", _suffix_problem)


def _suffix_problem(path: Path) -> str | None:
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        return None
    return f"whose type is not supported (supported: {', '.join(SUPPORTED_SUFFIXES)})"


def match_files(
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
    """Files matched by the glob patterns; raises InputError listing every bad pattern or file."""
    files, problems = match_patterns(patterns)
    if problems:
        raise InputError("; ".join(problems))
    return files


def file_mtime(path: Path) -> datetime:
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


def binary_kind(head: bytes) -> str | None:
    """What a file's first bytes say it is when it is not text (a known magic number, or NUL bytes without
    a UTF-16/32 byte order mark), else None."""
    for magic, kind in _BINARY_MAGIC.items():
        if head.startswith(magic):
            return kind
    if b"\x00" in head[:_SNIFF_BYTES] and not head.startswith(_UNICODE_BOMS):
        return "binary data (it holds NUL bytes)"
    return None


def check_text_file(path: Path, head: bytes) -> None:
    """Raise InputError naming path when its first bytes show it is not the text file its suffix says."""
    kind = binary_kind(head)
    if kind:
        raise InputError(f"{path}: {kind}, not a {path.suffix} text file; local_files reads {path.suffix} files as "
                         f"text: take it out of the local_files patterns, or give it its real suffix")


def read_txt(path: Path) -> Iterator[Document]:
    """One document per .txt file: a BOM's encoding (UTF-8/16/32), else UTF-8, else detected (Latin-1...)."""
    body = path.read_bytes()
    check_text_file(path, body[:_SNIFF_BYTES])
    text = decode_text(body)
    yield Document(url=path.as_uri(), source="local", title=None, text=_paragraphs(text), fetched_at=file_mtime(path))


def read_bert_txt(path: Path) -> Iterator[Document]:
    """Google BERT's create_pretraining_data input: one sentence per line, documents separated by blank
    lines. A document's text is its lines, stripped, joined by newlines (its sentences, never joined into
    one line); its url is the file's with #doc=N, N counting the file's non-empty documents from 1."""
    fetched_at = file_mtime(path)
    sentences: list[str] = []  # the lines of the document being read: one document in memory at a time
    number = 0
    for line in chain(text_lines(path), [""]):  # a last blank line ends the last document
        sentence = line.strip()
        if sentence:
            sentences.append(sentence)
        elif sentences:
            number += 1
            yield Document(url=f"{path.as_uri()}#doc={number}", source="local", title=None,
                           text="\n".join(sentences), fetched_at=fetched_at)
            sentences = []


def read_txt_lines(path: Path) -> Iterator[Document]:
    """One document per non-blank line, stripped; its url is the file's with #line=N (N from 1, blank
    lines counted, as an editor numbers them)."""
    fetched_at = file_mtime(path)
    for number, line in enumerate(text_lines(path), start=1):
        text = line.strip()
        if text:
            yield Document(url=f"{path.as_uri()}#line={number}", source="local", title=None, text=text,
                           fetched_at=fetched_at)


TXT_READERS: dict[TextFormat, Callable[[Path], Iterator[Document]]] = {
    "file": read_txt, "bert": read_bert_txt, "lines": read_txt_lines}


def text_lines(path: Path) -> Iterator[str]:
    """The lines of a text file without their line ends (LF, CRLF or CR), read one at a time and decoded
    as read_txt decodes the whole file: a BOM's encoding (the BOM dropped), else UTF-8, else detected."""
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
    check_text_file(path, head)
    with path.open(encoding=_text_codec(path, head), errors="replace", newline=None) as lines:
        for line in lines:
            yield line.removesuffix("\n")


def _text_codec(path: Path, head: bytes) -> str:
    """decode_text's choice of codec, with the file read in pieces: only a file that is neither marked
    by a BOM nor valid UTF-8 (a legacy encoding) is read whole, for charset detection."""
    for bom, codec in BOMS:
        if head.startswith(bom):
            return codec
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as f:
            while piece := f.read(_CHECK_BYTES):
                decoder.decode(piece)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return detect_codec(path.read_bytes()) or "utf-8"
    return "utf-8"


def _optional_str(record: dict, field: str, where: str) -> str | None:
    value = record.get(field)
    if value is not None and not isinstance(value, str):
        raise InputError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")
    return value


def _without_lone_surrogates(text: str | None) -> str | None:
    """A JSON \\ud83d escape without its pair (an emoji cut in half) is valid JSON but not text: U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", text) if text else text


def read_jsonl(path: Path) -> Iterator[Document]:
    """One document per line with a string 'text' field; optional 'url' and 'title'. UTF-8 (a BOM is allowed)."""
    fetched_at = file_mtime(path)
    with path.open("rb") as lines:
        check_text_file(path, lines.read(_SNIFF_BYTES))
        lines.seek(0)
        for number, raw in enumerate(lines, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start}); JSON Lines files "
                                 f"are UTF-8: re-encode it, e.g. iconv -f latin1 -t utf-8") from exc
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc})") from exc
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise InputError(f"{where}: expected a JSON object with a string 'text' field")
            url = _without_lone_surrogates(_optional_str(record, "url", where)) or f"{path.as_uri()}#line={number}"
            title = _without_lone_surrogates(_optional_str(record, "title", where))
            yield Document(url=url, source="local", title=title, text=_without_lone_surrogates(record["text"]),
                           fetched_at=fetched_at)


def check_parquet_file(path: Path) -> None:
    """Raise InputError naming path unless it starts and ends with Parquet's PAR1 magic bytes."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
        f.seek(max(size - len(_PARQUET_MAGIC), 0))
        tail = f.read()
    if head.startswith(_PARQUET_MAGIC) and tail == _PARQUET_MAGIC and size >= 2 * len(_PARQUET_MAGIC):
        return
    if head.startswith(_PARQUET_MAGIC):
        what = "it is cut short: its PAR1 footer is missing"
    else:
        what = f"it is {binary_kind(head) or 'text'}" if head else "it is empty"
    raise InputError(f"{path}: not a Parquet file ({what}); give a Parquet file with a 'text' column, or give the "
                     f"file its real suffix (.txt, .jsonl, .html)")


def read_parquet(path: Path) -> Iterator[Document]:
    """One document per row of a 'text' column; optional 'url' and 'title' columns."""
    import pyarrow as pa  # here, not at the top: the corpus config imports this module for match_patterns
    import pyarrow.parquet as pq

    fetched_at = file_mtime(path)
    check_parquet_file(path)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: unreadable Parquet file ({exc}); rewrite it, or take it out of local_files") from exc
    names = set(parquet.schema_arrow.names)
    if "text" not in names:
        raise InputError(f"{path}: no 'text' column (columns: {', '.join(sorted(names))})")
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


def read_local_files(patterns: Iterable[str], text_format: TextFormat, cfg: ExtractConfig,
                     counts: Counter[str]) -> Iterator[Document]:
    """Documents from every file the patterns match, in sorted path order, .txt files read in text_format,
    HTML extracted in place."""
    for item in local_items(patterns, text_format):
        if isinstance(item, HtmlPage):
            yield from extract_page(item, cfg, counts)
        else:
            yield item


def local_items(patterns: Iterable[str], text_format: TextFormat) -> Iterator[Document | HtmlPage]:
    """Like read_local_files, but HTML files come as HtmlPage, not extracted yet."""
    read_text_file = TXT_READERS[text_format]
    for path in resolve_patterns(patterns):
        suffix = path.suffix.lower()
        if suffix == ".txt":
            yield from read_text_file(path)
        elif suffix == ".jsonl":
            yield from read_jsonl(path)
        elif suffix == ".parquet":
            yield from read_parquet(path)
        else:
            body = path.read_bytes()
            check_text_file(path, body[:_SNIFF_BYTES])
            yield HtmlPage(url=path.as_uri(), source="local", body=body, content_type=None, fetched_at=file_mtime(path))
