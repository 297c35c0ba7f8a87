"""A polite breadth-first crawler: scope, robots.txt, per-host delays, retries, a WARC raw store.

Resume works by replay: every fetch is recorded in the raw store (with the links found on the
page), and a rerun walks the same breadth-first order, taking pages from the store instead of the
network. So a killed crawl restarts without refetching what it saved, and ends in the same state
as an uninterrupted one. Transient failures (5xx, 429, network errors, deadlines) are not
saved, so a rerun tries those pages again.

Every failure is counted as pages_failed_<reason> (FAIL_REASONS), and pages_failed is their sum.
A crawl ends when its frontier is empty, max_pages are kept, `stop` is set, or max_seconds pass.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import httpx
import lxml.etree
from protego import Protego
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.extract import decode_html, parse_html
from tasks.http import (
    RETRY_STATUSES,
    BlockedAddressError,
    RetryPolicy,
    build_client,
    fetch_with_retries,
    http_failure_reason,
    read_body,
    request_deadline,
)
from tasks.local_site import PYTHON_DOCS, PYTHON_DOCS_HINT, serve_directory
from tasks.warc import FetchRecord, RawStore, WarcRawStore

__all__ = ["FAIL_REASONS", "CrawlConfig", "FetchRecord", "RawStore", "Robots", "WarcRawStore", "crawl",
           "extract_links", "normalize_url", "saved_pages"]

logger = logging.getLogger(__name__)

ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 2.3.1.2: follow at least five consecutive redirects
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309 2.5: parse at least 500 KiB
_DEFAULT_PORTS = {"http": 80, "https": 443}
# every reason a page can fail for; each is a pages_failed_<reason> statistic
FAIL_REASONS = (
    "http_client_error",  # 4xx other than 408/429
    "http_server_error",  # 5xx, after retries
    "rate_limited",  # 429 after retries, or a Retry-After longer than max_backoff_seconds
    "network_error",  # connection refused or reset, malformed response, after retries
    "timeout",  # connect/read timeout, after retries
    "deadline",  # the response took longer than request_deadline_seconds in total
    "blocked_address",  # the address guard refused a private/loopback/link-local address
    "bad_encoding",  # an unsupported or corrupt Content-Encoding
    "binary",  # binary bytes served as text/html
    "undecodable",  # no charset decodes the body
    "bad_redirect",  # a redirect without a usable http(s) Location
    "redirect_loop",  # a redirect back to a URL earlier in the same redirect chain
    "too_many_redirects",  # a redirect chain longer than max_redirects
)
_STORED_OUTCOMES = frozenset({"ok", "redirect", "http_error", "not_html", "too_large", "binary", "undecodable"})


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
    request_deadline_seconds: float = Field(default=60.0, gt=0.0)
    """Total seconds one response may take (headers and body); a page that drips bytes is cut off."""
    max_retries: int = Field(default=2, ge=0)
    """Retries of a request after a 408/429/5xx answer, a timeout or a network error (Scrapy's RETRY_TIMES)."""
    backoff_seconds: float = Field(default=1.0, ge=0.0)
    """Wait before the first retry; it doubles with each retry (a Retry-After header can ask for more)."""
    max_backoff_seconds: float = Field(default=60.0, ge=0.0)
    """Longest single wait before a retry; a Retry-After asking for longer gives the page up."""
    max_redirects: int = Field(default=20, ge=0)
    """Redirects followed from one link (WHATWG Fetch stops at 20); loops are cut at once."""
    max_seconds: float | None = Field(default=None, gt=0.0)
    """Time budget of the whole crawl in seconds; None = no limit. Waits and requests are cut at it."""
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

    def __init__(
        self,
        client: httpx.Client,
        user_agent: str,
        counts: Counter[str],
        deadline_seconds: float | None = None,
        time_left: Callable[[], float] = lambda: math.inf,
    ) -> None:
        self.client = client
        self.user_agent = user_agent
        self.counts = counts
        self.deadline_seconds = deadline_seconds  # total seconds for one robots.txt response
        self.time_left = time_left  # the crawl's remaining budget, which no fetch outlasts
        self._parsers: dict[str, Protego] = {}

    def _load(self, origin: str) -> Protego:
        self.counts["robots_fetched"] += 1
        seconds = min(self.deadline_seconds or math.inf, self.time_left())
        deadline = None if math.isinf(seconds) else time.monotonic() + seconds
        try:
            with request_deadline(deadline), \
                    self.client.stream("GET", origin + "/robots.txt", follow_redirects=True) as response:
                body, _ = read_body(response, ROBOTS_MAX_BYTES, deadline)  # longer files are cut, not refused
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

    def wait(self, host: str, delay: float, time_left: float = math.inf) -> bool:
        """Wait until host may be asked again; False (without waiting) if that is more than time_left."""
        last = self._last.get(host)
        if last is not None:
            remaining = last + delay - time.monotonic()
            if remaining >= time_left:
                return False
            if remaining > 0:
                self.stop.wait(remaining)  # returns early when a stop is requested
        self._last[host] = time.monotonic()
        return True


# ---------------------------------------------------------------------------------------------
# The crawl


def crawl(cfg: CrawlConfig, raw_dir: Path, stop: threading.Event | None = None) -> dict[str, int]:
    """Crawl breadth-first from cfg's seeds (and local_site) into raw_dir; returns fetch statistics.

    Statistics: pages_fetched (HTML pages kept, new or reused), pages_requested (network requests
    for pages this run, retries included), pages_retried, pages_reused (taken from raw_dir),
    pages_disallowed_robots, pages_not_html, pages_too_large, pages_redirected, pages_failed and
    pages_failed_<reason> for each of FAIL_REASONS, links_out_of_scope, robots_fetched, stopped
    (1 if `stop` ended the crawl), budget_exhausted (1 if max_seconds did).
    """
    stop = stop or threading.Event()
    store = WarcRawStore(raw_dir, cfg.raw_batch_pages)
    if cfg.local_site is None:
        return _crawl(cfg, store, cfg.seeds, site=None, stop=stop)
    with serve_directory(cfg.local_site) as live_base:
        site = SiteAlias(live_base=live_base, stable_base=cfg.local_site.resolve().as_uri() + "/")
        return _crawl(cfg, store, [live_base, *cfg.seeds], site=site, stop=stop)


def _store_worthy(record: FetchRecord) -> bool:
    """Deterministic outcomes are saved; transient ones (5xx, 408, 429, network) are retried next run."""
    if record.outcome == "http_error":
        return record.status < 500 and record.status not in RETRY_STATUSES
    if record.outcome == "failed":
        return record.reason == "bad_encoding"  # the same bytes would come back
    return record.outcome in _STORED_OUTCOMES


def _new_counts() -> Counter[str]:
    keys = ("pages_fetched", "pages_requested", "pages_retried", "pages_reused", "pages_disallowed_robots",
            "pages_failed", "pages_not_html", "pages_too_large", "pages_redirected", "links_out_of_scope",
            "robots_fetched", "stopped", "budget_exhausted")
    return Counter({k: 0 for k in (*keys, *(f"pages_failed_{r}" for r in FAIL_REASONS))})


def _fail(counts: Counter[str], reason: str) -> None:
    counts["pages_failed"] += 1
    counts[f"pages_failed_{reason}"] += 1


@dataclass(frozen=True, slots=True)
class _FrontierEntry:
    url: str  # recorded form
    depth: int
    redirects: tuple[str, ...] = ()  # the redirect chain that led here, oldest first


def _crawl(
    cfg: CrawlConfig, store: RawStore, live_seeds: list[str], site: SiteAlias | None, stop: threading.Event
) -> dict[str, int]:
    started = time.monotonic()
    budget = math.inf if cfg.max_seconds is None else cfg.max_seconds

    def time_left() -> float:
        return budget - (time.monotonic() - started)

    counts = _new_counts()
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
    robots = Robots(client, cfg.user_agent, counts, cfg.request_deadline_seconds, time_left)
    clock = HostClock(stop)
    policy = RetryPolicy(cfg.max_retries, cfg.backoff_seconds, cfg.max_backoff_seconds)
    queue: deque[_FrontierEntry] = deque(_FrontierEntry(to_recorded(s), 0) for s in dict.fromkeys(seeds))
    seen = {entry.url for entry in queue}
    with client:
        while queue and counts["pages_fetched"] < cfg.max_pages:
            if stop.is_set():
                counts["stopped"] = 1
                break
            if time_left() <= 0:
                counts["budget_exhausted"] = 1
                break
            entry = queue.popleft()
            live_url = to_live(entry.url)
            if cfg.obey_robots and not robots.allowed(live_url):
                counts["pages_disallowed_robots"] += 1
                continue
            record = store.get(entry.url)
            if record is not None:
                counts["pages_reused"] += 1
            else:
                delay = max(cfg.delay_seconds, robots.crawl_delay(live_url) if cfg.obey_robots else 0.0)
                if not clock.wait(urlsplit(live_url).netloc, delay, time_left()):
                    counts["budget_exhausted"] = 1  # the host's delay outlasts the budget
                    break
                record = _fetch(client, cfg, policy, delay, stop, time_left, entry, live_url, to_recorded, counts)
                if _store_worthy(record):
                    store.add(record)
            _count_outcome(record, counts)
            for link, next_entry in _next_entries(cfg, entry, record, counts):
                if link in seen:
                    continue
                seen.add(link)
                if scope.allows(link):
                    queue.append(next_entry)
                else:
                    counts["links_out_of_scope"] += 1
            if counts["pages_fetched"] % 50 == 0 and record.outcome == "ok":
                logger.info("crawl: %d pages kept, %d queued", counts["pages_fetched"], len(queue))
    store.flush()
    logger.info("crawl done: %s", {k: v for k, v in counts.items() if v})
    return dict(counts)


def _next_entries(
    cfg: CrawlConfig, entry: _FrontierEntry, record: FetchRecord, counts: Counter[str]
) -> list[tuple[str, _FrontierEntry]]:
    """Links of a kept page one level deeper, or a redirect's target at the same depth (if not a loop)."""
    if record.outcome == "ok":
        if entry.depth >= cfg.max_depth:
            return []
        return [(link, _FrontierEntry(link, entry.depth + 1)) for link in record.links]
    if record.outcome != "redirect":
        return []
    if not record.links:
        _fail(counts, "bad_redirect")
        return []
    target = record.links[0]
    chain = (*entry.redirects, entry.url)
    if target in chain:
        _fail(counts, "redirect_loop")
        return []
    if len(chain) > cfg.max_redirects:
        _fail(counts, "too_many_redirects")
        return []
    return [(target, _FrontierEntry(target, entry.depth, chain))]  # the target replaces the page


def _fetch(
    client: httpx.Client,
    cfg: CrawlConfig,
    policy: RetryPolicy,
    host_delay: float,
    stop: threading.Event,
    time_left: Callable[[], float],
    entry: _FrontierEntry,
    live_url: str,
    to_recorded: Callable[[str], str],
    counts: Counter[str],
) -> FetchRecord:
    """Fetch one URL with retries (the host delay already waited); a failure is a record with its reason."""

    def wait(seconds: float) -> bool:  # a retry is still a request to the host: keep its delay
        seconds = max(seconds, host_delay)
        return seconds < time_left() and not stop.wait(seconds)

    fetched_at = datetime.now(UTC)
    result = fetch_with_retries(
        client, live_url, max_bytes=cfg.max_bytes, deadline_seconds=cfg.request_deadline_seconds,
        policy=policy, wait=wait, time_left=time_left,
    )
    counts["pages_requested"] += result.attempts
    counts["pages_retried"] += result.attempts - 1
    record = FetchRecord(
        url=entry.url, depth=entry.depth, status=result.status, outcome=result.outcome,
        content_type=result.content_type, fetched_at=fetched_at, body=result.body, charset=result.charset,
        reason=result.reason, headers=result.headers, truncated=result.truncated,
    )
    logger.debug("%s %d %s %s", entry.url, result.status, result.outcome, result.reason or "")
    if record.outcome == "ok" and record.body is not None:
        links = extract_links(record.body, record.content_type_with_charset, live_url)
        return replace(record, links=[to_recorded(link) for link in links])
    if record.outcome == "redirect" and result.location:
        target = normalize_url(result.location, live_url)
        return replace(record, links=[to_recorded(target)] if target else [])
    return record


_OUTCOME_COUNTS = {"ok": "pages_fetched", "redirect": "pages_redirected", "not_html": "pages_not_html",
                   "too_large": "pages_too_large"}


def _count_outcome(record: FetchRecord, counts: Counter[str]) -> None:
    if record.outcome in _OUTCOME_COUNTS:
        counts[_OUTCOME_COUNTS[record.outcome]] += 1
    elif record.outcome == "http_error":
        _fail(counts, record.reason or http_failure_reason(record.status))
    else:  # binary, undecodable, failed
        _fail(counts, record.reason or record.outcome)


def saved_pages(raw_dir: Path) -> Iterator[FetchRecord]:
    """HTML pages saved in raw_dir by crawl(), in fetch order."""
    store = WarcRawStore(raw_dir, batch_size=1)
    return (r for r in store.records() if r.outcome == "ok" and r.body is not None)
