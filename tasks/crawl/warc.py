"""The crawl's raw store as gzip WARC files, and a reader for any WARC/WET file (Common Crawl layout).

Every fetch worth keeping is written as a WARC/1.1 `response` record (status line, headers, body)
followed by a `metadata` record (application/warc-fields, WARC-Concurrent-To the response) that
holds what the crawler decided: outcome, depth, detected charset, outlinks (for a sitemap, the URLs
it lists), and revalidated-at for a page a refresh crawl kept after a 304 (its response keeps the
first fetch's WARC-Date). Records go into raw_dir/fetches-NNNNN.warc.gz after a warcinfo record,
one gzip member per record (so each record is seekable, as in Common Crawl), one file per batch,
written to a .tmp name and renamed into place: a crawl killed with SIGKILL leaves only whole
batches, and a rerun refetches at most one batch. Each batch's size and sha256 go into a sidecar
(raw_dir/.digests/, tasks/pieces.py) when it is written; the crawl's store checks every batch against
it when it opens, and a damaged or unreadable batch is removed with a warning: its pages are fetched
again, the other batches' pages reused. The corpus stage removes the sidecars when its snapshot is done.

The stored body is the decoded payload (Content-Encoding and chunking undone), so, as Common
Crawl does, the original Content-Encoding, Transfer-Encoding and Content-Length headers are kept
renamed to X-Crawler-* and Content-Length states the stored length.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Protocol

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.statusandheaders import StatusAndHeaders, StatusAndHeadersParser
from warcio.warcwriter import WARCWriter

from tasks.pieces import discard_piece, forget_digests, record_piece, sidecar_damage, unreadable

logger = logging.getLogger(__name__)

WARC_VERSION = "1.1"  # WARC/1.1 allows microsecond WARC-Date, so fetched_at round-trips exactly
_RENAMED_HEADERS = ("content-encoding", "transfer-encoding", "content-length")
_BATCH_GLOB = "fetches-*.warc.gz"
_WARCINFO = {"software": "pretrainflow crawler", "format": "WARC File Format 1.1",
             "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"}
_BODY_OUTCOMES = frozenset({"ok", "binary", "undecodable"})  # the outcomes whose body the crawler read whole


@dataclass(frozen=True, slots=True)
class FetchRecord:
    """One fetch as the crawler saw it; url is in recorded form (see tasks.crawl.frontier.SiteAlias)."""

    url: str
    depth: int
    status: int
    # ok | redirect | http_error | not_html | too_large | binary | undecodable | failed | sitemap | sitemap_index
    outcome: str
    content_type: str | None  # as the server declared it
    fetched_at: datetime  # when the body was fetched; a page revalidated by a 304 keeps its first fetch's time
    body: bytes | None  # decoded payload; None where not read (and in a store's index)
    links: list[str] = field(default_factory=list)  # normalised, recorded form, in page order
    charset: str | None = None  # the codec the body really is in (tasks.crawl.http.sniff_charset)
    reason: str | None = None  # why the fetch failed, for failed outcomes
    headers: tuple[tuple[str, str], ...] = ()  # response headers as received
    truncated: str | None = None  # WARC-Truncated: why the body is not the whole payload
    revalidated_at: datetime | None = None  # when a refresh crawl's conditional request got 304 for this body
    lastmods: tuple[tuple[str, str], ...] = ()  # a sitemap's (listed URL, <lastmod> as written), where given
    digest: str | None = field(default=None, compare=False)  # WARC-Payload-Digest of the body, 'sha1:BASE32'

    @property
    def content_type_with_charset(self) -> str | None:
        """The declared media type with the detected charset: what a decoder should be told."""
        if self.charset is None or not self.content_type:
            return self.content_type
        return f"{self.content_type.split(';', 1)[0].strip()}; charset={self.charset}"


def payload_digest(body: bytes) -> str:
    """The WARC-Payload-Digest warcio writes for a body: 'sha1:' + base32 of its SHA-1."""
    return "sha1:" + base64.b32encode(hashlib.sha1(body).digest()).decode("ascii")


def _utc_stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RawStore(Protocol):
    """Where the crawler keeps fetches; get() answers from earlier runs too."""

    def get(self, url: str) -> FetchRecord | None: ...
    def add(self, record: FetchRecord) -> None: ...
    def flush(self) -> None: ...
    def records(self) -> Iterator[FetchRecord]: ...


# ---------------------------------------------------------------------------------------------
# Reading any WARC or WET file


@dataclass(frozen=True, slots=True)
class WarcRecord:
    """One WARC record, read whole: the generic form for crawled archives and Common Crawl WARC/WET."""

    record_type: str  # warcinfo | response | request | metadata | conversion | resource | revisit
    url: str | None  # WARC-Target-URI
    record_id: str | None  # WARC-Record-ID, '<urn:uuid:...>'
    date: datetime | None  # WARC-Date: for a response, when it was fetched
    status: int | None  # HTTP status of response records
    http_headers: tuple[tuple[str, str], ...]  # HTTP headers of request/response records
    body: bytes  # the payload: HTTP body (chunked and Content-Encoding undone), or the whole block
    content_type: str | None  # the HTTP Content-Type, else the record's own (text/plain in WET files)
    concurrent_to: str | None  # WARC-Concurrent-To
    truncated: str | None  # WARC-Truncated
    warc_headers: tuple[tuple[str, str], ...]  # every WARC header, in order

    def warc_header(self, name: str) -> str | None:
        """First WARC header of that name (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.warc_headers if k.lower() == name), None)


