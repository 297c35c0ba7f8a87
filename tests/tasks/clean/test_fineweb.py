"""tasks/clean/fineweb.py: FineWeb's line rules."""

from tasks.clean.fineweb import FineWebConfig, FineWebFilter
from tests.tasks.clean.documents import GOOD, PROSE, document


def _fineweb(text: str) -> bool | tuple[bool, str]:
    return FineWebFilter(FineWebConfig()).filter(document(text))


def test_fineweb_rules() -> None:
    assert _fineweb(GOOD) == (True, "")
    assert _fineweb("\n".join(line.rstrip(".") for line in PROSE)) == (False, "fineweb_line_punct_ratio")
    short = ["Use a cache.", "Keep it small.", "Expire old items.", "Measure it.", "Log misses.", "Tune the size.",
             "Document it."]
    assert _fineweb("\n".join(short[:5] + PROSE[:2] + short[5:])) == (False, "fineweb_short_line_ratio")
    assert _fineweb("\n".join(PROSE + PROSE[:1])) == (False, "fineweb_char_dup_ratio")
    listing = ["Internationalization considerations.", "Telecommunications infrastructure.",
               "Responsibilities characterization.", "Incomprehensibilities everywhere.",
               "Counterrevolutionaries reconsidered.", "Uncharacteristically straightforward."]
    assert _fineweb("\n".join(listing)) == (False, "fineweb_list_ratio")
