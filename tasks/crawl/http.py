"""The one place that builds HTTP clients: async httpx, timeouts, user agent, size limits, an address guard.

The guard runs inside httpcore's network backend, after DNS resolution and right before the TCP
connect, and connects to the very address it checked. So a hostname that resolves to a private
address is refused, and DNS rebinding between check and connect is not possible.

httpx's timeouts apply to each network operation, so a server that drips one byte per second (in
the headers or the body) never trips them. fetch() therefore runs the whole exchange (connect,
headers, body) under asyncio.timeout_at: at the deadline the exchange is cancelled wherever it
waits, and the connection is closed.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import math
import socket
import zlib
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpcore
import httpx

from tasks.clean.charset import sniff_charset

__all__ = ["HTML_CONTENT_TYPES", "RETRY_STATUSES", "BlockedAddressError", "ContentEncodingError",
           "DeadlineExceeded", "FetchResult", "RetryPolicy", "blocked_reason", "build_client", "fetch",
           "fetch_with_retries", "http_failure_reason", "media_type", "parse_retry_after", "read_body",
           "sniff_charset"]

logger = logging.getLogger(__name__)

HTML_CONTENT_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_ACCEPT_HTML = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
# only encodings read_body undoes itself, so the size cap sees every network read
_ACCEPT_ENCODING = "gzip, deflate"
# 408, 429 and the transient 5xx: urllib3's and Scrapy's usual retry list
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_KEEPALIVE_CONNECTIONS = 32  # idle connections kept open across all hosts


class BlockedAddressError(httpx.ConnectError):
    """A connection was refused by the address guard (private, loopback, link-local, ...)."""


def blocked_reason(address: str) -> str | None:
    """Why an IP address may not be contacted from a public crawl, or None if it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    for kind in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if not ip.is_global:  # e.g. 100.64.0.0/10 carrier-grade NAT
        return "non-global"
    return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore async network backend that resolves a host, checks every address, then connects to it."""

    def __init__(
        self, *, allow_private_addresses: bool, allowed_endpoints: Iterable[tuple[str, int]] = ()
    ) -> None:
        self.allow_private_addresses = allow_private_addresses
        # (host, port) pairs exempt from the guard, e.g. the loopback server of a local site
        self.allowed_endpoints = frozenset((h.lower(), p) for h, p in allowed_endpoints)
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self.allow_private_addresses or (host.lower(), port) in self.allowed_endpoints:
            return await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            async with asyncio.timeout(timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host!r} took longer than {timeout} s") from exc
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        for address in addresses:  # refuse if ANY address is private: the OS may pick it
            reason = blocked_reason(address)
            if reason is not None:
                raise BlockedAddressError(
                    f"refusing to connect to {host!r} -> {address} ({reason} address); "
                    "set allow_private_addresses=true to crawl private networks"
                )
        last_error: Exception | None = None
        for address in addresses:  # connect to the checked literal, so no second DNS lookup
            try:
                return await self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None  # getaddrinfo never returns an empty list without raising
        raise last_error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError(f"refusing to connect to the unix socket {path!r}")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx async transport whose connection pool connects through a GuardedBackend."""

    def __init__(self, backend: GuardedBackend) -> None:
        super().__init__(trust_env=False)
        # httpx.AsyncHTTPTransport takes no network_backend argument, so its pool is replaced by one
        # that connects through the guard (tests/tasks/crawl/test_http.py checks this still holds).
        # No connection cap here: the crawler's semaphores bound the requests in flight.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=None,
            max_keepalive_connections=_KEEPALIVE_CONNECTIONS,
            network_backend=backend,
        )


def build_client(
    *,
    user_agent: str,
    timeout_seconds: float,
    allow_private_addresses: bool,
    follow_redirects: bool,
    max_redirects: int,
    allowed_endpoints: Iterable[tuple[str, int]] = (),
) -> httpx.AsyncClient:
    """An async httpx client with our user agent, timeouts, redirect policy and address guard."""
    backend = GuardedBackend(
        allow_private_addresses=allow_private_addresses, allowed_endpoints=allowed_endpoints
    )
    return httpx.AsyncClient(
        transport=GuardedTransport(backend),
        headers={"User-Agent": user_agent, "Accept": _ACCEPT_HTML, "Accept-Encoding": _ACCEPT_ENCODING},
        timeout=httpx.Timeout(timeout_seconds),  # connect, read, write and pool wait
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        trust_env=False,  # no proxies from the environment: the guard must see the real target
    )


class DeadlineExceeded(httpx.TimeoutException):
    """A response took longer than its total deadline (e.g. a server that drips bytes forever)."""


