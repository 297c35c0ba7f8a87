from datetime import UTC, datetime

from tasks.clean import CleanPipeline, Document, MinWords, NormalizeWhitespace, clean_text, default_pipeline

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def _doc(text: str, title: str | None = None) -> Document:
    return Document(url="http://h/", source="crawl", title=title, text=text, fetched_at=NOW)


def test_clean_text_fixes_mojibake_and_normalises() -> None:
    assert clean_text("cafÃ© naÃ¯ve") == "café naïve"
    assert clean_text("cafe\u0301") == "café"  # NFC: e + combining accent -> é
    assert clean_text("Tom &amp; Jerry") == "Tom &amp; Jerry"  # extracted text is not HTML-unescaped again


def test_whitespace_one_paragraph_per_line() -> None:
    text = "  first \t line  \r\n\n\n\n second\u00a0\u00a0line \n\n  \n third"
    assert NormalizeWhitespace().fix(text) == "first line\nsecond line\nthird"
    assert clean_text(text) == "first line\nsecond line\nthird"


def test_pipeline_counts_every_drop_reason() -> None:
    pipeline = default_pipeline(min_words=3)
    docs = [_doc("one two three", "Ti\u0301tle"), _doc("  \n \t "), _doc("too short"), _doc("cafÃ© is open today")]
    kept = list(pipeline.run(docs))
    assert [d.text for d in kept] == ["one two three", "café is open today"]
    assert kept[0].title == "Títle"
    assert pipeline.counts == {"empty": 1, "too_few_words": 1}
    assert pipeline.reasons == ["empty", "too_few_words"]


def test_a_filter_can_name_its_own_reason() -> None:
    class NoDigits(MinWords):
        name = "digits"

        def filter(self, doc):
            return (False, "has_digits") if any(c.isdigit() for c in doc.text) else True

    pipeline = CleanPipeline([NoDigits(0)])
    assert pipeline.process(_doc("abc 1")) is None and pipeline.process(_doc("abc")) is not None
    assert pipeline.counts == {"digits": 0, "has_digits": 1}
