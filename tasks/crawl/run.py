"""A polite concurrent crawler: scope, robots.txt, sitemaps, per-host politeness, retries, a WARC raw store.

Concurrency model
-----------------
crawl() is a plain synchronous function: it runs one asyncio event loop for the whole crawl, so
Prefect tasks and tests call it like any other task. Inside that loop:

- The dispatcher (_Crawler.run) hands frontier entries to worker tasks, one task per URL, and
  is the only code that touches the statistics, the raw store and the frontier, so none of them
  needs a lock. Workers fetch; the dispatcher counts, stores and queues the links they found.
- The frontier (tasks.crawl.frontier) is breadth-first with a level barrier: depth d + 1 is handed out
  only once depth d is done, so every URL gets its breadth-first depth and the set of pages kept
  does not depend on which response came back first. Within a level, hosts take turns.
- Per-host slots: at most max_concurrency_per_host URLs of one host are worked on at once.
- Per-host clocks: two request starts to one host are at least delay_seconds apart (robots.txt
  Crawl-delay wins if larger, up to max_crawl_delay_seconds), retries included.
- A global semaphore: at most max_concurrency requests are in flight over all hosts,
  robots.txt fetches included (statistic max_in_flight: the most seen at once).
- The robots cache: robots.txt is fetched once per origin; the first URL of an origin starts the
  fetch as a task and every other URL of it awaits the same task.
- max_pages counts kept pages plus page URLs in flight, so the crawl never keeps more than
  max_pages; a URL that fails frees its place for the next one.
(Classes: tasks.crawl.politeness.Politeness and Robots; the HTTP seam is tasks.crawl.http.)

A stop request or the end of max_seconds stops new requests at once; the requests in flight end
within their deadline (cut at the budget). Waits (host delays, backoff) notice a stop within 50 ms.

Resume works by replay: every fetch is recorded in the raw store (with the links found on the
page), and a rerun walks the same frontier, taking pages from the store instead of the network.
So a killed crawl restarts without refetching what it saved, and keeps the same pages as an
uninterrupted one. A batch of the store damaged on disk since it was written is removed with a
warning and its pages fetched again (tasks.crawl.warc). Transient failures (5xx, 429, network errors,
deadlines) are not saved, so a rerun tries those pages again.

Sitemaps (cfg.sitemaps, and the Sitemap: lines of the seeds' robots.txt with use_robots_sitemaps)
are frontier entries at depth 0, and the page URLs they list are depth-0 pages; both obey scope
and robots.txt. A refresh crawl (previous_raw_dir) asks conditionally for every page the previous
crawl kept (tasks.crawl.recrawl).

Every failure is counted as pages_failed_<reason> (FAIL_REASONS), and pages_failed is their sum.
A crawl ends when its frontier is empty, max_pages are kept, `stop` is set, or max_seconds pass.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path

from tasks.crawl.config import CrawlConfig
from tasks.crawl.dispatcher import Crawler
from tasks.crawl.frontier import SiteAlias
from tasks.crawl.local_site import serve_directory
from tasks.crawl.recrawl import PreviousCrawl
from tasks.crawl.warc import FetchRecord, WarcRawStore


def crawl(
    cfg: CrawlConfig, raw_dir: Path, stop: threading.Event | None = None, previous_raw_dir: Path | None = None
) -> dict[str, int]:
    """Crawl breadth-first from cfg's seeds, sitemaps (and local_site) into raw_dir; returns fetch statistics.

    previous_raw_dir: the raw store of an earlier crawl; its pages are asked for conditionally
    and reused on 304 (tasks.crawl.recrawl).
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
    store = WarcRawStore(raw_dir, cfg.raw_batch_pages, discard_damaged=True)
    if cfg.local_site is None:
        return _run(Crawler(cfg, store, None, stop, previous).run(cfg.seeds))
    with serve_directory(cfg.local_site) as live_base:
        site = SiteAlias(live_base=live_base, stable_base=cfg.local_site.resolve().as_uri() + "/")
        return _run(Crawler(cfg, store, site, stop, previous).run([live_base, *cfg.seeds]))


def _run(crawl_run: Coroutine[object, object, dict[str, int]]) -> dict[str, int]:
    """Run the crawl's event loop; from inside a running loop (async caller), in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(crawl_run)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, crawl_run).result()


def saved_pages(raw_dir: Path) -> Iterator[FetchRecord]:
    """HTML pages saved in raw_dir by crawl(), in fetch order."""
    store = WarcRawStore(raw_dir, batch_size=1)
    return (r for r in store.records() if r.outcome == "ok" and r.body is not None)
