"""The one place that builds HTTP clients: timeouts, user agent, size limits and an address guard.

The guard runs inside httpcore's network backend, after DNS resolution and right before the TCP
connect, and connects to the very address it checked. So a hostname that resolves to a private
address is refused, and DNS rebinding between check and connect is not possible.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx

logger = logging.getLogger(__name__)

HTML_CONTENT_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_ACCEPT_HTML = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"


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


class GuardedBackend(httpcore.SyncBackend):
    """httpcore network backend that resolves a host, checks every address, then connects to it."""

    def __init__(
        self, *, allow_private_addresses: bool, allowed_endpoints: Iterable[tuple[str, int]] = ()
    ) -> None:
        self.allow_private_addresses = allow_private_addresses
        # (host, port) pairs exempt from the guard, e.g. the loopback server of a local site
        self.allowed_endpoints = frozenset((h.lower(), p) for h, p in allowed_endpoints)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if self.allow_private_addresses or (host.lower(), port) in self.allowed_endpoints:
            return super().connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
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
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None  # getaddrinfo never returns an empty list without raising
        raise last_error


class GuardedTransport(httpx.HTTPTransport):
    """httpx transport whose connection pool connects through a GuardedBackend."""

    def __init__(self, backend: GuardedBackend, *, retries: int = 0) -> None:
        super().__init__(trust_env=False, retries=retries)
        # httpx.HTTPTransport takes no network_backend argument, so its pool is replaced by one
        # that connects through the guard (tests/tasks/test_http.py checks this still holds).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            retries=retries,
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
) -> httpx.Client:
    """An httpx client with our user agent, timeouts, redirect policy and address guard."""
    backend = GuardedBackend(
        allow_private_addresses=allow_private_addresses, allowed_endpoints=allowed_endpoints
    )
    return httpx.Client(
        transport=GuardedTransport(backend),
        headers={"User-Agent": user_agent, "Accept": _ACCEPT_HTML},
        timeout=httpx.Timeout(timeout_seconds),  # connect, read, write and pool wait
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        trust_env=False,  # no proxies from the environment: the guard must see the real target
    )


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One HTTP exchange: status, headers we care about and the body if it was kept."""

    url: str
    status: int
    content_type: str | None
    location: str | None
    body: bytes | None
    outcome: str  # "ok" | "redirect" | "http_error" | "not_html" | "too_large"


def media_type(content_type: str | None) -> str | None:
    """'text/html; charset=utf-8' -> 'text/html'."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def fetch(
    client: httpx.Client,
    url: str,
    *,
    max_bytes: int,
    content_types: frozenset[str] = HTML_CONTENT_TYPES,
) -> FetchResult:
    """GET url, streaming; keep the body only for 2xx responses of an accepted type under max_bytes.

    Network errors (httpx.TransportError, BlockedAddressError) propagate to the caller.
    """
    with client.stream("GET", url) as response:
        status = response.status_code
        ctype = response.headers.get("content-type")
        location = response.headers.get("location")
        if response.is_redirect:
            return FetchResult(url, status, ctype, location, None, "redirect")
        if not response.is_success:
            return FetchResult(url, status, ctype, location, None, "http_error")
        if media_type(ctype) not in content_types:
            return FetchResult(url, status, ctype, location, None, "not_html")
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            return FetchResult(url, status, ctype, location, None, "too_large")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():  # decoded bytes, so a gzip bomb is capped too
            size += len(chunk)
            if size > max_bytes:
                return FetchResult(url, status, ctype, location, None, "too_large")
            chunks.append(chunk)
        return FetchResult(url, status, ctype, location, b"".join(chunks), "ok")
