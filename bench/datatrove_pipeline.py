"""datatrove's equivalent of the corpus cleaning chain, run by the benchmark's separate datatrove venv.

Never imported by pretrainflow: bench/corpus_bench.py runs it as
    .bench/datatrove-venv/bin/python bench/datatrove_pipeline.py --input DIR --work DIR --workers W --params FILE
and reads the one JSON line it prints last. The params file (written by corpus_bench.datatrove_params)
holds each step's keyword arguments, translated from our CorpusConfig. The chain, FineWeb's layout:

  JsonlReader -> FTFY -> [Gopher repetition] -> Gopher quality -> C4 -> FineWeb -> PII -> JsonlWriter
  -> exact dedup (signature -> find -> filter) -> MinHash dedup (signature -> buckets -> cluster -> filter)

Every stage runs with tasks = workers (bucket stage: one task per band, cluster/find: one task), as
datatrove's LocalPipelineExecutor on this machine. The kept document ids go to WORK/kept_ids.txt.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import (
    ExactDedupConfig, ExactDedupFilter, ExactDedupSignature, ExactFindDedups, MinhashConfig, MinhashDedupBuckets,
    MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature,
)
from datatrove.pipeline.filters import (
    C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter,
)
from datatrove.pipeline.formatters import FTFYFormatter, PIIFormatter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter


def dedup_content(doc) -> str:
    """Our exact-dedup key's text: lowercased, whitespace runs collapsed (tasks/clean/exact_dedup.py dedup_key)."""
    return " ".join(doc.text.lower().split())


def run_stage(name: str, pipeline: list, tasks: int, workers: int, work: Path, timings: dict[str, float]) -> None:
    """One LocalPipelineExecutor run; its wall seconds go to timings[name]."""
    started = time.perf_counter()
    LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(workers, tasks),
                          logging_dir=str(work / "logs" / name)).run()
    timings[name] = round(time.perf_counter() - started, 3)


def reader(folder: Path | str) -> JsonlReader:
    return JsonlReader(str(folder), glob_pattern="*.jsonl*", text_key="text", id_key="id")


def writer(folder: Path) -> JsonlWriter:
    return JsonlWriter(str(folder), compression=None)


def run(input_dir: Path, work: Path, workers: int, params: dict) -> dict:
    """Filters, exact dedup and MinHash dedup of input_dir's *.jsonl; returns counts and seconds per stage."""
    timings: dict[str, float] = {}
    filters = [FTFYFormatter(**params["ftfy"])]
    if params["gopher_repetition"] is not None:
        filters.append(GopherRepetitionFilter(**params["gopher_repetition"]))
    if params["gopher_quality"] is not None:
        filters.append(GopherQualityFilter(**params["gopher_quality"]))
    if params["c4"] is not None:
        filters.append(C4QualityFilter(**params["c4"]))
    if params["fineweb"] is not None:
        filters.append(FineWebQualityFilter(**params["fineweb"]))
    if params["pii"] is not None:
        filters.append(PIIFormatter(**params["pii"]))
    run_stage("filters", [reader(input_dir), *filters, writer(work / "filtered")], workers, workers, work, timings)

    exact = ExactDedupConfig(content_getter=dedup_content)
    run_stage("exact_signature", [reader(work / "filtered"), ExactDedupSignature(str(work / "exact_sigs"), exact)],
              workers, workers, work, timings)
    run_stage("exact_find", [ExactFindDedups(str(work / "exact_sigs"), str(work / "exact_dups"), exact)],
              1, 1, work, timings)
    run_stage("exact_filter", [reader(work / "filtered"), ExactDedupFilter(str(work / "exact_dups"), exact),
                               writer(work / "unique")], workers, workers, work, timings)

    minhash = MinhashConfig(**params["minhash"])
    final = work / "kept"
    if params["minhash_enabled"]:
        run_stage("minhash_signature", [reader(work / "unique"),
                                        MinhashDedupSignature(str(work / "mh_sigs"), config=minhash)],
                  workers, workers, work, timings)
        run_stage("minhash_buckets", [MinhashDedupBuckets(str(work / "mh_sigs"), str(work / "mh_buckets"),
                                                          config=minhash)],
                  minhash.num_buckets, workers, work, timings)
        run_stage("minhash_cluster", [MinhashDedupCluster(str(work / "mh_buckets"), str(work / "mh_remove"),
                                                          config=minhash)],
                  1, 1, work, timings)
        run_stage("minhash_filter", [reader(work / "unique"), MinhashDedupFilter(str(work / "mh_remove")),
                                     writer(final)], workers, workers, work, timings)
    else:
        final = work / "unique"
    kept_ids = [json.loads(line)["id"] for path in sorted(final.glob("*.jsonl")) for line in path.open()]
    (work / "kept_ids.txt").write_text("".join(f"{doc_id}\n" for doc_id in kept_ids))
    return {"documents": len(kept_ids), "seconds": round(sum(timings.values()), 3), "stage_seconds": timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="folder of *.jsonl files (id, url, text)")
    parser.add_argument("--work", type=Path, required=True, help="empty folder for intermediate and final files")
    parser.add_argument("--workers", type=int, required=True, help="tasks and worker processes per stage")
    parser.add_argument("--params", type=Path, required=True, help="JSON of each step's keyword arguments")
    args = parser.parse_args()
    result = run(args.input, args.work, args.workers, json.loads(args.params.read_text()))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
