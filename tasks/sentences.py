"""Sentence splitting for the tokenize stage: blingfire per paragraph line, plus CJK punctuation.

blingfire ships its model in the wheel (nothing is downloaded). It splits CJK text after 。！？,
but it cuts a closing quote or bracket off the sentence it closes ("你好。”然后" -> "你好。" / "”然后")
and makes a run of terminators ("好！！") into a sentence of its own punctuation. The CJK pass below
splits after every run of terminators and keeps closing quotes and brackets with their sentence.
"""

from __future__ import annotations

import ctypes
import re
import threading

import blingfire

# Full-width and half-width CJK sentence terminators.
CJK_TERMINATORS = "。！？｡"
# Closing quotes/brackets that belong to the sentence before them, e.g. 他说：“你好。”. ASCII " and '
# are left out: they open sentences as often as they close them.
CLOSING_PUNCTUATION = "”’」』）〕】》〉)］｝"
_CJK_SENTENCE_END = re.compile(f"[{CJK_TERMINATORS}]+[{re.escape(CLOSING_PUNCTUATION)}]*")
_LEADING_CLOSERS = re.compile(f"^[{re.escape(CLOSING_PUNCTUATION)}{CJK_TERMINATORS}]+")
_CJK_TERMINATOR = re.compile(f"[{CJK_TERMINATORS}]")
_STARTS_CLOSED = frozenset(CLOSING_PUNCTUATION + CJK_TERMINATORS)
# blingfire.text_to_sentences allocates and zero-fills a fresh output buffer on every call, which was
# 60% of its time on paragraph lines; the same C function is called here with one buffer per thread.
_BLINGFIRE = blingfire.blingfire  # the loaded libblingfiretokdll
_buffers = threading.local()


def _blingfire_sentences(text: str) -> str:
    """blingfire.text_to_sentences(text): sentences separated by newlines ("" on failure)."""
    data = text.encode("utf-8")
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None or len(buffer) < 2 * len(data) + 1:
        buffer = _buffers.buffer = ctypes.create_string_buffer(max(2 * len(data) + 1, 1 << 16))
    length = _BLINGFIRE.TextToSentences(ctypes.c_char_p(data), ctypes.c_int(len(data)), ctypes.byref(buffer),
                                        ctypes.c_int(len(buffer)))
    if length <= 0 or length > len(buffer):
        return ""
    return ctypes.string_at(buffer, length - 1).decode("utf-8")  # length counts the closing NUL


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
    for sentence in _blingfire_sentences(line).split("\n"):
        if _CJK_TERMINATOR.search(sentence):
            pieces = _split_cjk(sentence)
        else:
            pieces = [sentence.strip()] if sentence.strip() else []
        for piece in pieces:
            # A piece that starts with closers or terminators ("”然后", "。") ends the previous sentence.
            if sentences and piece[0] in _STARTS_CLOSED:
                closers = _LEADING_CLOSERS.match(piece)
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
