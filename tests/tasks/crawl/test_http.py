import asyncio
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tasks.crawl.http import (
    BlockedAddressError,
    DeadlineExceeded,
    FetchResult,
    RetryPolicy,
    blocked_reason,
    build_client,
    fetch,
    fetch_with_retries,
    parse_retry_after,
)
from tests.tasks.site_fixtures import (
    DUPLICATE_TEXT,
    PNG_BYTES,
    RETRY_AFTER_HONOURED,
    make_site,
    serve_hostile_site,
    serve_site,
)


def _client(**overrides):
    settings = dict(user_agent="test-agent/1.0", timeout_seconds=5.0, allow_private_addresses=True,
                    follow_redirects=False, max_redirects=3)
    settings.update(overrides)
    return build_client(**settings)


def _get(url: str, **overrides):
    """One GET through a fresh guarded client, run in its own event loop."""

    async def get():
        async with _client(**overrides) as client:
            return await client.get(url)

    return asyncio.run(get())


def _fetch_all(base_url: str, paths: dict[str, str], **options) -> dict[str, FetchResult | Exception]:
    """fetch() each name -> path with one client; an httpx error is returned, not raised."""

    async def fetch_all():
        results = {}
        async with _client() as client:
            for name, path in paths.items():
                try:
                    results[name] = await fetch(client, base_url + path, **{"max_bytes": 100_000, **options})
                except Exception as exc:  # noqa: BLE001 (the test inspects it)
                    results[name] = exc
        return results

    return asyncio.run(fetch_all())


