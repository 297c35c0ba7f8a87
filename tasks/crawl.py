"""A polite breadth-first crawler: scope, robots.txt, per-host delays, resumable raw store.

Resume works by replay: every fetch is recorded in the raw store (with the links found on the
page), and a rerun walks the same breadth-first order, taking pages from the store instead of the
network. So a killed crawl restarts without refetching what it saved, and ends in the same state
as an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import httpx
import lxml.etree
import pyarrow as pa
import pyarrow.parquet as pq
from protego import Protego
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.extract import decode_html, parse_html
from tasks.http import BlockedAddressError, build_client, fetch
from tasks.local_site import PYTHON_DOCS, PYTHON_DOCS_HINT, serve_directory

logger = logging.getLogger(__name__)

ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 2.3.1.2: follow at least five consecutive redirects
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309 2.5: parse at least 500 KiB
_DEFAULT_PORTS = {"http": 80, "https": 443}


class CrawlConfig(BaseModel):
    """What to crawl and how politely."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    seeds: list[str] = Field(default=[])
    """Start URLs (http or https)."""
    local_site: Path | None = None
    """A folder served on 127.0.0.1 during the crawl; its root page is a seed (e.g. the Python docs)."""
    allowed_hosts: list[str] = Field(default=[])
    """Hosts ('example.org' or 'example.org:8080') the crawl may visit; empty = the seeds' hosts."""
    include_patterns: list[str] = Field(default=[])
    """Regexes; if any are given, a URL must match one of them (re.search) to be crawled."""
    exclude_patterns: list[str] = Field(default=[])
    """Regexes; a URL matching any of them is not crawled."""
    max_pages: int = Field(default=1000, ge=1)
    """Stop after this many HTML pages have been kept."""
    max_depth: int = Field(default=10, ge=0)
    """Links followed from a seed at most this many times (seeds are depth 0)."""
    delay_seconds: float = Field(default=1.0, ge=0.0)
    """Minimum seconds between two requests to the same host (robots.txt Crawl-delay wins if larger)."""
    user_agent: str = Field(default="pretrainflow-crawler/0.1", min_length=1)
    """User-Agent header; its product token (before '/') is matched against robots.txt groups."""
    timeout_seconds: float = Field(default=30.0, gt=0.0)
    """Connect, read and write timeout of every request, in seconds."""
    max_bytes: int = Field(default=5_000_000, gt=0)
    """Largest response body kept, in bytes after decompression; larger pages are skipped."""
    obey_robots: bool = True
    """Fetch robots.txt once per host and skip disallowed URLs."""
    allow_private_addresses: bool = False
    """Allow connections to private, loopback and link-local addresses (never needed for local_site)."""
    raw_batch_pages: int = Field(default=50, ge=1)
    """Fetches per raw-store batch file; a killed crawl refetches at most this many."""

    @field_validator("seeds")
    @classmethod
    def _http_urls(cls, seeds: list[str]) -> list[str]:
        bad = [s for s in seeds if urlsplit(s).scheme not in ("http", "https") or not urlsplit(s).hostname]
        if bad:
            raise ValueError(f"seeds must be absolute http(s) URLs, got {bad}")
        return seeds

    @field_validator("include_patterns", "exclude_patterns")
    @classmethod
    def _regexes(cls, patterns: list[str]) -> list[str]:
        problems = []
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(f"{pattern!r} ({exc})")
        if problems:
            raise ValueError(f"invalid regular expressions: {'; '.join(problems)}")
        return patterns

    @field_validator("local_site")
    @classmethod
    def _site_folder(cls, site: Path | None) -> Path | None:
        if site is None:
            return None
        if not (site / "index.html").is_file():
            raise ValueError(
                f"local_site {str(site)!r} must be an existing folder with an index.html "
                f"(for the Python docs at {PYTHON_DOCS}: {PYTHON_DOCS_HINT})"
            )
        return site


# ---------------------------------------------------------------------------------------------
# Raw store: every fetch attempt worth remembering, so a rerun does not refetch it.
# A later issue replaces the Parquet batches with WARC files behind the same interface.


