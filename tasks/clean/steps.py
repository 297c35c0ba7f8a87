"""The cleaning steps' signatures and the pipeline that runs them; every dropped document is counted by reason.

A step is a TextFix (text -> text, applied to text and title), a DocumentFix (document -> document:
rewrites the text alone or records fields such as the language) or a Filter (doc -> bool |
(bool, reason)); CleanPipeline runs them in order and keeps the counts, so a new rule is a new small class
(normalize.py holds the text repairs and the default pipeline, the other modules of tasks/clean/ the rest).
It also keeps, per step, documents and UTF-8 text bytes in and out (StepCount), and a few dropped
documents per reason and a few kept ones (ExampleSample) for the cleaning report.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

EXCERPT_CHARS = 300  # characters of text an Example keeps
EXAMPLES_PER_REASON = 3  # dropped documents a CleanPipeline keeps per drop reason, and kept ones


@dataclass(frozen=True, slots=True)
class Document:
    """One document from any source, before ids and hashes are assigned at snapshot time."""

    url: str
    source: Literal["crawl", "local", "warc", "hf"]
    title: str | None
    text: str
    fetched_at: datetime  # timezone-aware, UTC
    language: str | None = None  # ISO 639 code from language identification; None until identified
    language_score: float | None = None  # the identifier's probability (0..1) for `language`


def utf8_bytes(text: str) -> int:
    """Length of text in UTF-8 bytes (ASCII text is not encoded: isascii() is O(1) in CPython)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@dataclass(slots=True)
class StepCount:
    """Documents and UTF-8 bytes of text that went into and came out of one cleaning step."""

    step: str
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def dropped(self) -> int:
        """Documents this step dropped (docs_in - docs_out)."""
        return self.docs_in - self.docs_out

    def merge(self, other: StepCount) -> None:
        """Add another shard's counts of the same step."""
        if other.step != self.step:
            raise ValueError(f"cannot merge counts of step {other.step!r} into step {self.step!r}")
        self.docs_in += other.docs_in
        self.docs_out += other.docs_out
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out


@dataclass(frozen=True, slots=True, order=True)
class Example:
    """A document shown in the cleaning report: the step and reason that dropped it (or "kept"), url, opening."""

    step: str
    reason: str
    url: str
    excerpt: str  # the first EXCERPT_CHARS characters of the text as the step saw it

    @classmethod
    def of(cls, doc: Document, step: str, reason: str) -> Example:
        """An example of doc, keeping only the opening of its text."""
        return cls(step=step, reason=reason, url=doc.url, excerpt=doc.text[:EXCERPT_CHARS])


