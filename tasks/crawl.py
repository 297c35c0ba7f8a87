"""A polite concurrent crawler: scope, robots.txt, sitemaps, per-host politeness, retries, a WARC raw store.

Concurrency model
-----------------
crawl() is a plain synchronous function: it runs one asyncio event loop for the whole crawl, so
Prefect tasks and tests call it like any other task. Inside that loop:

- The dispatcher (_Crawler.run) hands frontier entries to worker tasks, one task per URL, and
  is the only code that touches the statistics, the raw store and the frontier, so none of them
  needs a lock. Workers fetch; the dispatcher counts, stores and queues the links they found.
- The frontier (tasks.frontier) is breadth-first with a level barrier: depth d + 1 is handed out
  only once depth d is done, so every URL gets its breadth-first depth and the set of pages kept
  does not depend on which response came back first. Within a level, hosts take turns.
- Per-host slots: at most max_concurrency_per_host URLs of one host are worked on at once.
- Per-host clocks: two request starts to one host are at least delay_seconds apart (robots.txt
  Crawl-delay wins if larger), retries included.
- A global semaphore: at most max_concurrency requests are in flight over all hosts,
  robots.txt fetches included (statistic max_in_flight: the most seen at once).
- The robots cache: robots.txt is fetched once per origin; the first URL of an origin starts the
  fetch as a task and every other URL of it awaits the same task.
- max_pages counts kept pages plus page URLs in flight, so the crawl never keeps more than
  max_pages; a URL that fails frees its place for the next one.
(Classes: tasks.politeness.Politeness and Robots; the HTTP seam is tasks.http.)

A stop request or the end of max_seconds stops new requests at once; the requests in flight end
within their deadline (cut at the budget). Waits (host delays, backoff) notice a stop within 50 ms.

Resume works by replay: every fetch is recorded in the raw store (with the links found on the
page), and a rerun walks the same frontier, taking pages from the store instead of the network.
So a killed crawl restarts without refetching what it saved, and keeps the same pages as an
uninterrupted one. Transient failures (5xx, 429, network errors, deadlines) are not saved, so a
rerun tries those pages again.

Sitemaps (cfg.sitemaps, and the Sitemap: lines of the seeds' robots.txt with use_robots_sitemaps)
are frontier entries at depth 0, and the page URLs they list are depth-0 pages; both obey scope
and robots.txt. A refresh crawl (previous_raw_dir) asks conditionally for every page the previous
crawl kept (tasks.recrawl).

Every failure is counted as pages_failed_<reason> (FAIL_REASONS), and pages_failed is their sum.
A crawl ends when its frontier is empty, max_pages are kept, `stop` is set, or max_seconds pass.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.frontier import Frontier, FrontierEntry, Scope, SiteAlias, extract_links, normalize_url
from tasks.http import RETRY_STATUSES, FetchResult, RetryPolicy, build_client, fetch_with_retries, http_failure_reason
from tasks.local_site import PYTHON_DOCS, PYTHON_DOCS_HINT, serve_directory
from tasks.politeness import MIN_REQUEST_SECONDS, ROBOTS_MAX_REDIRECTS, Politeness, Robots, Stopped
from tasks.recrawl import REFRESH_COUNTS, PreviousCrawl
from tasks.sitemap import ACCEPT_SITEMAP, SITEMAP_CONTENT_TYPES, SitemapError, parse_sitemap
from tasks.warc import FetchRecord, RawStore, WarcRawStore

__all__ = ["FAIL_REASONS", "CrawlConfig", "FetchRecord", "RawStore", "Robots", "WarcRawStore", "crawl",
           "extract_links", "normalize_url", "saved_pages"]

logger = logging.getLogger(__name__)

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
_STORED_OUTCOMES = frozenset({"ok", "redirect", "http_error", "not_html", "too_large", "binary", "undecodable",
                              "sitemap", "sitemap_index"})
_SITEMAP_OUTCOMES = frozenset({"sitemap", "sitemap_index"})


def _http_urls(field: str, urls: list[str]) -> list[str]:
    bad = [u for u in urls if urlsplit(u).scheme not in ("http", "https") or not urlsplit(u).hostname]
    if bad:
        raise ValueError(f"{field} must be absolute http(s) URLs, got {bad}")
    return urls


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
    max_concurrency: int = Field(default=16, ge=1)
    """Requests in flight at once over all hosts (Scrapy's CONCURRENT_REQUESTS), robots.txt included."""
    max_concurrency_per_host: int = Field(default=1, ge=1)
    """URLs of one host worked on at once; their request starts stay delay_seconds apart."""
    sitemaps: list[str] = Field(default=[])
    """Sitemap URLs (XML, sitemap index, .xml.gz or text); the pages they list are crawled at depth 0."""
    use_robots_sitemaps: bool = False
    """Also read the sitemaps named by `Sitemap:` lines in the robots.txt of the seeds' hosts."""
    max_sitemap_depth: int = Field(default=2, ge=0)
    """Sitemap indexes followed at most this many levels deep (0: an index's sitemaps are not read)."""

    @field_validator("seeds")
    @classmethod
    def _seed_urls(cls, seeds: list[str]) -> list[str]:
        return _http_urls("seeds", seeds)

    @field_validator("sitemaps")
    @classmethod
    def _sitemap_urls(cls, sitemaps: list[str]) -> list[str]:
        return _http_urls("sitemaps", sitemaps)

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
# The crawl


def crawl(
    cfg: CrawlConfig, raw_dir: Path, stop: threading.Event | None = None, previous_raw_dir: Path | None = None
) -> dict[str, int]:
    """Crawl breadth-first from cfg's seeds, sitemaps (and local_site) into raw_dir; returns fetch statistics.

    previous_raw_dir: the raw store of an earlier crawl; its pages are asked for conditionally
    and reused on 304 (tasks.recrawl).
    Statistics: pages_fetched (HTML pages kept, new or reused), pages_requested (network requests
    for pages this run, retries included), pages_retried, pages_reused (taken from raw_dir),
    pages_disallowed_robots, pages_not_html, pages_too_large, pages_redirected, pages_failed and
    pages_failed_<reason> for each of FAIL_REASONS, links_out_of_scope, robots_fetched, stopped
    (1 if `stop` ended the crawl), budget_exhausted (1 if max_seconds did), max_in_flight (the
    most requests in flight at once); sitemaps_fetched (parsed, new or reused), sitemaps_requested,
    sitemaps_failed, sitemaps_disallowed_robots, sitemap_urls (page URLs the sitemaps listed); and
    for a refresh, pages_not_modified, pages_unchanged, pages_changed, pages_new, pages_gone.
    """
    stop = stop or threading.Event()
    previous = None
    if previous_raw_dir is not None:
        if Path(previous_raw_dir).resolve() == Path(raw_dir).resolve():
            raise ValueError(f"previous_raw_dir {str(previous_raw_dir)!r} must differ from raw_dir: "
                             "a refresh writes a new raw store")
        previous = PreviousCrawl(Path(previous_raw_dir))
    store = WarcRawStore(raw_dir, cfg.raw_batch_pages)
    if cfg.local_site is None:
        return _run(_Crawler(cfg, store, None, stop, previous).run(cfg.seeds))
    with serve_directory(cfg.local_site) as live_base:
        site = SiteAlias(live_base=live_base, stable_base=cfg.local_site.resolve().as_uri() + "/")
        return _run(_Crawler(cfg, store, site, stop, previous).run([live_base, *cfg.seeds]))


def _run(crawl_run: Coroutine[object, object, dict[str, int]]) -> dict[str, int]:
    """Run the crawl's event loop; from inside a running loop (async caller), in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(crawl_run)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, crawl_run).result()


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
            "robots_fetched", "stopped", "budget_exhausted", "max_in_flight", "sitemaps_fetched",
            "sitemaps_requested", "sitemaps_failed", "sitemaps_disallowed_robots", "sitemap_urls")
    return Counter({k: 0 for k in (*keys, *(f"pages_failed_{r}" for r in FAIL_REASONS), *REFRESH_COUNTS)})


def _fail(counts: Counter[str], reason: str) -> None:
    counts["pages_failed"] += 1
    counts[f"pages_failed_{reason}"] += 1


@dataclass(frozen=True, slots=True)
class _Visit:
    """What a worker brings back for one frontier entry."""

    record: FetchRecord | None = None  # None when nothing was fetched or reused
    reused: bool = False  # taken from the raw store
    attempts: int = 0  # network requests made, retries included
    disallowed: bool = False  # robots.txt said no
    stopped: str | None = None  # 'stopped' | 'budget_exhausted': a wait was cut short, the URL is left for a rerun


class _Crawler:
    """One crawl's state; run() is the dispatcher, _visit() the worker of one URL."""

    def __init__(self, cfg: CrawlConfig, store: RawStore, site: SiteAlias | None, stop: threading.Event,
                 previous: PreviousCrawl | None) -> None:
        self.cfg = cfg
        self.store = store
        self.site = site
        self.stop = stop
        self.previous = previous
        self.started = time.monotonic()
        self.budget = math.inf if cfg.max_seconds is None else cfg.max_seconds
        self.counts = _new_counts()
        self.frontier = Frontier()
        self.seen: set[str] = set()  # page URLs, and sitemap URLs prefixed 'sitemap:'
        self.pages_in_flight = 0  # page entries handed to workers and not yet finished
        self.ending = False  # a stop or the budget ended the crawl: no new requests
        self.previous_queued = previous is None

    def time_left(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def to_live(self, url: str) -> str:
        return self.site.to_live(url) if self.site else url

    def to_recorded(self, url: str) -> str:
        return self.site.to_stable(url) if self.site else url

    async def run(self, live_seeds: list[str]) -> dict[str, int]:
        cfg = self.cfg
        seeds = [u for u in (normalize_url(s) for s in live_seeds) if u]
        sitemaps = [u for u in (normalize_url(s) for s in cfg.sitemaps) if u]
        allowed = cfg.allowed_hosts or [urlsplit(u).netloc for u in (*seeds, *sitemaps)]
        endpoints = []
        if self.site is not None:
            live = urlsplit(self.site.live_base)
            allowed = [*allowed, live.netloc]  # the local site is always in scope
            endpoints.append((live.hostname, live.port))  # loopback allowed for our own server only
        self.scope = Scope(
            allowed_hosts=frozenset(h.lower() for h in allowed),
            include=[re.compile(p) for p in cfg.include_patterns],
            exclude=[re.compile(p) for p in cfg.exclude_patterns],
            site=self.site,
        )
        self.client = build_client(
            user_agent=cfg.user_agent,
            timeout_seconds=cfg.timeout_seconds,
            allow_private_addresses=cfg.allow_private_addresses,
            follow_redirects=False,  # a redirect is a frontier entry, so scope and robots apply to it
            max_redirects=ROBOTS_MAX_REDIRECTS,  # used by robots.txt fetches only
            allowed_endpoints=endpoints,
        )
        self.politeness = Politeness(cfg.max_concurrency, cfg.max_concurrency_per_host, self.stop, self.time_left)
        self.robots = Robots(self.client, cfg.user_agent, self.counts, cfg.request_deadline_seconds,
                             self.time_left, self.politeness.request_slot)
        self.policy = RetryPolicy(cfg.max_retries, cfg.backoff_seconds, cfg.max_backoff_seconds)
        async with self.client:
            for url in seeds:
                self._queue(FrontierEntry(self.to_recorded(url), 0), check_scope=False)
            for url in sitemaps:
                self._queue(FrontierEntry(self.to_recorded(url), 0, sitemap_level=0), check_scope=False)
            if cfg.use_robots_sitemaps:
                for seed in dict.fromkeys(f"{urlsplit(u).scheme}://{urlsplit(u).netloc}/" for u in seeds):
                    for listed in await self.robots.sitemaps(seed):
                        url = normalize_url(listed, seed + "robots.txt")
                        if url is not None:
                            self._queue(FrontierEntry(self.to_recorded(url), 0, sitemap_level=0))
            await self._dispatch_until_done()
        self.store.flush()
        self.counts["max_in_flight"] = self.politeness.max_in_flight
        logger.info("crawl done: %s", {k: v for k, v in self.counts.items() if v})
        return dict(self.counts)

    def _queue(self, entry: FrontierEntry, check_scope: bool = True) -> None:
        key = entry.url if entry.sitemap_level is None else "sitemap:" + entry.url
        if key in self.seen:
            return
        self.seen.add(key)
        if check_scope and not self.scope.allows(entry.url):
            self.counts["links_out_of_scope"] += 1
            return
        self.frontier.add(entry, urlsplit(self.to_live(entry.url)).netloc)

    def _queue_previous_pages(self) -> None:
        """A refresh asks again for every page the previous crawl kept, also those no longer linked."""
        self.previous_queued = True
        for url, page in self.previous.pages.items() if self.previous else ():
            if url not in self.seen and page.depth <= self.cfg.max_depth and self.scope.allows(url):
                self._queue(FrontierEntry(url, page.depth), check_scope=False)

    async def _dispatch_until_done(self) -> None:
        workers: dict[asyncio.Task[_Visit], tuple[FrontierEntry, str]] = {}
        while True:
            self._dispatch(workers)
            if not workers:
                if not self.ending and not self.previous_queued and self.frontier.empty():
                    self._queue_previous_pages()
                    continue
                return
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_COMPLETED)
            for worker in done:
                entry, host = workers.pop(worker)
                self._finish(entry, host, worker.result())

    def _dispatch(self, workers: dict[asyncio.Task[_Visit], tuple[FrontierEntry, str]]) -> None:
        """Hand out entries while hosts have free slots and max_pages leaves room."""
        while not self.ending and len(self.frontier):
            if self.counts["pages_fetched"] + self.pages_in_flight >= self.cfg.max_pages:
                return
            if self.stop.is_set():
                self._end("stopped")
                return
            if self.time_left() < MIN_REQUEST_SECONDS:
                self._end("budget_exhausted")
                return
            taken = self.frontier.take(self.politeness.has_slot)
            if taken is None:
                return
            entry, host = taken
            self.politeness.occupy(host)
            if entry.sitemap_level is None:
                self.pages_in_flight += 1
            workers[asyncio.create_task(self._visit(entry, host))] = (entry, host)

    def _end(self, reason: str) -> None:
        if not self.ending:
            self.counts[reason] = 1
            self.ending = True

    async def _wait(self, seconds: float) -> bool:
        try:
            await self.politeness.sleep(seconds)
        except Stopped:
            return False
        return True

    async def _visit(self, entry: FrontierEntry, host: str) -> _Visit:
        """The worker: robots.txt, then the raw store, then the network (with retries)."""
        cfg = self.cfg
        live_url = self.to_live(entry.url)
        try:
            if cfg.obey_robots and not await self.robots.allowed(live_url):
                return _Visit(disallowed=True)
            saved = self.store.get(entry.url)
            if saved is not None:
                return _Visit(record=saved, reused=True)
            delay = max(cfg.delay_seconds, await self.robots.crawl_delay(live_url) if cfg.obey_robots else 0.0)
            if entry.sitemap_level is None:
                headers = self.previous.conditional_headers(entry.url) if self.previous else None
                options: dict[str, object] = {"headers": headers}
            else:
                options = {"headers": {"Accept": ACCEPT_SITEMAP}, "content_types": SITEMAP_CONTENT_TYPES,
                           "sniff": False}
            fetched_at = datetime.now(UTC)
            result = await fetch_with_retries(
                self.client, live_url, max_bytes=cfg.max_bytes, deadline_seconds=cfg.request_deadline_seconds,
                policy=self.policy, wait=self._wait, time_left=self.time_left,
                turn=lambda: self.politeness.turn(host, delay), **options,
            )
        except Stopped as exc:
            return _Visit(stopped=exc.reason)
        logger.debug("%s %d %s %s", entry.url, result.status, result.outcome, result.reason or "")
        return _Visit(record=self._record(entry, live_url, result, fetched_at), attempts=result.attempts)

    def _record(self, entry: FrontierEntry, live_url: str, result: FetchResult, fetched_at: datetime) -> FetchRecord:
        """The fetch as the raw store keeps it, with its links (recorded form)."""
        record = FetchRecord(
            url=entry.url, depth=entry.depth, status=result.status, outcome=result.outcome,
            content_type=result.content_type, fetched_at=fetched_at, body=result.body, charset=result.charset,
            reason=result.reason, headers=result.headers, truncated=result.truncated,
        )
        if record.outcome == "not_modified":
            kept = self.previous.revalidated(entry.url, entry.depth, datetime.now(UTC)) if self.previous else None
            if kept is None:  # a 304 to a request that was not conditional
                return replace(record, outcome="http_error", reason="http_client_error")
            record = kept
        if record.outcome == "ok" and record.body is not None and entry.sitemap_level is not None:
            return self._sitemap_record(record, live_url)
        if record.outcome == "ok" and record.body is not None:
            links = extract_links(record.body, record.content_type_with_charset, live_url)
            return replace(record, links=[self.to_recorded(link) for link in links])
        if record.outcome == "redirect" and result.location:
            target = normalize_url(result.location, live_url)
            return replace(record, links=[self.to_recorded(target)] if target else [])
        return record

    def _sitemap_record(self, record: FetchRecord, live_url: str) -> FetchRecord:
        try:
            sitemap = parse_sitemap(record.body or b"", self.cfg.max_bytes)
        except SitemapError as exc:
            logger.warning("sitemap %s: %s", record.url, exc)
            if exc.reason == "too_large":
                return replace(record, outcome="too_large", truncated="length")
            return replace(record, outcome="failed", reason="invalid_sitemap")
        links = [u for u in (normalize_url(loc, live_url) for loc in sitemap.locations) if u]
        outcome = "sitemap" if sitemap.kind == "urlset" else "sitemap_index"
        return replace(record, outcome=outcome, links=[self.to_recorded(u) for u in links])

    def _finish(self, entry: FrontierEntry, host: str, visit: _Visit) -> None:
        """Count, store and follow one worker's result (runs in the dispatcher only)."""
        self.frontier.done(entry)
        self.politeness.release(host)
        is_page = entry.sitemap_level is None
        if is_page:
            self.pages_in_flight -= 1
        if visit.stopped is not None:
            self._end(visit.stopped)
            return
        if visit.disallowed:
            self.counts["pages_disallowed_robots" if is_page else "sitemaps_disallowed_robots"] += 1
            return
        record = visit.record
        assert record is not None  # a visit neither stopped nor disallowed has a record
        if visit.reused:
            self.counts["pages_reused"] += is_page
        else:
            self.counts["pages_requested" if is_page else "sitemaps_requested"] += visit.attempts
            if is_page:
                self.counts["pages_retried"] += visit.attempts - 1
            if _store_worthy(record):
                self.store.add(record)
        if is_page:
            self._count_page(record)
        else:
            self._count_sitemap(record)
        entries, failure = _next_entries(self.cfg, entry, record)
        if failure is not None:
            if is_page:
                _fail(self.counts, failure)
            else:
                self.counts["sitemaps_failed"] += 1
        for next_entry in entries:
            self._queue(next_entry)

    def _count_page(self, record: FetchRecord) -> None:
        _count_outcome(record, self.counts)
        if self.previous is not None:
            change = self.previous.change(record)
            if change is not None:
                self.counts[change] += 1
        if record.outcome == "ok" and self.counts["pages_fetched"] % 50 == 0:
            logger.info("crawl: %d pages kept, %d queued, %d in flight", self.counts["pages_fetched"],
                        len(self.frontier), self.politeness.in_flight)

    def _count_sitemap(self, record: FetchRecord) -> None:
        if record.outcome in _SITEMAP_OUTCOMES:
            self.counts["sitemaps_fetched"] += 1
            if record.outcome == "sitemap":
                self.counts["sitemap_urls"] += len(record.links)
        elif record.outcome != "redirect":
            self.counts["sitemaps_failed"] += 1


def _next_entries(cfg: CrawlConfig, entry: FrontierEntry, record: FetchRecord) -> tuple[list[FrontierEntry], str | None]:
    """What a fetch adds to the frontier, and the failure reason of a bad redirect.

    A kept page's links go one level deeper; a sitemap's pages are depth 0; an index's sitemaps one
    sitemap level deeper; a redirect's target replaces the URL at the same depth (if not a loop).
    """
    if record.outcome == "ok":
        if entry.depth >= cfg.max_depth:
            return [], None
        return [FrontierEntry(link, entry.depth + 1) for link in record.links], None
    if record.outcome == "sitemap":
        return [FrontierEntry(link, 0) for link in record.links], None
    if record.outcome == "sitemap_index":
        level = (entry.sitemap_level or 0) + 1
        if level > cfg.max_sitemap_depth:
            logger.warning("sitemap index %s: nested deeper than max_sitemap_depth=%d, not followed",
                           entry.url, cfg.max_sitemap_depth)
            return [], None
        return [FrontierEntry(link, 0, sitemap_level=level) for link in record.links], None
    if record.outcome != "redirect":
        return [], None
    if not record.links:
        return [], "bad_redirect"
    target = record.links[0]
    chain = (*entry.redirects, entry.url)
    if target in chain:
        return [], "redirect_loop"
    if len(chain) > cfg.max_redirects:
        return [], "too_many_redirects"
    return [FrontierEntry(target, entry.depth, chain, entry.sitemap_level)], None


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
