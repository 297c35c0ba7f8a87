from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tasks.clean.normalize import MinWords, NonEmpty, default_pipeline
from tasks.clean.steps import (
    EXCERPT_CHARS,
    CleaningAccount,
    CleanPipeline,
    Document,
    DocumentFix,
    Example,
    ExampleSample,
    StepCount,
    account_batch_step,
    sample_examples,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def _doc(text: str, title: str | None = None) -> Document:
    return Document(url="http://h/", source="crawl", title=title, text=text, fetched_at=NOW)


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


def _step_rows(pipeline: CleanPipeline) -> list[tuple[str, int, int, int, int]]:
    return [(s.step, s.docs_in, s.docs_out, s.bytes_in, s.bytes_out) for s in pipeline.step_counts]


def test_step_counts_add_up_documents_and_bytes() -> None:
    pipeline = default_pipeline(min_words=3)
    docs = [_doc("  one   two three  "), _doc(" \n "), _doc("too short"), _doc("déjà vu encore")]
    kept = list(pipeline.run(docs))
    assert [d.text for d in kept] == ["one two three", "déjà vu encore"]
    raw = [len(d.text.encode()) for d in docs]  # 19, 4, 9, 16 (é and à are 2 bytes each)
    assert _step_rows(pipeline) == [
        ("ftfy", 4, 4, sum(raw), sum(raw)),
        ("nfc", 4, 4, sum(raw), sum(raw)),
        ("whitespace", 4, 4, sum(raw), 13 + 0 + 9 + 16),  # spaces collapsed, the blank doc emptied
        ("empty", 4, 3, 38, 38),
        ("too_few_words", 3, 2, 38, 13 + 16),
    ]
    for before, after in zip(pipeline.step_counts, pipeline.step_counts[1:]):  # each step feeds the next
        assert (after.docs_in, after.bytes_in) == (before.docs_out, before.bytes_out)
    assert [s.dropped for s in pipeline.step_counts] == [0, 0, 0, 1, 1]
    assert pipeline.step_counts[-1].bytes_out == sum(len(d.text.encode()) for d in kept)


def test_document_fix_that_shortens_text_is_counted_in_bytes() -> None:
    class FirstLine(DocumentFix):
        name = "first_line"

        def apply(self, doc):
            return replace(doc, text=doc.text.split("\n")[0])

    pipeline = CleanPipeline([FirstLine(), MinWords(1)])
    list(pipeline.run([_doc("keep\ndrop this"), _doc("ok")]))
    assert _step_rows(pipeline) == [("first_line", 2, 2, 16, 6), ("too_few_words", 2, 2, 6, 6)]


def test_drop_examples_are_capped_per_reason_and_name_their_step() -> None:
    pipeline = CleanPipeline([NonEmpty(), MinWords(3)], examples_per_reason=2)
    docs = [Document(url=f"http://h/{i}", source="crawl", title=None, text=f"short {i}", fetched_at=NOW)
            for i in range(10)]
    docs += [_doc(" "), _doc("x" * 1000 + " y z")]
    assert [d.text[:1] for d in pipeline.run(docs)] == ["x"]
    examples = pipeline.examples()
    assert set(examples) == {"empty", "too_few_words"}
    assert len(examples["too_few_words"]) == 2 and len(examples["empty"]) == 1
    assert all(e.step == "too_few_words" and e.reason == "too_few_words" for e in examples["too_few_words"])
    assert {e.url for e in examples["too_few_words"]} <= {d.url for d in docs[:10]}
    kept = pipeline.kept_examples.examples()
    assert len(kept) == 1 and kept[0].reason == "kept" and len(kept[0].excerpt) == EXCERPT_CHARS


def test_example_sample_is_deterministic_whatever_the_order_and_merges() -> None:
    docs = [Document(url=f"http://h/{i}", source="crawl", title=None, text=f"text {i}", fetched_at=NOW)
            for i in range(50)]
    forward = sample_examples(docs, "kept", "kept", size=3)
    assert sample_examples(reversed(docs), "kept", "kept", size=3) == forward
    first, second = ExampleSample(3), ExampleSample(3)
    for doc in docs[:20]:
        first.offer(Example.of(doc, "kept", "kept"))
    for doc in docs[20:]:
        second.offer(Example.of(doc, "kept", "kept"))
    first.merge(second)
    assert first.examples() == forward
    twice = ExampleSample(3)
    for doc in [docs[0], docs[0]]:
        twice.offer(Example.of(doc, "kept", "kept"))
    assert len(twice) == 1  # the same example is kept once
    assert sample_examples(docs, "kept", "kept", size=0) == []


def test_batch_step_accounting_and_the_account() -> None:
    docs = [_doc("a b c"), _doc("a b c d"), _doc("é")]
    count, examples = account_batch_step("near_duplicate", docs, [docs[0], docs[2]],
                                         {"near_duplicate": 1, "near_duplicate_of_parent": 0})
    assert (count.docs_in, count.docs_out, count.dropped, count.bytes_in, count.bytes_out) == (3, 2, 1, 14, 7)
    assert [(e.step, e.reason, e.excerpt) for e in examples["near_duplicate"]] == [
        ("near_duplicate", "near_duplicate", "a b c d")]
    reasons = {"near_duplicate": 1, "near_duplicate_of_parent": 1}
    _, both = account_batch_step("near_duplicate", docs, [docs[0]], reasons)
    assert list(both) == ["near_duplicate or near_duplicate_of_parent"]
    with pytest.raises(ValueError, match="not a subset"):
        account_batch_step("near_duplicate", docs[:1], [_doc("a b c")], {})

    pipeline = default_pipeline(min_words=2)
    cleaned = list(pipeline.run([_doc("one two"), _doc("one")]))
    account = CleaningAccount()
    account.add_pipeline(pipeline)
    account.add(*account_batch_step("near_duplicate", cleaned, cleaned, {}))
    assert [s.step for s in account.steps] == ["ftfy", "nfc", "whitespace", "empty", "too_few_words", "near_duplicate"]
    assert (account.bytes_in, account.bytes_out) == (10, 7)
    assert list(account.drop_examples) == ["too_few_words"]


def test_step_counts_merge_across_shards() -> None:
    total = StepCount("empty", 2, 1, 20, 10)
    total.merge(StepCount("empty", 3, 3, 30, 30))
    assert (total.docs_in, total.docs_out, total.dropped, total.bytes_in, total.bytes_out) == (5, 4, 1, 50, 40)
    with pytest.raises(ValueError, match="'nfc'"):
        total.merge(StepCount("nfc"))
