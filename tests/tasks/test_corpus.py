import hashlib
import json
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from tasks.filters import QualityConfig
from tasks.corpus import DROP_REASONS, SNAPSHOT_SCHEMA, CorpusConfig, build_snapshot, read_snapshot
from tasks.crawl import CrawlConfig
from tasks.local_site import PYTHON_DOCS
from tests.tasks.site_fixtures import BROKEN_TEXT, MOJIBAKE_TEXT, PARAGRAPH_B, PARAGRAPH_C, make_site, serve_site

CONTRACT_SCHEMA = pa.schema([
    ("id", pa.string()), ("url", pa.string()), ("source", pa.string()), ("title", pa.string()),
    ("text", pa.string()), ("language", pa.string()), ("language_score", pa.float32()),
    ("fetched_at", pa.timestamp("us", tz="UTC")), ("content_hash", pa.string()),
])


# the toy pages here are a few sentences long: far below Gopher's 50 words and C4's 3 sentences
NO_QUALITY = QualityConfig(**{family: {"enabled": False} for family in ("gopher_repetition", "gopher_quality", "c4", "fineweb")})


def _crawl_config(base_url: str, **overrides) -> CorpusConfig:
    crawl = CrawlConfig(seeds=[base_url], allow_private_addresses=True, delay_seconds=0.0)
    # the mojibake page is French
    return CorpusConfig(crawl=crawl, min_words=8, quality=NO_QUALITY, language={"languages": ["en", "fr"]}, **overrides)


def test_config_needs_a_source() -> None:
    with pytest.raises(ValidationError, match="no corpus source: set crawl.seeds, crawl.local_site, local_files, warc"):
        CorpusConfig()


def test_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        CorpusConfig(crawl={"seeds": ["file:///etc/passwd"], "exclude_patterns": ["*bad"]},
                     local_files=[str(tmp_path / "*.txt")], min_words=-1)
    message = str(info.value)
    for fragment in ("file:///etc/passwd", "'*bad'", "*.txt' matches no file", "min_words"):
        assert fragment in message


def test_config_local_site_must_hold_an_index(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"missing' must be an existing folder with an index.html .*apt-get "
                                              r"install python3\.11-doc"):
        CorpusConfig(crawl={"local_site": str(tmp_path / "missing")})


def test_snapshot_from_a_crawl(tmp_path: Path) -> None:
    with serve_site(make_site(tmp_path / "site")) as site:
        stats = build_snapshot(_crawl_config(site.base_url), tmp_path / "snapshot")
        requests = len(site.requests)
        again = build_snapshot(_crawl_config(site.base_url), tmp_path / "snapshot")
        assert len(site.requests) == requests + 1  # only robots.txt; every page came from the raw store

    table = read_snapshot(tmp_path / "snapshot")
    assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in CONTRACT_SCHEMA]
    rows = table.to_pylist()
    urls = [r["url"] for r in rows]
    assert urls == sorted(urls)
    by_path = {r["url"].removeprefix(site.base_url): r for r in rows}
    # "" (the root) and index.html are the same page: the first url wins; dup.html duplicates b.html
    assert set(by_path) == {"", "a.html", "b.html", "c.html", "mojibake.html", "broken.html"}
    assert PARAGRAPH_B in by_path["b.html"]["text"]
    assert PARAGRAPH_C in by_path["c.html"]["text"]
    assert MOJIBAKE_TEXT in by_path["mojibake.html"]["text"] and by_path["mojibake.html"]["title"] == "Café"
    assert BROKEN_TEXT in by_path["broken.html"]["text"]
    assert "hard wrapped lines." in by_path["a.html"]["text"].split("\n")[-1]
    for row in rows:
        assert row["source"] == "crawl"
        assert row["content_hash"] == hashlib.sha256(row["text"].encode()).hexdigest()
        assert row["fetched_at"].tzinfo is not None
    assert len({r["id"] for r in rows}) == len(rows)

    network = ("pages_requested", "pages_reused")
    assert again["pages_requested"] == 0 and again["pages_reused"] == stats["pages_requested"]
    assert {k: v for k, v in stats.items() if k not in network} == {k: v for k, v in again.items() if k not in network}
    assert stats["pages_fetched"] == 8 and stats["pages_disallowed_robots"] == 1 and stats["pages_failed"] == 1
    assert stats["documents"] == 6 and stats["dropped_duplicate"] == 2
    dropped = sum(stats[f"dropped_{reason}"] for reason in DROP_REASONS)
    assert stats["documents_in"] == stats["documents"] + dropped
    assert stats["words"] == sum(len(r["text"].split()) for r in rows)
    assert stats["characters"] == sum(len(r["text"]) for r in rows)


