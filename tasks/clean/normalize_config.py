"""The config of text normalisation (tasks/clean/normalize.py): which of ftfy's ASCII-ward rewrites run where.

Kept apart from normalize.py, which imports ftfy: loading a pipeline config must not pay for it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

WhereToApply = Literal["auto", "always", "never"]


class NormalizeConfig(BaseModel):
    """Which of ftfy's ASCII-ward rewrites cleaning applies, and to which documents."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    fold_width: WhereToApply = "auto"
    """Full-width letters, digits and punctuation to ASCII (ＡＢ１，！？（） -> AB1,!?()), half-width katakana
    to full width: 'auto' in documents not written mostly in CJK/kana/hangul, 'always', or 'never'."""
    uncurl_quotes: WhereToApply = "auto"
    """Curly quotes to straight ones (“it’s” -> "it's"): 'auto' in documents not written mostly in
    CJK/kana/hangul (where “ ” ‘ ’ are the quotation marks), 'always', or 'never'."""
