"""Documents for the cleaning tests: a fixed fetch time and English prose that every filter keeps."""

from datetime import UTC, datetime

from tasks.clean.steps import Document

NOW = datetime(2024, 1, 1, tzinfo=UTC)
# English prose, 93 words, six different lines: passes every filter with its published defaults
PROSE = [
    "The library keeps a small cache of compiled patterns so that repeated calls stay fast.",
    "Each entry records the source string, the flags that were used and the compiled object itself.",
    "When the cache grows beyond its limit, the oldest entries are removed before new ones are added.",
    "Most programs never notice this behaviour, because typical scripts use only a handful of expressions.",
    "Applications that build patterns dynamically may want to compile them once and keep the result.",
    "That approach avoids surprises with memory and makes the intent of the code clear to readers.",
]


GOOD = "\n".join(PROSE)


def document(text: str, title: str | None = None) -> Document:
    return Document(url="http://h/", source="crawl", title=title, text=text, fetched_at=NOW)
