"""Text repair and normalisation (ftfy, NFC, whitespace) and the two basic filters, empty and too short.

default_pipeline is the start of every corpus cleaning pipeline; the other steps are added after it
by tasks/corpus/clean_shard.py.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

from tasks.clean.steps import CleanPipeline, Document, Filter, TextFix
from tasks.clean.text_stats import split_words

_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")  # whitespace except newline (tabs, NBSP, ...)
_BLANK_LINES = re.compile(r"\n{2,}")
# ftfy's mojibake repairs with its defaults (undoing UTF-8 read as latin-1 or windows-1252, also twice,
# and C1 controls) and none of its other fixes: extraction runs them on HTML text (extract.py)
_MOJIBAKE_ONLY = ftfy.TextFixerConfig(
    unescape_html=False, remove_terminal_escapes=False, fix_latin_ligatures=False, fix_character_width=False,
    uncurl_quotes=False, fix_line_breaks=False, fix_surrogates=False, remove_control_chars=False,
    normalization=None, explain=False)


def fix_mojibake(text: str) -> str:
    """ftfy's mojibake repairs alone: 'itâ€™s' and 'itÃ¢â‚¬â„¢s' -> 'it’s'; other text is returned as is."""
    return ftfy.fix_text(text, config=_MOJIBAKE_ONLY)


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
    """Drop documents with fewer than min_words words (whitespace-separated; each character in Chinese,
    Japanese, Thai and other scripts written without spaces)."""

    name = "too_few_words"

    def __init__(self, min_words: int) -> None:
        self.min_words = min_words

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return (True, "") if len(split_words(doc.text)) >= self.min_words else (False, "too_few_words")


def default_pipeline(min_words: int) -> CleanPipeline:
    """ftfy -> NFC -> whitespace -> drop empty -> drop short."""
    return CleanPipeline([FixMojibake(), NormalizeUnicode(), NormalizeWhitespace(), NonEmpty(), MinWords(min_words)])


def clean_text(text: str) -> str:
    """The text fixes of the default pipeline on one string (for the CLI and quick checks)."""
    for step in (FixMojibake(), NormalizeUnicode(), NormalizeWhitespace()):
        text = step.fix(text)
    return text
