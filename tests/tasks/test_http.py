from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tasks.http import BlockedAddressError, blocked_reason, build_client, fetch
from tests.tasks.site_fixtures import make_site, serve_site


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
