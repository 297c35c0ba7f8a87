"""tasks/corpus/warc_files.py: WARC and WET files in Common Crawl layout as documents."""

import gzip
import io
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from tasks.clean.extract import ExtractConfig
from tasks.corpus.warc_files import WarcSourceConfig, read_warc_files, warc_items


def _html(title: str, paragraph: str) -> bytes:
    body = f"<body><article><p>{paragraph}</p></article></body>"
    return f"<html><head><title>{title}</title></head>{body}</html>".encode()


def _write_warc(path: Path, records: list[tuple[str, str, int, str, bytes]]) -> None:
    """(record type, url, HTTP status, content type, payload) -> one gzip member per record, after a warcinfo."""
    with path.open("wb") as stream:
        writer = WARCWriter(stream, gzip=path.suffix == ".gz")
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "test"}))
        for number, (record_type, url, status, content_type, payload) in enumerate(records):
            date = {"WARC-Date": f"2024-03-0{number + 1}T10:00:00Z"}
            if record_type == "response":
                http = StatusAndHeaders(f"{status} X", [("Content-Type", content_type)], protocol="HTTP/1.1")
                record = writer.create_warc_record(url, "response", payload=io.BytesIO(payload), http_headers=http,
                                                   warc_headers_dict=date)
            else:
                record = writer.create_warc_record(url, record_type, payload=io.BytesIO(payload),
                                                   warc_content_type=content_type, warc_headers_dict=date)
            writer.write_record(record)


def _read_warc(patterns: list[str], **options: bool) -> tuple[list, Counter]:
    counts: Counter[str] = Counter()
    return list(read_warc_files(WarcSourceConfig(patterns=patterns, **options), ExtractConfig(), counts)), counts


def test_warc_html_responses_are_extracted_and_others_skipped(tmp_path: Path) -> None:
    _write_warc(tmp_path / "CC-MAIN-1.warc.gz", [
        ("response", "https://example.org/a", 200, "text/html; charset=utf-8", _html("A", "First page text.")),
        ("response", "https://example.org/missing", 404, "text/html", _html("Gone", "Not found here.")),
        ("response", "https://example.org/logo.png", 200, "image/png", b"\x89PNG\r\n"),
        ("request", "https://example.org/a", 0, "application/http; msgtype=request", b"GET /a HTTP/1.1\r\n\r\n"),
        ("response", "https://example.org/a", 200, "application/xhtml+xml", _html("A2", "Second capture.")),
        ("response", "https://example.org/empty", 200, "text/html", b"<html><body></body></html>"),
    ])
    docs, counts = _read_warc([str(tmp_path / "*.warc.gz")])
    assert [(d.url, d.title, d.text, d.source) for d in docs] == [
        ("https://example.org/a", "A", "First page text.", "warc"),
        ("https://example.org/a", "A2", "Second capture.", "warc"),  # a second capture keeps its own date
    ]
    assert [d.fetched_at for d in docs] == [datetime(2024, 3, 1, 10, tzinfo=UTC), datetime(2024, 3, 5, 10, tzinfo=UTC)]
    assert (counts["warc_skipped_status"], counts["warc_skipped_content_type"], counts["extract_empty"]) == (1, 1, 1)


def test_warc_items_leave_html_unextracted_in_the_same_order(tmp_path: Path) -> None:
    _write_warc(tmp_path / "CC-MAIN-1.warc.gz", [
        ("response", "https://example.org/a", 200, "text/html; charset=utf-8", _html("A", "First page text.")),
        ("response", "https://example.org/logo.png", 200, "image/png", b"\x89PNG\r\n"),
        ("response", "https://example.org/b", 200, "text/html", _html("B", "Second page.")),
    ])
    _write_warc(tmp_path / "CC-MAIN-0.warc.wet.gz", [
        ("conversion", "https://example.org/x", 0, "text/plain", b"Converted text."),
    ])
    counts: Counter[str] = Counter()
    items = list(warc_items(WarcSourceConfig(patterns=[str(tmp_path / "*.gz")]), counts))
    assert [type(i).__name__ for i in items] == ["Document", "HtmlPage", "HtmlPage"]
    assert [i.url for i in items] == ["https://example.org/x", "https://example.org/a", "https://example.org/b"]
    assert items[1].body == _html("A", "First page text.") and items[1].content_type == "text/html; charset=utf-8"
    assert items[1].fetched_at == datetime(2024, 3, 1, 10, tzinfo=UTC) and items[1].source == "warc"
    assert counts["warc_skipped_content_type"] == 1


def test_wet_conversion_records_are_taken_as_text(tmp_path: Path) -> None:
    _write_warc(tmp_path / "CC-MAIN-1.warc.wet.gz", [
        ("conversion", "https://example.org/x", 0, "text/plain", "Line one.\nLine two é.".encode()),
        ("conversion", "https://example.org/y", 0, "text/plain", b"Other text."),
    ])
    docs, _ = _read_warc([str(tmp_path / "*.wet.gz")])
    assert [(d.url, d.title, d.text, d.source) for d in docs] == [
        ("https://example.org/x", None, "Line one.\nLine two é.", "warc"),
        ("https://example.org/y", None, "Other text.", "warc"),
    ]
    assert docs[1].fetched_at == datetime(2024, 3, 2, 10, tzinfo=UTC)


def test_warc_patterns_are_validated_with_the_config(tmp_path: Path) -> None:
    (tmp_path / "notes.warc.gz").write_bytes(gzip.compress(b"not a warc"))
    (tmp_path / "plain.warc").write_bytes(b"hello")
    with pytest.raises(ValidationError) as info:
        WarcSourceConfig(patterns=[str(tmp_path / "none-*.warc.gz"), str(tmp_path / "*.warc*")])
    message = str(info.value)
    assert "none-*.warc.gz' matches no file" in message
    assert "notes.warc.gz" in message and "plain.warc" in message and "does not start with 'WARC/'" in message


def test_corrupt_warc_is_raised_with_its_name_or_counted(tmp_path: Path) -> None:
    whole = tmp_path / "whole.warc.gz"
    _write_warc(whole, [("conversion", f"https://example.org/{i}", 0, "text/plain", f"Text {i}.".encode())
                        for i in range(3)])
    data = whole.read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(data[:-20])  # an interrupted download: the last gzip member is cut short
    whole.unlink()
    with pytest.raises(ValueError, match=r"cut\.warc\.gz: corrupt WARC/WET file after \d records \(EOFError"):
        _read_warc([str(cut)])
    docs, counts = _read_warc([str(cut)], skip_corrupt=True)
    assert [d.text for d in docs][:2] == ["Text 0.", "Text 1."]  # records before the damage are kept
    assert counts["warc_files_corrupt"] == 1
    garbled = tmp_path / "garbled.warc.gz"
    garbled.write_bytes(data[:len(data) // 2] + bytes(40) + data[len(data) // 2 + 40:])
    with pytest.raises(ValueError, match=r"garbled\.warc\.gz: corrupt WARC/WET file"):
        _read_warc([str(garbled)])
