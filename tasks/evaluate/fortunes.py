"""An out-of-domain downstream task: Debian's English fortune files, written as a local-files task.

fortune-mod's fortunes are short texts (quips, definitions, verse, quotations with their "-- Author")
that people filed into categories, one file per category, entries separated by lines holding only "%".
None of it is in the demo's pretraining corpus (the Python docs). This module picks six categories,
drops texts filed under more than one category (their label is ambiguous), caps each class, splits
each class by a hash of its text (train/dev/test, the same split whatever the file order) and writes
train.jsonl, dev.jsonl and test.jsonl ({"text", "label"} per line) for a `{type: files}` evaluate task
(tasks/evaluate/file_tasks.py), with fortunes-task.json (counts, drops, sources) beside them.

    python -m tasks.evaluate.fortunes data/samples/fortunes-task   # apt-get download, no root needed
    python -m tasks.evaluate.fortunes OUT --from /usr/share/games/fortunes --categories computers politics
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.debian import download_packages
from tasks.errors import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from tasks.evaluate.task_data import TaskData

PACKAGES = ("fortunes", "fortunes-min")  # fortune-mod's English fortunes; fortunes-off is never fetched
FORTUNES_SUBDIR = "usr/share/games/fortunes"
NOT_ENGLISH = frozenset({"chinese", "tang300", "song100"})  # fortunes-zh's files, should the folder hold them
SPLIT_NAMES = ("train", "dev", "test")
STATS_FILE = "fortunes-task.json"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # BEL in "computers" and the like; \t and \n are whitespace
_SPACES = re.compile(r"\s+")


class FortuneTaskSpec(BaseModel):
    """Which categories become classes, how many texts each keeps, and the split fractions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    # measured on fortunes 1:1.99.1-7.3 with TF-IDF + logistic regression over the 28 six-way choices among
    # the eight topical categories with 550+ texts: this set was the most separable (0.69 test accuracy)
    categories: list[str] = Field(
        default=["computers", "definitions", "men-women", "politics", "songs-poems", "work"], min_length=2)
    """Fortune files (categories) that become the classes, by file name."""
    max_per_class: int | None = Field(default=800, ge=3)
    """Keep at most this many texts of one category (a stable hashed subset); None = all."""
    test_fraction: float = Field(default=0.17, gt=0.0, lt=0.5)
    """Share of each class in test.jsonl (reported metrics)."""
    dev_fraction: float = Field(default=0.08, gt=0.0, lt=0.5)
    """Share of each class in dev.jsonl (learning-rate choice)."""

    @model_validator(mode="after")
    def _consistent(self) -> FortuneTaskSpec:
        problems = []
        repeated = sorted(c for c, n in Counter(self.categories).items() if n > 1)
        if repeated:
            problems.append(f"categories {repeated} are named more than once")
        if self.test_fraction + self.dev_fraction >= 0.9:
            problems.append(f"test_fraction {self.test_fraction} + dev_fraction {self.dev_fraction} leave under "
                            "10% for train; keep their sum below 0.9")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class FortunesTask(FortuneTaskSpec):
    """The out-of-domain task as an evaluate task: its files are made on first use (apt-get download of the
    packages, or a given folder) and reused by every evaluation with the same settings."""

    type: Literal["fortunes"] = "fortunes"
    """Task kind: Debian's English fortunes, classified by category."""
    name: str = Field(default="fortunes", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Name of the task in the results table and metric names."""
    source: Path | None = None
    """A folder of fortune files (e.g. /usr/share/games/fortunes); None: apt-get download fortunes and
    fortunes-min (no install, no root)."""


def build_fortunes_task(task: FortunesTask, tokenizer: PreTrainedTokenizerBase, max_seq_length: int,
                        task_files_dir: Path) -> TaskData:
    """Write (or reuse) the task's files under task_files_dir/fortunes-<hash of its settings>, then read,
    check and encode them as a local-files task."""
    from tasks.evaluate.file_tasks import FileTask, build_file_task

    spec = FortuneTaskSpec(**task.model_dump(include=set(FortuneTaskSpec.model_fields)))
    key = hashlib.sha256(json.dumps({"spec": spec.model_dump(), "source": str(task.source)},
                                    sort_keys=True).encode()).hexdigest()[:16]
    out_dir = task_files_dir / f"fortunes-{key}"
    if not (out_dir / STATS_FILE).is_file():  # written last: its presence means the files are whole
        if task.source is not None:
            write_fortune_task(task.source, out_dir, spec)
        else:
            with tempfile.TemporaryDirectory() as work:
                root, versions = download_packages(PACKAGES, Path(work))
                write_fortune_task(root / FORTUNES_SUBDIR, out_dir, spec,
                                   {package: f"Debian {package} {version}" for package, version in versions.items()})
    files = FileTask(name=task.name, **{split: [out_dir / f"{split}.jsonl"] for split in SPLIT_NAMES})
    data = build_file_task(files, tokenizer, max_seq_length)
    stats = json.loads((out_dir / STATS_FILE).read_text(encoding="utf-8"))
    data.info.update(source="fortunes", packages=stats["sources"], dropped=stats["dropped"])
    return data


def overstrike(line: str) -> str:
    """A line as a terminal shows it: backspace moves back, a letter typed over "_" (underline) or over itself (bold)
    replaces it; "____\\b\\b\\b\\bthis" -> "this", "Poincar'\\be" -> "Poincare"."""
    if "\b" not in line:
        return line
    cells: list[str] = []
    column = 0
    for char in line:
        if char == "\b":
            column = max(0, column - 1)
            continue
        if column < len(cells):
            if char != "_":
                cells[column] = char
        else:
            cells.append(char)
        column += 1
    return "".join(cells)


def clean_entry(entry: str) -> str:
    """One fortune as one line: overstrikes resolved, control characters dropped, whitespace runs made one space.

    The files wrap lines at ~72 columns and indent attributions with tabs; BERT's tokenizer reads a newline or tab
    as a space, so joining loses the model nothing and keeps one example per line in any file format."""
    lines = (_CONTROL.sub("", overstrike(line)) for line in entry.split("\n"))
    return _SPACES.sub(" ", " ".join(lines)).strip()


def parse_fortunes(text: str) -> list[str]:
    """The cleaned, non-empty entries of one fortune file (entries end at a line holding only "%")."""
    entries, lines = [], []
    for line in text.split("\n"):
        if line.rstrip("\r").strip() == "%":
            entries.append(clean_entry("\n".join(lines)))
            lines = []
        else:
            lines.append(line.rstrip("\r"))
    entries.append(clean_entry("\n".join(lines)))
    return [e for e in entries if e]


def category_files(fortune_dir: Path) -> dict[str, Path]:
    """Category name -> file for every English fortune file directly in the folder.

    strfile's .dat indexes and the .u8 links to the same text are skipped, as are subfolders (fortunes-off
    installs under off/) and fortunes-zh's Chinese files."""
    if not fortune_dir.is_dir():
        raise InputError(f"fortune folder {fortune_dir} does not exist; give the folder holding the fortune files "
                         f"(computers, people, ...), e.g. /usr/share/games/fortunes after apt-get install fortunes")
    return {p.name: p for p in sorted(fortune_dir.iterdir())
            if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8") and p.name not in NOT_ENGLISH}


def read_categories(fortune_dir: Path) -> dict[str, list[str]]:
    """Category name -> its cleaned entries, in file order."""
    return {name: parse_fortunes(path.read_bytes().decode("utf-8", errors="replace"))
            for name, path in category_files(fortune_dir).items()}


def label_texts(categories: dict[str, list[str]], wanted: list[str]) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """(class -> its distinct texts, what was dropped); a text filed under two or more categories (any category
    read, not only the wanted ones) has no single label and is dropped, repeats within one category are kept once."""
    missing = [c for c in wanted if c not in categories]
    if missing:
        available = ", ".join(f"{name} ({len(entries)})" for name, entries in
                              sorted(categories.items(), key=lambda kv: (-len(kv[1]), kv[0])))
        raise InputError(f"no fortune category {missing}; the categories found, with their entries, are: {available}")
    filed_under: dict[str, set[str]] = {}
    for name, entries in categories.items():
        for text in entries:
            filed_under.setdefault(text, set()).add(name)
    by_class: dict[str, list[str]] = {}
    in_other = {}
    for name in wanted:
        distinct = list(dict.fromkeys(categories[name]))
        by_class[name] = [t for t in distinct if len(filed_under[t]) == 1]
        in_other[name] = len(distinct) - len(by_class[name])
    dropped = {
        "texts_in_several_categories": sum(len(names) > 1 for names in filed_under.values()),
        "dropped_per_class_as_in_several_categories": in_other,
        "dropped_per_class_as_repeated_in_its_file": {n: len(categories[n]) - len(set(categories[n])) for n in wanted},
    }
    return by_class, dropped


def text_rank(text: str) -> str:
    """Stable position of a text in its class: capping and splitting do not depend on file order."""
    return hashlib.sha256(("fortunes:" + text).encode("utf-8")).hexdigest()


def split_examples(by_class: dict[str, list[str]], spec: FortuneTaskSpec) -> dict[str, list[tuple[str, str]]]:
    """Split -> (text, label) rows, in hash order; per class the lowest-ranked texts go to test, then dev, then
    train, after the cap keeps its max_per_class lowest-ranked texts (so every split has the same class mix)."""
    too_small = {name: len(texts) for name, texts in by_class.items() if len(texts) < 3}
    if too_small:
        raise InputError(f"categories {too_small} keep fewer than 3 distinct texts (the least that fills train, dev "
                         "and test); choose larger categories")
    splits: dict[str, list[tuple[str, str]]] = {split: [] for split in SPLIT_NAMES}
    for name, texts in by_class.items():
        ranked = sorted(texts, key=text_rank)[: spec.max_per_class]
        n_test = max(1, round(len(ranked) * spec.test_fraction))
        n_dev = max(1, round(len(ranked) * spec.dev_fraction))
        splits["test"] += [(t, name) for t in ranked[:n_test]]
        splits["dev"] += [(t, name) for t in ranked[n_test : n_test + n_dev]]
        splits["train"] += [(t, name) for t in ranked[n_test + n_dev :]]
    return {split: sorted(rows, key=lambda row: text_rank(row[0])) for split, rows in splits.items()}


def _write_atomically(path: Path, content: str) -> None:
    """Write next to the final name, then rename: an interrupted run leaves no half-written file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(content, encoding="utf-8")
    partial.replace(path)


def split_counts(splits: dict[str, list[tuple[str, str]]], classes: list[str]) -> dict[str, dict[str, int]]:
    """Split -> class -> examples."""
    counts = {split: Counter(label for _, label in rows) for split, rows in splits.items()}
    return {split: {name: counts[split][name] for name in classes} for split in SPLIT_NAMES}


def majority_rates(counts: dict[str, dict[str, int]]) -> dict[str, float]:
    """Split -> accuracy of always answering train's most common class (the floor a model must beat)."""
    majority = max(counts["train"], key=lambda name: counts["train"][name])
    return {split: round(c[majority] / max(1, sum(c.values())), 4) for split, c in counts.items()}


def write_fortune_task(fortune_dir: Path, out_dir: Path, spec: FortuneTaskSpec,
                       sources: dict[str, str] | None = None) -> dict[str, Any]:
    """Read the fortune files, label, dedupe, cap and split them, write OUT/{train,dev,test}.jsonl and
    OUT/fortunes-task.json (written last); -> the statistics written there."""
    by_class, dropped = label_texts(read_categories(fortune_dir), spec.categories)
    splits = split_examples(by_class, spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        lines = (json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n" for text, label in rows)
        _write_atomically(out_dir / f"{split}.jsonl", "".join(lines))
    counts = split_counts(splits, spec.categories)
    stats = {
        "spec": spec.model_dump(),
        "sources": sources or {"folder": str(fortune_dir)},
        "distinct_texts_per_class": {name: len(texts) for name, texts in by_class.items()},
        "examples": counts,
        "majority_class_rate": majority_rates(counts),
        "dropped": dropped,
    }
    _write_atomically(out_dir / STATS_FILE, json.dumps(stats, indent=2) + "\n")
    return stats


def format_counts(stats: dict[str, Any]) -> str:
    """The per-split, per-class table with the majority-class rate, as printed after a run."""
    counts, rates = stats["examples"], stats["majority_class_rate"]
    classes = list(counts["train"])
    width = max(len(name) for name in [*classes, "majority rate"])
    lines = [f"{'class':<{width}} " + " ".join(f"{s:>6}" for s in SPLIT_NAMES)]
    lines += [f"{name:<{width}} " + " ".join(f"{counts[s][name]:>6}" for s in SPLIT_NAMES) for name in classes]
    lines.append(f"{'total':<{width}} " + " ".join(f"{sum(counts[s].values()):>6}" for s in SPLIT_NAMES))
    lines.append(f"{'majority rate':<{width}} " + " ".join(f"{rates[s]:>6.3f}" for s in SPLIT_NAMES))
    dropped = stats["dropped"]["dropped_per_class_as_in_several_categories"]
    lines.append(f"dropped as filed under several categories: {sum(dropped.values())} of these classes' texts "
                 f"({', '.join(f'{k} {v}' for k, v in dropped.items())}); "
                 f"{stats['dropped']['texts_in_several_categories']} such texts in all files")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = FortuneTaskSpec()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for train.jsonl, dev.jsonl, test.jsonl")
    parser.add_argument("--from", dest="fortune_dir", type=Path, default=None,
                        help="folder holding the fortune files; default: apt-get download " + " ".join(PACKAGES))
    parser.add_argument("--categories", nargs="+", default=None,
                        help=f"fortune files that become the classes (default: {' '.join(defaults.categories)})")
    parser.add_argument("--max-per-class", type=int, default=None,
                        help=f"at most this many texts per class (default: {defaults.max_per_class})")
    args = parser.parse_args(argv)
    given = {"categories": args.categories, "max_per_class": args.max_per_class}
    try:
        spec = FortuneTaskSpec(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        if args.fortune_dir is not None:
            stats = write_fortune_task(args.fortune_dir, args.out_dir, spec)
        else:
            if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
                print("needs apt-get and dpkg-deb (Debian), or --from a folder of fortune files", file=sys.stderr)
                return 2
            with tempfile.TemporaryDirectory() as work:
                root, versions = download_packages(PACKAGES, Path(work))
                sources = {package: f"Debian {package} {version}" for package, version in versions.items()}
                stats = write_fortune_task(root / FORTUNES_SUBDIR, args.out_dir, spec, sources)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_counts(stats))
    print(f"written: {', '.join(f'{s}.jsonl' for s in SPLIT_NAMES)} and {STATS_FILE} under {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
