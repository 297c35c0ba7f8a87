"""tasks/corpus/local_files.py: txt, jsonl, parquet and html files as documents, and source patterns."""

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.clean.extract import ExtractConfig
from tasks.corpus.local_files import HtmlPage, TextFormat, local_items, read_local_files, resolve_patterns
from tasks.errors import InputError


def _read(patterns: list[str], text_format: TextFormat = "file") -> tuple[list, Counter]:
    counts: Counter[str] = Counter()
    return list(read_local_files(patterns, text_format, ExtractConfig(), counts)), counts


def test_txt_joins_hard_wrapped_paragraphs(tmp_path: Path) -> None:
    (tmp_path / "wrapped.txt").write_text("First paragraph\nwraps here.\n\nSecond one.\n")
    (tmp_path / "lines.txt").write_text("line one\nline two\n")
    docs, _ = _read([str(tmp_path / "*.txt")])
    by_name = {Path(d.url).name: d for d in docs}
    assert by_name["wrapped.txt"].text == "First paragraph wraps here.\nSecond one."
    assert by_name["lines.txt"].text == "line one\nline two\n"  # no blank lines: every line is a paragraph
    assert by_name["lines.txt"].url == (tmp_path / "lines.txt").as_uri()
    assert by_name["lines.txt"].source == "local" and by_name["lines.txt"].fetched_at.tzinfo is not None


# Google BERT's create_pretraining_data input: a sentence per line, a blank line between documents
BERT_TEXT = ("\ufeffThe first document starts here.\r\nIt has a second sentence.\r\n \t \r\n"  # blank but spaces
             "Second document, one line.\r\n\r\n\r\n"  # several blank lines are one break
             "第三个文件。\r\n它有两行。\r\n\r\n  \r\n")  # trailing blank lines end it; nothing after


def test_bert_format_gives_one_document_per_block_with_its_lines_as_sentences(tmp_path: Path) -> None:
    path = tmp_path / "google.txt"
    path.write_bytes(BERT_TEXT.encode("utf-8"))  # the BOM is in the text: a UTF-8 BOM, as Notepad writes
    docs, _ = _read([str(path)], "bert")
    assert [(d.url, d.text) for d in docs] == [
        (f"{path.as_uri()}#doc=1", "The first document starts here.\nIt has a second sentence."),
        (f"{path.as_uri()}#doc=2", "Second document, one line."),
        (f"{path.as_uri()}#doc=3", "第三个文件。\n它有两行。"),
    ]
    assert {(d.source, d.title) for d in docs} == {("local", None)} and docs[0].fetched_at.tzinfo is not None


def test_bert_format_decodes_as_a_whole_file_would_be(tmp_path: Path) -> None:
    text = "Le café est très bon.\nNous sommes allés à la plage.\n\nOù il faisait très chaud.\n"
    (tmp_path / "utf16.txt").write_bytes(text.encode("utf-16"))  # with its byte-order mark
    (tmp_path / "latin1.txt").write_bytes(text.encode("latin-1"))  # not UTF-8: charset detection
    (tmp_path / "cr.txt").write_bytes(text.replace("\n", "\r").encode("utf-8"))  # old Mac line ends
    docs, _ = _read([str(tmp_path / "*.txt")], "bert")
    expected = ["Le café est très bon.\nNous sommes allés à la plage.", "Où il faisait très chaud."]
    assert [d.text for d in docs] == expected * 3


def test_lines_format_gives_one_document_per_line(tmp_path: Path) -> None:
    path = tmp_path / "passages.txt"
    path.write_bytes("\ufeff第一段文字。\r\n\r\n  Second passage, stripped.  \r\n   \r\nthird\r\n\r\n".encode())
    docs, _ = _read([str(path)], "lines")
    assert [(d.url, d.text) for d in docs] == [
        (f"{path.as_uri()}#line=1", "第一段文字。"),
        (f"{path.as_uri()}#line=3", "Second passage, stripped."),  # blank lines counted, as an editor numbers
        (f"{path.as_uri()}#line=5", "third"),
    ]


def test_the_text_format_applies_to_txt_files_only(tmp_path: Path) -> None:
    path = tmp_path / "google.txt"
    path.write_bytes(BERT_TEXT.encode("utf-8"))
    (tmp_path / "docs.jsonl").write_text('{"text": "one\\n\\ntwo"}\n')
    docs, _ = _read([str(tmp_path / "*")], "file")  # the default: one file, one document
    assert [d.url for d in docs] == [(tmp_path / "docs.jsonl").as_uri() + "#line=1", path.as_uri()]
    assert docs[1].text.startswith("The first document starts here. It has a second sentence.\n")  # hard wraps
    docs, _ = _read([str(tmp_path / "*")], "lines")
    assert docs[0].text == "one\n\ntwo" and len(docs) == 1 + 5


def test_a_binary_file_is_refused_in_every_text_format(tmp_path: Path) -> None:
    (tmp_path / "photo.txt").write_bytes(PNG)
    for text_format in ("bert", "lines"):
        with pytest.raises(InputError, match=r"photo\.txt: a PNG image, not a \.txt text file"):
            _read([str(tmp_path / "photo.txt")], text_format)


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


def test_local_items_leave_html_unextracted(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_bytes(b"<html><body><p>Hi there.</p></body></html>")
    (tmp_path / "b.txt").write_text("Plain text.")
    items = list(local_items([str(tmp_path / "*")], "file"))
    assert isinstance(items[0], HtmlPage) and items[0].body.startswith(b"<html>") and items[0].source == "local"
    assert items[1].text == "Plain text." and items[1].url == (tmp_path / "b.txt").resolve().as_uri()


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets




PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.mark.parametrize(("name", "body", "kind"), [
    ("photo.txt", PNG, "a PNG image"),
    ("dump.txt", bytes(range(256)) * 8, "binary data (it holds NUL bytes)"),
    ("page.html", b"%PDF-1.7\n" + bytes(200), "a PDF document"),
    ("records.jsonl", b"\x1f\x8b\x08\x00" + bytes(100), "a gzip archive"),
])
def test_a_binary_file_named_as_text_is_refused_naming_it(tmp_path: Path, name: str, body: bytes, kind: str) -> None:
    (tmp_path / name).write_bytes(body)
    with pytest.raises(InputError) as refused:
        _read([str(tmp_path / name)])
    assert str(refused.value).startswith(f"{tmp_path / name}: {kind}, not a {Path(name).suffix} text file")
    assert "take it out of the local_files patterns" in str(refused.value)


def test_utf16_text_with_its_byte_order_mark_is_not_mistaken_for_binary(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_bytes("plain words, many of them.".encode("utf-16"))  # NUL bytes, and a BOM
    docs, _ = _read([str(tmp_path / "notes.txt")])
    assert [d.text for d in docs] == ["plain words, many of them."]


def test_a_file_that_is_not_parquet_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "text.parquet").write_text("text\nnot a parquet file at all\n")
    (tmp_path / "empty.parquet").write_bytes(b"")
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({"text": ["one document"] * 50}), whole)
    (tmp_path / "cut.parquet").write_bytes(whole.read_bytes()[:-20])
    expected = {"text.parquet": "it is text", "empty.parquet": "it is empty",
                "cut.parquet": "it is cut short: its PAR1 footer is missing"}
    for name, what in expected.items():
        with pytest.raises(InputError) as refused:
            _read([str(tmp_path / name)])
        assert str(refused.value).startswith(f"{tmp_path / name}: not a Parquet file ({what})"), name
    docs, _ = _read([str(whole)])
    assert len(docs) == 50
