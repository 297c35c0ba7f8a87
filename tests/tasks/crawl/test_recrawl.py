import os
from pathlib import Path

import pytest

from tasks.crawl.config import CrawlConfig
from tasks.crawl.run import crawl, saved_pages
from tasks.crawl.warc import WarcRawStore
from tests.tasks.site_fixtures import serve_site


def _page(text: str, *links: str) -> str:
    nav = "".join(f'<a href="{link}">{link}</a>' for link in links)
    return f"<html><body><nav>{nav}</nav><p>{text}</p></body></html>"


def test_refresh_crawl_asks_conditionally_and_reports_what_changed(tmp_path: Path) -> None:
    root = tmp_path / "site"
    root.mkdir()
    files = {"index.html": _page("Index.", "same.html", "edited.html", "touched.html", "removed.html"),
             "same.html": _page("Never changes.", "/"), "edited.html": _page("First version."),
             "touched.html": _page("Saved again with the same bytes."), "removed.html": _page("Soon gone.")}
    for name, text in files.items():
        (root / name).write_text(text)
    first_raw, second_raw = tmp_path / "snapshot-1" / "raw", tmp_path / "snapshot-2" / "raw"
    with serve_site(root) as site:
        cfg = CrawlConfig(seeds=[site.base_url], allow_private_addresses=True, delay_seconds=0.0)
        first = crawl(cfg, first_raw)
        etag_before = {path: inm for path, inm, _ in site.validators}
        first_requests = len(site.validators)

        # between the crawls: one page edited (within the same second), one saved again unchanged,
        # one deleted and unlinked, one added and linked; same.html is not touched
        (root / "edited.html").write_text(_page("Second version, longer."))
        touched = root / "touched.html"
        touched.write_bytes(touched.read_bytes())
        os.utime(touched, (touched.stat().st_atime + 10, touched.stat().st_mtime + 10))
        (root / "removed.html").unlink()
        (root / "new.html").write_text(_page("Added later."))
        (root / "index.html").write_text(_page("Index.", "same.html", "edited.html", "touched.html", "new.html"))
        second = crawl(cfg, second_raw, previous_raw_dir=first_raw)
        asked = {path: (inm, ims) for path, inm, ims in site.validators[first_requests:]}
        again = crawl(cfg, second_raw, previous_raw_dir=first_raw)  # a rerun resumes from the archive

    assert first["pages_fetched"] == 5 and first["pages_new"] == 0  # no previous crawl, no refresh statistics
    assert all(inm is None for inm in etag_before.values())
    refresh = {k: second[k] for k in ("pages_not_modified", "pages_unchanged", "pages_changed", "pages_new",
                                      "pages_gone")}
    assert refresh == {"pages_not_modified": 1,  # same.html: 304
                       "pages_unchanged": 1,  # touched.html: 200, same bytes
                       "pages_changed": 2,  # index.html and edited.html
                       "pages_new": 1,  # new.html
                       "pages_gone": 1}  # removed.html, asked for although no page links to it now
    # the server saw the validators of the first crawl's responses
    for path in ("/", "/same.html", "/edited.html", "/touched.html", "/removed.html"):
        inm, ims = asked[path]
        assert inm is not None and inm.startswith('"') and ims is not None, path
    assert asked["/new.html"] == (None, None)

    # the new raw store stands alone: every current page, the 304 one copied with its first fetch time
    before = {r.url: r for r in saved_pages(first_raw)}
    after = {r.url.removeprefix(site.base_url): r for r in saved_pages(second_raw)}
    assert set(after) == {"", "same.html", "edited.html", "touched.html", "new.html"}
    same = after["same.html"]
    assert same.body == before[site.base_url + "same.html"].body
    assert same.fetched_at == before[site.base_url + "same.html"].fetched_at and same.revalidated_at is not None
    assert same.links == [site.base_url]  # links of a reused page are followed (extracted again)
    assert b"Second version" in after["edited.html"].body
    assert WarcRawStore(second_raw, 1).get(site.base_url + "removed.html").status == 404

    assert again["pages_requested"] == 0  # everything, the 404 included, came from the new archive
    assert {k: again[k] for k in refresh} == refresh


def test_previous_raw_dir_is_checked_before_crawling(tmp_path: Path) -> None:
    cfg = CrawlConfig(seeds=["http://127.0.0.1:9/"], allow_private_addresses=True)
    with pytest.raises(FileNotFoundError, match="previous_raw_dir .*nowhere"):
        crawl(cfg, tmp_path / "raw", previous_raw_dir=tmp_path / "nowhere")
    (tmp_path / "raw").mkdir()
    with pytest.raises(ValueError, match="must differ from raw_dir"):
        crawl(cfg, tmp_path / "raw", previous_raw_dir=tmp_path / "raw")
