"""Text statistics shared by the quality filters: words, lines, duplicates, and the threshold types."""

from __future__ import annotations

import re
import string
from typing import Annotated

from pydantic import Field

PUNCTUATION = string.punctuation + "…“”‘’«»„–—·•"
PARAGRAPH_BREAK = re.compile(r"\n{2,}")
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NgramSize = Annotated[int, Field(ge=1, le=50)]


def words_of(text: str) -> list[str]:
    """Whitespace tokens with surrounding punctuation stripped; tokens of punctuation only are not words."""
    return [word for word in (token.strip(PUNCTUATION) for token in text.split()) if word]


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
