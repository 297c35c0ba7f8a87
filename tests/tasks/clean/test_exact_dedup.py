from datetime import UTC, datetime

from tasks.clean.exact_dedup import ExactDedup, content_hash, dedup_key
from tasks.clean.steps import CleanPipeline, Document


def _doc(url: str, text: str) -> Document:
    return Document(url=url, source="local", title=None, text=text, fetched_at=datetime(2024, 1, 1, tzinfo=UTC))


def test_dedup_key_ignores_case_and_whitespace_but_content_hash_does_not() -> None:
    assert dedup_key("Hello  World\nagain") == dedup_key("hello world again")
    assert dedup_key("hello world") != dedup_key("hello world!")
    assert content_hash("Hello World") != content_hash("hello world")
    assert len(dedup_key("x")) == 64


def test_exact_dedup_keeps_the_first_copy() -> None:
    pipeline = CleanPipeline([ExactDedup()])
    docs = [_doc("a", "Same text here"), _doc("b", "same  TEXT here"), _doc("c", "Other text")]
    assert [d.url for d in pipeline.run(docs)] == ["a", "c"]
    assert pipeline.counts == {"duplicate": 1}
