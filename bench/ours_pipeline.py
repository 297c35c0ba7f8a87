"""pretrainflow's side of the corpus benchmark, one measurement per process (so peak memory is its own).

bench/corpus_bench.py runs it with the project's venv and reads the one JSON line it prints last:

    python bench/ours_pipeline.py crawl   --preset demo --site DIR --max-pages N --out DIR
    python bench/ours_pipeline.py extract --preset demo --site DIR --max-pages N --out DIR
    python bench/ours_pipeline.py clean   --preset demo --input 'DIR/*.jsonl' --out DIR --workers W [--language-id]

crawl: tasks.crawl.crawl of the local site into OUT/raw (pages and seconds). extract: a snapshot of the same
crawl with every filter and dedup off (it reuses OUT/raw, so pages are read back from the raw store), i.e.
the extracted text of every page. clean: tasks.corpus.build_snapshot on local jsonl files with the preset's
cleaning steps; language id is off unless --language-id (datatrove's language filter needs a fastText
model download, so the head-to-head runs without it on both sides).
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path

from tasks.config import load_config
from tasks.corpus import CorpusConfig, build_snapshot
from tasks.crawl import CrawlConfig, crawl
from tasks.parallel import local_map


def crawl_config(preset: str, site: Path, max_pages: int) -> CrawlConfig:
    """The preset's crawl settings (scope, exclusions) on `site`, without delay, capped at max_pages."""
    crawl_cfg = load_config(preset).corpus.crawl
    return CrawlConfig.model_validate({**crawl_cfg.model_dump(), "local_site": site, "delay_seconds": 0.0,
                                       "max_pages": max_pages})


def extract_config(crawl_cfg: CrawlConfig) -> CorpusConfig:
    """A corpus config that keeps every extracted page: language id, quality filters, near-dedup, PII off."""
    off = {"enabled": False}
    return CorpusConfig.model_validate({
        "crawl": crawl_cfg.model_dump(), "min_words": 0, "language": off, "near_dedup": off, "pii": off,
        "quality": {"gopher_repetition": off, "gopher_quality": off, "c4": off, "fineweb": off},
    })


def clean_config(preset: str, input_pattern: str, language_id: bool) -> CorpusConfig:
    """The preset's corpus section with its sources replaced by the local files `input_pattern`."""
    corpus = load_config(preset).corpus.model_dump(exclude={"crawl", "local_files", "warc", "hf_datasets"})
    corpus["local_files"] = [input_pattern]
    corpus["language"]["enabled"] = language_id and corpus["language"]["enabled"]
    return CorpusConfig.model_validate(corpus)


def snapshot(cfg: CorpusConfig, out_dir: Path, workers: int) -> tuple[dict, int]:
    """build_snapshot's statistics and the worker processes it used.

    Sharded builds take map_shards; a build_snapshot without that parameter runs in this one process.
    """
    if "map_shards" in inspect.signature(build_snapshot).parameters and workers > 1:
        return build_snapshot(cfg, out_dir, map_shards=local_map(workers)), workers
    return build_snapshot(cfg, out_dir), 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("crawl", "extract", "clean"))
    parser.add_argument("--preset", default="demo", help="config preset (name or YAML path) for the corpus section")
    parser.add_argument("--out", type=Path, required=True, help="output folder (raw crawl or snapshot)")
    parser.add_argument("--site", type=Path, help="crawl/extract: the local site folder to serve and crawl")
    parser.add_argument("--max-pages", type=int, default=600, help="crawl/extract: pages to keep at most")
    parser.add_argument("--input", help="clean: glob of the jsonl input files")
    parser.add_argument("--workers", type=int, default=1, help="clean: worker processes")
    parser.add_argument("--language-id", action="store_true", help="clean: keep the preset's language id step")
    args = parser.parse_args()
    if args.step in ("crawl", "extract") and args.site is None:
        parser.error(f"{args.step} needs --site")
    if args.step == "clean" and args.input is None:
        parser.error("clean needs --input")
    started = time.perf_counter()
    if args.step == "crawl":
        stats = crawl(crawl_config(args.preset, args.site, args.max_pages), args.out / "raw")
        result = {"pages": stats["pages_fetched"], "failed": stats["pages_failed"]}
    elif args.step == "extract":
        stats, _ = snapshot(extract_config(crawl_config(args.preset, args.site, args.max_pages)), args.out, 1)
        result = {"documents": stats["documents"], "pages": stats["pages_fetched"]}
    else:
        stats, processes = snapshot(clean_config(args.preset, args.input, args.language_id), args.out, args.workers)
        result = {"documents": stats["documents"], "documents_in": stats["documents_in"], "processes": processes,
                  "dropped": {k.removeprefix("dropped_"): v for k, v in stats.items()
                              if k.startswith("dropped_") and v}}
    print(json.dumps({**result, "seconds": round(time.perf_counter() - started, 3)}))


if __name__ == "__main__":
    main()
