"""Politeness for the async crawler: robots.txt once per origin, per-host slots and clocks, a global limit.

All of it lives in one event loop, so plain counters and dicts need no locks: only code between
two `await`s runs at a time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext
from urllib.parse import urlsplit

import httpx
from protego import Protego

from tasks.crawl.http import BlockedAddressError, read_body

logger = logging.getLogger(__name__)

ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 2.3.1.2: follow at least five consecutive redirects
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309 2.5: parse at least 500 KiB
STOP_POLL_SECONDS = 0.05  # a wait notices a stop request within this long
MIN_REQUEST_SECONDS = 0.01  # no request starts with less of the time budget left: it could not finish

_ALLOW_ALL = Protego.parse("")
_DISALLOW_ALL = Protego.parse("User-agent: *\nDisallow: /\n")


class Stopped(Exception):  # noqa: N818 (a signal, not an error)
    """A wait was cut short: reason 'stopped' (a stop request) or 'budget_exhausted' (max_seconds)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _origin(live_url: str) -> str:
    parts = urlsplit(live_url)
    return f"{parts.scheme}://{parts.netloc}"


class Robots:
    """robots.txt per origin, fetched once per crawl; RFC 9309 rules and status handling (protego).

    The first URL of an origin starts the fetch as a task; every later URL awaits that same task,
    so concurrent workers never fetch robots.txt twice.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        user_agent: str,
        counts: Counter[str],
        deadline_seconds: float | None = None,
        time_left: Callable[[], float] = lambda: math.inf,
        request_slot: Callable[[], AbstractAsyncContextManager[object]] = nullcontext,
    ) -> None:
        self.client = client
        self.user_agent = user_agent
        self.counts = counts
        self.deadline_seconds = deadline_seconds  # total seconds for one robots.txt response
        self.time_left = time_left  # the crawl's remaining budget, which no fetch outlasts
        self.request_slot = request_slot  # the global concurrency limit
        self._parsers: dict[str, asyncio.Task[Protego]] = {}

    async def _load(self, origin: str) -> Protego:
        self.counts["robots_fetched"] += 1
        seconds = min(self.deadline_seconds or math.inf, self.time_left())
        try:
            async with self.request_slot(), asyncio.timeout(None if math.isinf(seconds) else seconds), \
                    self.client.stream("GET", origin + "/robots.txt", follow_redirects=True) as response:
                body, _ = await read_body(response, ROBOTS_MAX_BYTES)  # longer files are cut, not refused
                status = response.status_code
        except (BlockedAddressError, httpx.InvalidURL, UnicodeError):  # the page fetches fail too, and are counted
            return _ALLOW_ALL
        except (httpx.HTTPError, TimeoutError) as exc:  # unreachable: assume complete disallow (RFC 9309 2.3.1.4)
            logger.warning("robots.txt of %s unreachable (%r): not crawling this host", origin, exc)
            return _DISALLOW_ALL
        if 200 <= status < 300:
            # utf-8-sig: a byte-order mark kept as U+FEFF would hide the first User-agent line
            return Protego.parse(body[:ROBOTS_MAX_BYTES].decode("utf-8-sig", errors="replace"))
        if 400 <= status < 500:  # unavailable: crawl anything (RFC 9309 2.3.1.3)
            return _ALLOW_ALL
        logger.warning("robots.txt of %s answered %d: not crawling this host", origin, status)
        return _DISALLOW_ALL

    async def parser(self, live_url: str) -> Protego:
        """The parsed robots.txt of live_url's origin."""
        origin = _origin(live_url)
        if origin not in self._parsers:
            self._parsers[origin] = asyncio.ensure_future(self._load(origin))
        return await asyncio.shield(self._parsers[origin])  # one cancelled waiter must not cancel the fetch

    async def allowed(self, live_url: str) -> bool:
        return (await self.parser(live_url)).can_fetch(live_url, self.user_agent)

    async def crawl_delay(self, live_url: str) -> float:
        """Crawl-delay in seconds for our user agent, 0 if none."""
        delay = (await self.parser(live_url)).crawl_delay(self.user_agent)
        return float(delay) if delay is not None else 0.0

    async def sitemaps(self, live_url: str) -> list[str]:
        """The Sitemap: lines of the origin's robots.txt, as written."""
        return list((await self.parser(live_url)).sitemaps)


class Politeness:
    """Per-host slots and clocks, and the global limit on requests in flight.

    A host slot is held while one of the host's URLs is worked on (waits and retries included);
    the dispatcher hands a URL out only when its host has a free slot. Each request attempt then
    takes a turn(): it waits until the host's last request started `delay` seconds ago, takes a
    global slot, and starts. Request starts to one host are thus at least `delay` apart, and at
    most max_concurrency requests are in flight over all hosts.
    """

    def __init__(self, max_concurrency: int, max_per_host: int, stop: threading.Event,
                 time_left: Callable[[], float]) -> None:
        self.max_per_host = max_per_host
        self.stop = stop
        self.time_left = time_left
        self._global = asyncio.Semaphore(max_concurrency)
        self._busy: Counter[str] = Counter()  # host -> slots held
        self._last_start: dict[str, float] = {}  # host -> loop time of its last request start
        self.in_flight = 0  # requests being made now
        self.max_in_flight = 0  # the most ever in flight at once

    def has_slot(self, host: str) -> bool:
        return self._busy[host] < self.max_per_host

    def occupy(self, host: str) -> None:
        self._busy[host] += 1

    def release(self, host: str) -> None:
        self._busy[host] -= 1

    async def sleep(self, seconds: float) -> None:
        """Sleep; raise Stopped when a stop is requested or the time budget would run out first."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        if seconds > 0 and seconds >= self.time_left():
            raise Stopped("budget_exhausted")
        while True:
            if self.stop.is_set():
                raise Stopped("stopped")
            left = end - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, STOP_POLL_SECONDS))

    @contextmanager
    def _counted(self) -> Iterator[None]:
        """Count one request in flight (and the most seen at once) while the block runs."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1

    @asynccontextmanager
    async def request_slot(self) -> AsyncIterator[None]:
        """A global slot for one request, counted in in_flight."""
        async with self._global:
            with self._counted():
                yield

    @asynccontextmanager
    async def turn(self, host: str, delay: float) -> AsyncIterator[None]:
        """Wait for host's clock and a global slot, then hold both for one request."""
        loop = asyncio.get_running_loop()
        while True:
            await self.sleep(self._last_start.get(host, -math.inf) + delay - loop.time())
            await self._global.acquire()
            # re-checked after the global wait: another request to this host may have started meanwhile
            if loop.time() >= self._last_start.get(host, -math.inf) + delay:
                break
            self._global.release()
        try:
            if self.stop.is_set():
                raise Stopped("stopped")
            if self.time_left() < MIN_REQUEST_SECONDS:
                raise Stopped("budget_exhausted")
            self._last_start[host] = loop.time()
            with self._counted():
                yield
        finally:
            self._global.release()
