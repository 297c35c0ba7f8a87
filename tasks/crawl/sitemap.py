"""Sitemaps (sitemaps.org 0.9): XML url sets and sitemap indexes, gzipped or not, and plain-text lists.

A sitemap is untrusted input like any page: it is parsed with entity expansion, DTD loading and
network access off (so a billion-laughs or an external entity cannot blow up or leak), and a
gzipped one is inflated only up to the crawl's max_bytes.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field

import lxml.etree

logger = logging.getLogger(__name__)

# what servers send sitemaps as: XML, gzip (.xml.gz), or a plain list of URLs
SITEMAP_CONTENT_TYPES = frozenset({
    "application/xml", "text/xml", "application/gzip", "application/x-gzip", "application/octet-stream",
    "text/plain",
})
ACCEPT_SITEMAP = "application/xml,text/xml;q=0.9,application/gzip;q=0.8,text/plain;q=0.5,*/*;q=0.1"
MAX_SITEMAP_URLS = 50_000  # sitemaps.org: one sitemap lists at most 50,000 URLs
_GZIP_MAGIC = b"\x1f\x8b"


class SitemapError(ValueError):
    """A body that is not a sitemap, or too large once inflated; reason is a short statistic name."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Sitemap:
    """The locations a sitemap lists: pages (kind 'urlset') or further sitemaps (kind 'index')."""

    kind: str  # urlset | index
    locations: list[str]  # <loc> values as written, in document order
    lastmod: dict[str, str] = field(default_factory=dict)  # <loc> -> <lastmod> (W3C datetime) where given


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise SitemapError(f"corrupt gzip sitemap: {exc}", "invalid") from exc
    if len(data) > max_bytes:
        raise SitemapError(f"gzipped sitemap inflates to more than max_bytes={max_bytes}", "too_large")
    return data


def _local(element: lxml.etree._Element) -> str:
    return lxml.etree.QName(element).localname if isinstance(element.tag, str) else ""


def _child_text(element: lxml.etree._Element, name: str) -> str | None:
    for child in element:
        if _local(child) == name and child.text and child.text.strip():
            return child.text.strip()
    return None


def parse_sitemap(body: bytes, max_bytes: int) -> Sitemap:
    """Parse a sitemap body (XML, gzipped XML or text, one URL a line); raises SitemapError."""
    if body.startswith(_GZIP_MAGIC):
        body = _gunzip(body, max_bytes)
    body = body.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as some editors write
    if not body.lstrip().startswith(b"<"):  # sitemaps.org: a text file, one URL per line
        lines = (line.strip() for line in body.decode("utf-8", errors="replace").splitlines())
        urls = [line for line in lines if line.startswith(("http://", "https://"))]
        if not urls:
            raise SitemapError("neither XML nor a list of http(s) URLs", "invalid")
        return Sitemap("urlset", urls[:MAX_SITEMAP_URLS])
    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                                  remove_comments=True, remove_pis=True)
    try:
        root = lxml.etree.fromstring(body, parser)
    except lxml.etree.XMLSyntaxError as exc:
        raise SitemapError(f"malformed sitemap XML: {exc}", "invalid") from exc
    kind = {"urlset": ("urlset", "url"), "sitemapindex": ("index", "sitemap")}.get(_local(root))
    if kind is None:
        raise SitemapError(f"not a sitemap: the root element is <{_local(root)}>", "invalid")
    locations: list[str] = []
    lastmod: dict[str, str] = {}
    for entry in root:
        if _local(entry) != kind[1]:
            continue
        loc = _child_text(entry, "loc")
        if loc is None:
            continue
        if len(locations) == MAX_SITEMAP_URLS:
            logger.warning("sitemap lists more than %d locations; the rest are ignored", MAX_SITEMAP_URLS)
            break
        locations.append(loc)
        modified = _child_text(entry, "lastmod")
        if modified is not None:
            lastmod[loc] = modified
    return Sitemap(kind[0], locations, lastmod)
