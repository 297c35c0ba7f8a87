"""The crawl's dispatcher and workers: one event loop, one worker task per URL (tasks.crawl.run starts it).

The dispatcher (Crawler.run) is the only code that touches the statistics, the raw store and the
frontier; workers (Crawler._visit) wait for robots.txt, politeness and the network, and bring a
record back. So nothing here needs a lock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

from tasks.crawl.config import CrawlConfig
from tasks.crawl.frontier import Frontier, FrontierEntry, Scope, SiteAlias, extract_links, normalize_url
from tasks.crawl.http import (
    RETRY_STATUSES,
    FetchResult,
    RetryPolicy,
    build_client,
    fetch_with_retries,
    http_failure_reason,
)
from tasks.crawl.politeness import MIN_REQUEST_SECONDS, ROBOTS_MAX_REDIRECTS, Politeness, Robots, Stopped
from tasks.crawl.recrawl import REFRESH_COUNTS, PreviousCrawl
from tasks.crawl.sitemap import ACCEPT_SITEMAP, SITEMAP_CONTENT_TYPES, SitemapError, parse_sitemap
from tasks.crawl.warc import FetchRecord, RawStore

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
    "invalid_url",  # a host that cannot be encoded for DNS (IDNA), e.g. 'a..b.com'
)
_STORED_OUTCOMES = frozenset({"ok", "redirect", "http_error", "not_html", "too_large", "binary", "undecodable",
                              "sitemap", "sitemap_index"})
_SITEMAP_OUTCOMES = frozenset({"sitemap", "sitemap_index"})


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


class Crawler:
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
        self.capped_delays: set[str] = set()  # hosts whose Crawl-delay was capped (warned once each)

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
        try:
            await self._crawl(seeds, sitemaps)
        finally:  # also on an error or a cancel: what was fetched is kept whole
            self.store.flush()
        self.counts["max_in_flight"] = self.politeness.max_in_flight
        logger.info("crawl done: %s", {k: v for k, v in self.counts.items() if v})
        return dict(self.counts)

    async def _crawl(self, seeds: list[str], sitemaps: list[str]) -> None:
        cfg = self.cfg
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
            delay = max(cfg.delay_seconds, await self._crawl_delay(live_url, host) if cfg.obey_robots else 0.0)
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

    async def _crawl_delay(self, live_url: str, host: str) -> float:
        """robots.txt's Crawl-delay for this host in seconds, capped at max_crawl_delay_seconds."""
        asked, cap = await self.robots.crawl_delay(live_url), self.cfg.max_crawl_delay_seconds
        if asked > cap and host not in self.capped_delays:
            self.capped_delays.add(host)
            logger.warning("robots.txt of %s asks for Crawl-delay %g s: waiting max_crawl_delay_seconds=%g s",
                           host, asked, cap)
        return min(asked, cap)

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
                return replace(record, outcome="too_large", truncated="length", body=None)
            return replace(record, outcome="failed", reason="invalid_sitemap")
        recorded = {loc: self.to_recorded(url) for loc in sitemap.locations if (url := normalize_url(loc, live_url))}
        lastmods = tuple((recorded[loc], modified) for loc, modified in sitemap.lastmod.items() if loc in recorded)
        outcome = "sitemap" if sitemap.kind == "urlset" else "sitemap_index"
        return replace(record, outcome=outcome, links=list(dict.fromkeys(recorded.values())), lastmods=lastmods)

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


def _next_entries(
    cfg: CrawlConfig, entry: FrontierEntry, record: FetchRecord
) -> tuple[list[FrontierEntry], str | None]:
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
