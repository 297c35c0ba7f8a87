from datetime import UTC, datetime
from pathlib import Path

from tasks.clean.steps import Document, Example, StepCount
from tasks.clean.text_stats import WORD_COUNT_RULE
from tasks.corpus.cleaning_report import (
    LANGUAGE_PLOT,
    LENGTH_PLOT,
    MAX_LANGUAGE_BARS,
    REPORT_FILE,
    language_figure,
    write_cleaning_report,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STEPS = [StepCount("whitespace", 4, 4, 120, 100), StepCount("too_few_words", 4, 3, 100, 90),
         StepCount("gopher_quality", 3, 2, 90, 60), StepCount("duplicate", 2, 2, 60, 60)]


def _doc(url: str, words: int, language: str | None) -> Document:
    return Document(url=url, source="crawl", title=None, text=" ".join(["word"] * words), fetched_at=NOW,
                    language=language)


def _write(tmp_path: Path, documents: list[Document]) -> list[Path]:
    drop_examples = {
        "too_few_words": [Example("too_few_words", "too_few_words", "http://h/short", "two words")],
        "gopher_too_few_words": [Example("gopher_quality", "gopher_too_few_words", "http://h/a|b",
                                         "pipes | and ``` fences\nsecond line")],
    }
    kept = [Example("kept", "kept", "http://h/kept", "a kept document")]
    return write_cleaning_report(tmp_path, STEPS, drop_examples, kept, documents,
                                 drop_counts={"extract_failed": 2, "too_few_words": 1, "gopher_too_few_words": 1,
                                              "duplicate": 0})


def test_report_files_exist_and_plots_are_png(tmp_path: Path) -> None:
    documents = [_doc("http://h/1", 30, "en"), _doc("http://h/2", 3000, "en"), _doc("http://h/3", 200, None)]
    paths = _write(tmp_path, documents)
    assert paths == [tmp_path / REPORT_FILE, tmp_path / LENGTH_PLOT, tmp_path / LANGUAGE_PLOT]
    for plot in paths[1:]:
        data = plot.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000  # a drawn figure, not an empty file
    assert not list(tmp_path.glob("*.tmp"))
    again = _write(tmp_path / "again", documents)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]  # same input, same files


def test_report_table_has_one_row_per_step(tmp_path: Path) -> None:
    report = _write(tmp_path, [_doc("http://h/1", 30, "en")])[0].read_text()
    assert "| step | docs in | docs out | dropped | bytes in | bytes out |" in report
    assert "| too_few_words | 4 | 3 | 1 | 100 | 90 |" in report
    assert "| gopher_quality | 3 | 2 | 1 | 90 | 60 |" in report
    assert "| duplicate | 2 | 2 | 0 | 60 | 60 |" in report
    assert "4 documents (120 B of text) went into cleaning; 2 (50.0%) came out (60 B)." in report
    # drop reasons with a count, extraction included; reasons that dropped nothing are left out
    assert "| extract_failed | 2 |" in report and "| gopher_too_few_words | 1 |" in report
    assert "| duplicate | 0 |" not in report


def test_report_counts_words_as_the_filters_do_and_says_how(tmp_path: Path) -> None:
    chinese = Document(url="http://h/zh", source="local", title=None, text="我们今天去公园散步\n天气很好",
                       fetched_at=NOW)
    report = _write(tmp_path, [chinese])[0].read_text()
    assert "Kept documents: median 13 words" in report  # a character each, as the filters count them
    assert f"Words are counted as the filters count them: {WORD_COUNT_RULE}." in report
    assert "whitespace-separated, each character in scripts written without spaces (Chinese" in report


def test_report_shows_examples_under_their_step_verbatim(tmp_path: Path) -> None:
    report = _write(tmp_path, [_doc("http://h/1", 30, "en")])[0].read_text()
    gopher = report.index("### gopher_quality")
    assert report.index("### too_few_words") < gopher < report.index("## Kept examples")
    assert "**gopher_too_few_words**: `http://h/a|b`" in report
    # a fence longer than any backtick run inside, so the excerpt shows as it is
    assert "````text\npipes | and ``` fences\nsecond line\n````" in report
    assert report.index("`http://h/kept`") > report.index("## Kept examples")


def test_empty_corpus_still_gets_a_report(tmp_path: Path) -> None:
    paths = write_cleaning_report(tmp_path, [StepCount("empty")], {}, [], [])
    report = paths[0].read_text()
    assert "| empty | 0 | 0 | 0 | 0 | 0 |" in report
    assert "No document was dropped." in report and "No document was kept." in report
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in paths[1:])


def test_many_languages_end_in_one_other_bar() -> None:
    languages = {f"l{i:02d}": 100 - i for i in range(MAX_LANGUAGE_BARS + 5)}
    ax = language_figure(languages).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == MAX_LANGUAGE_BARS
    assert labels[-1] == "l00" and labels[0] == "6 others"  # most common on top, the tail summed at the bottom
    tail = range(MAX_LANGUAGE_BARS - 1, MAX_LANGUAGE_BARS + 5)
    assert ax.patches[0].get_width() == sum(languages[f"l{i:02d}"] for i in tail)
