"""Quality filters with their published defaults: Gopher quality and repetition, C4, FineWeb.

Each rule family is a small Filter with named drop reasons (C4's line rules are a DocumentFix that
rewrites the text), configured by one sub-config of QualityConfig. Sources of the defaults:
- Gopher: Rae et al. 2021, "Scaling Language Models", appendix A.1.1 and table A1.
- C4: Raffel et al. 2020, section 2.2, as released in tensorflow_datasets' c4_utils.py (the code that
  built C4 keeps lines of >= 5 words and pages of >= 3 sentences; the paper's text says 3 and 5).
- FineWeb: Penedo et al. 2024, section 3.3, as released in datatrove's FineWebQualityFilter (the
  code FineWeb was built with drops >= 0.01 of characters in duplicated lines; the paper says 0.1).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.clean import Document, DocumentFix, Filter
from tasks.sentences import split_paragraph

_PUNCTUATION = string.punctuation + "…“”‘’«»„–—·•"
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
_NgramSize = Annotated[int, Field(ge=1, le=50)]


def words_of(text: str) -> list[str]:
    """Whitespace tokens with surrounding punctuation stripped; tokens of punctuation only are not words."""
    return [word for word in (token.strip(_PUNCTUATION) for token in text.split()) if word]


def _lines(text: str) -> list[str]:
    """Non-blank lines, stripped."""
    return [line for line in (raw.strip() for raw in text.split("\n")) if line]


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(items equal to an earlier item, characters in them): the first occurrence is not a duplicate."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


# ---------------------------------------------------------------- Gopher quality (Rae et al. 2021, A.1.1)

class GopherQualityConfig(BaseModel):
    """Gopher's quality rules: length, word shape, symbols, bullets, alphabetic words, stop words."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Apply the Gopher quality rules."""
    min_words: int = Field(default=50, ge=0)
    """Drop documents with fewer words than this."""
    max_words: int = Field(default=100_000, ge=1)
    """Drop documents with more words than this."""
    min_mean_word_length: float = Field(default=3.0, ge=0.0)
    """Drop documents whose mean word length (characters) is below this."""
    max_mean_word_length: float = Field(default=10.0, ge=0.0)
    """Drop documents whose mean word length (characters) is above this."""
    max_symbol_word_ratio: float = Field(default=0.1, ge=0.0)
    """Drop documents with more '#' per word, or more ellipses ('...', '…') per word, than this."""
    max_bullet_lines_fraction: _Fraction = 0.9
    """Drop documents where more than this fraction of lines start with a bullet."""
    max_ellipsis_lines_fraction: _Fraction = 0.3
    """Drop documents where more than this fraction of lines end with an ellipsis."""
    min_alphabetic_words_fraction: _Fraction = 0.8
    """Drop documents where fewer than this fraction of words contain an alphabetic character."""
    stop_words: list[str] = Field(default=["the", "be", "to", "of", "and", "that", "have", "with"])
    """Stop words (lowercase); a document must contain `min_stop_words` different ones."""
    min_stop_words: int = Field(default=2, ge=0)
    """Drop documents containing fewer different stop words than this."""
    stop_words_language: str = "en"
    """The language of `stop_words`: the rule skips documents identified as another language."""

    @model_validator(mode="after")
    def _ranges(self) -> GopherQualityConfig:
        problems = []
        if self.min_words > self.max_words:
            problems.append(f"min_words={self.min_words} is above max_words={self.max_words}")
        if self.min_mean_word_length > self.max_mean_word_length:
            problems.append(f"min_mean_word_length={self.min_mean_word_length} is above "
                            f"max_mean_word_length={self.max_mean_word_length}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


_BULLETS = ("•", "‣", "◦", "⁃", "●", "▪", "-", "*")


class GopherQualityFilter(Filter):
    """Gopher's quality filter; words are whitespace tokens stripped of surrounding punctuation."""

    name = "gopher_quality"

    def __init__(self, cfg: GopherQualityConfig) -> None:
        self.cfg = cfg
        self.stop_words = frozenset(cfg.stop_words)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        cfg, text = self.cfg, doc.text
        words = words_of(text)
        if len(words) < cfg.min_words:
            return False, "gopher_too_few_words"
        if len(words) > cfg.max_words:
            return False, "gopher_too_many_words"
        if not words:  # min_words 0 and nothing left: the ratios below are undefined
            return True, ""
        mean_length = sum(map(len, words)) / len(words)
        if not cfg.min_mean_word_length <= mean_length <= cfg.max_mean_word_length:
            return False, "gopher_mean_word_length"
        if text.count("#") / len(words) > cfg.max_symbol_word_ratio:
            return False, "gopher_hash_ratio"
        if (text.count("...") + text.count("…")) / len(words) > cfg.max_symbol_word_ratio:
            return False, "gopher_ellipsis_ratio"
        lines = _lines(text)
        if sum(line.startswith(_BULLETS) for line in lines) / len(lines) > cfg.max_bullet_lines_fraction:
            return False, "gopher_bullet_lines"
        if sum(line.endswith(("...", "…")) for line in lines) / len(lines) > cfg.max_ellipsis_lines_fraction:
            return False, "gopher_ellipsis_lines"
        alphabetic = sum(any(c.isalpha() for c in word) for word in words)
        if alphabetic / len(words) < cfg.min_alphabetic_words_fraction:
            return False, "gopher_alphabetic_words"
        if doc.language not in (None, cfg.stop_words_language):
            return True, ""
        # the paper: "at least two of the following English words" -> different words (datatrove counts occurrences)
        if len(self.stop_words.intersection(word.lower() for word in words)) < cfg.min_stop_words:
            return False, "gopher_stop_words"
        return True, ""


# ---------------------------------------------------------------- Gopher repetition (Rae et al. 2021, table A1)

class GopherRepetitionConfig(BaseModel):
    """Gopher's repetition rules: duplicated lines and paragraphs, top n-grams, duplicated n-grams."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Apply the Gopher repetition rules."""
    max_duplicate_line_fraction: _Fraction = 0.3
    """Drop documents where more than this fraction of lines repeat an earlier line."""
    max_duplicate_line_char_fraction: _Fraction = 0.2
    """Drop documents where more than this fraction of characters lie in repeated lines."""
    max_duplicate_paragraph_fraction: _Fraction = 0.3
    """Drop documents where more than this fraction of paragraphs (split on blank lines) repeat an earlier one."""
    max_duplicate_paragraph_char_fraction: _Fraction = 0.2
    """Drop documents where more than this fraction of characters lie in repeated paragraphs."""
    top_ngram_max_char_fraction: dict[_NgramSize, _Fraction] = Field(default={2: 0.20, 3: 0.18, 4: 0.16})
    """n -> drop documents where the most frequent word n-gram covers more than this fraction of word characters."""
    duplicate_ngram_max_char_fraction: dict[_NgramSize, _Fraction] = Field(
        default={5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    """n -> drop documents where repeated word n-grams cover more than this fraction of word characters."""


_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier; n-gram keys wrap modulo 2**64


def _ngram_keys(word_ids: np.ndarray, n: int) -> np.ndarray:
    """(num_words - n + 1,) uint64 key of each word n-gram (polynomial hash of the word ids)."""
    keys = np.zeros(len(word_ids) - n + 1, dtype=np.uint64)
    for offset in range(n):
        keys = keys * _HASH_BASE + word_ids[offset : offset + len(keys)]
    return keys


def _covered_chars(starts: np.ndarray, n: int, word_lengths: np.ndarray) -> int:
    """Characters of the words covered by the n-grams starting at `starts` (each word counted once)."""
    depth = np.zeros(len(word_lengths) + 1, dtype=np.int64)
    np.add.at(depth, starts, 1)
    np.add.at(depth, starts + n, -1)
    return int(word_lengths[np.cumsum(depth[:-1]) > 0].sum())


def top_ngram_char_fraction(word_ids: np.ndarray, word_lengths: np.ndarray, n: int) -> float:
    """Fraction of word characters inside occurrences of the most frequent n-gram (0 if none repeats)."""
    if len(word_ids) < n:
        return 0.0
    keys = _ngram_keys(word_ids, n)
    _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    if counts.max() < 2:
        return 0.0
    # most frequent first; among equally frequent n-grams the longest in characters
    cumulative = np.concatenate(([0], np.cumsum(word_lengths)))
    ngram_chars = cumulative[first + n] - cumulative[first]
    top = np.lexsort((ngram_chars, counts))[-1]
    return _covered_chars(np.flatnonzero(inverse == top), n, word_lengths) / word_lengths.sum()


def duplicate_ngram_char_fraction(word_ids: np.ndarray, word_lengths: np.ndarray, n: int) -> float:
    """Fraction of word characters inside n-grams that repeat an earlier n-gram."""
    if len(word_ids) < n:
        return 0.0
    keys = _ngram_keys(word_ids, n)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    repeats = np.flatnonzero(first[inverse] != np.arange(len(keys)))
    return _covered_chars(repeats, n, word_lengths) / word_lengths.sum()


class GopherRepetitionFilter(Filter):
    """Gopher's repetition filter (n-grams over words_of(text), case-sensitive)."""

    name = "gopher_repetition"

    def __init__(self, cfg: GopherRepetitionConfig) -> None:
        self.cfg = cfg

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        cfg, text = self.cfg, doc.text
        if not text:
            return True, ""
        lines = _lines(text)
        repeated, chars = _duplicates(lines)
        if lines and repeated / len(lines) > cfg.max_duplicate_line_fraction:
            return False, "gopher_duplicate_lines"
        if chars / len(text) > cfg.max_duplicate_line_char_fraction:
            return False, "gopher_duplicate_line_chars"
        paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
        repeated, chars = _duplicates(paragraphs)
        if paragraphs and repeated / len(paragraphs) > cfg.max_duplicate_paragraph_fraction:
            return False, "gopher_duplicate_paragraphs"
        if chars / len(text) > cfg.max_duplicate_paragraph_char_fraction:
            return False, "gopher_duplicate_paragraph_chars"
        words = words_of(text)
        if not words:
            return True, ""
        vocabulary: dict[str, int] = {}
        word_ids = np.array([vocabulary.setdefault(w, len(vocabulary) + 1) for w in words], dtype=np.uint64)
        word_lengths = np.array([len(w) for w in words], dtype=np.int64)
        for n, max_fraction in sorted(cfg.top_ngram_max_char_fraction.items()):
            if top_ngram_char_fraction(word_ids, word_lengths, n) > max_fraction:
                return False, "gopher_top_ngram"
        for n, max_fraction in sorted(cfg.duplicate_ngram_max_char_fraction.items()):
            if duplicate_ngram_char_fraction(word_ids, word_lengths, n) > max_fraction:
                return False, "gopher_duplicate_ngrams"
        return True, ""


# ---------------------------------------------------------------- C4 (Raffel et al. 2020, tfds c4_utils.py)

class C4Config(BaseModel):
    """C4's rules: keep only sentence-like lines, then drop pages with code markers or too few sentences."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Apply the C4 line and page rules."""
    drop_lines_without_terminal_punctuation: bool = True
    """Remove lines not ending in . ? ! or \" (or ending in '...'); FineWeb turns this off."""
    min_words_per_line: int = Field(default=5, ge=0)
    """Remove lines with fewer whitespace-separated words than this."""
    max_word_length: int = Field(default=1000, ge=1)
    """Remove lines containing a word longer than this (characters)."""
    remove_citations: bool = True
    """Delete Wikipedia-style citation marks ([1], [edit], [citation needed]) from lines."""
    drop_javascript_lines: bool = True
    """Remove lines mentioning 'javascript' ("JavaScript must be enabled" notices)."""
    drop_policy_lines: bool = True
    """Remove lines about terms of use, privacy policy and cookies."""
    drop_lorem_ipsum: bool = True
    """Drop pages with a kept line containing 'lorem ipsum' (placeholder text)."""
    drop_curly_bracket: bool = True
    """Drop pages with a kept line containing '{' (C4's code detector; it also drops much API documentation)."""
    min_sentences: int = Field(default=3, ge=0)
    """Drop pages with fewer sentences than this in their kept lines."""
    badwords_file: Path | None = None
    """UTF-8 file of words/phrases, one per line: drop pages containing one (whole words, any case); None = off.

    C4 used the English "List of Dirty, Naughty, Obscene, and Otherwise Bad Words" (LDNOOBW,
    github.com/LDNOOBW/List-of-Dirty-Naughty-Obscene-and-Otherwise-Bad-Words, file `en`); it is not
    shipped here: download it yourself and point this at it.
    """

    @field_validator("badwords_file")
    @classmethod
    def _badwords_readable(cls, path: Path | None) -> Path | None:
        if path is not None:
            load_badwords(path)  # raises ValueError naming the file
        return path


# every reason C4LineFilter can remove a line for (C4LineFilter.lines_removed counts them)
C4_LINE_REASONS = ("c4_line_too_long_word", "c4_line_no_terminal_punctuation", "c4_line_too_few_words",
                   "c4_line_javascript", "c4_line_policy")
_END_MARKS = (".", "?", "!", '"')
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
_POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                      "use cookies")


class C4LineFilter(DocumentFix):
    """C4's line rules: rewrite the text keeping the lines that pass; lines_removed counts the rest by reason.

    Lines that would make C4 drop the whole page ('lorem ipsum', '{') are kept, in C4's rule order, so
    that C4PageFilter, which runs next, sees them and drops the page.
    """

    name = "c4_lines"

    def __init__(self, cfg: C4Config) -> None:
        self.cfg = cfg
        self.lines_removed: Counter[str] = Counter({reason: 0 for reason in C4_LINE_REASONS})

    def _line_verdict(self, line: str) -> str:
        """'' to keep the line, else the reason to remove it."""
        cfg = self.cfg
        words = line.split()
        if any(len(word) > cfg.max_word_length for word in words):
            return "c4_line_too_long_word"
        if cfg.drop_lines_without_terminal_punctuation and (not line.endswith(_END_MARKS) or line.endswith("...")):
            return "c4_line_no_terminal_punctuation"
        if len(words) < cfg.min_words_per_line:
            return "c4_line_too_few_words"
        lowered = line.lower()
        if cfg.drop_lorem_ipsum and "lorem ipsum" in lowered:
            return ""
        if cfg.drop_javascript_lines and "javascript" in lowered:
            return "c4_line_javascript"
        if cfg.drop_curly_bracket and "{" in line:
            return ""
        if cfg.drop_policy_lines and any(phrase in lowered for phrase in _POLICY_SUBSTRINGS):
            return "c4_line_policy"
        return ""

    def apply(self, doc: Document) -> Document:
        kept: list[str] = []
        for line in _lines(doc.text):
            if self.cfg.remove_citations:
                line = _CITATION.sub("", line).strip()
            reason = self._line_verdict(line)
            if reason:
                self.lines_removed[reason] += 1
            else:
                kept.append(line)
        return replace(doc, text="\n".join(kept))


class C4PageFilter(Filter):
    """C4's page rules on the (line-filtered) text: lorem ipsum, curly bracket, too few sentences."""

    name = "c4_page"

    def __init__(self, cfg: C4Config) -> None:
        self.cfg = cfg

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        cfg, text = self.cfg, doc.text
        if cfg.drop_lorem_ipsum and "lorem ipsum" in text.lower():
            return False, "c4_lorem_ipsum"
        if cfg.drop_curly_bracket and "{" in text:
            return False, "c4_curly_bracket"
        if cfg.min_sentences:
            sentences = 0
            for line in _lines(text):
                sentences += len(split_paragraph(line))
                if sentences >= cfg.min_sentences:
                    break
            if sentences < cfg.min_sentences:
                return False, "c4_too_few_sentences"
        return True, ""


def load_badwords(path: Path) -> list[str]:
    """The non-blank lines of a bad-words file, lowercased; raises ValueError if unreadable or empty."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"badwords_file {str(path)!r} cannot be read as UTF-8 text ({type(exc).__name__}: {exc}); "
                         "valid: a file with one word or phrase per line") from exc
    words = [line.strip().lower() for line in lines if line.strip()]
    if not words:
        raise ValueError(f"badwords_file {str(path)!r} holds no word; valid: a file with one word or phrase per line")
    return words


class C4BadWordsFilter(Filter):
    """C4's bad-words rule: drop a page containing any listed word or phrase as whole words, in any case."""

    name = "c4_badwords"

    def __init__(self, path: Path) -> None:
        # longest first, so a phrase wins over a word it starts with; lookarounds instead of \b so
        # entries that begin or end with punctuation still match on word boundaries
        words = sorted(set(load_badwords(path)), key=lambda w: (-len(w), w))
        self.pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)", re.IGNORECASE)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return (False, "c4_badwords") if self.pattern.search(doc.text) else (True, "")


# ---------------------------------------------------------------- FineWeb (Penedo et al. 2024, datatrove)

class FineWebConfig(BaseModel):
    """FineWeb's own rules: punctuated lines, short lines, duplicated line characters, list-like pages."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Apply the FineWeb rules."""
    min_line_punct_ratio: _Fraction = 0.12
    """Drop documents where this fraction of lines, or less, end in . ' \" ! or ?."""
    short_line_length: int = Field(default=30, ge=1)
    """A line of at most this many characters is short."""
    max_short_line_ratio: _Fraction = 0.67
    """Drop documents where this fraction of lines, or more, are short."""
    max_char_duplicates_ratio: _Fraction = 0.01
    """Drop documents where this fraction of characters, or more, lie in lines repeating an earlier line."""
    max_new_line_ratio: float = Field(default=0.3, ge=0.0)
    """Drop documents with more newlines per word than this (lists of short items)."""


_FINEWEB_STOP_CHARS = (".", "'", '"', "!", "?")


class FineWebFilter(Filter):
    """FineWeb's quality filter (words for the list ratio are whitespace tokens)."""

    name = "fineweb_quality"

    def __init__(self, cfg: FineWebConfig) -> None:
        self.cfg = cfg

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        cfg, text = self.cfg, doc.text
        lines = _lines(text)
        if not lines:
            return True, ""
        if sum(line.endswith(_FINEWEB_STOP_CHARS) for line in lines) / len(lines) <= cfg.min_line_punct_ratio:
            return False, "fineweb_line_punct_ratio"
        if sum(len(line) <= cfg.short_line_length for line in lines) / len(lines) >= cfg.max_short_line_ratio:
            return False, "fineweb_short_line_ratio"
        if _duplicates(lines)[1] / len(text.replace("\n", "")) >= cfg.max_char_duplicates_ratio:
            return False, "fineweb_char_dup_ratio"
        if text.count("\n") / len(text.split()) > cfg.max_new_line_ratio:
            return False, "fineweb_list_ratio"
        return True, ""


# ---------------------------------------------------------------- all together

class QualityConfig(BaseModel):
    """The quality filters, each family with its switch and published thresholds."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    gopher_repetition: GopherRepetitionConfig = Field(default_factory=GopherRepetitionConfig)
    """Gopher repetition rules (Rae et al. 2021, table A1)."""
    gopher_quality: GopherQualityConfig = Field(default_factory=GopherQualityConfig)
    """Gopher quality rules (Rae et al. 2021, appendix A.1.1)."""
    c4: C4Config = Field(default_factory=C4Config)
    """C4 line and page rules (Raffel et al. 2020)."""
    fineweb: FineWebConfig = Field(default_factory=FineWebConfig)
    """FineWeb's rules (Penedo et al. 2024)."""


# every reason the quality filters can drop a document for
QUALITY_DROP_REASONS = (
    "gopher_duplicate_lines", "gopher_duplicate_line_chars", "gopher_duplicate_paragraphs",
    "gopher_duplicate_paragraph_chars", "gopher_top_ngram", "gopher_duplicate_ngrams",
    "gopher_too_few_words", "gopher_too_many_words", "gopher_mean_word_length", "gopher_hash_ratio",
    "gopher_ellipsis_ratio", "gopher_bullet_lines", "gopher_ellipsis_lines", "gopher_alphabetic_words",
    "gopher_stop_words",
    "c4_lorem_ipsum", "c4_curly_bracket", "c4_too_few_sentences", "c4_badwords",
    "fineweb_line_punct_ratio", "fineweb_short_line_ratio", "fineweb_char_dup_ratio", "fineweb_list_ratio",
)


def quality_steps(cfg: QualityConfig) -> list[DocumentFix | Filter]:
    """The enabled filters in FineWeb's order: Gopher repetition, Gopher quality, C4, FineWeb."""
    steps: list[DocumentFix | Filter] = []
    if cfg.gopher_repetition.enabled:
        steps.append(GopherRepetitionFilter(cfg.gopher_repetition))
    if cfg.gopher_quality.enabled:
        steps.append(GopherQualityFilter(cfg.gopher_quality))
    if cfg.c4.enabled:
        steps.extend([C4LineFilter(cfg.c4), C4PageFilter(cfg.c4)])
        if cfg.c4.badwords_file is not None:
            steps.append(C4BadWordsFilter(cfg.c4.badwords_file))
    if cfg.fineweb.enabled:
        steps.append(FineWebFilter(cfg.fineweb))
    return steps
