"""The corpus benchmark's harness on tiny inputs: synthetic corpus, measurement, our side end to end.

Timings are printed by the benchmark, never asserted here.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from pathlib import Path

import pytest

from bench.corpus_bench import (
    DATATROVE_VENV, CorpusInput, Row, clean_config, crawl_config, datatrove_params, extract_config, format_table,
    measure, ours, run_datatrove, run_ours, snapshot_rows, write_corpus,
)
from bench.synthetic_corpus import (
    URL_PREFIX, build_synthetic_corpus, is_prose, prose_paragraphs, write_jsonl_shards,
)
from tasks.config import load_config
from tests.tasks.site_fixtures import make_site

SUBJECTS = ("The parser", "Every worker", "A careful reader", "The scheduler", "Our crawler", "This module")
VERBS = ("reads", "checks", "writes", "counts", "keeps", "returns")
OBJECTS = ("the whole document before it starts", "each page that the index links to",
           "every line of the configuration file", "the results in the order they arrived",
           "a short summary for the final report", "the same answer on every machine")


def source_texts() -> list[str]:
    """Ten documents of English prose sentences (216 distinct ones in all), plus code lines to be ignored."""
    sentences = [f"{s} {v} {o}." for s, v, o in itertools.product(SUBJECTS, VERBS, OBJECTS)]
    return ["\n".join([*sentences[i::10], "x = call(a, b)  # code", "Contents"]) for i in range(10)]


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_prose_paragraphs_keep_sentences_not_code_or_headings():
    assert is_prose("The parser reads the whole document before it starts.")
    assert not is_prose("Call os.path.join(a, b) to build the path from its parts.")  # brackets: code
    assert not is_prose("Contents")
    assert len(prose_paragraphs(source_texts())) == 216


def test_synthetic_corpus_plants_duplicates_and_junk_deterministically():
    corpus = build_synthetic_corpus(source_texts(), num_docs=200, seed=3, paragraphs_per_doc=(8, 20))
    again = build_synthetic_corpus(source_texts(), num_docs=200, seed=3, paragraphs_per_doc=(8, 20))
    assert corpus.documents == again.documents
    assert build_synthetic_corpus(source_texts(), 200, seed=4, paragraphs_per_doc=(8, 20)).documents != corpus.documents
    urls = [d["url"] for d in corpus.documents]
    assert len(corpus.documents) == 200 and len(set(urls)) == 200 and all(u.startswith(URL_PREFIX) for u in urls)
    text_of = {d["url"]: d["text"] for d in corpus.documents}
    kinds = [kind for _, _, kind in corpus.duplicate_pairs]
    assert kinds.count("exact") == 8 and kinds.count("near") == 12 and len(corpus.junk_urls) == 10
    for original, copy, kind in corpus.duplicate_pairs:
        if kind == "exact":
            assert text_of[copy] == text_of[original]
        else:
            a, b = shingles(text_of[original]), shingles(text_of[copy])
            assert text_of[copy] != text_of[original] and len(a & b) / len(a | b) > 0.6
    # copies are shuffled among the documents, not appended at the end
    positions = [urls.index(copy) for _, copy, _ in corpus.duplicate_pairs]
    assert min(positions) < 100


def test_synthetic_corpus_rejects_bad_arguments_all_at_once():
    with pytest.raises(ValueError) as error:
        build_synthetic_corpus(["Too little prose here."], num_docs=0, junk_fraction=0.95)
    message = str(error.value)
    assert "num_docs must be >= 1, got 0" in message and "junk_fraction" in message and "prose paragraphs" in message


def test_jsonl_shards_hold_every_document_once(tmp_path):
    documents = [{"id": f"d{i}", "url": f"d{i}", "text": f"text {i}"} for i in range(11)]
    paths = write_jsonl_shards(documents, tmp_path, num_files=4)
    assert [p.name for p in paths] == [f"part-{i:05d}.jsonl" for i in range(4)]
    read = [json.loads(line) for p in paths for line in p.read_text().splitlines()]
    assert sorted(read, key=lambda d: int(d["id"][1:])) == documents
    assert not list(tmp_path.glob("*.tmp"))


def test_measure_reads_the_last_json_line_and_the_peak_memory(tmp_path):
    script = "import json; block = bytearray(200 * 2**20); import time; time.sleep(0.5); print('noise'); " \
             "end = time.process_time() + 0.3\nwhile time.process_time() < end: pass\nprint(json.dumps({'answer': 42}))"
    measured = measure([sys.executable, "-c", script], tmp_path / "child.log", env={})
    assert measured.result == {"answer": 42}
    assert measured.peak_rss_mb > 200
    assert measured.cpu_seconds >= 0.3 and measured.wall_seconds >= 0.5
    # CPU time of a grandchild that is never reaped through the child (as datatrove's forkserver workers)
    orphan = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time\\n"
              "end = time.process_time() + 0.5\\nwhile time.process_time() < end: pass']); time.sleep(2); "
              "print('{}')")
    assert measure([sys.executable, "-c", orphan], tmp_path / "child.log", env={}).cpu_seconds >= 0.3
    with pytest.raises(RuntimeError, match="exit 3.*child.log"):
        measure([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path / "child.log", env={})


@pytest.fixture(scope="module")
def demo():
    """The demo preset's corpus section: the configuration the benchmark follows by default."""
    return load_config("demo").corpus


