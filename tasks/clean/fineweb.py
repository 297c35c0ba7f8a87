"""FineWeb's quality filter (Penedo et al. 2024, section 3.3), as released in datatrove's
FineWebQualityFilter: the code FineWeb was built with drops >= 0.01 of characters in duplicated lines
(the paper says 0.1)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tasks.clean.steps import Document, Filter
from tasks.clean.text_stats import Fraction, duplicates, lines_of, mostly_unspaced, split_words
from tasks.text import CJK_END_MARKS

# ---------------------------------------------------------------- FineWeb (Penedo et al. 2024, datatrove)

class FineWebConfig(BaseModel):
    """FineWeb's own rules: punctuated lines, short lines, duplicated line characters, list-like pages."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Apply the FineWeb rules."""
    min_line_punct_ratio: Fraction = 0.12
    """Drop documents where this fraction of lines, or less, end in . ' \" ! or ?."""
    short_line_length: int = Field(default=30, ge=1)
    """A line of at most this many characters is short."""
    max_short_line_ratio: Fraction = 0.67
    """Drop documents where this fraction of lines, or more, are short."""
    max_char_duplicates_ratio: Fraction = 0.01
    """Drop documents where this fraction of characters, or more, lie in lines repeating an earlier line."""
    max_new_line_ratio: float = Field(default=0.3, ge=0.0)
    """Drop documents with more newlines per word than this (lists of short items)."""


_FINEWEB_STOP_CHARS = (".", "'", '"', "!", "?", *CJK_END_MARKS)


class FineWebFilter(Filter):
    """FineWeb's quality filter (words for the list ratio are whitespace tokens).

    In text written mostly in a script without spaces (Chinese, Japanese, Thai), every character is a
    word, and the short-line rule, whose 30 characters are calibrated on English, is skipped.
    """

    name = "fineweb_quality"

    def __init__(self, cfg: FineWebConfig) -> None:
        self.cfg = cfg

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        cfg, text = self.cfg, doc.text
        lines = lines_of(text)
        if not lines:
            return True, ""
        if sum(line.endswith(_FINEWEB_STOP_CHARS) for line in lines) / len(lines) <= cfg.min_line_punct_ratio:
            return False, "fineweb_line_punct_ratio"
        words = split_words(text)
        unspaced = mostly_unspaced(words)
        short = sum(len(line) <= cfg.short_line_length for line in lines)
        if not unspaced and short / len(lines) >= cfg.max_short_line_ratio:
            return False, "fineweb_short_line_ratio"
        if duplicates(lines)[1] / len(text.replace("\n", "")) >= cfg.max_char_duplicates_ratio:
            return False, "fineweb_char_dup_ratio"
        if text.count("\n") / len(words) > cfg.max_new_line_ratio:
            return False, "fineweb_list_ratio"
        return True, ""
