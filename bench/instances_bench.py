"""Instance generation and text -> instances, through the commands a user runs, against Google's algorithm.

    PYTHONPATH=. .venv/bin/python bench/instances_bench.py [--scales 1,10] [--repeats 3] [--json out.json]

Input: 1x and 10x the Python documentation (Debian's python3.11-doc pages, extracted with
tasks.clean.extract; 10x is ten copies of every page under new ids and content hashes) as corpus
snapshots, and a 16k WordPiece tokenizer trained once on the 1x snapshot (not timed: both sides are
given it). Made once per --workdir. One YAML config serves every command: the tokenize stage takes that
tokenizer (tokenize.tokenizer_path), the instances stage Google's settings (max_seq_length 128,
dupe_factor 5, max_predictions_per_seq 20, masked_lm_prob 0.15, whole-word masking); everything else
is the config classes' defaults.

Each measurement is one fresh process tree (bench/process_tree.py): CPU seconds of the whole tree
(user + system, interpreter start and imports included: the primary figure), wall seconds and peak
tree RSS. Libraries keep their default threads and the stages their default parallelism, as a user
gets them. Per scale and repeat, in this order:
- ours, per worker setting (the default, which picks the number of workers from the shards' estimated
  work, then 1 worker and 2 workers): `pretrainflow task tokenize --config CFG --input corpus=SNAPSHOT --output TOK`, then
  `pretrainflow task instances --config CFG --input tokenize=TOK --output OUT`. The second command is
  the "instance generation" row; the two together (CPU and wall summed, peak the larger) are the
  "text -> instances" row.
- reference instance generation: `bench/google_reference.py instances` on the token shards of the
  default run: Google BERT's create_instances_from_document in plain Python (tasks/instances/reference.py)
  on the stage's work units and seeds, writing the same Arrow shards.
- reference text -> instances: `bench/google_reference.py text` on the snapshot: the project's sentence
  splitter, Hugging Face `encode_batch` of the same tokenizer, then the same plain-Python generation.
  Its docstring lists where it differs from Google's script (its Rust tokenizer makes it faster).
- `pretrainflow config --config CFG`: the CLI's start-up alone (imports and config validation), which
  each stage command pays once; shown for context, in no ratio.
The reference and the stage draw random numbers in the same order, so all of them make the same
instances: the counts are printed and checked.

Printed per scale: median (min-max) over the repeats of CPU seconds, wall seconds and peak tree RSS per
row; ratios reference / ours of the medians (CPU first, wall beside); and the worker crossover (is the
default parallelism slower than one worker?). Asserts nothing. A full run (--scales 1,10 --repeats 3)
takes about 40 minutes on a quiet 2-core machine, three quarters of it the plain-Python reference at 10x:
one 10x repeat is ~10 CPU-minutes (16 minutes wall at a load average of 5), one 1x repeat ~1.5 CPU-minutes
(--scales 1 --repeats 1: under 2 minutes wall at a load average of 3).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

if __package__ in (None, ""):  # run as a file (python bench/instances_bench.py): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.process_tree import Measured, measure

REPO = Path(__file__).resolve().parent.parent
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
EXCLUDED = ("contents.html", "genindex", "py-modindex", "search.html", "/_sources/", "/_static/", "/_images/", "/_downloads/")
INSTANCES = {"max_seq_length": 128, "dupe_factor": 5, "max_predictions_per_seq": 20, "masked_lm_prob": 0.15}
ENV = {**os.environ, "PYTHONPATH": str(REPO), "DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
       "MLFLOW_DISABLE_TELEMETRY": "true"}
PYTHON = Path(sys.executable)
PRETRAINFLOW = PYTHON.parent / "pretrainflow"  # the console script of the venv this bench runs in
# Issue 19's targets: reference / ours, CPU seconds, by scale
TARGETS = {"instance generation": {1: 5, 10: 30}, "text -> instances": {1: 2, 10: 5}}


# ---------------------------------------------------------------- inputs, made once per workdir

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
    """A corpus snapshot of `copies` copies of the pages (new id and hash per copy), 2000 rows a file, in row
    groups as the corpus stage writes them."""
    from tasks.corpus.write import ROW_GROUP_DOCUMENTS

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
                       folder / f"documents-{start // 2000:05d}.parquet", row_group_size=ROW_GROUP_DOCUMENTS)


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


def write_config(workdir: Path) -> Path:
    """The pipeline YAML every command of the bench reads."""
    config = {
        "name": "instances-bench",
        # never read (the commands get --input), but a pipeline config names a corpus source
        "corpus": {"local_files": [str(workdir / "snapshot-1x" / "documents-*.parquet")]},
        "tokenize": {"tokenizer_path": str(workdir / "tokenizer")},
        "instances": INSTANCES,
    }
    path = workdir / "instances-bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ---------------------------------------------------------------- measurements

def worker_settings() -> list[int]:
    """parallel.workers values to run: 0 (the default: as many as the work pays for), 1 and 2."""
    return [0, 1, 2]


def workers_label(workers: int) -> str:
    if workers == 0:
        return "default (from the work)"
    return "1 worker" if workers == 1 else f"{workers} workers"


def stage_stats(measured: Measured) -> dict:
    """The stats JSON that `pretrainflow task` prints last (indented over several lines)."""
    lines = measured.stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


def record(row: str, scale: int, repeat: int, measured: Measured, instances: int | None = None,
           workers: int | None = None) -> dict:
    return {"row": row, "scale": scale, "repeat": repeat, "workers": workers, "cpu_seconds": measured.cpu_seconds,
            "wall_seconds": measured.wall_seconds, "peak_rss_mb": measured.peak_rss_mb, "instances": instances}


def run_repeat(workdir: Path, config: Path, scale: int, repeat: int, settings: list[int],
               keep_outputs: bool = False) -> list[dict]:
    """One repeat of every row at one scale (see the module docstring); outputs removed unless keep_outputs."""
    snapshot, runs, logs = workdir / f"snapshot-{scale}x", workdir / "runs" / f"{scale}x", workdir / "logs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    logs.mkdir(exist_ok=True)
    records = []

    def run(name: str, command: list[str]) -> Measured:
        return measure(command, logs / f"{scale}x-r{repeat}-{name}.log", ENV)

    def done(folder: Path) -> None:
        if not keep_outputs:
            shutil.rmtree(folder)

    def ours(workers: int) -> Path:
        """Our tokenize then instances commands; the token shards' folder (kept for the reference)."""
        tokens, out = runs / f"ours-tokens-w{workers}", runs / f"ours-instances-w{workers}"
        overrides = ["--set", f"parallel.workers={workers}"] if workers else []
        tokenize = run(f"ours-tokenize-w{workers}", [str(PRETRAINFLOW), "task", "tokenize", "--config", str(config),
                                                     "--input", f"corpus={snapshot}", "--output", str(tokens), *overrides])
        instances = run(f"ours-instances-w{workers}", [str(PRETRAINFLOW), "task", "instances", "--config", str(config),
                                                       "--input", f"tokenize={tokens}", "--output", str(out), *overrides])
        made = stage_stats(instances)["instances"]
        records.append(record("ours tokenize", scale, repeat, tokenize, workers=workers))
        records.append(record("ours instances", scale, repeat, instances, made, workers))
        done(out)
        return tokens

    def reference(kind: str, inputs: list[str]) -> None:
        out = runs / f"reference-{kind}"
        measured = run(f"reference-{kind}", [str(PYTHON), str(REPO / "bench" / "google_reference.py"), kind,
                                             *inputs, "--config", str(config), "--output", str(out)])
        records.append(record(f"reference {kind}", scale, repeat, measured, measured.result["instances"]))
        done(out)

    tokens = ours(settings[0])
    reference("instances", ["--tokens", str(tokens)])  # alternating: ours, reference, ours, reference, ...
    for workers in settings[1:]:
        done(ours(workers))
    reference("text", ["--snapshot", str(snapshot), "--tokenizer", str(workdir / "tokenizer")])
    done(tokens)
    start_up = run("cli-start-up", [str(PRETRAINFLOW), "config", "--config", str(config)])
    records.append(record("CLI start-up", scale, repeat, start_up))
    return records


