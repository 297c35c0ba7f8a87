"""pretrainflow's side of the corpus benchmark, one measurement per process (so peak memory is its own).

bench/corpus_bench.py resolves the configs (tasks.config and the presets import far more than the corpus
stage needs, torch included) and runs this with the project's venv, reading the one JSON line it prints last:

    python bench/ours_pipeline.py crawl    --config CORPUS.json --out DIR              # crawl into DIR/raw
    python bench/ours_pipeline.py snapshot --config CORPUS.json --out DIR [--workers W]

CORPUS.json is a CorpusConfig. crawl runs tasks.crawl.run.crawl of its crawl section; snapshot runs
tasks.corpus.snapshot.build_snapshot (a crawl already in DIR/raw is read back from that raw store).
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path

from tasks.corpus.snapshot import CorpusConfig, build_snapshot
from tasks.crawl.run import crawl
from tasks.parallel import local_map


def snapshot(cfg: CorpusConfig, out_dir: Path, workers: int) -> tuple[dict, int]:
    """build_snapshot's statistics and the worker processes it used.

    Sharded builds take map_shards; a build_snapshot without that parameter runs in this one process.
    """
    if "map_shards" in inspect.signature(build_snapshot).parameters and workers > 1:
        return build_snapshot(cfg, out_dir, map_shards=local_map(workers)), workers
    return build_snapshot(cfg, out_dir), 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("crawl", "snapshot"))
    parser.add_argument("--config", type=Path, required=True, help="a CorpusConfig as JSON")
    parser.add_argument("--out", type=Path, required=True, help="output folder (the raw crawl goes to OUT/raw)")
    parser.add_argument("--workers", type=int, default=1, help="snapshot: worker processes")
    args = parser.parse_args()
    cfg = CorpusConfig.model_validate_json(args.config.read_text())
    started = time.perf_counter()
    if args.step == "crawl":
        stats = crawl(cfg.crawl, args.out / "raw")
        result = {"pages": stats["pages_fetched"], "failed": stats["pages_failed"]}
    else:
        stats, processes = snapshot(cfg, args.out, args.workers)
        result = {"documents": stats["documents"], "documents_in": stats["documents_in"], "processes": processes,
                  "dropped": {k.removeprefix("dropped_"): v for k, v in stats.items()
                              if k.startswith("dropped_") and v}}
    print(json.dumps({**result, "seconds": round(time.perf_counter() - started, 3)}))


if __name__ == "__main__":
    main()
