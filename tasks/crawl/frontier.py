"""The crawl frontier: URL normalisation, link extraction, scope, and the breadth-first queue.

The queue is kept by depth, then by host. Depth d + 1 is handed out only when every entry of
depth d is done (a level barrier), so each URL gets its breadth-first depth and the set of pages
a crawl keeps does not depend on which response came back first. Within a level, hosts take
turns, and an entry is handed out only when its host has a free slot (see tasks.crawl.politeness).
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urldefrag, urljoin, urlsplit, urlunsplit

from tasks.clean.extract import decode_html, parse_html

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class SiteAlias:
    """Maps a local site's live URL (ephemeral port) to a stable recorded URL (file://), and back.

    The recorded form is what the raw store and the snapshot keep, so a rerun on another port
    still finds its saved pages and produces identical documents.
    """

    live_base: str  # 'http://127.0.0.1:PORT/'
    stable_base: str  # 'file:///usr/share/doc/python3.11/html/'

    def to_live(self, url: str) -> str:
        return self.live_base + url[len(self.stable_base):] if url.startswith(self.stable_base) else url

    def to_stable(self, url: str) -> str:
        return self.stable_base + url[len(self.live_base):] if url.startswith(self.live_base) else url


def _remove_dot_segments(path: str) -> str:
    """'/a/./b/../c' -> '/a/c' (RFC 3986 5.2.4), keeping a trailing slash and empty segments."""
    segments = path.split("/")
    output: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/".join(output) if output[:1] == [""] else "/" + "/".join(output)


def normalize_url(url: str, base: str | None = None) -> str | None:
    """Absolute http(s) URL without fragment, lowercase scheme/host, no default port; else None.

    A malformed URL (an unclosed IPv6 bracket, a bad port) is None, never an error: one typo in one
    page's links must not stop a crawl. Characters outside printable ASCII in the path and query are
    percent-encoded as a browser sends them, so a URL is one line of ASCII wherever it is stored.
    """
    try:
        url = url.strip()
        if base is not None:
            url = urljoin(base, url)
        url, _ = urldefrag(url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            return None
        port = parts.port
        host = parts.hostname.lower()
    except ValueError:  # urllib's "Invalid IPv6 URL", a non-numeric or out-of-range port
        return None
    if not host.isprintable() or any(c in host for c in " /\\"):
        return None
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _encode_unsafe(_remove_dot_segments(parts.path or "/"))
    return urlunsplit((scheme, netloc, path, _encode_unsafe(parts.query), ""))


def _encode_unsafe(part: str) -> str:
    """Percent-encode (UTF-8) what is not printable ASCII; existing escapes and delimiters stay."""
    if part.isascii() and part.isprintable() and " " not in part:
        return part
    return quote(part, safe="".join(chr(c) for c in range(0x21, 0x7F)))


def extract_links(body: bytes, content_type: str | None, page_url: str) -> list[str]:
    """Normalised <a href> targets of an HTML page, in page order; honours <base> and nofollow."""
    import lxml.etree  # here, not at the top: the crawl config imports this module for normalize_url

    try:
        tree = parse_html(decode_html(body, content_type))
    except (ValueError, lxml.etree.ParserError):
        return []
    for meta in tree.iterfind(".//meta[@name]"):
        if meta.get("name", "").lower() == "robots" and "nofollow" in meta.get("content", "").lower():
            return []
    base = tree.find(".//base[@href]")
    base_url = (normalize_url(base.get("href"), page_url) if base is not None else None) or page_url
    links: dict[str, None] = {}
    for anchor in tree.iterfind(".//a[@href]"):
        if "nofollow" in (anchor.get("rel") or "").lower().split():
            continue
        link = normalize_url(anchor.get("href"), base_url)
        if link is not None:
            links[link] = None
    return list(links)


@dataclass
class Scope:
    """Which recorded URLs the crawl may visit."""

    allowed_hosts: frozenset[str]  # hostnames and host:port netlocs
    include: list[re.Pattern[str]]
    exclude: list[re.Pattern[str]]
    site: SiteAlias | None

    def allows(self, url: str) -> bool:
        live = urlsplit(self.site.to_live(url) if self.site else url)
        if live.scheme not in _DEFAULT_PORTS:
            return False
        if live.netloc not in self.allowed_hosts and (live.hostname or "") not in self.allowed_hosts:
            return False
        if self.include and not any(p.search(url) for p in self.include):
            return False
        return not any(p.search(url) for p in self.exclude)


@dataclass(frozen=True, slots=True)
class FrontierEntry:
    """A URL waiting to be visited: a page, or a sitemap (sitemap_level is then not None)."""

    url: str  # recorded form
    depth: int  # links followed from a seed; a redirect target keeps its source's depth
    redirects: tuple[str, ...] = ()  # the redirect chain that led here, oldest first
    sitemap_level: int | None = None  # None for a page; 0 for a listed sitemap, n when nested n indexes deep


class Frontier:
    """Entries by depth, then host; depth d + 1 is handed out once depth d is done."""

    def __init__(self) -> None:
        self._waiting: dict[int, dict[str, deque[FrontierEntry]]] = {}  # depth -> host -> entries, FIFO
        self._active: Counter[int] = Counter()  # entries handed out and not yet done, by depth

    def add(self, entry: FrontierEntry, host: str) -> None:
        """Queue an entry; host is the live netloc its request goes to."""
        self._waiting.setdefault(entry.depth, {}).setdefault(host, deque()).append(entry)

    def __len__(self) -> int:
        return sum(len(q) for hosts in self._waiting.values() for q in hosts.values())

    def empty(self) -> bool:
        """Nothing waiting and nothing handed out."""
        return not self._waiting and not +self._active

    def level(self) -> int | None:
        """The depth being crawled: the lowest with entries waiting or handed out."""
        depths = [*self._waiting, *(+self._active)]
        return min(depths) if depths else None

    def take(self, host_has_slot: Callable[[str], bool]) -> tuple[FrontierEntry, str] | None:
        """The next entry of the current level whose host has a free slot, with its host; else None."""
        level = self.level()
        hosts = self._waiting.get(level) if level is not None else None
        if not hosts:
            return None  # the level's last entries are still in flight
        for host in list(hosts):
            if host_has_slot(host):
                queue = hosts.pop(host)
                entry = queue.popleft()
                if queue:
                    hosts[host] = queue  # back of the line: hosts take turns
                if not hosts:
                    del self._waiting[level]
                self._active[level] += 1
                return entry, host
        return None

    def done(self, entry: FrontierEntry) -> None:
        """An entry handed out by take() is finished."""
        self._active[entry.depth] -= 1
