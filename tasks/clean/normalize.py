"""Text repair and normalisation (ftfy, NFC, whitespace) and the two basic filters, empty and too short.

default_pipeline is the start of every corpus cleaning pipeline; the other steps are added after it
by tasks/corpus/clean_shard.py.

Full-width forms and curly quotes are the punctuation of Chinese and Japanese text (GB/T 15834 sets
Chinese punctuation full width: ，。！？：；（）“”), so by default ftfy's width folding and quote
uncurling run only on documents not written mostly in CJK ideographs, kana or hangul
(NormalizeConfig, in normalize_config.py). Tokenizing does not need them: BERT's pre-tokenizer splits
on Unicode punctuation of either width, and Google's bert-base-chinese vocabulary holds ， and ！ as
tokens of their own. The other steps change no CJK text: NFC is canonical (a compatibility ideograph
such as U+F900 becomes its unified twin, which looks the same), NFKC (which would turn … into ... and
① into 1) runs nowhere, and the whitespace step treats the ideographic space U+3000 as a space like
any other (collapsed, stripped at line ends).
"""

from __future__ import annotations

import re
import unicodedata

import ftfy
from ftfy.fixes import fix_character_width, uncurl_quotes

from tasks.clean.normalize_config import NormalizeConfig
from tasks.clean.steps import CleanPipeline, Document, Filter, TextFix
from tasks.clean.text_stats import count_words
from tasks.text import HANGUL_SYLLABLES, KANA_AND_IDEOGRAPHS

_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")  # whitespace except newline (tabs, NBSP, ...)
_BLANK_LINES = re.compile(r"\n{2,}")
_CJK_CHARACTER = re.compile(f"[{KANA_AND_IDEOGRAPHS}{HANGUL_SYLLABLES}]")
_OTHER_WORD = re.compile(f"[^\\W_{KANA_AND_IDEOGRAPHS}{HANGUL_SYLLABLES}]+")  # a run of other letters/digits
_WIDTH_FORMS = re.compile("[\u3000\uff01-\uffef]")  # what ftfy folds; finding none is ~8x cheaper than folding
# ftfy's mojibake repairs with its defaults (undoing UTF-8 read as latin-1 or windows-1252, also twice,
# and C1 controls) and none of its other fixes: extraction runs them on HTML text (extract.py)
_MOJIBAKE_ONLY = ftfy.TextFixerConfig(
    unescape_html=False, remove_terminal_escapes=False, fix_latin_ligatures=False, fix_character_width=False,
    uncurl_quotes=False, fix_line_breaks=False, fix_surrogates=False, remove_control_chars=False,
    normalization=None, explain=False)


def fix_mojibake(text: str) -> str:
    """ftfy's mojibake repairs alone: 'itâ€™s' and 'itÃ¢â‚¬â„¢s' -> 'it’s'; other text is returned as is."""
    return ftfy.fix_text(text, config=_MOJIBAKE_ONLY)


def written_in_cjk(text: str) -> bool:
    """Whether CJK ideographs, kana and hangul syllables (each a word, as split_words counts them) are at least
    as many as the words of other letters and digits: '这是 Python 3 的文档' is (5 to 2), 'the word 你好 means
    hi' is not (2 to 4)."""
    if _CJK_CHARACTER.search(text) is None:  # the common case, at the cost of one scan
        return False
    return len(_CJK_CHARACTER.findall(text)) >= len(_OTHER_WORD.findall(text))


class FixMojibake(TextFix):
    """ftfy: undo mojibake (UTF-8 read as cp1252), strip control chars and terminal escapes, unify line
    breaks; fold widths and uncurl quotes where NormalizeConfig says."""

    name = "ftfy"

    def __init__(self, cfg: NormalizeConfig | None = None) -> None:
        cfg = cfg or NormalizeConfig()
        # text is already extracted, so '&amp;' is literal text (e.g. docs about HTML) and stays; width and
        # quotes are left to fix(), which decides on the repaired text (mojibake hides the script)
        self.config = ftfy.TextFixerConfig(unescape_html=False, fix_character_width=False, uncurl_quotes=False,
                                           normalization="NFC", explain=False)
        # (fold widths, uncurl quotes) for text not written in CJK, and for text written in CJK
        self.rewrites = {False: (cfg.fold_width != "never", cfg.uncurl_quotes != "never"),
                         True: (cfg.fold_width == "always", cfg.uncurl_quotes == "always")}

    def fix(self, text: str) -> str:
        text = ftfy.fix_text(text, config=self.config)
        cjk = self.rewrites[False] != self.rewrites[True] and written_in_cjk(text)  # only if it changes what runs
        fold_width, uncurl = self.rewrites[cjk]
        if fold_width and _WIDTH_FORMS.search(text):
            # half-width ﾀﾞ becomes タ + a combining mark: NFC makes it ダ
            text = unicodedata.normalize("NFC", fix_character_width(text))
        if uncurl:
            text = uncurl_quotes(text)
        return text


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
        return (True, "") if count_words(doc.text) >= self.min_words else (False, "too_few_words")


def default_pipeline(min_words: int, normalize: NormalizeConfig | None = None) -> CleanPipeline:
    """ftfy -> NFC -> whitespace -> drop empty -> drop short."""
    return CleanPipeline([FixMojibake(normalize), NormalizeUnicode(), NormalizeWhitespace(), NonEmpty(),
                          MinWords(min_words)])


def clean_text(text: str, normalize: NormalizeConfig | None = None) -> str:
    """The text fixes of the default pipeline on one string (for the CLI and quick checks)."""
    for step in (FixMojibake(normalize), NormalizeUnicode(), NormalizeWhitespace()):
        text = step.fix(text)
    return text