_HTTP_HEADERS = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1"], verify=False)

def _warc_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def iter_warc_records(path: Path, record_types: Collection[str] | None = None) -> Iterator[WarcRecord]:
    """Records of a WARC or WET file (gzipped per record, whole-file gzipped, or plain), in file order.

    record_types keeps only those types (e.g. {'response'}, or {'conversion'} for WET text);
    the other records are skipped without reading their payloads.
    """
    with open(path, "rb") as stream:
        for record in ArchiveIterator(stream):
            if record_types is not None and record.rec_type not in record_types:
                continue
            warc = record.rec_headers
            http = record.http_headers
            body = record.content_stream().read()
            if http is None and record.rec_type in ("response", "revisit") and body.startswith(b"HTTP/"):
                # warcio parses HTTP headers only for http(s) target URIs; a local site is recorded
                # under its stable file:// URI, so its header block is parsed here
                block = io.BytesIO(body)
                http = _HTTP_HEADERS.parse(block)
                body = block.read()
            status = None
            if http is not None and record.rec_type in ("response", "revisit"):
                code = http.get_statuscode()
                status = int(code) if code and code.isdigit() else None
            http_headers = tuple(http.headers) if http is not None else ()
            ctype = http.get_header("Content-Type") if http is not None else None
            yield WarcRecord(
                record_type=record.rec_type,
                url=warc.get_header("WARC-Target-URI"),
                record_id=warc.get_header("WARC-Record-ID"),
                date=_warc_date(warc.get_header("WARC-Date")),
                status=status,
                http_headers=http_headers,
                body=body,
                content_type=ctype or warc.get_header("Content-Type"),
                concurrent_to=warc.get_header("WARC-Concurrent-To"),
                truncated=warc.get_header("WARC-Truncated"),
                warc_headers=tuple(warc.headers),
            )


# ---------------------------------------------------------------------------------------------
# The crawl's raw store


def _stored_headers(headers: tuple[tuple[str, str], ...], body_length: int) -> list[tuple[str, str]]:
    out = [(f"X-Crawler-{k}" if k.lower() in _RENAMED_HEADERS else k, v) for k, v in headers]
    out.append(("Content-Length", str(body_length)))
    return out


