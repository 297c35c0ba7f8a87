"""HTML -> (title, main text) with trafilatura; one text line per block element."""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import re
import signal
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.clean.charset import declared_charsets, decode_text

if TYPE_CHECKING:
    import lxml.html

# lxml, ftfy and trafilatura are imported where a page is parsed or extracted, not here: loading a config
# (which holds an ExtractConfig) must not pay for them

logger = logging.getLogger(__name__)

_WHITESPACE = re.compile(r"\s+")
# browsers (WHATWG Encoding) read latin-1 and ascii labels as windows-1252
_WINDOWS_1252 = {"latin-1": "cp1252", "iso8859-1": "cp1252", "ascii": "cp1252"}
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_PREFORMATTED = frozenset({"pre", "textarea", "listing", "plaintext", "xmp"})


class ExtractConfig(BaseModel):
    """How main text is taken out of HTML pages."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    prune_xpaths: list[str] = Field(
        default=["//a[contains(concat(' ', normalize-space(@class), ' '), ' headerlink ')]"]
    )
    """XPath expressions whose elements are removed before extraction (default: Sphinx '¶' permalinks)."""
    include_tables: bool = True
    """Keep the text of HTML table elements."""
    workers: int = Field(default=1, ge=1)
    """Processes extracting pages in parallel (spawned: a script calling this needs `if __name__ == "__main__"`)."""
    timeout_seconds: float | None = Field(default=10.0, gt=0)
    """Give up on a page whose extraction takes longer (counted as extract_timeout); None = no limit."""

    @field_validator("prune_xpaths")
    @classmethod
    def _xpaths(cls, xpaths: list[str]) -> list[str]:
        # a malformed expression would fail every page's extraction (extract_failed), one page at a time
        import lxml.etree

        problems = []
        for xpath in xpaths:
            try:
                lxml.etree.XPath(xpath)
            except lxml.etree.XPathSyntaxError as exc:
                problems.append(f"{xpath!r} ({exc})")
        if problems:
            raise ValueError(f"invalid XPath expressions: {'; '.join(problems)}")
        return xpaths


class ExtractTimeout(BaseException):
    """Extraction of one page ran past ExtractConfig.timeout_seconds.

    A BaseException, like KeyboardInterrupt, so the `except Exception` blocks inside trafilatura do not swallow it.
    """


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ExtractTimeout in the block once `seconds` of wall time have passed (SIGALRM, main thread only).

    Only the main thread receives signals, so off it (e.g. a Dask worker thread) the block runs
    without a limit; shard workers started by tasks/parallel.py run shards on their main thread.
    The previous SIGALRM handler and timer are restored on exit.
    """
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expire(signum: int, frame: object) -> None:
        raise ExtractTimeout(f"extraction took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True, slots=True)
class ExtractedText:
    """Title (None if the page has none) and main text, one block per line."""

    title: str | None
    text: str


def decode_html(body: bytes, content_type: str | None = None) -> str:
    """Decode an HTML body: BOM, then HTTP charset, then <meta> charset, then UTF-8, then detection.

    A declared charset that cannot decode the bytes is skipped; a declared charset that decodes
    them into mojibake (UTF-8 served as latin-1) is kept, and extract_html repairs it. A <meta>
    UTF-16/32 label means UTF-8, and latin-1 and ascii labels mean windows-1252, as in browsers.
    """
    declared = declared_charsets(body, content_type)
    return decode_text(body, [_WINDOWS_1252.get(codec, codec) for codec in declared])


def parse_html(html: str) -> lxml.html.HtmlElement:
    """Parse decoded HTML into an lxml tree without comments; raises lxml.etree.ParserError if empty."""
    # lxml refuses str input that carries an XML encoding declaration; comments would split a
    # paragraph into two lines in trafilatura's output
    import lxml.html

    parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True)
    return lxml.html.document_fromstring(_XML_DECLARATION.sub("", html, count=1), parser=parser)


def _fix_mojibake(tree: lxml.html.HtmlElement) -> None:
    """Undo mojibake in every text node (ftfy), before extraction alters it past ftfy's recognition.

    UTF-8 read as latin-1 holds C1 controls ('—' reads 'â\\x80\\x94'), which trafilatura deletes as
    unprintable, and 'à' read as windows-1252 ends in a no-break space, which _collapse_whitespace turns
    into a space; either way a stray 'â' or 'Ã' would stay in the text that ftfy sees in cleaning.
    """
    from tasks.clean.normalize import fix_mojibake  # imports ftfy

    for element in tree.iter():
        if element.text and not element.text.isascii():  # ASCII cannot be mojibake: skip the cost of ftfy
            element.text = fix_mojibake(element.text)
        if element.tail and not element.tail.isascii():
            element.tail = fix_mojibake(element.tail)


