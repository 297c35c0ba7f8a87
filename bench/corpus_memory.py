"""Peak memory and wall time of build_snapshot on synthetic local jsonl corpora of growing size; prints, asserts nothing.

Each size runs in a fresh process (serial map, so every byte is in that one process) and reports its peak
RSS: with a streaming, sharded build the peak should stay about flat as the corpus grows.

    PYTHONPATH=. python bench/corpus_memory.py                      # 5,000 and 20,000 documents
    PYTHONPATH=. python bench/corpus_memory.py --documents 10000 40000 --words 400
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from tasks.corpus.snapshot import CorpusConfig, build_snapshot
cfg = CorpusConfig(local_files=[sys.argv[1]], language={"enabled": False}, documents_per_shard=int(sys.argv[3]))
start = time.perf_counter()
stats = build_snapshot(cfg, Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - start, "documents": stats["documents"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_corpus(path: Path, documents: int, words: int, seed: int = 0) -> int:
    """documents lines of jsonl, each `words` words of English-like prose (so the quality filters keep most)."""
    rng = random.Random(seed)
    vocabulary = [f"{rng.choice('bcdfghklmnprstvw')}{rng.choice('aeiou')}{rng.choice('nrstlm')}"
                  f"{rng.choice(['', 'e', 'er', 'ing', 'ed'])}" for _ in range(5000)]
    stop = ["the", "of", "and", "to", "that", "with", "be", "have"]
    with path.open("w") as out:
        for number in range(documents):
            sentences = []
            while sum(len(s.split()) for s in sentences) < words:
                sentence = [rng.choice(vocabulary if rng.random() < 0.7 else stop) for _ in range(rng.randint(8, 20))]
                sentences.append(" ".join(sentence).capitalize() + ".")
            text = "\n".join(" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4))
            out.write(json.dumps({"url": f"https://bench.invalid/{number}", "text": text}) + "\n")
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, nargs="+", default=[5_000, 20_000])
    parser.add_argument("--words", type=int, default=300, help="words per document")
    # an output shard is built in memory, so the peak grows with the corpus until it reaches one full shard
    parser.add_argument("--documents-per-shard", type=int, default=2_000, help="rows per documents-NNNNN.parquet")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for documents in args.documents:
            corpus = Path(scratch) / f"corpus-{documents}.jsonl"
            size = write_corpus(corpus, documents, args.words)
            started = time.perf_counter()
            result = subprocess.run([sys.executable, "-c", _CHILD, str(corpus), str(Path(scratch) / f"out-{documents}"),
                                     str(args.documents_per_shard)],
                                    check=True, capture_output=True, text=True)
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"{documents:>8,} documents ({size / 2**20:,.0f} MiB jsonl): peak RSS {figures['peak_rss_mib']:,.0f} MiB, "
                  f"build {figures['seconds']:.1f} s (process {time.perf_counter() - started:.1f} s), "
                  f"{figures['documents']:,} kept", flush=True)


if __name__ == "__main__":
    main()