def test_same_raw_pages_give_identical_shards(tmp_path: Path) -> None:
    with serve_site(make_site(tmp_path / "site")) as site:
        cfg = _crawl_config(site.base_url, documents_per_shard=2)
        first = build_snapshot(cfg, tmp_path / "one")
        shutil.copytree(tmp_path / "one" / "raw", tmp_path / "two" / "raw")
        build_snapshot(cfg, tmp_path / "two")
    shards = sorted(p.name for p in (tmp_path / "one").glob("documents-*.parquet"))
    assert len(shards) == first["shards"] == 3
    for name in shards:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_finished_shards_are_reused(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"doc{i}.txt").write_text(f"document number {i} has a handful of words in it")
    cfg = CorpusConfig(local_files=[str(tmp_path / "*.txt")], min_words=3, documents_per_shard=2, quality=NO_QUALITY)
    out = tmp_path / "snapshot"
    build_snapshot(cfg, out)
    first = out / "documents-00000.parquet"
    before = first.stat().st_mtime_ns
    lost = (out / "documents-00002.parquet").read_bytes()
    (out / "documents-00002.parquet").unlink()  # as if the run died before writing it
    time.sleep(0.01)
    stats = build_snapshot(cfg, out)
    assert first.stat().st_mtime_ns == before
    assert (out / "documents-00002.parquet").read_bytes() == lost
    assert stats["documents"] == 5 and stats["shards"] == 3
    assert pq.read_schema(first).equals(SNAPSHOT_SCHEMA)
    assert not list(out.glob("*.tmp"))


def test_local_files_and_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "tiny"}) + "\n")
    stats = build_snapshot(CorpusConfig(local_files=[str(tmp_path / "a.jsonl")], min_words=5), tmp_path / "out")
    assert stats["documents"] == 0 and stats["dropped_too_few_words"] == 1 and stats["documents_in"] == 1
    assert read_snapshot(tmp_path / "out").num_rows == 0  # one empty shard keeps the schema


@pytest.mark.skipif(not (PYTHON_DOCS / "index.html").exists(), reason="python3.11-doc not installed")
def test_python_docs_first_pages(tmp_path: Path) -> None:
    crawl = CrawlConfig(local_site=PYTHON_DOCS, max_pages=30, delay_seconds=0.0,
                        exclude_patterns=[r"/genindex", r"/contents\.html$", r"/_sources/"])
    stats = build_snapshot(CorpusConfig(crawl=crawl, quality=NO_QUALITY), tmp_path)
    print(f"python docs: {stats['pages_fetched']} pages -> {stats['documents']} documents, {stats['words']} words")
    assert stats["pages_fetched"] == 30
    assert stats["documents"] >= 25 and stats["words"] > 10_000
    urls = read_snapshot(tmp_path).column("url").to_pylist()
    assert all(u.startswith(PYTHON_DOCS.as_uri() + "/") for u in urls)


def test_near_duplicates_and_pii_within_the_snapshot_and_against_its_parent(tmp_path: Path) -> None:
    # proposed by the minhash/pii helper (task 3b)
    words = [f"word{i}" for i in range(300)]
    base = " ".join(words)
    rewritten = " ".join(words[:150] + ["changed"] * 10 + words[160:])  # one passage rewritten
    other = " ".join(f"other{i}" for i in range(300))
    rows = [{"text": base + " mail jane@corp.com", "url": "u1"}, {"text": rewritten, "url": "u2"},
            {"text": other + " from 8.8.8.8", "url": "u3"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = CorpusConfig(local_files=[str(tmp_path / "a.jsonl")], quality=NO_QUALITY, language={"enabled": False})
    stats = build_snapshot(cfg, tmp_path / "one")
    assert stats["documents"] == 2 and stats["dropped_near_duplicate"] == 1
    assert stats["pii_email"] == 1 and stats["pii_ip"] == 1
    texts = read_snapshot(tmp_path / "one").column("text").to_pylist()
    assert "jane@corp.com" not in " ".join(texts) and "8.8.8.8" not in " ".join(texts)
    assert (tmp_path / "one" / "minhash_index.parquet").exists()

    (tmp_path / "b.jsonl").write_text(json.dumps({"text": rewritten, "url": "u9"}) + "\n")
    child = CorpusConfig(local_files=[str(tmp_path / "b.jsonl")], quality=NO_QUALITY, language={"enabled": False})
    stats = build_snapshot(child, tmp_path / "two", parent_dir=tmp_path / "one")
    assert stats["documents"] == 0 and stats["dropped_near_duplicate_of_parent"] == 1


def test_cleaning_report_accounts_for_every_step(tmp_path: Path) -> None:
    # proposed by the cleaning-report helper (task 3e)
    words = [f"word{i}" for i in range(300)]
    base = " ".join(words)
    rows = [{"text": base, "url": "u1"}, {"text": base, "url": "u2"}, {"text": "tiny", "url": "u3"},
            {"text": " ".join(words[:150] + ["changed"] * 10 + words[160:]), "url": "u4"},
            {"text": " ".join(f"other{i}" for i in range(300)), "url": "u5"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = CorpusConfig(local_files=[str(tmp_path / "a.jsonl")], quality=NO_QUALITY, language={"enabled": False})
    stats = build_snapshot(cfg, tmp_path / "out")
    texts = read_snapshot(tmp_path / "out").column("text").to_pylist()
    assert stats["bytes_in"] == sum(len(r["text"].encode()) for r in rows)
    assert stats["bytes_out"] == sum(len(t.encode()) for t in texts)
    report = (tmp_path / "out" / "cleaning_report.md").read_text()
    assert "| too_few_words | 5 | 4 | 1 |" in report
    assert "| duplicate | 4 | 3 | 1 |" in report
    near_duplicate_in = stats["bytes_out"] + len(rows[3]["text"])
    assert f"| near_duplicate | 3 | 2 | 1 | {near_duplicate_in:,} | {stats['bytes_out']:,} |" in report
    assert "**near_duplicate**: `u4`" in report and "**duplicate**: `u2`" in report
    for plot in ("document_length.png", "languages.png"):
        assert (tmp_path / "out" / plot).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
