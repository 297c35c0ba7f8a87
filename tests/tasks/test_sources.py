import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.extract import ExtractConfig
from tasks.sources import read_local_files, resolve_patterns


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
