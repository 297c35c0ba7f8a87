import gzip
import io
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from warcio.checker import Checker
from warcio.exceptions import ArchiveLoadFailed
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from tasks.crawl.warc import FetchRecord, WarcRawStore, iter_warc_records, payload_digest, read_fetches
from tasks.pieces import forget_digests
from tests.tasks.piece_fixtures import warnings_of

FETCHED_AT = datetime(2026, 11, 28, 12, 30, 15, 123456, tzinfo=UTC)


def _record(url: str = "http://h/a.html", **overrides) -> FetchRecord:
    fields = dict(
        url=url, depth=2, status=200, outcome="ok", content_type="text/html; charset=iso-8859-1",
        fetched_at=FETCHED_AT, body="<p>café</p>".encode(), links=["http://h/b.html", "http://h/c.html?q=1"],
        charset="utf-8",
        headers=(("Content-Type", "text/html; charset=iso-8859-1"), ("Content-Encoding", "gzip"),
                 ("Transfer-Encoding", "chunked"), ("ETag", '"v1"')),
    )
    return FetchRecord(**{**fields, **overrides})


def test_fetches_round_trip_through_a_valid_warc_file(tmp_path: Path) -> None:
    store = WarcRawStore(tmp_path, batch_size=10)
    page = _record()
    moved = _record("http://h/old", status=301, outcome="redirect", body=None, charset=None,
                    links=["http://h/new"], headers=(("Location", "/new"),), content_type=None)
    big = _record("http://h/big", outcome="too_large", body=None, truncated="length", links=[], charset=None)
    # Metadata values keep U+2028 / U+0085 (data, not line breaks) and spaces in a non-W3C sitemap date.
    odd = _record("http://h/sitemap.xml", links=["http://h/x"], reason="odd \u2028 reason \x85 here",
                  lastmods=(("http://h/x", "2024-01-02 10:00"),))
    for record in (page, moved, big, odd):
        store.add(record)
    store.flush()

    assert sorted(p.name for p in tmp_path.iterdir()) == [".digests", "fetches-00000.warc.gz"]  # and its sidecar
    path = tmp_path / "fetches-00000.warc.gz"
    assert Checker(SimpleNamespace(inputs=[str(path)], verbose=False)).process_all() == 0  # digests check out
    back = list(read_fetches(path))
    assert back[0] == page  # headers come back as received, fetched_at to the microsecond
    assert back[1] == moved
    assert back[2].truncated == "length" and back[2].body is None and back[2].outcome == "too_large"
    assert back[3] == odd
    assert page.content_type_with_charset == "text/html; charset=utf-8"

    # the archive itself says what the stored payload is, as Common Crawl does
    [response] = [r for r in iter_warc_records(path, record_types={"response"}) if r.url == page.url]
    assert response.status == 200 and response.body == page.body and response.date == FETCHED_AT
    assert ("X-Crawler-Content-Encoding", "gzip") in response.http_headers
    assert ("Content-Length", str(len(page.body))) in response.http_headers
    assert [r.record_type for r in iter_warc_records(path)] == ["warcinfo", *["response", "metadata"] * 4]


def test_store_resumes_from_whole_batches_only(tmp_path: Path) -> None:
    store = WarcRawStore(tmp_path, batch_size=2)
    for name in "abc":
        store.add(_record(f"http://h/{name}.html"))  # a and b are flushed as one batch, c is pending
    assert [r.url for r in store.records()] == ["http://h/a.html", "http://h/b.html", "http://h/c.html"]
    (tmp_path / "fetches-00001.warc.gz.tmp").write_bytes(b"half a batch from a killed run")

    reopened = WarcRawStore(tmp_path, batch_size=2)
    assert reopened.get("http://h/a.html").links == _record().links
    assert reopened.get("http://h/a.html").body is None  # the index holds no bodies
    assert reopened.get("http://h/c.html") is None  # lost with the kill, fetched again
    reopened.add(_record("http://h/c.html"))
    reopened.flush()
    assert sorted(p.name for p in tmp_path.glob("*.warc.gz")) == ["fetches-00000.warc.gz", "fetches-00001.warc.gz"]
    assert [r.body for r in WarcRawStore(tmp_path, 1).records()] == [_record().body] * 3


