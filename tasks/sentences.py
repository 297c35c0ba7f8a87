"""Sentence splitting for the tokenize stage: blingfire per paragraph line, plus CJK punctuation.

blingfire ships its model in the wheel (nothing is downloaded). It splits CJK text after 。！？,
but it cuts a closing quote or bracket off the sentence it closes ("你好。”然后" -> "你好。" / "”然后")
and makes a run of terminators ("好！！") into a sentence of its own punctuation. The CJK pass below
splits after every run of terminators and keeps closing quotes and brackets with their sentence.
"""

from __future__ import annotations

import re

import blingfire

# Full-width and half-width CJK sentence terminators.
CJK_TERMINATORS = "。！？｡"
# Closing quotes/brackets that belong to the sentence before them, e.g. 他说：“你好。”. ASCII " and '
# are left out: they open sentences as often as they close them.
CLOSING_PUNCTUATION = "”’」』）〕】》〉)］｝"
_CJK_SENTENCE_END = re.compile(f"[{CJK_TERMINATORS}]+[{re.escape(CLOSING_PUNCTUATION)}]*")
_LEADING_CLOSERS = re.compile(f"^[{re.escape(CLOSING_PUNCTUATION)}{CJK_TERMINATORS}]+")


def _split_cjk(sentence: str) -> list[str]:
    """Split after each run of CJK terminators (and the closing quotes that follow them)."""
    pieces, start = [], 0
    for match in _CJK_SENTENCE_END.finditer(sentence):
        pieces.append(sentence[start : match.end()])
        start = match.end()
    pieces.append(sentence[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


def split_paragraph(line: str) -> list[str]:
    """Sentences of one paragraph line, in order; [] for a blank line."""
    line = line.strip()
    if not line:
        return []
    sentences: list[str] = []
    for sentence in blingfire.text_to_sentences(line).split("\n"):
        for piece in _split_cjk(sentence):
            # A piece that starts with closers or terminators ("”然后", "。") ends the previous sentence.
            closers = _LEADING_CLOSERS.match(piece)
            if closers and sentences:
                sentences[-1] += closers.group()
                piece = piece[closers.end() :].strip()
            if piece:
                sentences.append(piece)
    return sentences


def split_document(text: str) -> list[str]:
    """Sentences of a document whose paragraphs are separated by newlines; blank lines dropped."""
    sentences: list[str] = []
    for line in text.split("\n"):
        sentences.extend(split_paragraph(line))
    return sentences
