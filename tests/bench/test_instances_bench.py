"""The instances benchmark on a tiny snapshot: every command runs, and the plain-Python reference writes the
very instances the stage writes. Timings are printed by the benchmark, never asserted here."""

from __future__ import annotations

import itertools
import sys

import pytest

from bench.instances_bench import prepare, run_repeat, summarize, write_config, write_snapshot
from bench.process_tree import measure
from tasks.tokens.shards import SPLITS, read_stream

SUBJECTS = ("The parser", "Every worker", "A careful reader", "The scheduler", "Our crawler", "This module")
VERBS = ("reads", "checks", "writes", "counts", "keeps", "returns")
OBJECTS = ("the whole document before it starts", "each page that the index links to",
           "every line of the configuration file", "the results in the order they arrived",
           "a short summary for the final report", "the same answer on every machine")


def pages() -> list[tuple[str, str]]:
    """36 documents of English prose, six sentences each, one paragraph per line."""
    sentences = [f"{s} {v} {o}." for s, v, o in itertools.product(SUBJECTS, VERBS, OBJECTS)]
    return [(f"https://example.org/{i}", "\n".join(" ".join(sentences[j:j + 3]) for j in range(i * 6, i * 6 + 6, 3)))
            for i in range(36)]


@pytest.mark.slow  # ~20 CPU-s: three pretrainflow commands and two reference runs
def test_one_repeat_measures_every_row_and_both_sides_make_the_same_instances(tmp_path):
    write_snapshot(pages(), tmp_path / "source", copies=1)
    work = tmp_path / "work"
    prepare(work, tmp_path / "source")
    records = run_repeat(work, write_config(work), scale=1, repeat=0, settings=[1], keep_outputs=True)
    assert [r["row"] for r in records] == ["ours tokenize", "ours instances", "reference instances", "reference text",
                                           "CLI start-up"]
    assert all(r["cpu_seconds"] > 0 and r["wall_seconds"] > 0 and r["peak_rss_mb"] > 0 for r in records)
    made = {r["instances"] for r in records if r["instances"] is not None}
    assert len(made) == 1 and made.pop() > 0
    runs = work / "runs" / "1x"
    for reference in ("reference-instances", "reference-text"):
        for split in SPLITS:
            ours = sorted((runs / "ours-instances-w1" / split).glob("instances-*.arrow"))
            theirs = sorted((runs / reference / split).glob("instances-*.arrow"))
            assert [p.name for p in theirs] == [p.name for p in ours] and ours
            assert all(read_stream(a).equals(read_stream(b)) for a, b in zip(ours, theirs))
    report = summarize(records, 1)
    assert "reference instances (plain Python)" in report and "instance generation, 1 worker:" in report
    assert "by every run of ours and of the reference" in report


def test_measure_counts_a_descendant_that_outlives_the_command(tmp_path):
    """A fork server's workers outlive the command that started them; their CPU time still counts."""
    burn = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"
    command = ("import subprocess, sys; subprocess.Popen([sys.executable, '-c', " + repr(burn)
               + "], stdout=subprocess.DEVNULL); print('{}')")
    measured = measure([sys.executable, "-c", command], tmp_path / "child.log", env={})
    assert measured.result == {} and measured.cpu_seconds >= 0.5 and measured.wall_seconds >= 0.5
