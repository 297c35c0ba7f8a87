import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError

from tasks.crawl.config import CrawlConfig
from tasks.crawl.frontier import extract_links, normalize_url
from tasks.crawl.politeness import Robots
from tasks.crawl.run import crawl, saved_pages
from tasks.crawl.warc import WarcRawStore, read_fetches
from tests.tasks.piece_fixtures import flip_bytes, warnings_of
from tests.tasks.site_fixtures import ConcurrencyProbe, make_site, serve_site, serve_slow_site


def _config(base_url: str, **overrides) -> CrawlConfig:
    return CrawlConfig(seeds=[base_url], allow_private_addresses=True, delay_seconds=0.0, **overrides)


def test_crawl_follows_scope_robots_redirects_and_content_types(tmp_path: Path) -> None:
    site_root = make_site(tmp_path / "site")
    with serve_site(site_root) as site:
        stats = crawl(_config(site.base_url), tmp_path / "raw")

    assert site.count("/robots.txt") == 1
    assert site.count("/private/secret.html") == 0  # disallowed by robots.txt
    assert site.count("/a.html") == 1  # './a.html#details' is the same page
    assert site.count("/c.html") == 1  # reached through the /moved redirect
    assert stats["pages_disallowed_robots"] == 1
    assert stats["pages_not_html"] == 1  # notes.txt
    assert stats["pages_redirected"] == 1
    assert stats["pages_failed"] == 1  # missing.html answers 404
    assert stats["links_out_of_scope"] == 1  # http://other.invalid/page.html (mailto: is not a link)
    assert stats["pages_requested"] == len(site.page_requests)

    kept = {r.url.removeprefix(site.base_url): r for r in saved_pages(tmp_path / "raw")}
    assert set(kept) == {"", "index.html", "a.html", "b.html", "dup.html", "c.html", "mojibake.html", "broken.html"}
    assert stats["pages_fetched"] == len(kept)
    assert all(r.content_type.startswith("text/html") for r in kept.values())
    assert kept["a.html"].depth == 1 and kept["c.html"].depth == 1  # a redirect does not add depth


def test_max_pages_and_max_depth_bound_the_crawl(tmp_path: Path) -> None:
    site_root = make_site(tmp_path / "site")
    with serve_site(site_root) as site:
        stats = crawl(_config(site.base_url, max_pages=2), tmp_path / "raw-pages")
        depth0 = crawl(_config(site.base_url, max_depth=0), tmp_path / "raw-depth")
    assert stats["pages_fetched"] == 2
    assert depth0["pages_fetched"] == 1 and depth0["pages_requested"] == 1


def test_include_and_exclude_patterns(tmp_path: Path) -> None:
    site_root = make_site(tmp_path / "site")
    with serve_site(site_root) as site:
        crawl(_config(site.base_url, exclude_patterns=[r"/dup\.html$"], include_patterns=[r"/$", r"\.html"]),
              tmp_path / "raw")
    assert site.count("/dup.html") == 0
    assert site.count("/moved") == 0 and site.count("/notes.txt") == 0  # not included
    assert site.count("/b.html") == 1


def test_stopped_crawl_resumes_without_refetching(tmp_path: Path) -> None:
    site_root = make_site(tmp_path / "site")
    cfg = None
    with serve_site(site_root, stop_after=3) as site:
        cfg = _config(site.base_url, raw_batch_pages=2)
        first = crawl(cfg, tmp_path / "raw", stop=site.stop)
        assert first["stopped"] == 1
        assert len(site.page_requests) == 3
        site.stop_after = None
        second = crawl(cfg, tmp_path / "raw", stop=threading.Event())

    assert second["stopped"] == 0
    assert second["pages_reused"] == 3
    # every page was requested exactly once over both runs
    assert len(site.page_requests) == len(set(site.page_requests))
    with serve_site(site_root) as fresh:
        uninterrupted = crawl(_config(fresh.base_url), tmp_path / "raw-fresh")
    assert second["pages_fetched"] == uninterrupted["pages_fetched"]
    assert len(site.page_requests) == len(fresh.page_requests)