@pytest.mark.parametrize(
    ("address", "reason"),
    [("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
     ("10.1.2.3", "private"), ("192.168.0.1", "private"), ("169.254.169.254", "link-local"),
     ("fe80::1%eth0", "link-local"), ("100.64.0.1", "non-global"), ("0.0.0.0", "unspecified"),
     ("8.8.8.8", None), ("2606:4700::1111", None)],
)
def test_blocked_reason(address: str, reason: str | None) -> None:
    assert blocked_reason(address) == reason


def test_guard_refuses_loopback_unless_allowed(tmp_path: Path) -> None:
    with serve_site(make_site(tmp_path)) as site:
        port = urlsplit(site.base_url).port
        for url in (site.base_url, f"http://localhost:{port}/"):  # a name that resolves to loopback too
            with pytest.raises(BlockedAddressError, match="loopback"):
                _get(url, allow_private_addresses=False)
        assert site.requests == []
        exempt = _get(site.base_url, allow_private_addresses=False, allowed_endpoints=[("127.0.0.1", port)])
        assert exempt.status_code == 200  # the one exempt endpoint
        assert _get(site.base_url + "a.html", allow_private_addresses=True).status_code == 200
    assert site.requests == ["/", "/a.html"]


def test_client_sends_user_agent(tmp_path: Path) -> None:
    with serve_site(make_site(tmp_path)) as site:
        response = _get(site.base_url)
    assert response.request.headers["user-agent"] == "test-agent/1.0"


def test_fetch_outcomes(tmp_path: Path) -> None:
    paths = {"ok": "a.html", "text": "notes.txt", "moved": "moved", "missing": "missing.html"}
    with serve_site(make_site(tmp_path)) as site:
        results = _fetch_all(site.base_url, paths)
        small = _fetch_all(site.base_url, {"small": "a.html"}, max_bytes=100)["small"]
    ok, text, moved, missing = (results[name] for name in paths)
    assert ok.outcome == "ok" and b"Alpha" in ok.body and ok.content_type.startswith("text/html")
    assert small.outcome == "too_large" and small.body is None
    assert text.outcome == "not_html" and text.body is None
    assert moved.outcome == "redirect" and moved.location == "/c.html"
    assert missing.outcome == "http_error" and missing.status == 404


def test_client_follows_redirects_up_to_the_limit(tmp_path: Path) -> None:
    with serve_site(make_site(tmp_path)) as site:
        response = _get(site.base_url + "moved", follow_redirects=True)
    assert response.status_code == 200 and str(response.url).endswith("/c.html")


def test_fetch_cuts_a_dripping_page_at_its_deadline_and_caps_decoded_size() -> None:
    paths = {"bomb": "gzip-bomb.html", "bad": "bad-gzip.html", "deflate": "raw-deflate.html",
             "image": "image.html", "russian": "cp1251-as-utf8.html", "members": "gzip-members.html",
             "cut": "gzip-cut.html"}
    with serve_hostile_site() as site:
        # httpx's per-read timeouts never fire on these
        dripping = _fetch_all(site.base_url, {"body": "drip.html", "headers": "drip-headers.html"},
                              deadline_seconds=0.3)
        results = _fetch_all(site.base_url, paths)
    assert all(isinstance(result, DeadlineExceeded) for result in dripping.values()), dripping
    bomb, bad, deflate, image, russian, members, cut = (results[name] for name in paths)
    assert bomb.outcome == "too_large" and bomb.truncated == "length" and bomb.body is None
    assert bad.outcome == "failed" and bad.reason == "bad_encoding"
    assert deflate.outcome == "ok" and DUPLICATE_TEXT.encode() in deflate.body
    assert members.outcome == "ok" and DUPLICATE_TEXT.encode() in members.body  # every member, not the first
    assert cut.outcome == "failed" and cut.reason == "bad_encoding"  # never stored as a complete page
    assert image.outcome == "binary" and image.reason == "binary" and image.body == PNG_BYTES
    assert russian.outcome == "ok" and russian.charset == "cp1251"
    assert russian.header("content-type") == "text/html; charset=utf-8"  # as declared, kept for the archive


def _retried(path: str, read_timeout: float = 5.0, **policy) -> tuple[FetchResult, list[float]]:
    waits: list[float] = []

    async def wait(seconds: float) -> bool:  # records the waits instead of sleeping them
        waits.append(seconds)
        return True

    async def fetch_retried(base_url: str) -> FetchResult:
        async with _client(timeout_seconds=read_timeout) as client:
            return await fetch_with_retries(client, base_url + path, max_bytes=100_000, deadline_seconds=5.0,
                                            policy=RetryPolicy(**{**settings, **policy}), wait=wait)

    settings = dict(max_retries=2, backoff_seconds=0.05, max_backoff_seconds=10.0)
    with serve_hostile_site() as site:
        result = asyncio.run(fetch_retried(site.base_url))
    return result, waits


def test_retries_back_off_and_honour_retry_after() -> None:
    busy, busy_waits = _retried("busy.html")
    assert busy.outcome == "ok" and busy.attempts == 2 and busy_waits == [RETRY_AFTER_HONOURED]
    error, error_waits = _retried("error.html")
    assert error.outcome == "http_error" and error.reason == "http_server_error" and error.attempts == 3
    assert error_waits == [0.05, 0.1]  # exponential
    capped, capped_waits = _retried("error.html", backoff_seconds=1.0, max_backoff_seconds=1.5)
    assert capped_waits == [1.0, 1.5]
    limited, limited_waits = _retried("rate-limited.html")
    assert limited.reason == "rate_limited" and limited.attempts == 1 and limited_waits == []
    hangup, _ = _retried("hangup.html")
    assert hangup.outcome == "failed" and hangup.reason == "network_error" and hangup.attempts == 3
    stalled, _ = _retried("stall.html", max_retries=0, read_timeout=0.3)
    assert stalled.outcome == "failed" and stalled.reason == "timeout" and stalled.attempts == 1
    missing, missing_waits = _retried("missing.html")
    assert missing.reason == "http_client_error" and missing.attempts == 1 and missing_waits == []


def test_retry_policy_and_retry_after_parsing() -> None:
    policy = RetryPolicy(max_retries=3, backoff_seconds=1.0, max_backoff_seconds=5.0)
    assert [policy.delay(n, None) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, None]
    assert policy.delay(1, 3.0) == 3.0 and policy.delay(3, 0.5) == 4.0
    assert policy.delay(1, 6.0) is None  # the server asks for longer than we are willing to wait
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Sat, 28 Nov 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now) == 0.0  # already past
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_a_host_that_cannot_be_encoded_is_a_failed_fetch_not_an_error() -> None:
    from collections import Counter

    from tasks.crawl.politeness import Robots

    async def attempt(url: str) -> tuple[FetchResult, bool]:
        async with _client() as client:
            robots = Robots(client, "test-agent/1.0", Counter())
            allowed = await robots.allowed(url)  # nothing to ask: the page fetch reports the failure
            result = await fetch_with_retries(client, url, max_bytes=1000, deadline_seconds=5.0,
                                              policy=RetryPolicy(2, 0.0, 0.0), wait=lambda s: asyncio.sleep(0, True))
            return result, allowed

    result, allowed = asyncio.run(attempt("http://\u2603.net/page.html"))  # IDNA refuses it before any lookup
    assert allowed and result.outcome == "failed" and result.reason == "invalid_url" and result.attempts == 1
