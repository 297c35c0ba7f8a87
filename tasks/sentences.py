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
PARAGRAPH_SEPARATOR = "\u2029"  # blingfire always ends a sentence after it (see split_document)
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


def _sentences(blingfire_output: str) -> list[str]:
    """Our sentences from blingfire's newline-separated output for one paragraph line."""
    sentences: list[str] = []
    for sentence in blingfire_output.split("\n"):
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


def split_paragraph(line: str) -> list[str]:
    """Sentences of one paragraph line, in order; [] for a blank line."""
    line = line.strip()
    return _sentences(_blingfire_sentences(line)) if line else []


def split_document(text: str) -> list[str]:
    """Sentences of a document whose paragraphs are separated by newlines; blank lines dropped.

    One blingfire call per document rather than per line (a call costs ~6 us beyond its text; the
    Python docs average 190 lines per document). blingfire joins lines across a newline but always
    breaks after U+2029 (paragraph separator), so lines are joined with it and a space. The sentences
    are split_paragraph's on each line, except that a line-final fragment which blingfire splits off
    at the very end of its input ("*/", "...", "]") stays with its sentence, as it does mid-text (51
    of 946 demo and Python-docs documents changed, all that way). A document that already holds
    U+2029, or whose output does not break at every separator, is split line by line.
    """
    lines = [stripped for line in text.split("\n") if (stripped := line.strip())]
    if len(lines) > 1 and PARAGRAPH_SEPARATOR not in text:
        # The space after the separator matters: without it blingfire reads "\u2029Dr." as a word start.
        per_line = _blingfire_sentences((PARAGRAPH_SEPARATOR + " ").join(lines)).split(PARAGRAPH_SEPARATOR + "\n")
        if len(per_line) == len(lines):
            return [sentence for output in per_line for sentence in _sentences(output)]
    return [sentence for line in lines for sentence in split_paragraph(line)]