def test_a_damaged_batch_is_fetched_again_and_the_others_reused(tmp_path: Path, caplog) -> None:
    site_root = make_site(tmp_path / "site")
    with serve_site(site_root) as site:
        cfg = _config(site.base_url, raw_batch_pages=2)
        first = crawl(cfg, tmp_path / "raw")
        kept = {r.url: r.body for r in saved_pages(tmp_path / "raw")}
        damaged = tmp_path / "raw" / "fetches-00001.warc.gz"
        lost = {urlsplit(r.url).path for r in read_fetches(damaged)}
        flip_bytes(damaged)
        before = len(site.page_requests)
        again = crawl(cfg, tmp_path / "raw")
        refetched = site.page_requests[before:]

    [warning] = warnings_of(caplog)
    assert str(damaged) in warning and "checksum differs from the one recorded when it was written" in warning
    assert sorted(refetched) == sorted(lost)  # only the damaged batch's pages were asked for again
    assert again["pages_fetched"] == first["pages_fetched"]
    assert {r.url: r.body for r in saved_pages(tmp_path / "raw")} == kept


def test_raw_store_ignores_unfinished_batches(tmp_path: Path) -> None:
    site_root = make_site(tmp_path / "site")
    with serve_site(site_root) as site:
        crawl(_config(site.base_url), tmp_path / "raw")
    (tmp_path / "raw" / "fetches-00099.warc.gz.tmp").write_bytes(b"half a file from a killed run")
    store = WarcRawStore(tmp_path / "raw", batch_size=10)
    assert store.get(site.base_url) is not None
    assert len(list(saved_pages(tmp_path / "raw"))) == 8


def test_private_addresses_are_refused_by_default(tmp_path: Path) -> None:
    site_root = make_site(tmp_path / "site")
    with serve_site(site_root) as site:
        stats = crawl(CrawlConfig(seeds=[site.base_url], delay_seconds=0.0), tmp_path / "raw")
    assert site.requests == []  # not even robots.txt reached the server
    assert stats["pages_fetched"] == 0
    assert stats["pages_failed"] == 1 and stats["pages_disallowed_robots"] == 0


def test_local_site_is_crawled_with_stable_file_urls(tmp_path: Path) -> None:
    site_root = make_site(tmp_path / "site")
    cfg = CrawlConfig(local_site=site_root, delay_seconds=0.0)  # loopback allowed for its own server only
    stats = crawl(cfg, tmp_path / "raw")
    urls = {r.url for r in saved_pages(tmp_path / "raw")}
    assert site_root.resolve().as_uri() + "/b.html" in urls
    assert stats["pages_disallowed_robots"] == 1
    again = crawl(cfg, tmp_path / "raw")  # a new ephemeral port, same recorded URLs
    assert again["pages_requested"] == 0 and again["pages_reused"] == stats["pages_requested"]


def test_normalize_url() -> None:
    assert normalize_url("HTTP://Example.ORG:80/a/../b?q=1#frag") == "http://example.org/b?q=1"
    assert normalize_url("https://example.org") == "https://example.org/"
    assert normalize_url("../c.html", "http://h:8080/x/y/z.html") == "http://h:8080/x/c.html"
    assert normalize_url("mailto:a@b.c") is None
    assert normalize_url("javascript:void(0)", "http://h/") is None
    assert normalize_url("http://h:notaport/") is None
    for malformed in ("http://[oops/", "http://[zz]/", "http://h:99999/", "http://a b/"):
        assert normalize_url(malformed, "http://h/") is None, malformed
    # What a browser sends: non-ASCII and controls percent-encoded, existing escapes kept, one line.
    assert normalize_url("/caf\u00e9 x.html?q=\u2028&r=%41", "http://h/") == "http://h/caf%C3%A9%20x.html?q=%E2%80%A8&r=%41"


