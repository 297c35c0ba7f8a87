"""Quality filters with their published defaults: Gopher quality and repetition, C4, FineWeb.

Each rule family is a small Filter with named drop reasons (C4's line rules are a DocumentFix that
rewrites the text), configured by one sub-config of QualityConfig and kept in its own module:
`filters_gopher.py`, `filters_c4.py`, `filters_fineweb.py`; `filters_text.py` holds the text
statistics they share. This module puts them together in FineWeb's order.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tasks.clean.c4 import C4BadWordsFilter, C4Config, C4LineFilter, C4PageFilter
from tasks.clean.fineweb import FineWebConfig, FineWebFilter
from tasks.clean.gopher import (
    GopherQualityConfig,
    GopherQualityFilter,
    GopherRepetitionConfig,
    GopherRepetitionFilter,
)
from tasks.clean.steps import DocumentFix, Filter


class QualityConfig(BaseModel):
    """The quality filters, each family with its switch and published thresholds."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    gopher_repetition: GopherRepetitionConfig = Field(default_factory=GopherRepetitionConfig)
    """Gopher repetition rules (Rae et al. 2021, table A1)."""
    gopher_quality: GopherQualityConfig = Field(default_factory=GopherQualityConfig)
    """Gopher quality rules (Rae et al. 2021, appendix A.1.1)."""
    c4: C4Config = Field(default_factory=C4Config)
    """C4 line and page rules (Raffel et al. 2020)."""
    fineweb: FineWebConfig = Field(default_factory=FineWebConfig)
    """FineWeb's rules (Penedo et al. 2024)."""


# every reason the quality filters can drop a document for
QUALITY_DROP_REASONS = (
    "gopher_duplicate_lines", "gopher_duplicate_line_chars", "gopher_duplicate_paragraphs",
    "gopher_duplicate_paragraph_chars", "gopher_top_ngram", "gopher_duplicate_ngrams",
    "gopher_too_few_words", "gopher_too_many_words", "gopher_mean_word_length", "gopher_hash_ratio",
    "gopher_ellipsis_ratio", "gopher_bullet_lines", "gopher_ellipsis_lines", "gopher_alphabetic_words",
    "gopher_stop_words",
    "c4_lorem_ipsum", "c4_curly_bracket", "c4_too_few_sentences", "c4_badwords",
    "fineweb_line_punct_ratio", "fineweb_short_line_ratio", "fineweb_char_dup_ratio", "fineweb_list_ratio",
)


def quality_steps(cfg: QualityConfig) -> list[DocumentFix | Filter]:
    """The enabled filters in FineWeb's order: Gopher repetition, Gopher quality, C4, FineWeb."""
    steps: list[DocumentFix | Filter] = []
    if cfg.gopher_repetition.enabled:
        steps.append(GopherRepetitionFilter(cfg.gopher_repetition))
    if cfg.gopher_quality.enabled:
        steps.append(GopherQualityFilter(cfg.gopher_quality))
    if cfg.c4.enabled:
        steps.extend([C4LineFilter(cfg.c4), C4PageFilter(cfg.c4)])
        if cfg.c4.badwords_file is not None:
            steps.append(C4BadWordsFilter(cfg.c4.badwords_file))
    if cfg.fineweb.enabled:
        steps.append(FineWebFilter(cfg.fineweb))
    return steps