def _metadata_fields(record: FetchRecord) -> bytes:
    """application/warc-fields: 'name: value' lines; 'outlink' repeats, as in Heritrix's records."""
    fields = [("outcome", record.outcome), ("depth", str(record.depth))]
    if record.charset:
        fields.append(("charset", record.charset))
    if record.reason:
        fields.append(("reason", record.reason))
    if record.revalidated_at:
        fields.append(("revalidated-at", _utc_stamp(record.revalidated_at)))
    fields += [("outlink", link) for link in record.links]
    # The URL last: it has no spaces (tasks.crawl.frontier.normalize_url), a non-W3C date may.
    fields += [("lastmod", f"{modified} {url}") for url, modified in record.lastmods]
    # One field per CRLF line: a CR or LF inside a value (a reason, a date) becomes a space.
    return "".join(f"{k}: {v.replace(chr(13), ' ').replace(chr(10), ' ')}\r\n" for k, v in fields).encode("utf-8")


def _parse_fields(block: bytes) -> list[tuple[str, str]]:
    pairs = []
    for line in block.decode("utf-8", errors="replace").split("\r\n"):  # not splitlines(): U+2028 is data
        name, sep, value = line.partition(":")
        if sep:
            pairs.append((name.strip().lower(), value.strip()))
    return pairs


def write_fetch(writer: WARCWriter, record: FetchRecord) -> None:
    """Write one fetch as a response record and its metadata record."""
    body = record.body or b""
    try:
        phrase = HTTPStatus(record.status).phrase
    except ValueError:  # a status outside the registry, e.g. 599
        phrase = ""
    http_headers = StatusAndHeaders(f"{record.status} {phrase}".strip(),
                                    _stored_headers(record.headers, len(body)), protocol="HTTP/1.1")
    warc_headers = {"WARC-Date": _utc_stamp(record.fetched_at)}
    if record.truncated:
        warc_headers["WARC-Truncated"] = record.truncated
    response = writer.create_warc_record(record.url, "response", payload=io.BytesIO(body),
                                         http_headers=http_headers, warc_headers_dict=warc_headers)
    writer.write_record(response)
    metadata = writer.create_warc_record(
        record.url, "metadata", payload=io.BytesIO(_metadata_fields(record)),
        warc_content_type="application/warc-fields",
        warc_headers_dict={**warc_headers, "WARC-Concurrent-To": response.rec_headers.get_header("WARC-Record-ID")},
    )
    writer.write_record(metadata)


def read_fetches(path: Path, with_body: bool = True) -> Iterator[FetchRecord]:
    """The fetches of one batch file written by write_fetch (a response without metadata is skipped)."""
    responses: dict[str, WarcRecord] = {}
    for rec in iter_warc_records(path, record_types={"response", "metadata"}):
        if rec.record_type == "response":
            responses[rec.record_id] = rec
            continue
        response = responses.pop(rec.concurrent_to, None)
        if response is None or response.date is None or response.url is None:
            continue
        fields = _parse_fields(rec.body)
        meta = dict(fields)
        outcome = meta.get("outcome", "ok")
        headers = tuple((k[len("X-Crawler-"):] if k.lower().startswith("x-crawler-") else k, v)
                        for k, v in response.http_headers if k.lower() != "content-length")
        ctype = next((v for k, v in headers if k.lower() == "content-type"), None)
        yield FetchRecord(
            url=response.url, depth=int(meta.get("depth", "0")), status=response.status or 0,
            outcome=outcome, content_type=ctype,
            fetched_at=response.date, body=response.body if with_body and outcome in _BODY_OUTCOMES else None,
            links=[v for k, v in fields if k == "outlink"], charset=meta.get("charset"),
            reason=meta.get("reason"), headers=headers, truncated=response.truncated,
            revalidated_at=_warc_date(meta.get("revalidated-at")), digest=response.warc_header("WARC-Payload-Digest"),
            lastmods=tuple((url, modified) for modified, _, url in (v.rpartition(" ") for k, v in fields
                                                                    if k == "lastmod")),
        )


