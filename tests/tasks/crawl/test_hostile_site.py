"""The crawler against a hostile site on 127.0.0.1: it finishes, stays in scope and names every failure."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.corpus.snapshot import CorpusConfig, build_snapshot, read_snapshot
from tasks.crawl.config import CrawlConfig
from tasks.crawl.dispatcher import FAIL_REASONS
from tasks.crawl.run import crawl, saved_pages
from tasks.crawl.warc import WarcRecord, iter_warc_records
from tasks.parallel import local_map
from tests.tasks.site_fixtures import (
    DUPLICATE_TEXT,
    FRENCH_TEXT,
    GERMAN_TEXT,
    NEAR_DUPLICATE_TEXT,
    RUSSIAN_TEXT,
    serve_hostile_site,
)

MAX_RETRIES = 2
MAX_REDIRECTS = 3


def _responses(raw_dir: Path) -> Iterator[WarcRecord]:
    for path in sorted(raw_dir.glob("*.warc.gz")):
        yield from iter_warc_records(path, record_types={"response"})


def _config(base_url: str, **overrides) -> CrawlConfig:
    settings = dict(
        seeds=[base_url], allow_private_addresses=True, delay_seconds=0.0, max_bytes=1_000_000,
        timeout_seconds=4.0, request_deadline_seconds=4.0, max_retries=MAX_RETRIES, backoff_seconds=0.05,
        max_backoff_seconds=2.0, max_redirects=MAX_REDIRECTS, max_seconds=60.0,
    )
    return CrawlConfig(**{**settings, **overrides})


@pytest.mark.parametrize("per_host", [1, 4])  # one request at a time, and four at once
def test_hostile_site_crawl_finishes_in_scope_and_names_every_failure(tmp_path: Path, per_host: int) -> None:
    with serve_hostile_site() as site:
        stats = crawl(_config(site.base_url, max_concurrency_per_host=per_host), tmp_path / "raw")
        port = site.base_url.rsplit(":", 1)[1].rstrip("/")
        first_run = len(site.requests)
        again = crawl(_config(site.base_url, max_concurrency_per_host=per_host), tmp_path / "raw")  # resumes
    paths, rerun = site.paths[:first_run], site.paths[first_run:]

    # it finished: neither the time budget nor a stop ended it
    assert stats["budget_exhausted"] == 0 and stats["stopped"] == 0
    # nothing out of scope or disallowed reached the server, and robots.txt was read once
    assert {host for _, host in site.requests} == {f"127.0.0.1:{port}"}
    assert not [p for p in site.paths if p.startswith("/private/")]
    assert paths.count("/robots.txt") == 1
    assert stats["pages_disallowed_robots"] == 1
    assert stats["links_out_of_scope"] == 3  # other.invalid, LOCALHOST:port, the off-site redirect target

    failures = {reason: stats[f"pages_failed_{reason}"] for reason in FAIL_REASONS}
    assert failures == {
        "http_client_error": 1,  # missing.html
        "http_server_error": 1,  # error.html, after its retries
        "rate_limited": 1,  # rate-limited.html asks for an hour
        "network_error": 1,  # hangup.html, after its retries
        "timeout": 0,
        "deadline": 1,  # drip.html
        "blocked_address": 0,
        "bad_encoding": 1,  # bad-gzip.html
        "binary": 1,  # image.html
        "undecodable": 0,
        "bad_redirect": 1,  # no-location
        "redirect_loop": 2,  # loop-a -> loop-b -> loop-a, self -> self
        "too_many_redirects": 1,  # chain/1 -> chain/2 -> ...
        "invalid_url": 0,
    }
    assert stats["pages_failed"] == sum(failures.values())
    assert stats["pages_too_large"] == 2  # huge.html cut while streaming, gzip-bomb.html while decoding
    assert "/drip.html" in site.aborted and "/huge.html" in site.aborted  # the client hung up on both

    # retries: transient failures were retried, a long Retry-After was not, a loop was cut at once
    assert paths.count("/error.html") == paths.count("/hangup.html") == MAX_RETRIES + 1
    assert paths.count("/flaky.html") == paths.count("/busy.html") == 2
    assert paths.count("/rate-limited.html") == 1 and paths.count("/drip.html") == 1
    assert paths.count("/loop-a") == paths.count("/loop-b") == paths.count("/self") == 1
    assert len([p for p in paths if p.startswith("/chain/")]) == MAX_REDIRECTS + 1
    assert stats["pages_requested"] == len(paths) - 1  # every request but robots.txt
    assert stats["pages_retried"] == 2 * MAX_RETRIES + 2

    kept = {r.url.removeprefix(site.base_url): r for r in saved_pages(tmp_path / "raw")}
    assert set(kept) == {"", "utf8-as-latin1.html", "cp1251-as-utf8.html", "mojibake.html", "broken.html",
                         "de.html", "dup-a.html", "dup-b.html", "near-a.html", "near-b.html", "flaky.html", "busy.html"}
    assert stats["pages_fetched"] == len(kept)
    assert kept["utf8-as-latin1.html"].charset == "utf-8"  # the declared latin-1 was wrong
    assert kept["cp1251-as-utf8.html"].charset == "cp1251"  # the declared UTF-8 could not decode it
    russian = kept["cp1251-as-utf8.html"]
    assert RUSSIAN_TEXT.split()[0] in russian.body.decode(russian.charset)
    assert "charset=cp1251" in russian.content_type_with_charset

    # the archive holds every response it stored, truncated ones marked as such
    responses = {r.url.removeprefix(site.base_url): r for r in _responses(tmp_path / "raw")}
    assert responses["huge.html"].truncated == "length" and responses["huge.html"].body == b""
    assert ("X-Crawler-Content-Encoding", "gzip") in responses["gzip-bomb.html"].http_headers
    assert responses["image.html"].body.startswith(b"\x89PNG")
    assert responses["missing.html"].status == 404
    assert "error.html" not in responses and "drip.html" not in responses  # transient: tried again next run

    # a rerun asks only for robots.txt and the transient failures; every statistic but the network ones holds
    transient = {"/error.html", "/hangup.html", "/rate-limited.html", "/drip.html"}
    assert set(rerun) == {"/robots.txt", *transient}
    network = ("pages_requested", "pages_retried", "pages_reused", "max_in_flight")
    assert stats["max_in_flight"] <= per_host
    assert {k: v for k, v in again.items() if k not in network} == {k: v for k, v in stats.items() if k not in network}


def test_time_budget_ends_the_crawl_and_cuts_the_request_in_flight(tmp_path: Path) -> None:
    with serve_hostile_site() as site:
        cfg = _config(site.base_url, include_patterns=[r"/$", r"/drip\.html$", r"/huge\.html$"],
                      request_deadline_seconds=30.0, max_seconds=0.5)
        stats = crawl(cfg, tmp_path / "raw")
    assert stats["budget_exhausted"] == 1
    assert stats["pages_failed_deadline"] == 1  # the budget, not the 30 s deadline, cut drip.html
    assert site.count("/huge.html") == 0  # queued behind drip.html, never asked for


def test_hostile_site_snapshot_holds_only_clean_deduplicated_english_text(tmp_path: Path) -> None:
    """The whole corpus stage over the hostile site: what reaches the snapshot is clean, unique and English."""
    quality_off = {f: {"enabled": False} for f in ("gopher_repetition", "gopher_quality", "c4", "fineweb")}
    with serve_hostile_site() as site:
        cfg = CorpusConfig(crawl=_config(site.base_url), min_words=5, language={"languages": ["en"]},
                           quality=quality_off, work_shard_documents=3)  # pages spread over several shards
        stats = build_snapshot(cfg, tmp_path / "snapshot", map_shards=local_map(2))
    table = read_snapshot(tmp_path / "snapshot")
    texts = table.column("text").to_pylist()
    assert texts and set(table.column("language").to_pylist()) == {"en"}
    for foreign in (FRENCH_TEXT, RUSSIAN_TEXT, GERMAN_TEXT):
        assert not any(foreign.split()[1] in text for text in texts)
    assert stats["dropped_wrong_language"] + stats["dropped_low_language_score"] >= 4  # fr x2, ru, de
    assert sum(DUPLICATE_TEXT in text for text in texts) == 1  # dup-a, dup-b: one copy
    assert sum(NEAR_DUPLICATE_TEXT[:80] in text for text in texts) == 1  # near-a, near-b: one copy
    assert stats["dropped_duplicate"] == 1 and stats["dropped_near_duplicate"] == 1
    assert not any("\ufffd" in text or "Ã" in text or "<" in text for text in texts)  # no mojibake, no markup
    assert len(set(table.column("url").to_pylist())) == len(texts)