class ContentEncodingError(httpx.DecodingError):
    """A body whose Content-Encoding is unsupported or whose compressed bytes are corrupt."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One HTTP exchange as the crawler keeps it: status, headers, the body if kept, and why not."""

    url: str
    status: int  # 0 when no response arrived
    content_type: str | None  # as the server declared it
    location: str | None
    body: bytes | None  # decoded (Content-Encoding undone); kept for 2xx pages of an accepted type
    outcome: str  # ok | not_modified | redirect | http_error | not_html | too_large | binary | undecodable | failed
    headers: tuple[tuple[str, str], ...] = ()  # response headers as received, in order
    charset: str | None = None  # Python codec the body really is in (see sniff_charset)
    reason: str | None = None  # why a page failed; see tasks.crawl.dispatcher.FAIL_REASONS
    truncated: str | None = None  # WARC-Truncated value when the body was not read in full
    attempts: int = 1  # requests made for this URL, retries included

    def header(self, name: str) -> str | None:
        """First response header of that name (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


def media_type(content_type: str | None) -> str | None:
    """'text/html; charset=utf-8' -> 'text/html'."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def http_failure_reason(status: int) -> str:
    """The failure reason for an HTTP error status."""
    if status == 429:
        return "rate_limited"
    return "http_server_error" if status >= 500 else "http_client_error"


# ---------------------------------------------------------------------------------------------
# Reading a body within a size cap


_GZIP_MAGIC = b"\x1f\x8b"


def _decompressor(encoding: str | None) -> zlib._Decompress | None:
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "deflate":  # RFC 9110 says zlib-wrapped; raw deflate is handled in read_body
        return zlib.decompressobj(zlib.MAX_WBITS)
    raise ContentEncodingError(f"unsupported Content-Encoding {encoding!r}")


async def read_body(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """Read a streamed response's body, decoded; returns (body, complete).

    complete is False when the decoded body passed max_bytes (body is then its first max_bytes).
    Content-Encoding is undone here rather than by httpx, so a gzip bomb stops at max_bytes.
    gzip members sent back to back are all read (RFC 1952 2.2); a compressed stream that stops
    before its end (a cut connection, a broken server) raises ContentEncodingError, so a partial
    page is never stored as complete. The caller bounds the total time (fetch() does, with its deadline).
    """
    encoding = response.headers.get("content-encoding")
    coding = (encoding or "").strip().lower()
    decompressor = _decompressor(encoding)
    chunks: list[bytes] = []
    size = received = 0  # decoded bytes kept, raw bytes read
    first = True
    async for raw in response.aiter_raw():  # one item per network read, transfer coding already undone
        received += len(raw)
        if decompressor is None:
            chunk = raw[: max_bytes - size + 1]
        else:
            try:
                chunk = decompressor.decompress(raw, max_bytes - size + 1)
            except zlib.error as exc:
                if not (first and coding == "deflate"):
                    raise ContentEncodingError(f"corrupt {encoding} body: {exc}") from exc
                decompressor = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, sent by some servers
                chunk = decompressor.decompress(raw, max_bytes - size + 1)
            # After a member ends, zlib keeps what follows in unused_data; the next member starts there.
            while coding in ("gzip", "x-gzip") and decompressor.eof and len(chunk) <= max_bytes - size \
                    and decompressor.unused_data.startswith(_GZIP_MAGIC):
                rest, decompressor = decompressor.unused_data, zlib.decompressobj(16 + zlib.MAX_WBITS)
                try:
                    chunk += decompressor.decompress(rest, max_bytes - size - len(chunk) + 1)
                except zlib.error as exc:
                    raise ContentEncodingError(f"corrupt {encoding} body: {exc}") from exc
        first = False
        size += len(chunk)
        chunks.append(chunk)
        if size > max_bytes:
            return b"".join(chunks)[:max_bytes], False
    if decompressor is not None and received and not decompressor.eof:
        raise ContentEncodingError(f"{encoding} body cut short: its compressed stream does not end")
    return b"".join(chunks), True


# ---------------------------------------------------------------------------------------------
# One request, then retries


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    deadline_seconds: float | None = None,
    content_types: frozenset[str] = HTML_CONTENT_TYPES,
    headers: dict[str, str] | None = None,
    sniff: bool = True,
) -> FetchResult:
    """GET url, streaming; keep the body only for 2xx responses of an accepted type under max_bytes.

    The whole exchange (connect, headers, body) is cut off deadline_seconds after it starts.
    headers are sent with the request (e.g. If-None-Match); a 304 answer is outcome 'not_modified'.
    sniff=True classifies the body as text in a charset, or binary/undecodable; sniff=False keeps
    the bytes as they are (e.g. a gzipped sitemap). Network errors (httpx.TransportError:
    BlockedAddressError, DeadlineExceeded, timeouts) propagate; a bad Content-Encoding is a failed result.
    """
    deadline = None if deadline_seconds is None else asyncio.get_running_loop().time() + deadline_seconds
    try:
        async with asyncio.timeout_at(deadline):
            return await _exchange(client, url, max_bytes, content_types, headers, sniff)
    except TimeoutError as exc:  # only asyncio.timeout_at raises the builtin; httpx raises its own
        raise DeadlineExceeded(f"{url}: total deadline of {deadline_seconds:.1f} s passed") from exc