def test_an_unreadable_batch_of_an_older_crawl_is_discarded_and_a_reader_leaves_it_alone(tmp_path: Path,
                                                                                          caplog) -> None:
    store = WarcRawStore(tmp_path, batch_size=10)
    for name in "abcd":
        store.add(_record(f"http://h/{name}.html", body=name.encode() * 5000))
    store.flush()
    forget_digests(tmp_path)  # as an older crawl left it: no checksum sidecar
    batch = tmp_path / "fetches-00000.warc.gz"
    batch.write_bytes(b"not a WARC file" + batch.read_bytes()[15:])  # the first gzip header overwritten
    with pytest.raises(ArchiveLoadFailed):
        WarcRawStore(tmp_path, batch_size=10)  # a reader of a finished store: the error, the file kept
    assert batch.exists()

    resumed = WarcRawStore(tmp_path, batch_size=10, discard_damaged=True)  # the crawl's own store
    assert resumed.get("http://h/a.html") is None and not batch.exists()  # its pages are fetched again
    [warning] = warnings_of(caplog)
    assert str(batch) in warning and "cannot be read" in warning and "\n" not in warning


def test_iter_warc_records_reads_common_crawl_wet_and_raw_http_payloads(tmp_path: Path) -> None:
    wet = tmp_path / "CC-MAIN-example.warc.wet.gz"
    with open(wet, "wb") as stream:
        writer = WARCWriter(stream, gzip=True)
        writer.write_record(writer.create_warcinfo_record("CC-MAIN-example.warc.wet.gz", {"software": "test"}))
        writer.write_record(writer.create_warc_record(
            "https://example.org/page", "conversion", payload=io.BytesIO("Plain text of the page.\nÉtat.".encode()),
            warc_content_type="text/plain", warc_headers_dict={"WARC-Date": "2026-01-02T03:04:05Z"}))
    [text] = iter_warc_records(wet, record_types={"conversion"})
    assert text.url == "https://example.org/page" and text.content_type == "text/plain"
    assert text.body.decode() == "Plain text of the page.\nÉtat."
    assert text.date == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    # another archiver's response: raw HTTP bytes, chunked and gzip-encoded, in an uncompressed WARC
    html = b"<html><body><p>hello</p></body></html>"
    packed = gzip.compress(html)
    chunked = f"{len(packed):x}\r\n".encode() + packed + b"\r\n0\r\n\r\n"
    raw = tmp_path / "other.warc"
    with open(raw, "wb") as stream:
        writer = WARCWriter(stream, gzip=False)
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html"), ("Content-Encoding", "gzip"),
                                              ("Transfer-Encoding", "chunked")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record("http://example.org/", "response",
                                                      payload=io.BytesIO(chunked), http_headers=headers))
    [response] = iter_warc_records(raw)
    assert response.status == 200 and response.body == html and response.content_type == "text/html"


def test_a_local_site_page_recorded_under_a_file_uri_reads_back_without_its_header_block(tmp_path: Path) -> None:
    # warcio parses HTTP headers only for http(s) target URIs; a local mirror is recorded under file://
    store = WarcRawStore(tmp_path, batch_size=10)
    page = _record("file:///usr/share/doc/site/index.html")
    store.add(page)
    store.flush()
    [path] = sorted(tmp_path.glob("*.warc.gz"))
    [response] = iter_warc_records(path, record_types={"response"})
    assert response.status == 200 and response.content_type == "text/html; charset=iso-8859-1"
    assert response.body == page.body
    assert list(read_fetches(path)) == [page]


def test_store_loads_one_body_and_keeps_digests_and_revalidation(tmp_path: Path) -> None:
    store = WarcRawStore(tmp_path, batch_size=2)
    revalidated = _record("http://h/b.html", revalidated_at=datetime(2026, 12, 1, tzinfo=UTC))
    for record in (_record(), revalidated, _record("http://h/c.html", body=b"<p>pending</p>")):
        store.add(record)
    reopened = WarcRawStore(tmp_path, batch_size=2)  # c.html was never flushed
    assert reopened.load("http://h/b.html") == revalidated and reopened.load("http://h/c.html") is None
    assert store.load("http://h/c.html").body == b"<p>pending</p>"  # still pending in the first store
    assert reopened.get("http://h/a.html").digest == payload_digest(_record().body)  # WARC-Payload-Digest
    assert store.get("http://h/c.html").digest == payload_digest(b"<p>pending</p>")
    assert [r.url for r in reopened.fetches()] == ["http://h/a.html", "http://h/b.html"]
