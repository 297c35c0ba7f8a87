from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tasks.http import (
    BlockedAddressError,
    DeadlineExceeded,
    FetchResult,
    RetryPolicy,
    blocked_reason,
    build_client,
    fetch,
    fetch_with_retries,
    parse_retry_after,
    sniff_charset,
)
from tests.tasks.site_fixtures import (
    DUPLICATE_TEXT,
    FRENCH_TEXT,
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
        with _client(allow_private_addresses=False) as client:
            for url in (site.base_url, f"http://localhost:{port}/"):  # a name that resolves to loopback too
                with pytest.raises(BlockedAddressError, match="loopback"):
                    client.get(url)
        assert site.requests == []
        with _client(allow_private_addresses=False, allowed_endpoints=[("127.0.0.1", port)]) as client:
            assert client.get(site.base_url).status_code == 200  # the one exempt endpoint
        with _client(allow_private_addresses=True) as client:
            assert client.get(site.base_url + "a.html").status_code == 200
    assert site.requests == ["/", "/a.html"]


def test_client_sends_user_agent(tmp_path: Path) -> None:
    with serve_site(make_site(tmp_path)) as site, _client() as client:
        response = client.get(site.base_url)
    assert response.request.headers["user-agent"] == "test-agent/1.0"


def test_fetch_outcomes(tmp_path: Path) -> None:
    with serve_site(make_site(tmp_path)) as site, _client() as client:
        ok = fetch(client, site.base_url + "a.html", max_bytes=100_000)
        small = fetch(client, site.base_url + "a.html", max_bytes=100)
        text = fetch(client, site.base_url + "notes.txt", max_bytes=100_000)
        moved = fetch(client, site.base_url + "moved", max_bytes=100_000)
        missing = fetch(client, site.base_url + "missing.html", max_bytes=100_000)
    assert ok.outcome == "ok" and b"Alpha" in ok.body and ok.content_type.startswith("text/html")
    assert small.outcome == "too_large" and small.body is None
    assert text.outcome == "not_html" and text.body is None
    assert moved.outcome == "redirect" and moved.location == "/c.html"
    assert missing.outcome == "http_error" and missing.status == 404


def test_client_follows_redirects_up_to_the_limit(tmp_path: Path) -> None:
    with serve_site(make_site(tmp_path)) as site, _client(follow_redirects=True) as client:
        response = client.get(site.base_url + "moved")
    assert response.status_code == 200 and str(response.url).endswith("/c.html")


def test_fetch_cuts_a_dripping_page_at_its_deadline_and_caps_decoded_size() -> None:
    with serve_hostile_site() as site, _client() as client:
        for dripping in ("drip.html", "drip-headers.html"):  # httpx's per-read timeouts never fire on these
            with pytest.raises(DeadlineExceeded):
                fetch(client, site.base_url + dripping, max_bytes=100_000, deadline_seconds=0.3)
        bomb = fetch(client, site.base_url + "gzip-bomb.html", max_bytes=100_000)
        bad = fetch(client, site.base_url + "bad-gzip.html", max_bytes=100_000)
        deflate = fetch(client, site.base_url + "raw-deflate.html", max_bytes=100_000)
        image = fetch(client, site.base_url + "image.html", max_bytes=100_000)
        russian = fetch(client, site.base_url + "cp1251-as-utf8.html", max_bytes=100_000)
    assert bomb.outcome == "too_large" and bomb.truncated == "length" and bomb.body is None
    assert bad.outcome == "failed" and bad.reason == "bad_encoding"
    assert deflate.outcome == "ok" and DUPLICATE_TEXT.encode() in deflate.body
    assert image.outcome == "binary" and image.reason == "binary" and image.body == PNG_BYTES
    assert russian.outcome == "ok" and russian.charset == "cp1251"
    assert russian.header("content-type") == "text/html; charset=utf-8"  # as declared, kept for the archive


def _retried(path: str, read_timeout: float = 5.0, **policy) -> tuple[FetchResult, list[float]]:
    waits: list[float] = []

    def wait(seconds: float) -> bool:  # records the waits instead of sleeping them
        waits.append(seconds)
        return True

    settings = dict(max_retries=2, backoff_seconds=0.05, max_backoff_seconds=10.0)
    with serve_hostile_site() as site, _client(timeout_seconds=read_timeout) as client:
        result = fetch_with_retries(client, site.base_url + path, max_bytes=100_000, deadline_seconds=5.0,
                                    policy=RetryPolicy(**{**settings, **policy}), wait=wait)
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


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [("<p>café</p>".encode(), "text/html; charset=iso-8859-1", ("text", "utf-8")),  # UTF-8 mislabelled
     ("<p>café</p>".encode("cp1252"), "text/html; charset=windows-1252", ("text", "cp1252")),
     (b'<meta charset="koi8-r"><p>' + "привет".encode("koi8-r"), "text/html", ("text", "koi8-r")),
     (b"<p>plain</p>", "text/html", ("text", "utf-8")),
     ("<p>wide</p>".encode("utf-16"), "text/html", ("text", "utf-16")),  # BOM
     ("<p>wide</p>".encode("utf-16-le"), "text/html; charset=utf-16le", ("text", "utf-16-le")),
     (b"<p>\x00\x01\x02 not text</p>", "text/html", ("binary", None))],
)
def test_sniff_charset(body: bytes, content_type: str, expected: tuple[str, str | None]) -> None:
    assert sniff_charset(body, content_type) == expected


def test_sniff_charset_detects_what_a_wrong_label_cannot_decode() -> None:
    html = f"<html><body><p>{FRENCH_TEXT}</p><p>{FRENCH_TEXT}</p></body></html>"
    kind, codec = sniff_charset(html.encode("cp1252"), "text/html; charset=utf-8")
    assert kind == "text" and html.encode("cp1252").decode(codec) == html
