"""Tokenization and instance generation per core, with peak memory, on 1x and 10x the Python docs.

Input: a corpus snapshot (--snapshot), or the text of Debian's Python 3.11 HTML documentation
(/usr/share/doc/python3.11/html) extracted with tasks.clean.extract. A 16k WordPiece vocabulary is trained
once (not timed, as the reference takes a vocab file). The 10x corpus is ten copies of every document
under new ids. Each measurement runs in its own child process with one thread per library (per-core
figures) and its peak RSS read from os.wait4; numba's compiled kernel is cached by a warm-up first.
Timings start after imports (library start-up is not the stages' work); numba's one-time start-up in
a process (loading its cached machine code, ~0.6 s CPU) is inside the instance figure, and a second
"warm" figure from the same process shows the rate without it.

Printed per scale: raw `Tokenizer.encode_batch` on the documents' text vs our tokenize stage
(sentence splitting + encoding + writing shards); instance generation (token shards -> instance
shards; seq 128, dupe 5, max predictions 20, masked_lm_prob 0.15); end to end (snapshot -> instance
shards). Prints figures, asserts nothing.

    PYTHONPATH=. .venv/bin/python bench/instances_bench.py [--snapshot DIR] [--workdir /tmp/instances_bench]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
EXCLUDED = ("contents.html", "genindex", "py-modindex", "search.html", "/_sources/", "/_static/", "/_images/", "/_downloads/")
# Reference (from the issue, not measured here): NVIDIA's create_pretraining_data.py, one core.
REFERENCE = {"instances": 99_700, "tokenize_s": 8.0, "instances_s": 16.0, "end_to_end_s": 24.0, "peak_mb": 780,
             "raw_tokens_per_s": 0.7e6}
INSTANCES = {"max_seq_length": 128, "dupe_factor": 5, "max_predictions_per_seq": 20, "masked_lm_prob": 0.15}
ONE_THREAD = {"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "NUMBA_NUM_THREADS": "1",
              "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def python_docs_texts() -> list[tuple[str, str]]:
    """(url, text) of every prose page of the Python documentation."""
    from tasks.clean.extract import extract_html

    pages = []
    for path in sorted(PYTHON_DOCS.rglob("*.html")):
        url = path.as_uri()
        if any(part in url for part in EXCLUDED):
            continue
        extracted = extract_html(path.read_bytes(), url)
        if extracted is not None:
            pages.append((url, extracted.text))
    return pages


def write_snapshot(pages: list[tuple[str, str]], folder: Path, copies: int) -> None:
    """A corpus snapshot of `copies` copies of the pages (new id and hash per copy), 2000 rows a file."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    rows = []
    for copy in range(copies):
        for url, text in pages:
            digest = hashlib.sha256(f"{copy}\n{text}".encode()).hexdigest()
            rows.append({"id": digest, "url": f"{url}#copy{copy}", "source": "local", "text": text,
                         "fetched_at": now, "content_hash": digest})
    schema = pa.schema([("id", pa.string()), ("url", pa.string()), ("source", pa.string()), ("text", pa.string()),
                        ("fetched_at", pa.timestamp("us", tz="UTC")), ("content_hash", pa.string())])
    for start in range(0, len(rows), 2000):
        pq.write_table(pa.Table.from_pylist(rows[start : start + 2000], schema=schema),
                       folder / f"documents-{start // 2000:05d}.parquet")


def prepare(workdir: Path, snapshot: Path | None) -> None:
    """Snapshots at 1x and 10x and a trained 16k tokenizer, made once per workdir."""
    if (workdir / "ready").exists():
        return
    if snapshot is not None:
        table = pa.concat_tables([pq.read_table(p, columns=["url", "text"]) for p in sorted(snapshot.glob("documents-*.parquet"))])
        pages = list(zip(table.column("url").to_pylist(), table.column("text").to_pylist()))
    else:
        pages = python_docs_texts()
    for copies in (1, 10):
        write_snapshot(pages, workdir / f"snapshot-{copies}x", copies)
    from tasks.tokens.shards import TokenizeConfig, prepare_tokenizer

    prepare_tokenizer(TokenizeConfig(vocab_size=16000), workdir / "snapshot-1x", workdir / "tokenizer")
    (workdir / "ready").write_text("")


