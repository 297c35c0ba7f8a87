"""Text statistics shared by the quality filters: words, lines, duplicates, and the threshold types."""

from __future__ import annotations

import re
import string
from typing import Annotated

from pydantic import Field

from tasks.text import UNSPACED_SCRIPTS

PUNCTUATION = string.punctuation + "…“”‘’«»„–—·•" + "。，、；：！？「」『』（）《》〈〉【】～・"  # CJK last
UNSPACED_SCRIPT = re.compile(f"[{UNSPACED_SCRIPTS}]")
# one unspaced-script character, or a run of others
_PIECES = re.compile(f"[{UNSPACED_SCRIPTS}]|[^{UNSPACED_SCRIPTS}]+")
PARAGRAPH_BREAK = re.compile(r"\n{2,}")
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NgramSize = Annotated[int, Field(ge=1, le=50)]


def split_words(text: str) -> list[str]:
    """Whitespace tokens, except that each character of a script written without spaces (Chinese,
    Japanese, Thai...) is a token of its own: those scripts mark no word boundaries, and a character
    is the unit the word-count rules can count (a Chinese word is ~1.5 characters)."""
    tokens = text.split()
    if not UNSPACED_SCRIPT.search(text):  # the common case, at the cost of one scan
        return tokens
    return [piece for token in tokens for piece in _PIECES.findall(token)]


def words_of(text: str) -> list[str]:
    """split_words' tokens with surrounding punctuation stripped; tokens of punctuation only are not words."""
    return [word for word in (token.strip(PUNCTUATION) for token in split_words(text)) if word]


def mostly_unspaced(words: list[str]) -> bool:
    """Whether most words are characters of a script written without spaces: rules calibrated on
    word shapes in English (mean word length, stop words, line length) say nothing about such text."""
    return 2 * sum(len(word) == 1 and UNSPACED_SCRIPT.match(word) is not None for word in words) > len(words)


def lines_of(text: str) -> list[str]:
    """Non-blank lines, stripped."""
    return [line for line in (raw.strip() for raw in text.split("\n")) if line]


def duplicates(items: list[str]) -> tuple[int, int]:
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
