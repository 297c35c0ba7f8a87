"""Text repair and normalisation, and the document filters; every dropped document is counted by reason.

A step is a TextFix (text -> text, applied to text and title), a DocumentFix (document -> document:
rewrites the text alone or records fields such as the language) or a Filter (doc -> bool |
(bool, reason)); CleanPipeline runs them in order and keeps the counts, so a new rule is a new small class.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import ftfy

_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")  # whitespace except newline (tabs, NBSP, ...)
_BLANK_LINES = re.compile(r"\n{2,}")


@dataclass(frozen=True, slots=True)
class Document:
    """One document from any source, before ids and hashes are assigned at snapshot time."""

    url: str
    source: Literal["crawl", "local"]
    title: str | None
    text: str
    fetched_at: datetime  # timezone-aware, UTC
    language: str | None = None  # ISO 639 code from language identification; None until identified
    language_score: float | None = None  # the identifier's probability (0..1) for `language`


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


class FixMojibake(TextFix):
    """ftfy: undo mojibake (UTF-8 read as cp1252), strip control chars, unify line breaks."""

    name = "ftfy"

    def __init__(self) -> None:
        # text is already extracted, so '&amp;' is literal text (e.g. docs about HTML) and stays
        self.config = ftfy.TextFixerConfig(unescape_html=False, normalization="NFC")

    def fix(self, text: str) -> str:
        return ftfy.fix_text(text, config=self.config)


class NormalizeUnicode(TextFix):
    """Unicode NFC, so the same character always has the same code points."""

    name = "nfc"

    def fix(self, text: str) -> str:
        return unicodedata.normalize("NFC", text)


class NormalizeWhitespace(TextFix):
    """Collapse runs of spaces/tabs, strip every line, drop blank lines (paragraphs = '\\n'-separated)."""

    name = "whitespace"

    def fix(self, text: str) -> str:
        lines = (_HORIZONTAL_SPACE.sub(" ", line).strip() for line in text.split("\n"))
        return _BLANK_LINES.sub("\n", "\n".join(lines)).strip("\n")


class NonEmpty(Filter):
    """Drop documents with no text left."""

    name = "empty"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return (True, "") if doc.text.strip() else (False, "empty")


class MinWords(Filter):
    """Drop documents with fewer than min_words whitespace-separated words."""

    name = "too_few_words"

    def __init__(self, min_words: int) -> None:
        self.min_words = min_words

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return (True, "") if len(doc.text.split()) >= self.min_words else (False, "too_few_words")


class CleanPipeline:
    """Apply fixes then filters in order; counts[reason] says how many documents each filter dropped."""

    def __init__(self, steps: Iterable[TextFix | DocumentFix | Filter]) -> None:
        self.steps = list(steps)
        self.counts: Counter[str] = Counter({s.name: 0 for s in self.steps if isinstance(s, Filter)})

    @property
    def reasons(self) -> list[str]:
        """Every drop reason this pipeline can report."""
        return [s.name for s in self.steps if isinstance(s, Filter)]

    def process(self, doc: Document) -> Document | None:
        """The cleaned document, or None if a filter dropped it (and the reason is counted)."""
        for step in self.steps:
            if isinstance(step, TextFix):
                title = step.fix(doc.title) if doc.title else doc.title
                doc = replace(doc, text=step.fix(doc.text), title=title or None)
                continue
            if isinstance(step, DocumentFix):
                doc = step.apply(doc)
                continue
            verdict = step.filter(doc)
            keep, reason = verdict if isinstance(verdict, tuple) else (verdict, step.name)
            if not keep:
                self.counts[reason or step.name] += 1
                return None
        return doc

    def run(self, docs: Iterable[Document]) -> Iterator[Document]:
        """Clean a stream of documents, yielding the kept ones."""
        for doc in docs:
            cleaned = self.process(doc)
            if cleaned is not None:
                yield cleaned


def default_pipeline(min_words: int) -> CleanPipeline:
    """ftfy -> NFC -> whitespace -> drop empty -> drop short."""
    return CleanPipeline([FixMojibake(), NormalizeUnicode(), NormalizeWhitespace(), NonEmpty(), MinWords(min_words)])


def clean_text(text: str) -> str:
    """The text fixes of the default pipeline on one string (for the CLI and quick checks)."""
    for step in (FixMojibake(), NormalizeUnicode(), NormalizeWhitespace()):
        text = step.fix(text)
    return text
