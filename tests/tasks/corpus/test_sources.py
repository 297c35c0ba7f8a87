import gzip
import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from tasks.clean.extract import ExtractConfig
from tasks.corpus.hf_datasets import HuggingFaceSource, read_hf_dataset, read_hf_datasets
from tasks.corpus.local_files import HtmlPage, local_items, read_local_files, resolve_patterns
from tasks.corpus.warc_files import WarcSourceConfig, read_warc_files, warc_items


def _read(patterns: list[str]) -> tuple[list, Counter]:
    counts: Counter[str] = Counter()
    return list(read_local_files(patterns, ExtractConfig(), counts)), counts


def test_txt_joins_hard_wrapped_paragraphs(tmp_path: Path) -> None:
    (tmp_path / "wrapped.txt").write_text("First paragraph\nwraps here.\n\nSecond one.\n")
    (tmp_path / "lines.txt").write_text("line one\nline two\n")
    docs, _ = _read([str(tmp_path / "*.txt")])
    by_name = {Path(d.url).name: d for d in docs}
    assert by_name["wrapped.txt"].text == "First paragraph wraps here.\nSecond one."
    assert by_name["lines.txt"].text == "line one\nline two\n"  # no blank lines: every line is a paragraph
    assert by_name["lines.txt"].url == (tmp_path / "lines.txt").as_uri()
    assert by_name["lines.txt"].source == "local" and by_name["lines.txt"].fetched_at.tzinfo is not None


def test_txt_files_in_other_encodings_are_decoded(tmp_path: Path) -> None:
    french = "Le café est très bon. Nous sommes allés à la plage, où il faisait très chaud."
    (tmp_path / "notepad.txt").write_bytes(french.encode("utf-16"))  # with its byte-order mark
    (tmp_path / "bom.txt").write_bytes(french.encode("utf-8-sig"))
    (tmp_path / "latin1.txt").write_bytes(french.encode("latin-1"))  # charset detection, windows-1252 on a tie
    docs, _ = _read([str(tmp_path / "*.txt")])
    assert [d.text for d in docs] == [french] * 3


