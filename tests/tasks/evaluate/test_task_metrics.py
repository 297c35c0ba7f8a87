"""The metrics against values worked out by hand."""

import math

import numpy as np
import pytest

from tasks.evaluate.task_metrics import accuracy, f1, macro_f1, matthews_corrcoef, pearson, score, spearman


def test_classification_metrics_by_hand() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    predictions = np.array([1, 1, 0, 0, 0, 1, 0, 1])
    # TP=3 FN=1 FP=1 TN=3
    assert accuracy(predictions, labels) == 6 / 8
    assert f1(predictions, labels) == 2 * 3 / (2 * 3 + 1 + 1)
    assert macro_f1(predictions, labels) == pytest.approx((6 / 8 + 6 / 8) / 2)
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (9 - 1) / sqrt(4*4*4*4) = 0.5
    assert matthews_corrcoef(predictions, labels) == pytest.approx(0.5)


def test_matthews_edge_cases_and_three_classes() -> None:
    assert matthews_corrcoef(np.zeros(4, int), np.array([0, 1, 0, 1])) == 0.0  # constant predictions
    assert matthews_corrcoef(np.array([0, 1, 2]), np.array([0, 1, 2])) == pytest.approx(1.0)
    # 3 classes: confusion [[2,1,0],[0,1,0],[0,0,2]]; c=5, s=6, t=(3,1,2), p=(2,2,2)
    labels = np.array([0, 0, 0, 1, 2, 2])
    predictions = np.array([0, 0, 1, 1, 2, 2])
    expected = (5 * 6 - (3 * 2 + 1 * 2 + 2 * 2)) / (math.sqrt(36 - 12) * math.sqrt(36 - (9 + 1 + 4)))
    assert matthews_corrcoef(predictions, labels) == pytest.approx(expected)


def test_f1_without_positives_is_zero() -> None:
    assert f1(np.zeros(3, int), np.zeros(3, int)) == 0.0


def test_correlations_by_hand() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert pearson(x, np.ones(4)) == 0.0
    # y = [1, 3, 2, 4]: deviations x (-1.5,-.5,.5,1.5), y (-1.5,.5,-.5,1.5); cov 2.25-.25-.25+2.25 = 4; var 5 each
    assert pearson(x, np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)
    # Spearman ignores monotone transforms; ties share ranks: [10, 20, 20, 30] ranks 1, 2.5, 2.5, 4
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(np.array([10.0, 20.0, 20.0, 30.0]), x) == pytest.approx(pearson(np.array([1, 2.5, 2.5, 4]), x))


def test_score_names_each_metric() -> None:
    assert score(["accuracy", "f1"], np.array([1, 0]), np.array([1, 1])) == {"accuracy": 0.5, "f1": 2 / 3}