def test_extract_links_honours_base_and_nofollow() -> None:
    html = (b'<html><head><base href="http://h/docs/"></head><body><a href="a.html">a</a>'
            b'<a href="a.html#x">again</a><a rel="nofollow" href="n.html">n</a><a href="/top">t</a></body></html>')
    assert extract_links(html, "text/html", "http://h/index.html") == ["http://h/docs/a.html", "http://h/top"]
    nofollow = b'<html><head><meta name="robots" content="noindex, nofollow"></head><a href="x">x</a></html>'
    assert extract_links(nofollow, None, "http://h/") == []
    typos = b'<html><head><base href="http://[bad/"></head><a href="http://[oops/">x</a><a href="ok.html">ok</a></html>'
    assert extract_links(typos, "text/html", "http://h/d/") == ["http://h/d/ok.html"]


def test_config_validation_names_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        CrawlConfig(seeds=["ftp://example.org/", "example.org"], include_patterns=["(unclosed"],
                    local_site=tmp_path)
    message = str(info.value)
    assert "ftp://example.org/" in message and "'example.org'" in message
    assert "(unclosed" in message
    assert str(tmp_path) in message and "index.html" in message
    # values that validated before, then crashed the crawl or quietly fetched nothing
    with pytest.raises(ValidationError) as info:
        CrawlConfig(seeds=["http://a..b.com/", "http://\u2603.net/", "http://[oops/"],
                    allowed_hosts=["https://example.org/", "example.org:8080"], user_agent="bot/1.0 ")
    message = str(info.value)
    assert "a..b.com" in message and "\u2603.net" in message and "[oops" in message
    assert "not URLs; got ['https://example.org/']" in message
    assert "printable ASCII" in message
    for agent in ("bot/1.0\n", "jörg/1.0"):
        with pytest.raises(ValidationError, match="user_agent"):
            CrawlConfig(seeds=["http://example.org/"], user_agent=agent)


def test_a_crawl_delay_of_a_day_is_capped(tmp_path: Path, caplog) -> None:
    root = make_site(tmp_path / "site")
    (root / "robots.txt").write_text("User-agent: *\nCrawl-delay: 86400\n")
    with serve_site(root) as site, caplog.at_level("WARNING", logger="tasks.crawl.dispatcher"):
        stats = crawl(_config(site.base_url, max_crawl_delay_seconds=0.01, max_seconds=60), tmp_path / "raw")
    assert stats["pages_fetched"] >= 3 and stats["budget_exhausted"] == 0  # all of it, not one page a day
    assert [r.getMessage() for r in caplog.records if "Crawl-delay" in r.getMessage()] == [
        f"robots.txt of {urlsplit(site.base_url).netloc} asks for Crawl-delay 86400 s: waiting "
        "max_crawl_delay_seconds=0.01 s"]


def test_robots_groups_and_crawl_delay(tmp_path: Path) -> None:
    root = make_site(tmp_path / "site")
    (root / "robots.txt").write_text(  # with a UTF-8 byte-order mark, as some editors save it
        "\ufeffUser-agent: pretrainflow-crawler\nDisallow: /b.html\nDisallow: /*.txt$\nCrawl-delay: 0.05\n\n"
        "User-agent: *\nDisallow: /private/\n")
    bare = tmp_path / "bare"
    bare.mkdir()

    async def check(base: str, bare_base: str) -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            ours = Robots(client, "pretrainflow-crawler/0.1", Counter())
            other = Robots(client, "OtherBot/2.0", Counter())
            # many workers asking at once still fetch robots.txt once
            answers = await asyncio.gather(*(ours.allowed(base + f"page{i}.html") for i in range(10)))
            assert all(answers)
            assert not await ours.allowed(base + "b.html") and await ours.allowed(base + "private/x.html")
            assert not await ours.allowed(base + "notes.txt") and await ours.allowed(base + "notes.txt.html")
            assert await ours.crawl_delay(base) == 0.05  # fractional delays count too
            assert await other.allowed(base + "b.html") and not await other.allowed(base + "private/x.html")
            assert await other.crawl_delay(base) == 0.0
            assert await ours.allowed(bare_base + "anything.html")  # 404 robots.txt: everything allowed

    with serve_site(root) as site, serve_site(bare) as no_robots:
        asyncio.run(check(site.base_url, no_robots.base_url))
    assert site.count("/robots.txt") == 2  # once per Robots (one per crawl), not once per URL