def measure(step: str, workdir: Path, scale: int, workers: int = 1) -> dict:
    """Run one step in a fresh child process: its result plus the child's peak RSS in MB."""
    command = [sys.executable, __file__, "--child", step, "--workdir", str(workdir), "--scale", str(scale),
               "--workers", str(workers)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env={**os.environ, **ONE_THREAD})
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"{step} at {scale}x failed with status {status}")
    return {**json.loads(output), "peak_mb": usage.ru_maxrss / 1024}


def sample_anonymous_peak(peak: list[int], stop: threading.Event) -> None:
    """Keep peak[0] at the highest RssAnon (kB) seen: memory the process owns, unlike the pages of
    memory-mapped files (the token index) that RSS also counts and the kernel can drop at any time."""
    while not stop.wait(0.05):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                peak[0] = max(peak[0], int(line.split()[1]))


def child(step: str, workdir: Path, scale: int, workers: int) -> dict:
    """One measurement, timed inside this process (imports and start-up excluded)."""
    peak, stop = [0], threading.Event()
    sampler = threading.Thread(target=sample_anonymous_peak, args=(peak, stop), daemon=True)
    sampler.start()
    result = run_step(step, workdir, scale, workers)
    stop.set()
    sampler.join()
    return {**result, "anonymous_peak_mb": peak[0] / 1024}


