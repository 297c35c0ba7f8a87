"""Sentence splitting for the tokenize stage: blingfire per paragraph line, plus a terminator pass.

blingfire ships its model in the wheel (nothing is downloaded). It splits CJK text after 。！？,
but it cuts a closing quote or bracket off the sentence it closes ("你好。”然后" -> "你好。" / "”然后")
and makes a run of terminators ("好！！") into a sentence of its own punctuation. The CJK pass below
splits after every run of terminators and keeps closing quotes and brackets with their sentence.

blingfire does not split at all after the danda । and double danda ॥ (Hindi, Bengali, ...), the
full-width full stop ． (Japanese), the Ethiopic ። or the Myanmar ။, nor after ASCII . ! ? written
straight before a CJK character ("你好!今天"): a whole paragraph became one sentence. split_document's
terminator pass splits there too (split_paragraph, the C4 filter's sentence count, as well).
"""

from __future__ import annotations

import ctypes
import re
import threading
from dataclasses import dataclass

import blingfire

from tasks.text import CJK_TERMINATORS, CLOSING_PUNCTUATION, HANGUL_SYLLABLES, KANA_AND_IDEOGRAPHS, OTHER_TERMINATORS

# Kana, CJK ideographs and Hangul syllables: an ASCII . ! ? straight before one of these ends a sentence.
CJK_CHARACTERS = KANA_AND_IDEOGRAPHS + HANGUL_SYLLABLES
_CLOSERS = re.escape(CLOSING_PUNCTUATION)


@dataclass(frozen=True)
class _TerminatorPass:
    """Where a blingfire sentence is split further, and what may end the sentence before a piece."""

    sentence_end: re.Pattern | None  # a run of terminators and its closers; None: no split
    leading_closers: re.Pattern  # closers and terminators at a piece's start, moved to the sentence before
    starts_closed: frozenset[str]  # first characters of such pieces

    def split(self, sentence: str) -> list[str]:
        """Pieces of one blingfire sentence, stripped, empty ones dropped."""
        pieces, start = [], 0
        if self.sentence_end is not None:
            for match in self.sentence_end.finditer(sentence):
                pieces.append(sentence[start : match.end()])
                start = match.end()
        pieces.append(sentence[start:])
        return [piece.strip() for piece in pieces if piece.strip()]


def _terminator_pass(terminators: str, sentence_end: str | None) -> _TerminatorPass:
    return _TerminatorPass(
        re.compile(sentence_end) if sentence_end else None,
        re.compile(f"^[{_CLOSERS}{terminators}]+"),
        frozenset(CLOSING_PUNCTUATION + terminators),
    )


# The terminator pass. ． is not an end before a digit (full-width numbers: ３．１４). An ASCII . is an
# end before a CJK character unless a digit or another . precedes it: "1.安装" numbers a list item
# and "等等...然后" is an ellipsis, as blingfire reads "1. First" and "Wait... what".
_FULL_PASS = _terminator_pass(
    CJK_TERMINATORS + OTHER_TERMINATORS,
    f"(?:[{CJK_TERMINATORS}{OTHER_TERMINATORS.replace('．', '')}]|．(?![0-9０-９]))+[{_CLOSERS}]*"
    f"|(?:[!?]+|(?<![.0-9])\\.)[{_CLOSERS}]*(?=[{CJK_CHARACTERS}])",
)
# Text without any of these characters has nothing for _FULL_PASS to split. ASCII text is ruled out
# first (str.isascii reads a flag): the scan costs ~8% of split_document's time on English text.
_MAY_NEED_FULL_PASS = re.compile(f"[{CJK_TERMINATORS}{OTHER_TERMINATORS}{CJK_CHARACTERS}]")
# The pass for text without those characters: closers moved back, nothing split.
_NO_SPLIT_PASS = _terminator_pass(CJK_TERMINATORS + OTHER_TERMINATORS, None)
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


def _sentences(blingfire_output: str, terminator_pass: _TerminatorPass) -> list[str]:
    """Our sentences from blingfire's newline-separated output for one paragraph line."""
    sentences: list[str] = []
    sentence_end = terminator_pass.sentence_end
    for sentence in blingfire_output.split("\n"):
        if sentence_end is not None and sentence_end.search(sentence):
            pieces = terminator_pass.split(sentence)
        else:
            pieces = [sentence.strip()] if sentence.strip() else []
        for piece in pieces:
            # A piece that starts with closers or terminators ("”然后", "。") ends the previous sentence.
            if sentences and piece[0] in terminator_pass.starts_closed:
                closers = terminator_pass.leading_closers.match(piece)
                sentences[-1] += closers.group()
                piece = piece[closers.end() :].strip()
            if piece:
                sentences.append(piece)
    return sentences


def _pass_for(text: str) -> _TerminatorPass:
    needs_pass = not text.isascii() and _MAY_NEED_FULL_PASS.search(text)
    return _FULL_PASS if needs_pass else _NO_SPLIT_PASS


def split_paragraph(line: str) -> list[str]:
    """Sentences of one paragraph line (blingfire and the terminator pass), in order; [] for a blank line."""
    line = line.strip()
    return _sentences(_blingfire_sentences(line), _pass_for(line)) if line else []


def split_document(text: str) -> list[str]:
    """Sentences of a document whose paragraphs are separated by newlines; blank lines dropped.

    A sentence never spans two lines, so the lines of Google BERT's text format (the corpus's
    local_text_format 'bert': a sentence per line) stay sentence boundaries, as Google's format says,
    with no setting here: a line that is one sentence stays whole (the 21,731 sentences of the Python
    tutorial and HOWTOs' sources, written back a sentence per line, came back unchanged), and a line
    holding several (a paragraph per line: Debian's Chinese manual pages, 67,418 lines, gave 75,149
    sentences) is split into them, the real sentences that next-sentence prediction wants.

    One blingfire call per document rather than per line (a call costs ~6 us beyond its text; the
    Python docs average 190 lines per document). blingfire joins lines across a newline but always
    breaks after U+2029 (paragraph separator), so lines are joined with it and a space. The sentences
    are blingfire's on each line, split further by the terminator pass (see the module docstring),
    except that a line-final fragment which blingfire splits off at the very end of its input ("*/",
    "...", "]") stays with its sentence, as it does mid-text (51 of 946 demo and Python-docs documents
    changed, all that way). A document that already holds U+2029, or whose output does not break at
    every separator, is split line by line.
    """
    terminator_pass = _pass_for(text)
    lines = [stripped for line in text.split("\n") if (stripped := line.strip())]
    if len(lines) > 1 and PARAGRAPH_SEPARATOR not in text:
        # The space after the separator matters: without it blingfire reads "\u2029Dr." as a word start.
        per_line = _blingfire_sentences((PARAGRAPH_SEPARATOR + " ").join(lines)).split(PARAGRAPH_SEPARATOR + "\n")
        if len(per_line) == len(lines):
            return [sentence for output in per_line for sentence in _sentences(output, terminator_pass)]
    return [sentence for line in lines for sentence in _sentences(_blingfire_sentences(line), terminator_pass)]