class WarcRawStore:
    """Raw store as batches raw_dir/fetches-NNNNN.warc.gz, each written atomically (tmp + rename).

    The in-memory index keeps every fetch without its body, so memory grows with the number of
    URLs, not with page sizes; records() streams bodies back from the files. discard_damaged (the
    crawl's own store, which it resumes from): a batch that differs from its sidecar, or cannot be
    read, is removed with a warning and its fetches left out of the index, so the crawl fetches them
    again; a reader of a finished store leaves its files alone.
    """

    def __init__(self, raw_dir: Path, batch_size: int, discard_damaged: bool = False) -> None:
        self.raw_dir = Path(raw_dir)
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self._index: dict[str, FetchRecord] = {}
        self._batch_of: dict[str, Path] = {}  # url -> the batch file that holds its latest fetch
        self._pending: list[FetchRecord] = []
        batches = self._batches()
        for path in batches:
            fetches = _sound_fetches(path) if discard_damaged else read_fetches(path, with_body=False)
            for record in fetches:
                self._index[record.url] = record
                self._batch_of[record.url] = path
        batches = self._batches()
        self._next_batch = int(batches[-1].name.split("-")[1].split(".")[0]) + 1 if batches else 0
        if batches:
            logger.info("raw store %s: %d fetches from %d batches", raw_dir, len(self._index), len(batches))

    def _batches(self) -> list[Path]:
        return sorted(self.raw_dir.glob(_BATCH_GLOB))  # a half-written .tmp never matches

    def get(self, url: str) -> FetchRecord | None:
        """The saved fetch of url (without its body), or None."""
        return self._index.get(url)

    def fetches(self) -> Iterator[FetchRecord]:
        """Every saved fetch (the latest per URL), without bodies, in the order first saved."""
        return iter(list(self._index.values()))

    def load(self, url: str) -> FetchRecord | None:
        """The saved fetch of url with its body, read back from its batch file; None if not saved."""
        pending = [r for r in self._pending if r.url == url]
        if pending:
            return pending[-1]
        path = self._batch_of.get(url)
        if path is None:
            return None
        found = [r for r in read_fetches(path) if r.url == url]  # a batch holds raw_batch_pages fetches
        return found[-1] if found else None

    def add(self, record: FetchRecord) -> None:
        digest = payload_digest(record.body) if record.body is not None else record.digest
        self._index[record.url] = replace(record, body=None, digest=digest)
        self._pending.append(record)
        if len(self._pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Write pending records as the next batch file."""
        if not self._pending:
            return
        final = self.raw_dir / f"fetches-{self._next_batch:05d}.warc.gz"
        tmp = final.with_name(final.name + ".tmp")
        with open(tmp, "wb") as stream:
            writer = WARCWriter(stream, gzip=True, warc_version=WARC_VERSION)
            writer.write_record(writer.create_warcinfo_record(final.name, _WARCINFO))
            for record in self._pending:
                write_fetch(writer, record)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, final)
        record_piece(final)
        for record in self._pending:
            self._batch_of[record.url] = final
        self._next_batch += 1
        self._pending.clear()

    def records(self) -> Iterator[FetchRecord]:
        """Every fetch with its body, in fetch order: the files, then what is not yet flushed."""
        for path in self._batches():
            yield from read_fetches(path)
        yield from list(self._pending)


# what reading a damaged gzip WARC can raise (warcio itself skips some damage with a message on stderr)
_READ_ERRORS = (ArchiveLoadFailed, EOFError, OSError, ValueError, zlib.error)


def _sound_fetches(path: Path) -> list[FetchRecord]:
    """The fetches of a batch (without bodies) that matches its sidecar; [] after discarding a damaged one.

    A batch without a sidecar (an older crawl's) is used unverified, unless it cannot be read.
    """
    problem = sidecar_damage(path)
    if problem is None:
        try:
            return list(read_fetches(path, with_body=False))
        except _READ_ERRORS as err:
            problem = unreadable(err)
    discard_piece(path, problem, "fetching its pages again")
    return []


def forget_batch_digests(raw_dir: Path) -> None:
    """Remove the batches' sidecars once the raw store is final (the corpus stage's snapshot is done)."""
    forget_digests(raw_dir)
