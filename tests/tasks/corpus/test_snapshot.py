import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from tasks.clean.quality import QualityConfig
from tasks.clean.text_stats import WORD_COUNT_RULE, count_words
from tasks.corpus.snapshot import DROP_REASONS, SNAPSHOT_SCHEMA, CorpusConfig, build_snapshot, read_snapshot
from tasks.crawl.config import CrawlConfig
from tasks.crawl.local_site import PYTHON_DOCS
from tasks.parallel import local_map
from tests.tasks.piece_fixtures import Stopped, flip_bytes, stop_after, warnings_of
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


def test_config_text_format_defaults_to_a_file_per_document_and_a_bad_one_names_the_valid_ones(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("some text")
    assert CorpusConfig(local_files=[str(tmp_path / "a.txt")]).local_text_format == "file"
    with pytest.raises(ValidationError) as info:
        CorpusConfig(local_files=[str(tmp_path / "a.txt")], local_text_format="google")
    message = str(info.value)
    assert "local_text_format" in message and "'file', 'bert' or 'lines'" in message and "'google'" in message


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
    assert stats["words"] == sum(count_words(r["text"]) for r in rows)
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


def test_bert_format_documents_keep_their_lines_and_chinese_words_are_characters(tmp_path: Path) -> None:
    english = ["The first document starts here.", "It has a second sentence with a few more words in it."]
    chinese = ["我们今天去公园散步。", "天气很好。"]
    chinese_short = ["我们明天去公园。", "好的。"]  # 11 characters, 2 whitespace-separated "words"
    blocks = ["\n".join(english), "\n".join(chinese), "\n".join(chinese_short)]
    (tmp_path / "google.txt").write_text("\n\n".join(blocks) + "\n")
    cfg = CorpusConfig(local_files=[str(tmp_path / "google.txt")], local_text_format="bert", min_words=15,
                       quality=NO_QUALITY, language={"enabled": False})
    stats = build_snapshot(cfg, tmp_path / "out")
    rows = read_snapshot(tmp_path / "out").to_pylist()
    url = (tmp_path / "google.txt").as_uri()
    assert sorted((r["url"], r["text"]) for r in rows) == [(f"{url}#doc=1", blocks[0]), (f"{url}#doc=2", blocks[1])]
    # min_words counts a Chinese character as a word (15 kept, 11 dropped), and so does the statistic
    assert stats["documents_in"] == 3 and stats["dropped_too_few_words"] == 1
    assert stats["words"] == 17 + len("".join(chinese)) == 32
    report = (tmp_path / "out" / "cleaning_report.md").read_text()
    assert "Kept documents: median 16 words" in report and WORD_COUNT_RULE in report


# ---------------------------------------------------------------- sharded, resumable, refreshable builds

def _sentence(seed: int, words: int = 60) -> str:
    return " ".join(f"w{(seed * 7919 + i * 104729) % 5003}" for i in range(words))


def _mixed_sources(root: Path, documents: int = 30) -> CorpusConfig:
    """jsonl documents with exact and near duplicates, a too-short one, and two HTML files."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [{"url": f"https://example.org/doc/{i:03d}", "text": _sentence(i)} for i in range(documents)]
    rows.append({"url": "https://example.org/zzz/copy", "text": rows[3]["text"]})  # exact duplicate, larger url
    rows.append({"url": "https://example.org/aaa", "text": rows[5]["text"]})  # exact duplicate, smaller url
    near = rows[7]["text"].split()
    rows.append({"url": "https://example.org/near", "text": " ".join(near[:55] + ["edited"] + near[56:])})
    rows.append({"url": "https://example.org/short", "text": "too short"})
    (root / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    for number, name in enumerate(("one", "two")):
        paragraphs = "".join(f"<p>{_sentence(1000 + number * 10 + k, 30)}.</p>" for k in range(3))
        (root / f"{name}.html").write_text(f"<html><head><title>{name}</title></head><body><main>{paragraphs}"
                                           "</main></body></html>")
    return CorpusConfig(local_files=[str(root / "*.jsonl"), str(root / "*.html")], min_words=5, quality=NO_QUALITY,
                        language={"enabled": False}, documents_per_shard=7)


def _snapshot_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.parquet"))}


def test_shards_are_byte_identical_whatever_the_map_and_work_shard_size(tmp_path: Path) -> None:
    cfg = _mixed_sources(tmp_path / "src")
    serial = build_snapshot(cfg.model_copy(update={"work_shard_documents": 1000}), tmp_path / "serial")
    parallel = build_snapshot(cfg.model_copy(update={"work_shard_documents": 3}), tmp_path / "parallel",
                              map_shards=local_map(2))
    assert serial["work_shards"] == 1 and parallel["work_shards"] == 12
    files = _snapshot_files(tmp_path / "serial")
    assert len(files) == 1 + 5  # the minhash index and 32 documents in shards of 7
    assert files == _snapshot_files(tmp_path / "parallel")
    assert (tmp_path / "serial" / "cleaning_report.md").read_text() == \
           (tmp_path / "parallel" / "cleaning_report.md").read_text()
    assert {k: v for k, v in serial.items() if k != "work_shards"} == \
           {k: v for k, v in parallel.items() if k != "work_shards"}
    assert serial["documents"] == 32 and serial["dropped_duplicate"] == 2 and serial["dropped_near_duplicate"] == 1
    assert serial["dropped_too_few_words"] == 1 and serial["documents_in"] == 36
    urls = read_snapshot(tmp_path / "serial").column("url").to_pylist()
    assert urls == sorted(urls)
    assert "https://example.org/aaa" in urls and "https://example.org/doc/005" not in urls  # the smaller url wins
    assert "https://example.org/doc/003" in urls and "https://example.org/zzz/copy" not in urls
    assert not (tmp_path / "serial" / "work").exists()


_BUILD_SCRIPT = """
import sys
from pathlib import Path
from tasks.corpus.snapshot import CorpusConfig, build_snapshot
cfg = CorpusConfig.model_validate_json(Path(sys.argv[1]).read_text())
build_snapshot(cfg, Path(sys.argv[2]))
"""


def test_a_killed_build_resumes_without_redoing_finished_shards(tmp_path: Path) -> None:
    cfg = _mixed_sources(tmp_path / "src", documents=60).model_copy(update={"work_shard_documents": 1})
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-c", _BUILD_SCRIPT, str(tmp_path / "cfg.json"), str(out)])
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "work").glob("cleaned-*.json"))) < 5:
            assert process.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    finished = len(list((out / "work").glob("cleaned-*.json")))
    assert 5 <= finished < 66
    stats = build_snapshot(cfg, out)
    assert stats["shards_reused"] == finished
    fresh = build_snapshot(cfg, tmp_path / "fresh")
    assert fresh["shards_reused"] == 0
    assert _snapshot_files(out) == _snapshot_files(tmp_path / "fresh")
    assert {k: v for k, v in stats.items() if k != "shards_reused"} == \
           {k: v for k, v in fresh.items() if k != "shards_reused"}
    assert not list(out.rglob("*.tmp")) and not (out / "work").exists()


def _all_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_damaged_work_shards_are_rebuilt_not_used(tmp_path: Path, caplog) -> None:
    cfg = _mixed_sources(tmp_path / "src").model_copy(update={"work_shard_documents": 5, "write_dropped": True})
    fresh = build_snapshot(cfg, tmp_path / "fresh")
    out = tmp_path / "out"
    with pytest.raises(Stopped):
        build_snapshot(cfg, out, run_step=stop_after("clean shards"))  # killed with every shard cleaned
    work = out / "work"
    damaged_input, damaged_cleaned = work / "input-00001.parquet", work / "cleaned-00002.arrow"
    written_input = damaged_input.read_bytes()
    flip_bytes(damaged_input)
    (work / "cleaned-00001.json").unlink()  # shard 1 not finished: it needs its input shard
    flip_bytes(damaged_cleaned)

    with pytest.raises(Stopped):
        build_snapshot(cfg, out, run_step=stop_after("read sources"))
    [warning] = warnings_of(caplog)
    assert str(damaged_input) in warning and "checksum differs from the one recorded when it was written" in warning
    assert damaged_input.read_bytes() == written_input  # written again from the sources, as it was

    caplog.clear()
    stats = build_snapshot(cfg, out)
    [warning] = warnings_of(caplog)
    assert str(damaged_cleaned) in warning and "checksum differs" in warning
    assert stats["shards_reused"] == stats["work_shards"] - 2  # shards 1 and 2 were cleaned again
    assert {k: v for k, v in stats.items() if k != "shards_reused"} == \
           {k: v for k, v in fresh.items() if k != "shards_reused"}
    assert _all_files(out) == _all_files(tmp_path / "fresh")


def _jsonl_config(path: Path, rows: list[dict], **overrides) -> CorpusConfig:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return CorpusConfig(local_files=[str(path)], min_words=5, quality=NO_QUALITY, language={"enabled": False},
                        **overrides)


@pytest.mark.parametrize("jaccard_threshold", [None, 0.7])
def test_refresh_keeps_unchanged_pages_and_drops_copies_of_parent_documents_under_other_urls(
        tmp_path: Path, jaccard_threshold: float | None) -> None:
    a, b, c, f = (_sentence(seed, 200) for seed in (1, 2, 3, 4))
    near_dedup = {"jaccard_threshold": jaccard_threshold}
    parent = _jsonl_config(tmp_path / "parent.jsonl", [{"url": "u/a", "text": a}, {"url": "u/b", "text": b},
                                                       {"url": "u/c", "text": c}], near_dedup=near_dedup)
    build_snapshot(parent, tmp_path / "one")
    c_words = c.split()
    child_rows = [
        {"url": "u/a", "text": a},  # unchanged: kept although the parent holds it
        {"url": "u/b", "text": b + " and a new closing sentence"},  # changed: kept (same url as its parent version)
        {"url": "u/d", "text": a},  # a's text under a new url: duplicate of the parent
        {"url": "u/e", "text": " ".join(c_words[:100] + ["edited"] + c_words[101:])},  # near copy of c, new url
        {"url": "u/f", "text": f},  # new
    ]  # u/c is gone
    child = _jsonl_config(tmp_path / "child.jsonl", child_rows, near_dedup=near_dedup)
    stats = build_snapshot(child, tmp_path / "two", parent_dir=tmp_path / "one")
    assert read_snapshot(tmp_path / "two").column("url").to_pylist() == ["u/a", "u/b", "u/f"]
    assert stats["dropped_duplicate_of_parent"] == 1 and stats["dropped_near_duplicate_of_parent"] == 1
    assert stats["dropped_duplicate"] == 0 and stats["dropped_near_duplicate"] == 0
    assert stats["documents_unchanged"] == 1 and stats["documents_added"] == 2 and stats["documents_removed"] == 1
    changes = json.loads((tmp_path / "two" / "changes.json").read_text())
    assert (changes["added"], changes["changed"], changes["removed"]) == (["u/f"], ["u/b"], ["u/c"])
    report = (tmp_path / "two" / "cleaning_report.md").read_text()
    assert "| duplicate_of_parent | 5 | 4 | 1 |" in report and "**near_duplicate_of_parent**: `u/e`" in report


def test_write_dropped_keeps_every_dropped_document_with_its_reason(tmp_path: Path) -> None:
    text = _sentence(9)
    rows = [{"url": "u/1", "text": text}, {"url": "u/2", "text": text}, {"url": "u/3", "text": "too short"}]
    (tmp_path / "page.html").write_text("<html><body><script>only code</script></body></html>")
    cfg = _jsonl_config(tmp_path / "a.jsonl", rows, write_dropped=True).model_copy(
        update={"local_files": [str(tmp_path / "a.jsonl"), str(tmp_path / "page.html")], "work_shard_documents": 2})
    stats = build_snapshot(cfg, tmp_path / "out")
    assert stats["documents"] == 1 and stats["dropped_extract_empty"] == 1
    dropped = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "out" / "dropped").glob("*.parquet")))
    by_url = {r["url"]: r for r in dropped.to_pylist()}
    assert set(by_url) == {"u/2", "u/3", (tmp_path / "page.html").as_uri()}
    assert (by_url["u/2"]["step"], by_url["u/2"]["reason"], by_url["u/2"]["text"]) == ("duplicate", "duplicate", text)
    assert (by_url["u/3"]["step"], by_url["u/3"]["reason"]) == ("too_few_words", "too_few_words")
    assert by_url[(tmp_path / "page.html").as_uri()]["reason"] == "extract_empty"
    assert not (tmp_path / "nodrop").exists()
    build_snapshot(cfg.model_copy(update={"write_dropped": False}), tmp_path / "nodrop")
    assert not (tmp_path / "nodrop" / "dropped").exists()


def _thread_map(fn, items):
    """map_shards on a worker thread, as a Dask worker runs tasks."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return list(pool.map(fn, items))


@pytest.mark.parametrize("map_shards", [None, _thread_map], ids=["main-thread", "worker-thread-child-process"])
def test_a_slow_page_is_dropped_at_the_extraction_time_limit(tmp_path: Path, map_shards) -> None:
    blocks = "".join(f"<div><p>Paragraph {i} says a few words about nothing at all.</p></div>" for i in range(20_000))
    (tmp_path / "slow.html").write_text(f"<html><body>{blocks}</body></html>")
    (tmp_path / "ok.txt").write_text(_sentence(5))
    cfg = CorpusConfig(local_files=[str(tmp_path / "slow.html"), str(tmp_path / "ok.txt")], min_words=5,
                       quality=NO_QUALITY, language={"enabled": False}, extract={"timeout_seconds": 0.05})
    stats = build_snapshot(cfg, tmp_path / "out", **({"map_shards": map_shards} if map_shards else {}))
    assert stats["dropped_extract_timeout"] == 1 and stats["documents"] == 1
    assert not list((tmp_path / "out").rglob("clean-spec-*"))  # a child's spec file is cleaned up


def test_a_parent_built_with_other_hash_settings_is_refused_before_any_work(tmp_path: Path) -> None:
    rows = [{"url": "u/a", "text": _sentence(1)}]
    build_snapshot(_jsonl_config(tmp_path / "a.jsonl", rows), tmp_path / "one")
    child = _jsonl_config(tmp_path / "b.jsonl", rows, near_dedup={"num_bands": 10})
    with pytest.raises(ValueError, match="num_bands='14' \\(this run uses '10'\\)"):
        build_snapshot(child, tmp_path / "two", parent_dir=tmp_path / "one")
    assert not (tmp_path / "two").exists()
    with pytest.raises(ValueError, match="holds no documents-\\*.parquet"):
        build_snapshot(child, tmp_path / "three", parent_dir=tmp_path / "two")
