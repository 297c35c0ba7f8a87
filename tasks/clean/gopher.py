"""Gopher's quality and repetition filters (Rae et al. 2021, "Scaling Language Models", appendix A.1.1
and table A1), with their published defaults."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.clean.steps import Document, Filter
from tasks.clean.text_stats import PARAGRAPH_BREAK, Fraction, NgramSize, duplicates, lines_of, mostly_unspaced, words_of

if TYPE_CHECKING:
    import numpy as np

# numpy is imported in the n-gram functions below, not here: loading a config (which holds the Gopher
# configs) must not pay ~0.1 CPU-s for it

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
    max_bullet_lines_fraction: Fraction = 0.9
    """Drop documents where more than this fraction of lines start with a bullet."""
    max_ellipsis_lines_fraction: Fraction = 0.3
    """Drop documents where more than this fraction of lines end with an ellipsis."""
    min_alphabetic_words_fraction: Fraction = 0.8
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
    """Gopher's quality filter; words are whitespace tokens stripped of surrounding punctuation.

    In text written mostly in a script without spaces (Chinese, Japanese, Thai), every character is a
    word, and the two English word-shape rules (mean word length, stop words) are skipped.
    """

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
        unspaced = mostly_unspaced(words)
        mean_length = sum(map(len, words)) / len(words)
        if not unspaced and not cfg.min_mean_word_length <= mean_length <= cfg.max_mean_word_length:
            return False, "gopher_mean_word_length"
        if text.count("#") / len(words) > cfg.max_symbol_word_ratio:
            return False, "gopher_hash_ratio"
        if (text.count("...") + text.count("…")) / len(words) > cfg.max_symbol_word_ratio:
            return False, "gopher_ellipsis_ratio"
        lines = lines_of(text)
        if sum(line.startswith(_BULLETS) for line in lines) / len(lines) > cfg.max_bullet_lines_fraction:
            return False, "gopher_bullet_lines"
        if sum(line.endswith(("...", "…")) for line in lines) / len(lines) > cfg.max_ellipsis_lines_fraction:
            return False, "gopher_ellipsis_lines"
        alphabetic = sum(any(c.isalpha() for c in word) for word in words)
        if alphabetic / len(words) < cfg.min_alphabetic_words_fraction:
            return False, "gopher_alphabetic_words"
        if unspaced or doc.language not in (None, cfg.stop_words_language):
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
    max_duplicate_line_fraction: Fraction = 0.3
    """Drop documents where more than this fraction of lines repeat an earlier line."""
    max_duplicate_line_char_fraction: Fraction = 0.2
    """Drop documents where more than this fraction of characters lie in repeated lines."""
    max_duplicate_paragraph_fraction: Fraction = 0.3
    """Drop documents where more than this fraction of paragraphs (split on blank lines) repeat an earlier one."""
    max_duplicate_paragraph_char_fraction: Fraction = 0.2
    """Drop documents where more than this fraction of characters lie in repeated paragraphs."""
    top_ngram_max_char_fraction: dict[NgramSize, Fraction] = Field(default={2: 0.20, 3: 0.18, 4: 0.16})
    """n -> drop documents where the most frequent word n-gram covers more than this fraction of word characters."""
    duplicate_ngram_max_char_fraction: dict[NgramSize, Fraction] = Field(
        default={5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    """n -> drop documents where repeated word n-grams cover more than this fraction of word characters."""


_HASH_BASE = 0x9E3779B97F4A7C15  # odd 64-bit multiplier; n-gram keys wrap modulo 2**64


def _ngram_keys(word_ids: np.ndarray, n: int) -> np.ndarray:
    """(num_words - n + 1,) uint64 key of each word n-gram (polynomial hash of the word ids)."""
    import numpy as np

    base = np.uint64(_HASH_BASE)
    keys = np.zeros(len(word_ids) - n + 1, dtype=np.uint64)
    for offset in range(n):
        keys = keys * base + word_ids[offset : offset + len(keys)]
    return keys


def _covered_chars(starts: np.ndarray, n: int, word_lengths: np.ndarray) -> int:
    """Characters of the words covered by the n-grams starting at `starts` (each word counted once)."""
    import numpy as np

    depth = np.zeros(len(word_lengths) + 1, dtype=np.int64)
    np.add.at(depth, starts, 1)
    np.add.at(depth, starts + n, -1)
    return int(word_lengths[np.cumsum(depth[:-1]) > 0].sum())


def top_ngram_char_fraction(word_ids: np.ndarray, word_lengths: np.ndarray, n: int) -> float:
    """Fraction of word characters inside occurrences of the most frequent n-gram (0 if none repeats)."""
    import numpy as np

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
    import numpy as np

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
        lines = lines_of(text)
        repeated, chars = duplicates(lines)
        if lines and repeated / len(lines) > cfg.max_duplicate_line_fraction:
            return False, "gopher_duplicate_lines"
        if chars / len(text) > cfg.max_duplicate_line_char_fraction:
            return False, "gopher_duplicate_line_chars"
        paragraphs = [p.strip() for p in PARAGRAPH_BREAK.split(text) if p.strip()]
        repeated, chars = duplicates(paragraphs)
        if paragraphs and repeated / len(paragraphs) > cfg.max_duplicate_paragraph_fraction:
            return False, "gopher_duplicate_paragraphs"
        if chars / len(text) > cfg.max_duplicate_paragraph_char_fraction:
            return False, "gopher_duplicate_paragraph_chars"
        words = words_of(text)
        if not words:
            return True, ""
        import numpy as np

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