def test_jsonl_with_a_bom_and_a_cut_emoji_is_read(tmp_path: Path) -> None:
    lines = '{"text": "first line"}\n{"text": "an emoji cut in half: \\ud83d", "title": "\\udc00"}\n'
    (tmp_path / "docs.jsonl").write_bytes(lines.encode("utf-8-sig"))
    docs, _ = _read([str(tmp_path / "docs.jsonl")])
    # A lone surrogate is valid JSON but not text (Arrow refuses it): it becomes U+FFFD.
    assert [(d.title, d.text) for d in docs] == [(None, "first line"), ("\ufffd", "an emoji cut in half: \ufffd")]
    (tmp_path / "latin1.jsonl").write_bytes('{"text": "café"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.jsonl:1: not UTF-8 .*re-encode"):
        _read([str(tmp_path / "latin1.jsonl")])


def test_jsonl_and_parquet_records(tmp_path: Path) -> None:
    lines = [{"text": "from jsonl", "url": "https://example.org/1", "title": "One"}, {"text": "no url"}]
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    pq.write_table(pa.table({"text": ["row one", None, "row three"], "other": [1, 2, 3]}), tmp_path / "t.parquet")
    docs, _ = _read([str(tmp_path / "docs.jsonl"), str(tmp_path / "t.parquet")])
    assert [(d.url, d.title, d.text) for d in docs] == [
        ("https://example.org/1", "One", "from jsonl"),
        ((tmp_path / "docs.jsonl").as_uri() + "#line=2", None, "no url"),
        ((tmp_path / "t.parquet").as_uri() + "#row=1", None, "row one"),
        ((tmp_path / "t.parquet").as_uri() + "#row=3", None, "row three"),
    ]


def test_html_files_are_extracted_and_failures_counted(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text("<html><head><title>T</title></head><body><p>Hello there.</p></body></html>")
    (tmp_path / "empty.htm").write_text("<html><body></body></html>")
    docs, counts = _read([str(tmp_path / "*.htm*")])
    assert [(d.title, d.text) for d in docs] == [("T", "Hello there.")]
    assert counts["extract_empty"] == 1


def test_bad_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"title": "no text"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: .*'text'"):
        _read([str(tmp_path / "bad.jsonl")])


def test_patterns_must_match_supported_files(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(ValueError) as info:
        resolve_patterns([str(tmp_path / "*.nothing"), str(tmp_path / "*.csv")])
    message = str(info.value)
    assert "*.nothing' matches no file" in message  # every problem in one message
    assert "data.csv" in message and ".jsonl" in message


# ---------------------------------------------------------------------------------------------
# WARC and WET files

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


def test_local_items_leave_html_unextracted(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_bytes(b"<html><body><p>Hi there.</p></body></html>")
    (tmp_path / "b.txt").write_text("Plain text.")
    items = list(local_items([str(tmp_path / "*")]))
    assert isinstance(items[0], HtmlPage) and items[0].body.startswith(b"<html>") and items[0].source == "local"
    assert items[1].text == "Plain text." and items[1].url == (tmp_path / "b.txt").resolve().as_uri()


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


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets

def test_hf_dataset_from_disk_streams_rows(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    rows = {"text": ["first", None, "third"], "link": ["https://example.org/1", None, None],
            "heading": ["One", None, None]}
    DatasetDict({"train": Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "corpus"))
    source = HuggingFaceSource(from_disk=str(tmp_path / "corpus"), url_column="link", title_column="heading",
                               batch_size=2)
    docs = list(read_hf_datasets([source]))
    assert [(d.url, d.title, d.text, d.source) for d in docs] == [
        ("https://example.org/1", "One", "first", "hf"),
        ("hf://corpus/train/2", None, "third", "hf"),  # row 1 has no text; synthetic urls keep row numbers
    ]
    assert docs[0].fetched_at.tzinfo is not None
    with pytest.raises(ValueError, match=r"'corpus'.*no split 'test' \(splits: train\)"):
        list(read_hf_dataset(source.model_copy(update={"split": "test"})))
    with pytest.raises(ValueError, match=r"no column 'body' \(columns: text, link, heading\)"):
        list(read_hf_dataset(source.model_copy(update={"text_column": "body"})))


def test_hf_load_dataset_json_data_files(tmp_path: Path) -> None:
    lines = [{"text": "alpha", "url": "https://example.org/a"}, {"text": "beta"}, {"text": "gamma"}]
    (tmp_path / "part.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    source = HuggingFaceSource(name="json", data_files=[str(tmp_path / "*.jsonl")], url_column="url", max_rows=2)
    docs = list(read_hf_dataset(source))
    assert [(d.url, d.text) for d in docs] == [("https://example.org/a", "alpha"), ("hf://part.jsonl/train/1", "beta")]


def test_hf_load_dataset_local_folder(tmp_path: Path) -> None:
    (tmp_path / "wiki" / "data").mkdir(parents=True)
    (tmp_path / "wiki" / "data" / "train.jsonl").write_text('{"body": "folder row", "name": "Row"}\n')
    source = HuggingFaceSource(name=str(tmp_path / "wiki"), data_dir="data", text_column="body", title_column="name")
    assert [(d.url, d.title, d.text) for d in read_hf_dataset(source)] == [("hf://wiki/train/0", "Row", "folder row")]


def test_hf_sources_that_cannot_be_found(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="matches no file"):
        HuggingFaceSource(name="json", data_files=[str(tmp_path / "none*.jsonl")])
    with pytest.raises(ValidationError, match="not a folder written by save_to_disk"):
        HuggingFaceSource(from_disk=str(tmp_path / "nowhere"))
    with pytest.raises(ValidationError, match="exactly one of name and from_disk"):
        HuggingFaceSource()
    # offline, a hub id outside the local cache cannot be loaded; if datasets was imported online
    # earlier in this process, a hub id is refused before any request: either way, no download
    with pytest.raises(ValueError, match=r"'someone/no-such-dataset'.*valid: from_disk"):
        list(read_hf_dataset(HuggingFaceSource(name="someone/no-such-dataset")))
    (tmp_path / "part.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match=r"'part\.jsonl' cannot be loaded \(ValueError: Bad split: test"):
        list(read_hf_dataset(HuggingFaceSource(name="json", data_files=[str(tmp_path / "part.jsonl")], split="test")))