def run_step(step: str, workdir: Path, scale: int, workers: int) -> dict:
    """The timed work of one measurement."""
    from tasks.instances.generate import InstancesConfig, build_instances
    from tasks.parallel import local_map, serial_map
    from tasks.tokens.shards import TokenizeConfig, build_token_shards, iter_snapshot
    from tasks.tokens.tokenizer import load_tokenizer

    pa.array([0])  # library start-up outside the timings: pyarrow imports pandas on its first pa.array call
    snapshot = workdir / f"snapshot-{scale}x"
    tokens, instances = workdir / f"tokens-{scale}x-{step}", workdir / f"instances-{scale}x-{step}"
    for folder in (tokens, instances):
        shutil.rmtree(folder, ignore_errors=True)
    map_shards = local_map(workers) if workers > 1 else serial_map
    tokenize_cfg = TokenizeConfig(tokenizer_path=workdir / "tokenizer", validation_fraction=0.0,
                                  documents_per_shard=250)
    instances_cfg = InstancesConfig(**INSTANCES, instances_per_shard=25_000)
    if step == "raw_encode":
        texts = [text for _, _, text in iter_snapshot(snapshot, 256)]
        tokenizer = load_tokenizer(workdir / "tokenizer")
        start, cpu = time.perf_counter(), time.process_time()
        count = sum(len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False))
        return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu, "tokens": count,
                "words": sum(len(t.split()) for t in texts)}
    start, cpu = time.perf_counter(), time.process_time()
    if step in ("tokenize", "end_to_end"):
        stats = build_token_shards(tokenize_cfg, snapshot, tokens, map_shards=map_shards)
    else:  # instances: from the token shards the tokenize step left
        tokens = workdir / f"tokens-{scale}x-tokenize"
        stats = {}
    if step in ("instances", "end_to_end"):
        stats.update(build_instances(instances_cfg, tokens, instances, map_shards=map_shards))
    result = {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu, **stats}
    if step == "instances":  # again in the same process: without numba's one-time start-up (loading its cache)
        shutil.rmtree(instances)
        start, cpu = time.perf_counter(), time.process_time()
        build_instances(instances_cfg, tokens, instances, map_shards=map_shards)
        result.update(warm_seconds=time.perf_counter() - start, warm_cpu_seconds=time.process_time() - cpu)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshot", type=Path, help="corpus snapshot folder (default: extract the Python docs)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/instances_bench"))
    parser.add_argument("--workers", type=int, default=1, help="also run the stages on this many local processes")
    parser.add_argument("--repeats", type=int, default=2, help="child processes per measurement (the best is shown)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.workdir, args.scale, args.workers)))
        return
    prepare(args.workdir, args.snapshot)
    print("reference (from the issue, not measured here): NVIDIA create_pretraining_data.py, 7.4 MB Python docs, one core:")
    print(f"  99.7k instances; tokenization ~{REFERENCE['tokenize_s']:.0f} s, instance generation ~{REFERENCE['instances_s']:.0f} s, "
          f"end to end ~{REFERENCE['end_to_end_s']:.0f} s; peak {REFERENCE['peak_mb']} MB; raw HF encode ~0.7 M tokens/s per core")
    reference_rate = REFERENCE["instances"] / REFERENCE["instances_s"]
    reference_e2e_rate = REFERENCE["instances"] / REFERENCE["end_to_end_s"]
    print("Per-core rates use each child's CPU time (time.process_time; one thread per library), which other")
    print("processes on a shared machine disturb far less than wall time; wall seconds are shown beside them.")
    for scale in (1, 10):
        raw = best_of(args.repeats, "raw_encode", args.workdir, scale)
        tokenize = best_of(args.repeats, "tokenize", args.workdir, scale)
        if scale == 1:
            measure("instances", args.workdir, scale)  # untimed: compiles the kernel into numba's on-disk cache
        instances = best_of(args.repeats, "instances", args.workdir, scale)
        end_to_end = best_of(args.repeats, "end_to_end", args.workdir, scale)
        raw_rate, our_rate = raw["tokens"] / raw["cpu_seconds"], tokenize["tokens"] / tokenize["cpu_seconds"]
        made = instances["instances"]
        print(f"\n{scale}x corpus: {raw['words'] / 1e6:.2f} M words, {tokenize['tokens'] / 1e6:.2f} M tokens, "
              f"{made / 1e3:.1f} k instances; CPU s (wall s), best of {args.repeats}")
        print(f"  raw encode_batch:     {raw['cpu_seconds']:6.2f} ({raw['seconds']:6.2f})  {raw_rate / 1e6:.2f} M tokens/s per core"
              f"  peak {raw['peak_mb']:.0f} MB (anon {raw['anonymous_peak_mb']:.0f})")
        print(f"  tokenize stage:       {tokenize['cpu_seconds']:6.2f} ({tokenize['seconds']:6.2f})  {our_rate / 1e6:.2f} M tokens/s per core"
              f"  peak {tokenize['peak_mb']:.0f} MB (anon {tokenize['anonymous_peak_mb']:.0f})  ({our_rate / raw_rate:.0%} of raw encode_batch)")
        print(f"  instance generation:  {instances['cpu_seconds']:6.2f} ({instances['seconds']:6.2f})  "
              f"{made / instances['cpu_seconds'] / 1e3:.1f} k instances/s per core  peak {instances['peak_mb']:.0f} MB (anon {instances['anonymous_peak_mb']:.0f})"
              f"  ({made / instances['cpu_seconds'] / reference_rate:.1f}x the reference)")
        print(f"    same, numba warm:   {instances['warm_cpu_seconds']:6.2f} ({instances['warm_seconds']:6.2f})  "
              f"{made / instances['warm_cpu_seconds'] / 1e3:.1f} k instances/s per core"
              f"  ({made / instances['warm_cpu_seconds'] / reference_rate:.1f}x the reference)")
        e2e_rate = end_to_end["instances"] / end_to_end["cpu_seconds"]
        print(f"  end to end:           {end_to_end['cpu_seconds']:6.2f} ({end_to_end['seconds']:6.2f})  "
              f"{e2e_rate / 1e3:.1f} k instances/s per core  peak {end_to_end['peak_mb']:.0f} MB (anon {end_to_end['anonymous_peak_mb']:.0f})"
              f"  ({e2e_rate / reference_e2e_rate:.1f}x the reference)")
        print(f"  mask rate {instances['train_mask_rate']:.3f}, [MASK]/random/kept {instances['train_mask_token_fraction']:.3f}/"
              f"{instances['train_random_fraction']:.3f}/{instances['train_kept_fraction']:.3f}, "
              f"NSP random {instances['train_label_1_fraction']:.3f}, mean length {instances['train_mean_length']:.1f}")
        if args.workers > 1:
            parallel = measure("end_to_end", args.workdir, scale, args.workers)
            print(f"  end to end on {args.workers} processes: {parallel['seconds']:6.2f} s wall  peak (parent) {parallel['peak_mb']:.0f} MB")


def best_of(repeats: int, step: str, workdir: Path, scale: int) -> dict:
    """The run with the least CPU time out of `repeats` fresh child processes."""
    return min((measure(step, workdir, scale) for _ in range(repeats)), key=lambda result: result["cpu_seconds"])


if __name__ == "__main__":
    main()