# ---------------------------------------------------------------- summary

def text_to_instances(records: list[dict]) -> list[dict]:
    """Our text -> instances rows: each tokenize run with the instances run after it (CPU, wall summed)."""
    tokenize = {(r["scale"], r["repeat"], r["workers"]): r for r in records if r["row"] == "ours tokenize"}
    joined = []
    for r in records:
        if r["row"] == "ours instances":
            t = tokenize[(r["scale"], r["repeat"], r["workers"])]
            joined.append({**r, "row": "ours text -> instances", "cpu_seconds": t["cpu_seconds"] + r["cpu_seconds"],
                           "wall_seconds": t["wall_seconds"] + r["wall_seconds"],
                           "peak_rss_mb": max(t["peak_rss_mb"], r["peak_rss_mb"])})
    return joined


def median_of(records: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in records)


def spread(records: list[dict], key: str, digits: int) -> str:
    """median (min-max) of one figure."""
    values = [r[key] for r in records]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def summarize(records: list[dict], scale: int) -> str:
    """The printed report of one scale."""
    records = [r for r in records if r["scale"] == scale]
    records = records + text_to_instances(records)
    settings = sorted({r["workers"] for r in records if r["workers"] is not None}, key=lambda w: (w != 0, w))

    def rows(name: str, workers: int | None = None) -> list[dict]:
        return [r for r in records if r["row"] == name and r["workers"] == workers]

    labelled = [(f"ours instances, {workers_label(w)}", rows("ours instances", w)) for w in settings]
    labelled.append(("reference instances (plain Python)", rows("reference instances")))
    labelled += [(f"ours tokenize, {workers_label(w)}", rows("ours tokenize", w)) for w in settings]
    labelled += [(f"ours text -> instances, {workers_label(w)}", rows("ours text -> instances", w)) for w in settings]
    labelled.append(("reference text -> instances", rows("reference text")))
    labelled.append(("CLI start-up (pretrainflow config)", rows("CLI start-up")))
    repeats = len(labelled[0][1])
    width = max(len(label) for label, _ in labelled)
    lines = [f"\n{scale}x: {repeats} repeat(s), median (min-max); CPU s = user + system of the whole process tree",
             f"  {'':{width}}  {'CPU s':>20}  {'wall s':>20}  {'peak tree RSS MB':>18}"]
    for label, group in labelled:
        lines.append(f"  {label:{width}}  {spread(group, 'cpu_seconds', 2):>20}  {spread(group, 'wall_seconds', 2):>20}"
                     f"  {spread(group, 'peak_rss_mb', 0):>18}")

    lines.append("  reference / ours, medians (CPU; wall):")
    for what, ours_row, reference_row in (("instance generation", "ours instances", "reference instances"),
                                          ("text -> instances", "ours text -> instances", "reference text")):
        reference = rows(reference_row)
        target = f"   (target {TARGETS[what][scale]}x CPU)" if scale in TARGETS[what] else ""
        for w in settings:
            ours = rows(ours_row, w)
            cpu = median_of(reference, "cpu_seconds") / median_of(ours, "cpu_seconds")
            wall = median_of(reference, "wall_seconds") / median_of(ours, "wall_seconds")
            lines.append(f"    {what}, {workers_label(w)}: {cpu:.2f}x CPU; {wall:.2f}x wall{target}")

    lines.append("  worker crossover, medians (default vs 1 worker):")
    for name in ("ours instances", "ours tokenize", "ours text -> instances"):
        one, default = rows(name, 1), rows(name, 0)
        if one and default:
            wall_one, wall_default = median_of(one, "wall_seconds"), median_of(default, "wall_seconds")
            if min(r["wall_seconds"] for r in default) > max(r["wall_seconds"] for r in one):
                verdict = "slower than 1 worker"
            elif wall_default > wall_one:
                verdict = "not slower beyond the spread of the repeats"
            else:
                verdict = "not slower"
            lines.append(f"    {name}: " + "; ".join(
                f"{workers_label(w)} {median_of(rows(name, w), 'cpu_seconds'):.2f} CPU s, "
                f"{median_of(rows(name, w), 'wall_seconds'):.2f} wall s" for w in settings)
                + f"  -> default {verdict} ({wall_default / wall_one:.2f}x the wall of 1 worker)")

    made = [r for r in records if r["instances"] is not None and r["row"] != "ours text -> instances"]
    if len({r["instances"] for r in made}) == 1:
        lines.append(f"  instances made: {made[0]['instances']:,} by every run of ours and of the reference")
    else:
        lines.append("  instance counts DIFFER: " + ", ".join(
            f"{r['row']}" + (f" ({workers_label(r['workers'])})" if r["workers"] is not None else "")
            + f" repeat {r['repeat'] + 1}: {r['instances']:,}" for r in made))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshot", type=Path, help="corpus snapshot folder (default: extract the Python docs)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/instances_bench"),
                        help="inputs (made once), logs and scratch outputs")
    parser.add_argument("--scales", default="1,10", help="comma-separated: 1, 10 or both")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every row per scale")
    parser.add_argument("--json", type=Path, help="also write every raw measurement to this file")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    problems = [f"--scales: {s} is not 1 or 10" for s in scales if s not in (1, 10)]
    if args.repeats < 1:
        problems.append(f"--repeats must be >= 1, got {args.repeats}")
    if args.snapshot is None and not PYTHON_DOCS.is_dir():
        problems.append(f"{PYTHON_DOCS} is missing (make python-docs), or pass --snapshot")
    if problems:
        parser.error("; ".join(problems))
    args.workdir.mkdir(parents=True, exist_ok=True)
    prepare(args.workdir, args.snapshot)
    config = write_config(args.workdir)
    settings = worker_settings()
    print(f"{args.repeats} repeat(s) at {', '.join(f'{s}x' for s in scales)}; worker settings: "
          f"{', '.join(workers_label(w) for w in settings)}; logs in {args.workdir / 'logs'}", flush=True)
    records: list[dict] = []
    for scale in scales:
        for repeat in range(args.repeats):
            records += run_repeat(args.workdir, config, scale, repeat, settings)
            print(f"  {scale}x repeat {repeat + 1} done", flush=True)
        print(summarize(records, scale), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"config": yaml.safe_load(config.read_text()), "measurements": records}, indent=1))


if __name__ == "__main__":
    main()
