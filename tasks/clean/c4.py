"""C4's line and page filters (Raffel et al. 2020, section 2.2), as released in tensorflow_datasets'
c4_utils.py: the code that built C4 keeps lines of >= 5 words and pages of >= 3 sentences (the paper's
text says 3 and 5). The line rules are a DocumentFix that rewrites the text."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.clean.steps import Document, DocumentFix, Filter
from tasks.clean.text_stats import UNSPACED_SCRIPT, lines_of, split_words
from tasks.text import CJK_END_MARKS

# ---------------------------------------------------------------- C4 (Raffel et al. 2020, tfds c4_utils.py)

class C4Config(BaseModel):
    """C4's rules: keep only sentence-like lines, then drop pages with code markers or too few sentences."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Apply the C4 line and page rules."""
    drop_lines_without_terminal_punctuation: bool = True
    """Remove lines not ending in . ? ! or \" (or ending in '...'); FineWeb turns this off."""
    min_words_per_line: int = Field(default=5, ge=0)
    """Remove lines with fewer words than this (whitespace-separated; each character in Chinese, Japanese, Thai)."""
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
_END_MARKS = (".", "?", "!", '"', *CJK_END_MARKS)
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
        words = split_words(line)  # whitespace tokens; characters in Chinese, Japanese, Thai
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
        for line in lines_of(doc.text):
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
            from tasks.tokens.sentences import split_paragraph  # blingfire: loaded by cleaning, not with a config

            sentences = 0
            for line in lines_of(text):
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
    """C4's bad-words rule: drop a page containing any listed word or phrase as whole words, in any case.

    An entry in a script written without spaces (Chinese, Japanese, Thai...) has no word boundaries
    to find, so it matches anywhere in the text, as in datatrove's C4BadWordsFilter for those languages.
    """

    name = "c4_badwords"

    def __init__(self, path: Path) -> None:
        # longest first, so a phrase wins over a word it starts with; lookarounds instead of \b so
        # entries that begin or end with punctuation still match on word boundaries
        words = sorted(set(load_badwords(path)), key=lambda w: (-len(w), w))
        spaced = [re.escape(w) for w in words if not UNSPACED_SCRIPT.search(w)]
        unspaced = [re.escape(w) for w in words if UNSPACED_SCRIPT.search(w)]
        alternatives = ([r"(?<!\w)(?:" + "|".join(spaced) + r")(?!\w)"] if spaced else []) + unspaced
        self.pattern = re.compile("|".join(alternatives), re.IGNORECASE)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return (False, "c4_badwords") if self.pattern.search(doc.text) else (True, "")
