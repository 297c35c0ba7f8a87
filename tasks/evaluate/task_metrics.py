"""Downstream metrics, as GLUE reports them: accuracy, F1, Matthews correlation, Pearson and Spearman.

Every metric is `metric(predictions, labels) -> float` over two 1-D numpy arrays of the same length:
class ids for classification, real values for regression.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of exact matches."""
    return float(np.mean(np.asarray(predictions) == np.asarray(labels))) if len(labels) else 0.0


def _confusion(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = predicted class."""
    predictions, labels = np.asarray(predictions, np.int64), np.asarray(labels, np.int64)
    classes = int(max(predictions.max(initial=0), labels.max(initial=0))) + 1
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return confusion


def f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """F1 of the positive class (label 1), as GLUE reports it for MRPC and QQP; 0 when it is never seen."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    true_positives = int(np.sum((predictions == 1) & (labels == 1)))
    denominator = int(np.sum(predictions == 1) + np.sum(labels == 1))  # 2*TP + FP + FN
    return 2.0 * true_positives / denominator if denominator else 0.0


def macro_f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions."""
    confusion = _confusion(predictions, labels)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # 2*TP + FP + FN per class
    present = denominator > 0
    if not present.any():
        return 0.0
    return float(np.mean(2.0 * np.diag(confusion)[present] / denominator[present]))


def matthews_corrcoef(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation (Gorodkin's multi-class form; CoLA's metric); 0 when either side is constant."""
    confusion = _confusion(predictions, labels).astype(np.float64)
    samples = confusion.sum()
    correct = np.trace(confusion)
    true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    covariance = correct * samples - predicted_counts @ true_counts
    spread = np.sqrt(samples**2 - predicted_counts @ predicted_counts) * np.sqrt(samples**2 - true_counts @ true_counts)
    return float(covariance / spread) if spread else 0.0


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant."""
    x, y = np.asarray(predictions, np.float64), np.asarray(labels, np.float64)
    x, y = x - x.mean(), y - y.mean()
    spread = np.sqrt((x @ x) * (y @ y))
    return float((x @ y) / spread) if spread else 0.0


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (as scipy.stats.rankdata does)."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.zeros(len(counts))
    np.add.at(sums, inverse, ranks)
    return sums[inverse] / counts[inverse]


def spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Spearman rank correlation: Pearson over the ranks, ties averaged."""
    return pearson(_ranks(predictions), _ranks(labels))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "macro_f1": macro_f1,
    "matthews": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}
CLASSIFICATION_METRICS = ("accuracy", "f1", "macro_f1", "matthews")
REGRESSION_METRICS = ("pearson", "spearman")


def score(names: list[str] | tuple[str, ...], predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The named metrics of one set of predictions."""
    return {name: METRICS[name](predictions, labels) for name in names}