def _collapse_whitespace(tree: lxml.html.HtmlElement) -> None:
    """Collapse whitespace runs in text outside <pre>, as a browser renders it.

    Source HTML is often hard-wrapped inside paragraphs; without this, trafilatura keeps those
    line breaks and a sentence would be split across lines.
    """
    preformatted = {d for p in tree.iter(*_PREFORMATTED) for d in p.iter()}
    for element in tree.iter():
        if element.text and element not in preformatted:
            element.text = _WHITESPACE.sub(" ", element.text)
        if element.tail and element.getparent() not in preformatted:
            element.tail = _WHITESPACE.sub(" ", element.tail)


def _title(tree: lxml.html.HtmlElement) -> str | None:
    """The <title>, else the first <h1>, whitespace-collapsed."""
    for path in (".//title", ".//h1"):
        found = tree.find(path)
        if found is not None:
            title = _WHITESPACE.sub(" ", found.text_content()).strip()
            if title:
                return title
    return None


def extract_html(html: str | bytes, url: str | None = None, cfg: ExtractConfig | None = None) -> ExtractedText | None:
    """Main text and title of one HTML page; None if no main text was found. Raises on unparsable input."""
    cfg = cfg or ExtractConfig()
    tree = parse_html(decode_html(html) if isinstance(html, bytes) else html)
    _fix_mojibake(tree)
    for xpath in cfg.prune_xpaths:
        for element in tree.xpath(xpath):
            element.drop_tree()  # keeps the element's tail text
    _collapse_whitespace(tree)
    title = _title(tree)
    import trafilatura  # ~0.3 CPU-s to import: paid by extraction, not by loading a config

    result = trafilatura.bare_extraction(
        tree,
        url=url,
        favor_precision=False,
        include_comments=False,
        include_tables=cfg.include_tables,
        with_metadata=False,  # metadata (dates, authors) doubles the time; the title is taken above
        deduplicate=False,
    )
    text = (result.text or "").strip() if result is not None else ""
    if not text:
        return None
    return ExtractedText(title=title, text=text)


def extract_page(body: bytes, content_type: str | None, url: str,
                 cfg: ExtractConfig) -> tuple[ExtractedText | None, str]:
    """(extracted, "") or (None, reason): reason is extract_empty, extract_failed or extract_timeout, never raised."""
    try:
        with time_limit(cfg.timeout_seconds):
            extracted = extract_html(decode_html(body, content_type), url, cfg)
    except ExtractTimeout:
        logger.warning("extraction of %s stopped after %s s", url, cfg.timeout_seconds)
        return None, "extract_timeout"
    except Exception as exc:  # one bad page must not stop a corpus build
        logger.warning("extraction failed for %s: %s: %s", url, type(exc).__name__, exc)
        return None, "extract_failed"
    return (extracted, "") if extracted is not None else (None, "extract_empty")


def _extract_one(
    page: tuple[str, bytes, str | None], cfg: ExtractConfig
) -> tuple[str, ExtractedText | None, str | None]:
    """(url, extracted or None, error message or None); runs in worker processes."""
    url, body, content_type = page
    try:
        return url, extract_html(decode_html(body, content_type), url, cfg), None
    except Exception as exc:  # one bad page must not stop a corpus build
        return url, None, f"{type(exc).__name__}: {exc}"


def extract_pages(
    pages: Iterable[tuple[str, bytes, str | None]], cfg: ExtractConfig, counts: Counter[str]
) -> Iterator[tuple[str, ExtractedText]]:
    """(url, body, content_type) -> (url, extracted), in input order; failures are counted, not raised.

    Counted reasons: extract_failed (parser or extractor error), extract_empty (no main text).
    """
    work = functools.partial(_extract_one, cfg=cfg)
    with contextlib.ExitStack() as stack:
        if cfg.workers > 1:
            # spawn, not fork: the caller may run threads (Prefect, HTTP servers)
            spawn = multiprocessing.get_context("spawn")
            pool = stack.enter_context(ProcessPoolExecutor(cfg.workers, mp_context=spawn))
            results = pool.map(work, pages, chunksize=4)
        else:
            results = map(work, pages)
        for url, extracted, error in results:
            if error is not None:
                logger.warning("extraction failed for %s: %s", url, error)
                counts["extract_failed"] += 1
            elif extracted is None:
                counts["extract_empty"] += 1
            else:
                yield url, extracted
