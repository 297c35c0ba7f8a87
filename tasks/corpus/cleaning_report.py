"""The cleaning report of a corpus snapshot: a markdown table of documents and bytes per step, a few
dropped and kept examples, and PNG plots of document length and language.

The stage runner uploads top-level *.md and *.png files of an artifact to MLflow, and the corpus flow
publishes cleaning_report.md as a Prefect markdown artifact, so everything here is written at the top
of the snapshot folder. Plots use matplotlib's Agg canvas directly (no pyplot, no display, no global state).
"""

from __future__ import annotations

import os
import re
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from tasks.clean.steps import EXCERPT_CHARS, Document, Example, StepCount
from tasks.clean.text_stats import WORD_COUNT_RULE, count_words

REPORT_FILE = "cleaning_report.md"
LENGTH_PLOT = "document_length.png"
LANGUAGE_PLOT = "languages.png"
MAX_LANGUAGE_BARS = 20  # the rest are summed into one "other" bar
_NO_LANGUAGE = "unidentified"  # label of documents whose language was not identified (language id off)
_LENGTH_BINS = 40  # log-spaced histogram bins
_DPI = 110
_BAR_COLOR = "#3b6ea8"


def write_cleaning_report(out_dir: Path, step_table: Sequence[StepCount],
                          drop_examples: Mapping[str, Sequence[Example]], kept_examples: Sequence[Example],
                          documents: Iterable[Document], drop_counts: Mapping[str, int] | None = None) -> list[Path]:
    """Write cleaning_report.md, document_length.png and languages.png into out_dir; returns their paths.

    step_table: counts per step in pipeline order; drop_examples: a few dropped documents per drop reason;
    kept_examples: a few kept documents; documents: the kept documents (read once, for the plots);
    drop_counts: documents dropped per reason, including reasons outside step_table (e.g. extraction).
    """
    words = array("q")  # words per kept document: 8 bytes each, not a Python int object each
    languages: Counter[str] = Counter()
    for doc in documents:
        words.append(count_words(doc.text))
        languages[doc.language or _NO_LANGUAGE] += 1
    return write_cleaning_report_of(out_dir, step_table, drop_examples, kept_examples, words, languages, drop_counts)


