"""Corpus benchmark: crawl rate, and cleaning throughput of the whole chain, ours side by side with datatrove.

    python bench/corpus_bench.py [--synthetic-docs N] [--workers W] [--skip-datatrove]   (or: make bench-corpus)

1. Crawl the Python documentation served on 127.0.0.1 (the preset's crawl scope, no delay): pages/s.
2. Extract every crawled page once (a snapshot with all filters off) and write the texts as jsonl files:
   the "docs" corpus. Build a seeded synthetic corpus from their prose with planted exact and near
   duplicates and junk (bench/synthetic_corpus.py).
3. On each corpus, the same files go through our build_snapshot (the preset's cleaning steps) and through
   datatrove's equivalent pipeline (bench/datatrove_pipeline.py, in its own venv, created on first use).
   Language id is off on both sides (datatrove's needs a fastText model download); ours with it is an
   extra row. Every measurement runs in its own process; peak memory is the largest sum of RSS over that
   process and its children, sampled every 50 ms.
Prints one table; asserts nothing. Figures on a shared machine vary from run to run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

if __package__ in (None, ""):  # run as a file (python bench/corpus_bench.py): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.process_tree import Measured, measure
from bench.synthetic_corpus import build_synthetic_corpus, write_ground_truth, write_jsonl_shards
from tasks.config import load_config
from tasks.corpus.snapshot import CorpusConfig

REPO = Path(__file__).resolve().parent.parent
DATATROVE_VENV = REPO / ".bench" / "datatrove-venv"
DATATROVE_REQUIREMENTS = REPO / "bench" / "datatrove-requirements.txt"
INPUT_FILES = 8  # jsonl files per corpus at least: datatrove splits work by file, so never fewer than workers
NOTES = """\
- Language id is off in the 'ours' and 'datatrove' rows (datatrove's LanguageFilter downloads a fastText model);
  'ours+langid' adds our py3langid step.
- datatrove has no whitespace-normalising or 20-word minimum step (Gopher's 50-word minimum covers the latter);
  its filters split words with spaCy and count punctuation tokens as words, so its Gopher alphabetic-words rule
  drops most technical pages.
- seconds: processing time inside the child (interpreter start and imports excluded); per-core figures divide
  it by procs. CPU s: user + system time of the child's whole process tree, start-up included (a cost that other
  load on the machine barely changes). peak RSS: the largest sum over the process tree, sampled every 50 ms."""


def ours(step: str, cfg: CorpusConfig, out: Path, log: Path, workers: int = 1) -> Measured:
    """One bench/ours_pipeline.py step on cfg (saved next to the log) in a child process of the project's venv."""
    config = log.with_suffix(".json")
    config.write_text(cfg.model_dump_json(indent=1))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, str(REPO / "bench" / "ours_pipeline.py"), step, "--config", str(config),
               "--out", str(out), "--workers", str(workers)]
    return measure(command, log, env)


def crawl_config(preset: CorpusConfig, site: Path, max_pages: int) -> CorpusConfig:
    """The preset's crawl settings (scope, exclusions) on the local site, without delay, capped at max_pages."""
    crawl = {**preset.crawl.model_dump(), "local_site": site, "delay_seconds": 0.0, "max_pages": max_pages}
    return CorpusConfig.model_validate({"crawl": crawl})


def extract_config(crawl: CorpusConfig) -> CorpusConfig:
    """crawl's config with every filter, near-dedup and PII off: the snapshot is the extracted text of each page."""
    off = {"enabled": False}
    return CorpusConfig.model_validate({
        "crawl": crawl.crawl.model_dump(), "min_words": 0, "language": off, "near_dedup": off, "pii": off,
        "quality": {"gopher_repetition": off, "gopher_quality": off, "c4": off, "fineweb": off},
    })


def clean_config(preset: CorpusConfig, input_pattern: str, language_id: bool) -> CorpusConfig:
    """The preset's corpus config with its sources replaced by the local files input_pattern."""
    corpus = preset.model_dump(exclude={"crawl", "local_files", "warc", "hf_datasets"})
    corpus["local_files"] = [input_pattern]
    corpus["language"]["enabled"] = language_id and preset.language.enabled
    return CorpusConfig.model_validate(corpus)