@dataclass(frozen=True, slots=True)
class FetchRecord:
    """One fetch as the crawler saw it; url is in recorded form (see SiteAlias)."""

    url: str
    depth: int
    status: int
    outcome: str  # ok | redirect | http_error | not_html | too_large
    content_type: str | None
    fetched_at: datetime
    body: bytes | None  # only for outcome == "ok"
    links: list[str] = field(default_factory=list)  # normalised, recorded form, in page order


class RawStore(Protocol):
    """Where the crawler keeps fetches; get() answers from earlier runs too."""

    def get(self, url: str) -> FetchRecord | None: ...
    def add(self, record: FetchRecord) -> None: ...
    def flush(self) -> None: ...
    def records(self) -> Iterator[FetchRecord]: ...


_RAW_SCHEMA = pa.schema([
    ("url", pa.string()),
    ("depth", pa.int32()),
    ("status", pa.int32()),
    ("outcome", pa.string()),
    ("content_type", pa.string()),
    ("fetched_at", pa.timestamp("us", tz="UTC")),
    ("body", pa.binary()),
    ("links", pa.list_(pa.string())),
])


class ParquetRawStore:
    """Raw store as batches raw_dir/fetches-NNNNN.parquet, each written atomically (tmp + rename)."""

    def __init__(self, raw_dir: Path, batch_size: int) -> None:
        self.raw_dir = Path(raw_dir)
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self._records: dict[str, FetchRecord] = {}  # every record, insertion order = fetch order
        self._pending: list[FetchRecord] = []
        batches = sorted(self.raw_dir.glob("fetches-*.parquet"))
        for path in batches:
            for row in pq.read_table(path, schema=_RAW_SCHEMA).to_pylist():
                self._records[row["url"]] = FetchRecord(**row)
        self._next_batch = int(batches[-1].stem.split("-")[1]) + 1 if batches else 0
        if batches:
            logger.info("raw store %s: %d fetches from %d batches", raw_dir, len(self._records), len(batches))

    def get(self, url: str) -> FetchRecord | None:
        return self._records.get(url)

    def add(self, record: FetchRecord) -> None:
        self._records[record.url] = record
        self._pending.append(record)
        if len(self._pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Write pending records as the next batch file."""
        if not self._pending:
            return
        rows = [{f: getattr(r, f) for f in _RAW_SCHEMA.names} for r in self._pending]
        final = self.raw_dir / f"fetches-{self._next_batch:05d}.parquet"
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(rows, schema=_RAW_SCHEMA), tmp, compression="zstd")
        os.replace(tmp, final)
        self._next_batch += 1
        self._pending.clear()

    def records(self) -> Iterator[FetchRecord]:
        return iter(list(self._records.values()))


# ---------------------------------------------------------------------------------------------
# URLs and scope


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
    """Absolute http(s) URL without fragment, lowercase scheme/host, no default port; else None."""
    url = url.strip()
    if base is not None:
        url = urljoin(base, url)
    url, _ = urldefrag(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:  # a non-numeric port
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _remove_dot_segments(parts.path or "/")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def extract_links(body: bytes, content_type: str | None, page_url: str) -> list[str]:
    """Normalised <a href> targets of an HTML page, in page order; honours <base> and nofollow."""
    try:
        tree = parse_html(decode_html(body, content_type))
    except (ValueError, lxml.etree.ParserError):
        return []
    for meta in tree.iterfind(".//meta[@name]"):
        if meta.get("name", "").lower() == "robots" and "nofollow" in meta.get("content", "").lower():
            return []
    base = tree.find(".//base[@href]")
    base_url = urljoin(page_url, base.get("href")) if base is not None else page_url
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


# ---------------------------------------------------------------------------------------------
# robots.txt and politeness


_ALLOW_ALL = Protego.parse("")
_DISALLOW_ALL = Protego.parse("User-agent: *\nDisallow: /\n")


class Robots:
    """robots.txt per origin, fetched once per crawl; RFC 9309 rules and status handling (protego)."""

    def __init__(self, client: httpx.Client, user_agent: str, counts: Counter[str]) -> None:
        self.client = client
        self.user_agent = user_agent
        self.counts = counts
        self._parsers: dict[str, Protego] = {}

    def _load(self, origin: str) -> Protego:
        self.counts["robots_fetched"] += 1
        try:
            with self.client.stream("GET", origin + "/robots.txt", follow_redirects=True) as response:
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) >= ROBOTS_MAX_BYTES:
                        break
                status = response.status_code
        except BlockedAddressError:  # the page fetches will be refused too, and counted as failed
            return _ALLOW_ALL
        except httpx.HTTPError as exc:  # unreachable: assume complete disallow (RFC 9309 2.3.1.4)
            logger.warning("robots.txt of %s unreachable (%s): not crawling this host", origin, exc)
            return _DISALLOW_ALL
        if 200 <= status < 300:
            return Protego.parse(body[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace"))
        if 400 <= status < 500:  # unavailable: crawl anything (RFC 9309 2.3.1.3)
            return _ALLOW_ALL
        logger.warning("robots.txt of %s answered %d: not crawling this host", origin, status)
        return _DISALLOW_ALL

    def parser(self, live_url: str) -> Protego:
        parts = urlsplit(live_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._parsers:
            self._parsers[origin] = self._load(origin)
        return self._parsers[origin]

    def allowed(self, live_url: str) -> bool:
        return self.parser(live_url).can_fetch(live_url, self.user_agent)

    def crawl_delay(self, live_url: str) -> float:
        """Crawl-delay in seconds for our user agent, 0 if none."""
        delay = self.parser(live_url).crawl_delay(self.user_agent)
        return float(delay) if delay is not None else 0.0


class HostClock:
    """Makes sure two requests to one host are at least `delay` seconds apart."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._last: dict[str, float] = {}

    def wait(self, host: str, delay: float) -> None:
        last = self._last.get(host)
        if last is not None:
            remaining = last + delay - time.monotonic()
            if remaining > 0:
                self.stop.wait(remaining)  # returns early when a stop is requested
        self._last[host] = time.monotonic()


# ---------------------------------------------------------------------------------------------
# The crawl


def _store_worthy(result_outcome: str, status: int) -> bool:
    """Deterministic outcomes are saved; 5xx answers are transient and retried on the next run."""
    return result_outcome != "http_error" or status < 500


def crawl(cfg: CrawlConfig, raw_dir: Path, stop: threading.Event | None = None) -> dict[str, int]:
    """Crawl breadth-first from cfg's seeds (and local_site) into raw_dir; returns fetch statistics.

    Statistics: pages_fetched (HTML pages kept, new or reused), pages_requested (network fetches this
    run), pages_reused (taken from raw_dir), pages_disallowed_robots, pages_failed, pages_not_html,
    pages_too_large, pages_redirected, links_out_of_scope, robots_fetched, stopped.
    """
    stop = stop or threading.Event()
    store = ParquetRawStore(raw_dir, cfg.raw_batch_pages)
    if cfg.local_site is None:
        return _crawl(cfg, store, cfg.seeds, site=None, stop=stop)
    with serve_directory(cfg.local_site) as live_base:
        site = SiteAlias(live_base=live_base, stable_base=cfg.local_site.resolve().as_uri() + "/")
        return _crawl(cfg, store, [live_base, *cfg.seeds], site=site, stop=stop)


def _crawl(
    cfg: CrawlConfig, store: RawStore, live_seeds: list[str], site: SiteAlias | None, stop: threading.Event
) -> dict[str, int]:
    counts: Counter[str] = Counter({k: 0 for k in (
        "pages_fetched", "pages_requested", "pages_reused", "pages_disallowed_robots", "pages_failed",
        "pages_not_html", "pages_too_large", "pages_redirected", "links_out_of_scope", "robots_fetched",
        "stopped")})
    seeds = [normalize_url(s) for s in live_seeds]
    allowed = cfg.allowed_hosts or [urlsplit(s).netloc for s in seeds]
    if site is not None:
        allowed = [*allowed, urlsplit(site.live_base).netloc]  # the local site is always in scope
    scope = Scope(
        allowed_hosts=frozenset(h.lower() for h in allowed),
        include=[re.compile(p) for p in cfg.include_patterns],
        exclude=[re.compile(p) for p in cfg.exclude_patterns],
        site=site,
    )
    to_recorded = site.to_stable if site else (lambda u: u)
    to_live = site.to_live if site else (lambda u: u)
    endpoints = []
    if site is not None:
        live = urlsplit(site.live_base)
        endpoints.append((live.hostname, live.port))  # loopback allowed for our own server only
    client = build_client(
        user_agent=cfg.user_agent,
        timeout_seconds=cfg.timeout_seconds,
        allow_private_addresses=cfg.allow_private_addresses,
        follow_redirects=False,  # a redirect is a frontier entry, so scope and robots apply to it
        max_redirects=ROBOTS_MAX_REDIRECTS,  # used by robots.txt fetches only
        allowed_endpoints=endpoints,
    )
    robots = Robots(client, cfg.user_agent, counts)
    clock = HostClock(stop)
    queue: deque[tuple[str, int]] = deque((to_recorded(s), 0) for s in dict.fromkeys(seeds))
    seen = {url for url, _ in queue}
    with client:
        while queue and counts["pages_fetched"] < cfg.max_pages:
            if stop.is_set():
                counts["stopped"] = 1
                break
            url, depth = queue.popleft()
            live_url = to_live(url)
            if cfg.obey_robots and not robots.allowed(live_url):
                counts["pages_disallowed_robots"] += 1
                continue
            record = store.get(url)
            if record is not None:
                counts["pages_reused"] += 1
            else:
                record = _fetch(client, cfg, robots, clock, url, live_url, depth, to_recorded, counts)
                if record is None:
                    continue
                if _store_worthy(record.outcome, record.status):
                    store.add(record)
            _count_outcome(record, counts)
            if record.outcome == "redirect":
                next_depth = depth  # the target replaces the page, it is not one link further
            elif record.outcome == "ok" and depth < cfg.max_depth:
                next_depth = depth + 1
            else:
                continue
            for link in record.links:
                if link in seen:
                    continue
                seen.add(link)
                if scope.allows(link):
                    queue.append((link, next_depth))
                else:
                    counts["links_out_of_scope"] += 1
            if counts["pages_fetched"] % 50 == 0 and record.outcome == "ok":
                logger.info("crawl: %d pages kept, %d queued", counts["pages_fetched"], len(queue))
    store.flush()
    logger.info("crawl done: %s", dict(counts))
    return dict(counts)


def _fetch(
    client: httpx.Client,
    cfg: CrawlConfig,
    robots: Robots,
    clock: HostClock,
    url: str,
    live_url: str,
    depth: int,
    to_recorded: Callable[[str], str],
    counts: Counter[str],
) -> FetchRecord | None:
    """Fetch one URL politely; None on a network error (counted as failed, retried next run)."""
    delay = max(cfg.delay_seconds, robots.crawl_delay(live_url) if cfg.obey_robots else 0.0)
    clock.wait(urlsplit(live_url).netloc, delay)
    counts["pages_requested"] += 1
    fetched_at = datetime.now(UTC)
    try:
        result = fetch(client, live_url, max_bytes=cfg.max_bytes)
    except BlockedAddressError as exc:
        logger.warning("blocked %s: %s", url, exc)
        counts["pages_failed"] += 1
        return None
    except httpx.HTTPError as exc:
        logger.warning("fetch failed for %s: %s: %s", url, type(exc).__name__, exc)
        counts["pages_failed"] += 1
        return None
    links: list[str] = []
    if result.outcome == "ok" and result.body is not None:
        links = [to_recorded(link) for link in extract_links(result.body, result.content_type, live_url)]
    elif result.outcome == "redirect" and result.location:
        target = normalize_url(result.location, live_url)
        links = [to_recorded(target)] if target else []
    logger.debug("%s %d %s", url, result.status, result.outcome)
    return FetchRecord(url=url, depth=depth, status=result.status, outcome=result.outcome,
                       content_type=result.content_type, fetched_at=fetched_at, body=result.body, links=links)


def _count_outcome(record: FetchRecord, counts: Counter[str]) -> None:
    key = {"ok": "pages_fetched", "redirect": "pages_redirected", "http_error": "pages_failed",
           "not_html": "pages_not_html", "too_large": "pages_too_large"}[record.outcome]
    counts[key] += 1


def saved_pages(raw_dir: Path) -> Iterator[FetchRecord]:
    """HTML pages saved in raw_dir by crawl(), in fetch order."""
    store = ParquetRawStore(raw_dir, batch_size=1)
    return (r for r in store.records() if r.outcome == "ok" and r.body is not None)