def write_cleaning_report_of(out_dir: Path, step_table: Sequence[StepCount],
                             drop_examples: Mapping[str, Sequence[Example]], kept_examples: Sequence[Example],
                             words: Sequence[int], languages: Mapping[str | None, int],
                             drop_counts: Mapping[str, int] | None = None) -> list[Path]:
    """write_cleaning_report from the kept documents' word counts and languages (None = unidentified) alone."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    named: Counter[str] = Counter()
    for language, count in languages.items():
        named[language or _NO_LANGUAGE] += count
    markdown = cleaning_markdown(step_table, drop_examples, kept_examples, drop_counts or {}, words, named)
    report = _write_atomically(out_dir / REPORT_FILE, markdown.encode("utf-8"))
    length_plot = _save(length_figure(words), out_dir / LENGTH_PLOT)
    language_plot = _save(language_figure(named), out_dir / LANGUAGE_PLOT)
    return [report, length_plot, language_plot]


def cleaning_markdown(step_table: Sequence[StepCount], drop_examples: Mapping[str, Sequence[Example]],
                      kept_examples: Sequence[Example], drop_counts: Mapping[str, int],
                      words: Sequence[int], languages: Mapping[str, int]) -> str:
    """The report as markdown (tables, examples in fenced blocks, the plots named)."""
    lines = ["# Cleaning report", ""]
    if step_table:
        first, last = step_table[0], step_table[-1]
        share = f" ({last.docs_out / first.docs_in:.1%})" if first.docs_in else ""
        lines += [f"{first.docs_in:,} documents ({_human_bytes(first.bytes_in)} of text) went into cleaning; "
                  f"{last.docs_out:,}{share} came out ({_human_bytes(last.bytes_out)}).", ""]
    if words:
        lines += [f"Kept documents: median {int(np.median(words)):,} words, {len(languages)} "
                  f"language{'s' if len(languages) != 1 else ''} (most: {_top_languages(languages)}).", ""]
    lines += [f"Words are counted as the filters count them: {WORD_COUNT_RULE}.", ""]
    lines += ["## Documents and bytes per step", "",
              "| step | docs in | docs out | dropped | bytes in | bytes out |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {_cell(s.step)} | {s.docs_in:,} | {s.docs_out:,} | {s.dropped:,} | {s.bytes_in:,} | {s.bytes_out:,} |"
              for s in step_table]
    dropped_reasons = {reason: n for reason, n in drop_counts.items() if n}
    if dropped_reasons:
        lines += ["", "## Drop reasons", "", "| reason | documents |", "| --- | ---: |"]
        lines += [f"| {_cell(reason)} | {n:,} |" for reason, n in dropped_reasons.items()]
    lines += _example_sections(step_table, drop_examples, kept_examples)
    lines += ["", "## Plots", "",
              f"`{LENGTH_PLOT}`: words per kept document (log scale). "
              f"`{LANGUAGE_PLOT}`: kept documents per language.", ""]
    return "\n".join(lines)


def _example_sections(step_table: Sequence[StepCount], drop_examples: Mapping[str, Sequence[Example]],
                      kept_examples: Sequence[Example]) -> list[str]:
    by_step: dict[str, list[Example]] = {s.step: [] for s in step_table}  # pipeline order first
    for examples in drop_examples.values():
        for example in examples:
            by_step.setdefault(example.step, []).append(example)
    lines = ["", "## Dropped examples", "",
             f"A few documents per drop reason, each as the step saw it (first {EXCERPT_CHARS} characters)."]
    shown = 0
    for step, examples in by_step.items():
        if not examples:
            continue
        lines += ["", f"### {step}"]
        for example in examples:
            lines += _example_lines(example)
            shown += 1
    if not shown:
        lines += ["", "No document was dropped."]
    lines += ["", "## Kept examples"]
    for example in kept_examples:
        lines += _example_lines(example)
    if not kept_examples:
        lines += ["", "No document was kept."]
    return lines


def _example_lines(example: Example) -> list[str]:
    label = "" if example.reason == "kept" else f"**{_cell(example.reason)}**: "
    fence = "`" * max(3, _longest_run(example.excerpt, "`") + 1)  # a fence the excerpt cannot close
    return ["", f"{label}{_code_span(example.url)}", "", f"{fence}text", example.excerpt, fence]


def length_figure(words: Sequence[int]) -> Figure:
    """Histogram of words per document on log-spaced bins and a log x axis, with the median marked."""
    fig = Figure(figsize=(7.5, 4.2), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    ax.set_title(f"Document length ({len(words):,} kept documents)")
    ax.set_xlabel("words per document (log scale)")
    ax.set_ylabel("documents")
    if not words:
        _say_empty(ax)
        return fig
    counts = np.maximum(np.asarray(words, dtype=np.int64), 1)  # log axis: a 0-word document sits in the first bin
    low, high = int(counts.min()), int(counts.max())
    if low == high:  # one length: a visible bin around it
        low, high = max(1, low // 2), high * 2
    ax.hist(counts, bins=np.geomspace(low, high, _LENGTH_BINS + 1), color=_BAR_COLOR, edgecolor="white", linewidth=0.5)
    ax.set_xscale("log")
    median = float(np.median(counts))
    ax.axvline(median, color="#c0392b", linestyle="--", linewidth=1.2, label=f"median {median:,.0f} words")
    ax.legend(frameon=False)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # whole documents
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def language_figure(languages: Mapping[str, int]) -> Figure:
    """Horizontal bars of documents per language, most common on top; the tail summed into "other"."""
    ranked = sorted(languages.items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) > MAX_LANGUAGE_BARS:
        head, tail = ranked[:MAX_LANGUAGE_BARS - 1], ranked[MAX_LANGUAGE_BARS - 1:]
        ranked = [*head, (f"{len(tail)} others", sum(n for _, n in tail))]
    fig = Figure(figsize=(7.5, 1.6 + 0.32 * max(len(ranked), 1)), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    total = sum(languages.values())
    ax.set_title(f"Kept documents per language ({total:,} documents)")
    ax.set_xlabel("documents")
    if not ranked:
        _say_empty(ax)
        return fig
    labels = [label for label, _ in ranked][::-1]  # barh draws bottom-up: the most common goes on top
    values = [n for _, n in ranked][::-1]
    bars = ax.barh(labels, values, color=_BAR_COLOR)
    ax.bar_label(bars, labels=[f"{n:,} ({_percent(n, total)})" for n in values], padding=3, fontsize=9)
    ax.set_xlim(0, max(values) * 1.2)  # room for the labels
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole documents
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _say_empty(ax) -> None:
    ax.text(0.5, 0.5, "no documents kept", ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: Figure, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    FigureCanvasAgg(fig).print_png(tmp, metadata={"Software": None})  # no version string: same plot, same bytes
    os.replace(tmp, path)
    return path


def _write_atomically(path: Path, data: bytes) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _top_languages(languages: Mapping[str, int], count: int = 3) -> str:
    total = sum(languages.values())
    ranked = sorted(languages.items(), key=lambda item: (-item[1], item[0]))[:count]
    return ", ".join(f"{language} {_percent(n, total)}" for language, n in ranked)


def _percent(part: int, whole: int) -> str:
    share = part / whole
    return "<1%" if 0 < share < 0.01 else f"{share:.0%}"


def _human_bytes(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell: pipes escaped, line breaks as spaces."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _longest_run(text: str, char: str) -> int:
    return max((len(run) for run in re.findall(f"{re.escape(char)}+", text)), default=0)


def _code_span(text: str) -> str:
    """Inline code that shows text verbatim, whatever backticks it holds."""
    ticks = "`" * (_longest_run(text, "`") + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text.replace(chr(10), ' ')}{pad}{ticks}"