async def _exchange(
    client: httpx.AsyncClient, url: str, max_bytes: int, content_types: frozenset[str],
    request_headers: dict[str, str] | None, sniff: bool,
) -> FetchResult:
    async with client.stream("GET", url, headers=request_headers) as response:
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw)
        status = response.status_code
        ctype = response.headers.get("content-type")
        partial = FetchResult(url, status, ctype, response.headers.get("location"), None, "", headers)
        if status == 304:
            return replace(partial, outcome="not_modified")
        if response.is_redirect:
            return replace(partial, outcome="redirect")
        if not response.is_success:
            return replace(partial, outcome="http_error", reason=http_failure_reason(status))
        if media_type(ctype) not in content_types:
            return replace(partial, outcome="not_html", truncated="unspecified")  # body never read
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            return replace(partial, outcome="too_large", truncated="length")
        try:
            body, complete = await read_body(response, max_bytes)
        except ContentEncodingError as exc:
            logger.warning("%s: %s", url, exc)
            return replace(partial, outcome="failed", reason="bad_encoding", truncated="unspecified")
    if not complete:
        return replace(partial, outcome="too_large", truncated="length")
    if not sniff:
        return replace(partial, body=body, outcome="ok")
    kind, charset = sniff_charset(body, ctype)
    if kind != "text":  # a binary file served as text/html: kept in the archive, never parsed
        return replace(partial, body=body, outcome=kind, reason=kind)
    return replace(partial, body=body, outcome="ok", charset=charset)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff on transient failures, bounded in count and in each wait."""

    max_retries: int
    backoff_seconds: float  # first wait; doubles with every retry
    max_backoff_seconds: float  # no single wait is longer

    def delay(self, retry: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number `retry` (1-based), or None to give up.

        A Retry-After longer than max_backoff_seconds gives up: retrying sooner would ignore it.
        """
        if retry > self.max_retries:
            return None
        backoff = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (retry - 1))
        if retry_after is None:
            return backoff
        if retry_after > self.max_backoff_seconds:
            return None
        return max(backoff, retry_after)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After (RFC 9110 10.2.3) in seconds from now: delay-seconds or an HTTP-date; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _failure(url: str, exc: Exception) -> FetchResult:
    if isinstance(exc, (httpx.InvalidURL, UnicodeError)):  # a host IDNA cannot encode ("a..b.com", "☃.net")
        reason = "invalid_url"
    elif isinstance(exc, BlockedAddressError):
        reason = "blocked_address"
    elif isinstance(exc, DeadlineExceeded):
        reason = "deadline"
    elif isinstance(exc, httpx.TimeoutException):
        reason = "timeout"
    else:
        reason = "network_error"
    return FetchResult(url, 0, None, None, None, "failed", reason=reason)


# retrying cannot help; a drip would cost a deadline each time
_NOT_RETRIED = ("blocked_address", "deadline", "invalid_url")


def _no_turn() -> AbstractAsyncContextManager[object]:
    return nullcontext()


async def fetch_with_retries(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    deadline_seconds: float | None,
    policy: RetryPolicy,
    wait: Callable[[float], Awaitable[bool]],
    time_left: Callable[[], float] = lambda: math.inf,
    turn: Callable[[], AbstractAsyncContextManager[object]] = _no_turn,
    **options: object,
) -> FetchResult:
    """fetch() with retries on 408/429/5xx answers, timeouts and network errors; never raises httpx errors.

    Every attempt runs inside `async with turn()` (the crawler's politeness: host delay, concurrency
    slots). wait(seconds) sleeps between attempts and returns False if the caller wants to stop;
    time_left() is the caller's remaining time budget: no wait or request runs past it. options go
    to fetch(). A failure is a result with outcome 'failed' (or 'http_error') and its reason.
    """
    attempts = 0
    while True:
        attempts += 1
        async with turn():
            cap = min(deadline_seconds or math.inf, time_left())
            try:
                result = await fetch(client, url, max_bytes=max_bytes,
                                     deadline_seconds=None if math.isinf(cap) else max(cap, 0.0), **options)
            except (httpx.TransportError, httpx.InvalidURL, UnicodeError) as exc:
                logger.warning("fetch failed for %s: %s: %s", url, type(exc).__name__, exc)
                result = _failure(url, exc)
        result = replace(result, attempts=attempts)
        transient = result.status in RETRY_STATUSES or (
            result.outcome == "failed" and result.reason not in (*_NOT_RETRIED, "bad_encoding"))
        if not transient:
            return result
        delay = policy.delay(attempts, parse_retry_after(result.header("retry-after")))
        if delay is None or delay >= time_left():
            return result
        logger.info("%s: %s, retry %d in %.1f s", url, result.reason, attempts, delay)
        if not await wait(delay):
            return result
