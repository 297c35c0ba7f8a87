"""Unicode script ranges and sentence marks: the text facts that cleaning and tokenizing must agree on.

tasks/clean/ (word counts, line-end rules) and tasks/tokens/ (the sentence splitter) both import this
module; it imports nothing of the project. Ranges are regex character-class fragments, to be used
inside [...].
"""

from __future__ import annotations

# Kana and CJK ideographs (unified, extension A, compatibility, and the supplementary planes).
KANA_AND_IDEOGRAPHS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
HANGUL_SYLLABLES = "\uac00-\ud7af"
# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, kana and CJK ideographs.
UNSPACED_SCRIPTS = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff" + KANA_AND_IDEOGRAPHS

# Full-width marks that end a line as a sentence (C4's and FineWeb's line rules), closing quotes after them
CJK_END_MARKS = ("。", "！", "？", "．", "」", "』")
# Full-width and half-width CJK sentence terminators.
CJK_TERMINATORS = "。！？｡"
# Terminators blingfire does not split after: full-width full stop, danda, double danda, Arabic full stop
# (Urdu), Ethiopic full stop, Myanmar section mark.
OTHER_TERMINATORS = "．।॥۔።။"
# Closing quotes/brackets that belong to the sentence before them, e.g. 他说：“你好。”. ASCII " and '
# are left out: they open sentences as often as they close them.
CLOSING_PUNCTUATION = "”’」』）〕】》〉)］｝"
