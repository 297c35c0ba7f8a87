"""The evaluation report: a task x model table (mean ± std, gain over scratch), intrinsic metrics, a bar chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _cell(row: dict[str, Any], metric: str) -> str:
    return f"{metric} {row[f'{metric}_mean']:.4f} ± {row[f'{metric}_std']:.4f}"


def render_results(results: dict[str, Any]) -> str:
    """Markdown of a results.json dict."""
    lines = [
        "## Fine-tuning: pretrained vs. from scratch",
        "",
        "Test metrics, mean ± std over seeds, at the learning rate each model chose on dev. "
        "Gain = model − scratch on the task's first metric.",
        "",
        "| task | model | chosen lr | test metrics | gain over scratch | seeds |",
        "|---|---|---|---|---|---|",
    ]
    extended = []
    for task, rows in results["summary"].items():
        metrics = results["tasks"][task]["metrics"]
        for model, row in rows.items():
            gain = results["gain"][task].get(model, {}).get(metrics[0])
            gain_text = "—" if gain is None else f"{gain:+.4f}"
            lines.append(f"| {task} | {model} | {row['learning_rate']:g} | "
                         f"{'; '.join(_cell(row, m) for m in metrics)} | {gain_text} | {int(row['seeds'])} |")
            if row.get("grid_extended"):
                extended.append(f"- {task} / {model}: the best learning rate was at the edge of the grid; also tried "
                                f"{', '.join(f'{r:g}' for r in row['grid_extended'])}, chose {row['learning_rate']:g}.")
    if results.get("warnings"):
        lines += ["", "**Warning.** " + " ".join(results["warnings"])]
    if extended:
        lines += ["", "Learning-rate grid extended:", *extended]
    lines += ["", "### Tasks", ""]
    for task, info in results["tasks"].items():
        sizes = info["split_examples"]
        labels = f"{len(info['labels'])} classes ({', '.join(map(str, info['labels']))})" if info["labels"] else "regression"
        chance = f"; majority-class test accuracy {info['majority_rate']:.4f}" if info.get("majority_rate") else ""
        lines.append(f"- **{task}** ({info.get('source', '?')}): {labels}; examples train/dev/test "
                     f"{sizes['train']}/{sizes['dev']}/{sizes['test']}{chance}.")
    lines += _intrinsic_lines(results.get("intrinsic", {}))
    return "\n".join(lines) + "\n"


def _number(value: Any, digits: int = 4) -> str:
    return "—" if not isinstance(value, (int, float)) or math.isnan(value) else f"{value:.{digits}f}"


def _intrinsic_lines(intrinsic: dict[str, dict[str, Any]]) -> list[str]:
    if not intrinsic:
        return []
    lines = ["", "## Intrinsic: held-out masked-LM", "",
             "| model | MLM accuracy | perplexity | NSP accuracy | instances |", "|---|---|---|---|---|"]
    for model, values in intrinsic.items():
        if "skipped" in values and "mlm_accuracy" not in values:
            lines.append(f"| {model} | skipped: {values['skipped']} | | | |")
            continue
        lines.append(f"| {model} | {_number(values['mlm_accuracy'])} | {_number(values['perplexity'], 2)} | "
                     f"{_number(values['nsp_accuracy'])} | {int(values['instances'])} |")
    for model, values in intrinsic.items():
        examples = values.get("fill_mask") or []
        if examples:
            lines += ["", f"Fill-mask examples ({model}): the masked word, then the model's top guesses.", ""]
            for example in examples:
                guesses = ", ".join(f"{p['token']} ({p['score']:.2f})" for p in example["predictions"])
                lines.append(f"- `{example['text']}` — answer **{example['answer']}**: {guesses}")
    return lines


def plot_results(results: dict[str, Any], path: Path) -> None:
    """Grouped bars: per task, each model's mean test score on the task's first metric, std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results["summary"])
    models = list(next(iter(results["summary"].values())))
    width = 0.8 / len(models)
    figure, axes = plt.subplots(figsize=(max(4.0, 1.8 * len(tasks) + 2), 3.5))
    for i, model in enumerate(models):
        means, stds = [], []
        for task in tasks:
            metric = results["tasks"][task]["metrics"][0]
            means.append(results["summary"][task][model][f"{metric}_mean"])
            stds.append(results["summary"][task][model][f"{metric}_std"])
        axes.bar([t + (i - (len(models) - 1) / 2) * width for t in range(len(tasks))], means, width, yerr=stds,
                 label=model, capsize=3)
    axes.set_xticks(range(len(tasks)))
    axes.set_xticklabels([f"{t}\n({results['tasks'][t]['metrics'][0]})" for t in tasks])
    axes.set_ylabel("test score (mean ± std over seeds)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(path)