def test_configs_keep_the_preset_steps_and_replace_the_sources(demo, tmp_path):
    (tmp_path / "part-00000.jsonl").write_text("")
    clean = clean_config(demo, str(tmp_path / "*.jsonl"), language_id=False)
    assert clean.local_files == [str(tmp_path / "*.jsonl")] and clean.crawl.local_site is None
    assert clean.quality == demo.quality and clean.near_dedup == demo.near_dedup and not clean.language.enabled
    assert clean_config(demo, str(tmp_path / "*.jsonl"), language_id=True).language == demo.language
    site = make_site(tmp_path / "site")
    crawl = crawl_config(demo, site, max_pages=7)
    assert (crawl.crawl.local_site, crawl.crawl.max_pages, crawl.crawl.delay_seconds) == (site, 7, 0.0)
    assert crawl.crawl.exclude_patterns == demo.crawl.exclude_patterns
    extract = extract_config(crawl)
    assert not (extract.quality.c4.enabled or extract.near_dedup.enabled or extract.language.enabled)


def test_datatrove_params_follow_the_preset(demo):
    params = datatrove_params(demo)
    assert params["gopher_repetition"] is None  # the demo preset turns Gopher repetition off
    assert params["c4"]["filter_no_terminal_punct"] is False and params["c4"]["filter_curly_bracket"] is False
    assert params["fineweb"]["char_duplicates_ratio"] == 0.1
    assert params["minhash"] == {"n_grams": 5, "num_buckets": 14, "hashes_per_bucket": 8, "seed": 1}
    json.dumps(params)  # it travels to the datatrove venv as JSON


def tiny_corpus(tmp_path: Path) -> CorpusInput:
    """The synthetic corpus at 60 documents, as the benchmark writes it."""
    synthetic = build_synthetic_corpus(source_texts(), num_docs=60, seed=0, paragraphs_per_doc=(8, 20))
    corpus = write_corpus("synthetic", synthetic.documents, tmp_path / "input")
    corpus.duplicate_pairs, corpus.junk_urls = synthetic.duplicate_pairs, synthetic.junk_urls
    return corpus


def test_ours_cleans_the_tiny_corpus_and_drops_the_planted_duplicates_and_junk(demo, tmp_path):
    corpus = tiny_corpus(tmp_path)
    row = run_ours(corpus, tmp_path, workers=1, preset=demo, language_id=False)
    assert row.system == "ours" and row.processes == 1 and row.seconds > 0 and row.peak_rss_mb > 0
    assert row.kept == len(row.kept_urls) < corpus.documents
    assert row.duplicates_kept() == f"0/{len(corpus.duplicate_pairs)}"
    assert row.junk_kept() == f"0/{len(corpus.junk_urls)}"


@pytest.mark.slow
def test_ours_crawls_and_extracts_a_local_site(demo, tmp_path):
    cfg = crawl_config(demo, make_site(tmp_path / "site"), max_pages=20)
    crawl = ours("crawl", cfg, tmp_path / "crawl", tmp_path / "crawl.log")
    assert crawl.result["pages"] >= 5 and crawl.peak_rss_mb > 0
    extract = ours("snapshot", extract_config(cfg), tmp_path / "crawl", tmp_path / "extract.log")
    texts = [row["text"] for row in snapshot_rows(tmp_path / "crawl")]
    assert extract.result["documents"] == len(texts) >= 4
    assert any("breadth first" in text for text in texts)


def test_table_row_reports_unknown_ground_truth_as_a_dash(tmp_path):
    corpus = CorpusInput(name="docs", folder=tmp_path, documents=10, megabytes=2.0)
    row = Row("ours", corpus, kept=8, seconds=2.0, processes=2, cpu_seconds=4.5, peak_rss_mb=100.0, kept_urls=set())
    assert (row.duplicates_kept(), row.junk_kept()) == ("-", "-")
    assert row.per_core(corpus.documents) == 2.5  # documents per second per worker process
    header, line = format_table([row]).splitlines()
    assert line.split() == ["ours", "docs", "10", "8", "2.0", "2", "2.5", "0.50", "4.5", "0.44", "100", "-", "-"]


@pytest.mark.slow
@pytest.mark.skipif(not (DATATROVE_VENV / "bin" / "python").exists(),
                    reason="no datatrove venv (python bench/corpus_bench.py creates it)")
def test_datatrove_runs_the_equivalent_chain_on_the_same_files(demo, tmp_path):
    corpus = tiny_corpus(tmp_path)
    params = tmp_path / "params.json"
    params.write_text(json.dumps(datatrove_params(demo)))
    row = run_datatrove(corpus, tmp_path, workers=2, python=DATATROVE_VENV / "bin" / "python", params=params)
    assert row.kept == len(row.kept_urls) < corpus.documents
    input_urls = {json.loads(line)["url"] for path in corpus.folder.glob("*.jsonl") for line in path.open()}
    assert row.kept_urls <= input_urls  # the input ids came through datatrove unchanged
    assert row.duplicates_kept() == f"0/{len(corpus.duplicate_pairs)}"