def example_key(example: Example) -> int:
    """A 64-bit hash of the example's url and excerpt: ExampleSample keeps the smallest (a bottom-k sample)."""
    # a hash, not arrival order: the sample does not depend on input order or sharding
    digest = hashlib.blake2b(f"{example.url}\n{example.excerpt}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


class ExampleSample:
    """At most `size` examples: those with the smallest hash of (url, excerpt) (a bottom-k sample).

    Deterministic and independent of the order documents arrive in, memory O(size), and two shards'
    samples merge into the sample of the whole.
    """

    def __init__(self, size: int = EXAMPLES_PER_REASON) -> None:
        if size < 0:
            raise ValueError(f"example sample size must be >= 0, got {size}")
        self.size = size
        self._heap: list[tuple[int, Example]] = []  # (-key, example): the root is the largest key kept

    def __len__(self) -> int:
        return len(self._heap)

    def offer(self, example: Example) -> None:
        """Keep example if its key is among the `size` smallest seen."""
        if self.size == 0:
            return
        item = (-example_key(example), example)
        if item in self._heap:  # the same example twice (same url and opening) is shown once
            return
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:
            heapq.heapreplace(self._heap, item)

    def merge(self, other: ExampleSample) -> None:
        """Offer every example of another sample (e.g. another shard's)."""
        for _, example in other._heap:
            self.offer(example)

    def examples(self) -> list[Example]:
        """The kept examples, smallest key first."""
        return [example for _, example in sorted(self._heap, reverse=True)]


def sample_examples(docs: Iterable[Document], step: str, reason: str, size: int = EXAMPLES_PER_REASON) -> list[Example]:
    """A deterministic sample of `size` documents as Examples (e.g. the kept documents of a snapshot)."""
    sample = ExampleSample(size)
    for doc in docs:
        sample.offer(Example.of(doc, step, reason))
    return sample.examples()


def account_batch_step(step: str, docs_in: Sequence[Document], docs_out: Sequence[Document],
                       reasons: Mapping[str, int], size: int = EXAMPLES_PER_REASON,
                       ) -> tuple[StepCount, dict[str, list[Example]]]:
    """Counts and dropped examples of a step that filters a whole batch at once (e.g. near-dedup).

    docs_out must be a subset of docs_in (the same objects). The examples are labelled with the one
    reason in `reasons` that dropped documents, or with every such reason joined by " or " when the
    step does not say which document it dropped for which reason.
    """
    kept_ids = {id(doc) for doc in docs_out}
    dropped = [doc for doc in docs_in if id(doc) not in kept_ids]
    if len(dropped) != len(docs_in) - len(docs_out):
        raise ValueError(f"step {step!r}: its output is not a subset of its input")
    count = StepCount(step, docs_in=len(docs_in), docs_out=len(docs_out),
                      bytes_in=sum(utf8_bytes(d.text) for d in docs_in),
                      bytes_out=sum(utf8_bytes(d.text) for d in docs_out))
    label = " or ".join(reason for reason, n in reasons.items() if n) or step
    examples = {label: sample_examples(dropped, step, label, size)} if dropped else {}
    return count, examples


class TextFix:
    """A text -> text repair applied to every document (and to its title)."""

    name = "fix"

    def fix(self, text: str) -> str:
        raise NotImplementedError


class DocumentFix:
    """A document -> document step: rewrites the text alone (not the title) or records fields on it."""

    name = "document_fix"

    def apply(self, doc: Document) -> Document:
        raise NotImplementedError


class Filter:
    """Keep or drop a document; returning (False, reason) names the drop reason."""

    name = "filter"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Dropped:
    """A document a filter dropped: the step, its reason and the document as that step saw it."""

    step: str
    reason: str
    doc: Document


class CleanPipeline:
    """Apply fixes then filters in order; counts[reason] says how many documents each filter dropped.

    step_counts[i] holds documents and bytes in and out of steps[i]; drop_examples[reason] and
    kept_examples hold a few dropped and kept documents (ExampleSample, at most examples_per_reason each).
    """

    def __init__(self, steps: Iterable[TextFix | DocumentFix | Filter],
                 examples_per_reason: int = EXAMPLES_PER_REASON) -> None:
        self.steps = list(steps)
        self.counts: Counter[str] = Counter({s.name: 0 for s in self.steps if isinstance(s, Filter)})
        self.step_counts = [StepCount(s.name) for s in self.steps]
        self.examples_per_reason = examples_per_reason
        self.drop_examples: dict[str, ExampleSample] = {}
        self.kept_examples = ExampleSample(examples_per_reason)

    @property
    def reasons(self) -> list[str]:
        """Every drop reason this pipeline can report."""
        return [s.name for s in self.steps if isinstance(s, Filter)]

    def process(self, doc: Document) -> Document | None:
        """The cleaned document, or None if a filter dropped it (and the reason is counted)."""
        result = self.process_explained(doc)
        return None if isinstance(result, Dropped) else result

    def process_explained(self, doc: Document) -> Document | Dropped:
        """The cleaned document, or what dropped it (the reason is counted)."""
        size = utf8_bytes(doc.text)
        for step, count in zip(self.steps, self.step_counts):
            count.docs_in += 1
            count.bytes_in += size
            if isinstance(step, TextFix):
                title = step.fix(doc.title) if doc.title else doc.title
                doc = replace(doc, text=step.fix(doc.text), title=title or None)
                size = utf8_bytes(doc.text)
            elif isinstance(step, DocumentFix):
                fixed = step.apply(doc)
                if fixed.text is not doc.text:
                    size = utf8_bytes(fixed.text)
                doc = fixed
            else:
                verdict = step.filter(doc)
                keep, reason = verdict if isinstance(verdict, tuple) else (verdict, step.name)
                if not keep:
                    reason = reason or step.name
                    self.counts[reason] += 1
                    sample = self.drop_examples.setdefault(reason, ExampleSample(self.examples_per_reason))
                    sample.offer(Example.of(doc, step.name, reason))
                    return Dropped(step=step.name, reason=reason, doc=doc)
            count.docs_out += 1
            count.bytes_out += size
        self.kept_examples.offer(Example.of(doc, "kept", "kept"))
        return doc

    def run(self, docs: Iterable[Document]) -> Iterator[Document]:
        """Clean a stream of documents, yielding the kept ones."""
        for doc in docs:
            cleaned = self.process(doc)
            if cleaned is not None:
                yield cleaned

    def examples(self) -> dict[str, list[Example]]:
        """A few dropped documents per drop reason, in the order the reasons were first seen."""
        return {reason: sample.examples() for reason, sample in self.drop_examples.items()}


@dataclass
class CleaningAccount:
    """Counts and dropped examples of every step a snapshot's documents went through, in order."""

    steps: list[StepCount] = field(default_factory=list)
    drop_examples: dict[str, list[Example]] = field(default_factory=dict)  # reason -> a few dropped documents

    def add(self, count: StepCount, examples: Mapping[str, Sequence[Example]]) -> None:
        """Append one step's counts and its dropped examples (e.g. from account_batch_step)."""
        self.steps.append(count)
        self._add_examples(examples)

    def add_pipeline(self, pipeline: CleanPipeline) -> None:
        """Append the counts and dropped examples of every step of a CleanPipeline that has run."""
        self.steps.extend(pipeline.step_counts)
        self._add_examples(pipeline.examples())

    def _add_examples(self, examples: Mapping[str, Sequence[Example]]) -> None:
        for reason, dropped in examples.items():
            self.drop_examples.setdefault(reason, []).extend(dropped)

    @property
    def bytes_in(self) -> int:
        """UTF-8 bytes of text that went into the first step (0 before any step)."""
        return self.steps[0].bytes_in if self.steps else 0

    @property
    def bytes_out(self) -> int:
        """UTF-8 bytes of text that came out of the last step (0 before any step)."""
        return self.steps[-1].bytes_out if self.steps else 0