@pytest.mark.parametrize("per_host", [1, 3])
def test_killed_crawl_resumes_from_saved_batches(tmp_path: Path, per_host: int) -> None:
    site_root = make_site(tmp_path / "site")
    raw = tmp_path / "raw"
    with serve_site(site_root) as site:
        cfg = _config(site.base_url, raw_batch_pages=2, max_concurrency_per_host=per_host)
        cfg = cfg.model_copy(update={"delay_seconds": 0.2})
        script = ("import sys; from pathlib import Path; from tasks.crawl.config import CrawlConfig; "
                  "from tasks.crawl.run import crawl; crawl(CrawlConfig.model_validate_json(sys.argv[1]), Path(sys.argv[2]))")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
        child = subprocess.Popen([sys.executable, "-c", script, cfg.model_dump_json(), str(raw)], env=env)
        deadline = time.monotonic() + 60
        while len(site.page_requests) < 5 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        saved = {r.url for r in WarcRawStore(raw, batch_size=1).records()}
        assert saved  # at least two full batches were flushed before the kill
        before = len(site.requests)
        crawl(cfg.model_copy(update={"delay_seconds": 0.0}), raw)
        refetched = {site.base_url.rstrip("/") + p for p in site.requests[before:]}
    assert not saved & refetched  # nothing saved before the kill was fetched again
    assert len(list(saved_pages(raw))) == 8


def test_retry_and_budget_settings_are_validated() -> None:
    with pytest.raises(ValidationError) as info:
        CrawlConfig(max_retries=-1, backoff_seconds=-0.5, max_seconds=0, request_deadline_seconds=0, max_redirects=-2)
    message = str(info.value)
    for name in ("max_retries", "backoff_seconds", "max_seconds", "request_deadline_seconds", "max_redirects"):
        assert name in message
    assert CrawlConfig().max_seconds is None  # no time budget unless asked


def test_global_and_per_host_concurrency_limits_hold(tmp_path: Path) -> None:
    probe = ConcurrencyProbe()
    with serve_slow_site(probe, pages=10) as first, serve_slow_site(probe, pages=10) as second:
        hosts = [urlsplit(first).netloc, urlsplit(second).netloc]
        cfg = CrawlConfig(seeds=[first, second], allowed_hosts=hosts, allow_private_addresses=True,
                          delay_seconds=0.0, max_concurrency=3, max_concurrency_per_host=2)
        stats = crawl(cfg, tmp_path / "raw")
    assert stats["pages_fetched"] == 2 * 11 and stats["robots_fetched"] == 2
    assert max(probe.most_per_server.values()) == 2  # never three requests to one host at once
    assert probe.most_total == stats["max_in_flight"] == 3  # the global limit, reached and held
    assert {r.depth for r in saved_pages(tmp_path / "raw")} == {0, 1}


def test_max_pages_is_exact_under_concurrency(tmp_path: Path) -> None:
    probe = ConcurrencyProbe()
    with serve_slow_site(probe, pages=10, seconds=0.05) as site:
        cfg = CrawlConfig(seeds=[site], allow_private_addresses=True, delay_seconds=0.0, max_concurrency=8,
                          max_concurrency_per_host=8, max_pages=4)
        stats = crawl(cfg, tmp_path / "raw")
    assert stats["pages_fetched"] == 4 and stats["pages_requested"] == 4  # nothing fetched and thrown away
    assert len(list(saved_pages(tmp_path / "raw"))) == 4


def test_crawl_called_from_async_code_runs_its_own_loop(tmp_path: Path) -> None:
    site_root = make_site(tmp_path / "site")

    async def caller(base_url: str) -> dict[str, int]:
        return crawl(_config(base_url, max_depth=0), tmp_path / "raw")  # a sync call inside a running loop

    with serve_site(site_root) as site:
        stats = asyncio.run(caller(site.base_url))
    assert stats["pages_fetched"] == 1
