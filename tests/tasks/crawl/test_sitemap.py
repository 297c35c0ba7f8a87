import gzip
from pathlib import Path

import pytest

from tasks.crawl.config import CrawlConfig
from tasks.crawl.run import crawl, saved_pages
from tasks.crawl.sitemap import MAX_SITEMAP_URLS, SitemapError, parse_sitemap
from tasks.crawl.warc import WarcRawStore
from tests.tasks.site_fixtures import make_site, serve_site

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def _urlset(*locs: str, lastmod: str | None = None) -> bytes:
    stamp = f"<lastmod>{lastmod}</lastmod>" if lastmod else ""
    urls = "".join(f"<url><loc>{loc}</loc>{stamp}</url>" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {NS}>{urls}</urlset>'.encode()


def _index(*locs: str) -> bytes:
    maps = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex {NS}>{maps}</sitemapindex>'.encode()


def test_parse_url_sets_indexes_gzip_and_text() -> None:
    urlset = parse_sitemap(_urlset("http://h/a.html", " http://h/b.html ", lastmod="2026-11-01"), 10_000)
    assert urlset.kind == "urlset" and urlset.locations == ["http://h/a.html", "http://h/b.html"]
    assert urlset.lastmod == {"http://h/a.html": "2026-11-01", "http://h/b.html": "2026-11-01"}
    index = parse_sitemap(gzip.compress(_index("http://h/s1.xml.gz", "http://h/s2.xml")), 10_000)
    assert index.kind == "index" and index.locations == ["http://h/s1.xml.gz", "http://h/s2.xml"]
    text = parse_sitemap(b"http://h/a.html\r\n\r\nnot a url\nhttps://h/b.html\n", 10_000)
    assert text.kind == "urlset" and text.locations == ["http://h/a.html", "https://h/b.html"]
    bom = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark before either form
    assert parse_sitemap(bom + _urlset("http://h/a.html"), 10_000).locations == ["http://h/a.html"]
    assert parse_sitemap(bom + b"http://h/a.html\nhttp://h/b.html\n", 10_000).locations == ["http://h/a.html", "http://h/b.html"]
    many = parse_sitemap(_urlset(*(f"http://h/{i}" for i in range(MAX_SITEMAP_URLS + 5))), 10**8)
    assert len(many.locations) == MAX_SITEMAP_URLS


def test_hostile_sitemaps_are_refused_safely() -> None:
    entities = (b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">'
                b'<!ENTITY file SYSTEM "file:///etc/passwd">]>'
                b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://h/&b;&file;</loc>'
                b"</url></urlset>")
    assert parse_sitemap(entities, 10_000).locations == ["http://h/"]  # entities are neither expanded nor read
    bomb = gzip.compress(b"<urlset>" + b" " * 200_000 + b"</urlset>")
    for body, reason in [(bomb, "too_large"), (b"<urlset><url><loc>", "invalid"), (b"\x1f\x8bnot gzip", "invalid"),
                         (b"<html><body>a page</body></html>", "invalid"), (b"no urls here", "invalid")]:
        with pytest.raises(SitemapError) as info:
            parse_sitemap(body, 100_000)
        assert info.value.reason == reason


def test_crawl_reads_sitemaps_from_config_and_robots_txt(tmp_path: Path) -> None:
    root = make_site(tmp_path / "site")
    for name in ("orphan-1.html", "orphan-2.html", "orphan-3.html"):  # linked from nowhere
        (root / name).write_text(f"<html><body><p>{name} is only listed in a sitemap.</p></body></html>")
    with serve_site(root) as site:
        base = site.base_url
        (root / "robots.txt").write_text(f"User-agent: *\nDisallow: /private/\nSitemap: {base}sitemap-index.xml\n")
        (root / "sitemap-index.xml").write_bytes(_index(f"{base}pages.xml.gz", f"{base}nested-index.xml",
                                                        f"{base}missing-sitemap.xml"))
        (root / "pages.xml.gz").write_bytes(gzip.compress(_urlset(
            f"{base}orphan-1.html", f"{base}orphan-2.html", f"{base}private/secret.html",
            "http://other.invalid/page.html", lastmod="2026-11-27T10:00:00+00:00")))
        (root / "nested-index.xml").write_bytes(_index(f"{base}deeper.xml"))
        (root / "deeper.xml").write_bytes(_urlset(f"{base}orphan-3.html"))
        (root / "direct.xml").write_bytes(_urlset(f"{base}orphan-3.html"))

        cfg = CrawlConfig(seeds=[base], use_robots_sitemaps=True, max_depth=0, max_sitemap_depth=1,
                          allow_private_addresses=True, delay_seconds=0.0)
        stats = crawl(cfg, tmp_path / "raw")
        robots_requests = site.count("/robots.txt")
        only_sitemap = crawl(CrawlConfig(sitemaps=[f"{base}direct.xml"], allow_private_addresses=True,
                                         delay_seconds=0.0), tmp_path / "raw-direct")
        again = crawl(cfg, tmp_path / "raw")  # resumes from the archive: no sitemap asked for twice

    kept = {r.url.removeprefix(base) for r in saved_pages(tmp_path / "raw")}
    assert kept == {"", "orphan-1.html", "orphan-2.html"}  # max_depth=0: the seed and the sitemaps' pages
    assert stats["sitemaps_fetched"] == 3  # the index, pages.xml.gz, nested-index.xml (deeper.xml is too deep)
    assert stats["sitemaps_failed"] == 1  # missing-sitemap.xml answers 404
    assert stats["sitemap_urls"] == 4 and stats["links_out_of_scope"] == 1
    assert stats["pages_disallowed_robots"] == 1  # the sitemap cannot open a door robots.txt closed
    assert site.count("/deeper.xml") == 0 and site.count("/private/secret.html") == 0
    assert robots_requests == 1
    listed = WarcRawStore(tmp_path / "raw", 1).get(base + "pages.xml.gz")  # the archive keeps <lastmod>
    assert listed.outcome == "sitemap" and len(listed.links) == 4
    assert dict(listed.lastmods)[base + "orphan-1.html"] == "2026-11-27T10:00:00+00:00"
    assert {r.url.removeprefix(base) for r in saved_pages(tmp_path / "raw-direct")} == {"orphan-3.html"}
    assert only_sitemap["sitemaps_fetched"] == 1 and only_sitemap["pages_fetched"] == 1
    assert again["sitemaps_requested"] == 0 and again["pages_requested"] == 0  # the 404 is archived too
    assert again["sitemaps_failed"] == 1
    assert again["pages_fetched"] == stats["pages_fetched"] and again["sitemaps_fetched"] == 3