# ---------------------------------------------------------------- datatrove, in its own venv

def datatrove_env() -> dict[str, str]:
    """This environment without PYTHONPATH: nothing of ours may leak into the datatrove venv's interpreter."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def datatrove_python() -> Path:
    """The datatrove venv's python, creating the venv from bench/datatrove-requirements.txt on first use.

    datatrove pins xxhash<4 and other versions that clash with ours, so it never enters the project's venv.
    """
    python = DATATROVE_VENV / "bin" / "python"
    stamp = DATATROVE_VENV / ".installed"
    if stamp.exists() and stamp.stat().st_mtime >= DATATROVE_REQUIREMENTS.stat().st_mtime:
        return python
    print(f"creating {DATATROVE_VENV} (datatrove and its pins, once) ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DATATROVE_VENV)], check=True)  # same Python as ours
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(DATATROVE_REQUIREMENTS)], check=True,
                   env=datatrove_env())
    stamp.touch()
    return python


def datatrove_params(corpus: CorpusConfig) -> dict:
    """Keyword arguments of each datatrove step, translated from our corpus config (None = step off)."""
    q, near, pii = corpus.quality, corpus.near_dedup, corpus.pii
    rep, gq, c4, fw = q.gopher_repetition, q.gopher_quality, q.c4, q.fineweb
    return {
        # tasks/clean/normalize.py FixMojibake: ftfy's own defaults, no HTML unescaping, NFC (datatrove's defaults differ)
        "ftfy": {"unescape_html": False, "normalization": "NFC", "fix_latin_ligatures": True,
                 "fix_character_width": True, "uncurl_quotes": True, "fix_line_breaks": True},
        "gopher_repetition": {
            "dup_line_frac": rep.max_duplicate_line_fraction, "dup_line_char_frac": rep.max_duplicate_line_char_fraction,
            "dup_para_frac": rep.max_duplicate_paragraph_fraction,
            "dup_para_char_frac": rep.max_duplicate_paragraph_char_fraction,
            "top_n_grams": sorted(rep.top_ngram_max_char_fraction.items()),
            "dup_n_grams": sorted(rep.duplicate_ngram_max_char_fraction.items()),
        } if rep.enabled else None,
        "gopher_quality": {
            "min_doc_words": gq.min_words, "max_doc_words": gq.max_words, "min_avg_word_length": gq.min_mean_word_length,
            "max_avg_word_length": gq.max_mean_word_length, "max_symbol_word_ratio": gq.max_symbol_word_ratio,
            "max_bullet_lines_ratio": gq.max_bullet_lines_fraction,
            "max_ellipsis_lines_ratio": gq.max_ellipsis_lines_fraction,
            "max_non_alpha_words_ratio": gq.min_alphabetic_words_fraction,  # datatrove's name, same meaning
            "min_stop_words": gq.min_stop_words, "stop_words": gq.stop_words,
        } if gq.enabled else None,
        "c4": {
            "split_paragraph": True, "remove_citations": c4.remove_citations,
            "filter_no_terminal_punct": c4.drop_lines_without_terminal_punctuation,
            "min_num_sentences": c4.min_sentences or -1, "min_words_per_line": c4.min_words_per_line,
            "max_word_length": c4.max_word_length, "filter_lorem_ipsum": c4.drop_lorem_ipsum,
            "filter_javascript": c4.drop_javascript_lines, "filter_curly_bracket": c4.drop_curly_bracket,
            "filter_policy": c4.drop_policy_lines,
        } if c4.enabled else None,
        "fineweb": {
            "line_punct_thr": fw.min_line_punct_ratio, "short_line_length": fw.short_line_length,
            "short_line_thr": fw.max_short_line_ratio, "char_duplicates_ratio": fw.max_char_duplicates_ratio,
            "new_line_ratio": fw.max_new_line_ratio,
        } if fw.enabled else None,
        "pii": {"remove_emails": pii.emails, "remove_ips": pii.ip_addresses, "email_replacement": pii.email_replacement,
                "ip_replacement": pii.ipv4_replacement} if pii.enabled else None,
        "minhash_enabled": near.enabled,
        "minhash": {"n_grams": near.ngram, "num_buckets": near.num_bands, "hashes_per_bucket": near.rows_per_band,
                    "seed": near.seed},
    }


# ---------------------------------------------------------------- corpora and measurements

@dataclass
class CorpusInput:
    """One corpus as jsonl files (id, url, text), with its ground truth where it has one."""

    name: str
    folder: Path
    documents: int
    megabytes: float  # UTF-8 text, 10^6 bytes
    duplicate_pairs: list[tuple[str, str, str]] | None = None  # (original url, copy url, kind); None = unknown
    junk_urls: list[str] | None = None


@dataclass
class Row:
    """One system on one corpus."""

    system: str
    corpus: CorpusInput
    kept: int
    seconds: float  # processing time the child reported (interpreter start and imports excluded)
    processes: int  # worker processes that shared the work: per-core figures divide by this
    cpu_seconds: float  # CPU time of the whole process tree (robust to other load on the machine)
    peak_rss_mb: float
    kept_urls: set[str]

    def per_core(self, amount: float) -> float:
        return amount / self.seconds / self.processes

    def duplicates_kept(self) -> str:
        """Planted duplicate pairs whose two documents both survived, of all planted pairs."""
        pairs = self.corpus.duplicate_pairs
        if pairs is None:
            return "-"
        return f"{sum(a in self.kept_urls and b in self.kept_urls for a, b, _ in pairs)}/{len(pairs)}"

    def junk_kept(self) -> str:
        junk = self.corpus.junk_urls
        return "-" if junk is None else f"{sum(url in self.kept_urls for url in junk)}/{len(junk)}"


def write_corpus(name: str, documents: list[dict[str, str]], folder: Path, num_files: int = INPUT_FILES,
                 ) -> CorpusInput:
    write_jsonl_shards(documents, folder, num_files)
    megabytes = sum(len(d["text"].encode("utf-8")) for d in documents) / 1e6
    return CorpusInput(name=name, folder=folder, documents=len(documents), megabytes=megabytes)


def snapshot_rows(snapshot_dir: Path) -> list[dict[str, str]]:
    """url and text of every row of a snapshot (README: documents-NNNNN.parquet)."""
    return [row for shard in sorted(snapshot_dir.glob("documents-*.parquet"))
            for row in pq.read_table(shard, columns=["url", "text"]).to_pylist()]


def run_ours(corpus: CorpusInput, work: Path, workers: int, preset: CorpusConfig, language_id: bool) -> Row:
    label = "ours+langid" if language_id else "ours"
    out = work / f"{label}-{corpus.name}"
    cfg = clean_config(preset, str(corpus.folder / "*.jsonl"), language_id)
    measured = ours("snapshot", cfg, out, work / f"{label}-{corpus.name}.log", workers)
    kept = {row["url"] for row in snapshot_rows(out)}
    return Row(label, corpus, measured.result["documents"], measured.result["seconds"], measured.result["processes"],
               measured.cpu_seconds, measured.peak_rss_mb, kept)


def run_datatrove(corpus: CorpusInput, work: Path, workers: int, python: Path, params: Path) -> Row:
    out = work / f"datatrove-{corpus.name}"
    command = [str(python), str(REPO / "bench" / "datatrove_pipeline.py"), "--input", str(corpus.folder),
               "--work", str(out), "--workers", str(workers), "--params", str(params)]
    measured = measure(command, work / f"datatrove-{corpus.name}.log", datatrove_env())
    kept = set((out / "kept_ids.txt").read_text().split("\n")) - {""}
    return Row("datatrove", corpus, measured.result["documents"], measured.result["seconds"], workers,
               measured.cpu_seconds, measured.peak_rss_mb, kept)


def format_table(rows: list[Row]) -> str:
    header = ("system", "corpus", "docs in", "kept", "seconds", "procs", "docs/s/core", "MB/s/core", "CPU s",
              "MB/CPU-s", "peak RSS MB", "dup pairs both kept", "junk kept")
    lines = [header]
    for r in rows:
        lines.append((r.system, r.corpus.name, str(r.corpus.documents), str(r.kept), f"{r.seconds:.1f}",
                      str(r.processes), f"{r.per_core(r.corpus.documents):,.1f}",
                      f"{r.per_core(r.corpus.megabytes):.2f}", f"{r.cpu_seconds:.1f}",
                      f"{r.corpus.megabytes / r.cpu_seconds:.2f}", f"{r.peak_rss_mb:,.0f}", r.duplicates_kept(),
                      r.junk_kept()))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) if i > 1 else cell.ljust(w) for i, (cell, w) in
                               enumerate(zip(line, widths))) for line in lines)


def crawl_and_corpora(crawl_cfg: CorpusConfig, work: Path, synthetic_docs: int, seed: int, num_files: int,
                      ) -> tuple[Measured, CorpusInput, CorpusInput]:
    """Measure the crawl, then write the docs corpus (every extracted page) and the synthetic one."""
    crawl = ours("crawl", crawl_cfg, work / "crawl", work / "crawl.log")
    pages = crawl.result["pages"]
    print(f"crawl: {pages} pages in {crawl.result['seconds']:.1f} s = {pages / crawl.result['seconds']:.1f} pages/s "
          f"(one process, local server in it), peak RSS {crawl.peak_rss_mb:.0f} MB", flush=True)
    ours("snapshot", extract_config(crawl_cfg), work / "crawl", work / "extract.log")  # reads back crawl/raw
    extracted = snapshot_rows(work / "crawl")
    docs = write_corpus("docs", [{"id": r["url"], "url": r["url"], "text": r["text"]} for r in extracted],
                        work / "input-docs", num_files)
    synthetic = build_synthetic_corpus([r["text"] for r in extracted], synthetic_docs, seed=seed)
    write_ground_truth(synthetic, work / "synthetic-ground-truth.json")
    synth = write_corpus("synthetic", synthetic.documents, work / "input-synthetic", num_files)
    synth.duplicate_pairs, synth.junk_urls = synthetic.duplicate_pairs, synthetic.junk_urls
    print(f"corpora: docs {docs.documents} documents, {docs.megabytes:.1f} MB; synthetic {synth.documents} "
          f"documents, {synth.megabytes:.1f} MB with {len(synth.duplicate_pairs)} planted duplicate pairs and "
          f"{len(synth.junk_urls)} junk documents", flush=True)
    return crawl, docs, synth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic-docs", type=int, default=4000,
                        help="documents in the synthetic corpus (4000: ~8x the docs corpus in documents, ~2x in text)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes per system")
    parser.add_argument("--skip-datatrove", action="store_true", help="measure ours only")
    parser.add_argument("--max-pages", type=int, default=600, help="pages to crawl at most")
    parser.add_argument("--preset", default="demo", help="config preset whose corpus section both systems follow")
    parser.add_argument("--site", type=Path, help="the local site to crawl (default: the preset's crawl.local_site)")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench" / "corpus-bench",
                        help="scratch folder (emptied first)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic corpus seed")
    args = parser.parse_args()
    preset = load_config(args.preset).corpus
    site = args.site or preset.crawl.local_site
    problems = []
    if args.synthetic_docs < 1:
        problems.append(f"--synthetic-docs must be >= 1, got {args.synthetic_docs}")
    if args.workers < 1:
        problems.append(f"--workers must be >= 1, got {args.workers}")
    if site is None or not (site / "index.html").is_file():
        problems.append(f"--site {site} is not a folder with an index.html (default: the preset's crawl.local_site)")
    if problems:
        parser.error("; ".join(problems))
    python = None if args.skip_datatrove else datatrove_python()  # before any measurement: it may take a minute
    work = args.work_dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _, docs, synth = crawl_and_corpora(crawl_config(preset, site, args.max_pages), work, args.synthetic_docs,
                                       args.seed, max(INPUT_FILES, args.workers))
    if python is not None:
        params = work / "datatrove-params.json"
        params.write_text(json.dumps(datatrove_params(preset), indent=1))
    rows = []
    for corpus in (docs, synth):
        rows.append(run_ours(corpus, work, args.workers, preset, language_id=False))
        if python is not None:
            rows.append(run_datatrove(corpus, work, args.workers, python, params))
        rows.append(run_ours(corpus, work, args.workers, preset, language_id=True))
        print(f"measured {corpus.name}", flush=True)
    print(f"\n{format_table(rows)}\n\nBoth chains follow the {args.preset} preset's corpus steps and thresholds.\n"
          f"{NOTES}\nLogs and outputs: {work}")


if __name__ == "__main__":
    main()
