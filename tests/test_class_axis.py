"""Two classes, classes missing from a split, unbalanced splits: every model output keeps an explicit class axis, and
balanced accuracy and per-class accuracy are computed from it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from edgedistill.distill.multisource import class_axis_logits
from edgedistill.errors import ExportError
from edgedistill.export.accuracy import compare_accuracy, model_accuracy


def test_two_class_head_gets_two_columns_with_the_heads_probabilities() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1, 1, (40, 5)), rng.normal(1, 1, (40, 5))])
    y = np.repeat([0, 1], 40)
    head = LogisticRegression().fit(x, y)
    assert head.decision_function(x).ndim == 1  # what scikit-learn does with two classes
    logits = class_axis_logits(head.decision_function(x), head.classes_, 2)
    assert logits.shape == (80, 2) and logits.dtype == np.float32
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, head.predict_proba(x), atol=1e-5)
    assert (logits.argmax(1) == head.predict(x)).all()


def test_classes_the_head_never_saw_rank_last() -> None:
    scores = np.array([[0.5, -2.0, 1.0], [3.0, 0.0, -1.0]], dtype=np.float32)
    logits = class_axis_logits(scores, np.array([0, 2, 4]), 6)
    assert logits.shape == (2, 6)
    np.testing.assert_array_equal(logits[:, [0, 2, 4]], scores)
    assert (logits[:, [1, 3, 5]] < scores.min() - 10).all()
    two = class_axis_logits(np.array([0.3, -0.7]), np.array([1, 3]), 4)  # binary head over classes 1 and 3 of 4
    assert two.shape == (2, 4) and list(two.argmax(1)) == [3, 1]
    with pytest.raises(ValueError, match="2 columns for 3 fitted classes"):
        class_axis_logits(np.zeros((4, 2)), np.arange(3), 3)


def test_balanced_and_per_class_accuracy_on_an_unbalanced_split() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    always_zero = model_accuracy(lambda x: np.tile([1.0, 0.0], (len(x), 1)), [(np.zeros((100, 1, 2, 2)), labels)], "m")
    assert always_zero.top1 == 90.0 and always_zero.balanced == 50.0
    assert always_zero.per_class() == {0: (90, 100.0), 1: (10, 0.0)}
    perfect = model_accuracy(lambda x: np.eye(2)[labels], [(np.zeros((100, 1, 2, 2)), labels)], "m")
    assert compare_accuracy(perfect, always_zero)["drop_pts"] == 10.0
    assert compare_accuracy(perfect, always_zero, "balanced")["drop_pts"] == 50.0
    with pytest.raises(ExportError, match="unknown accuracy metric 'f1'"):
        perfect.metric("f1")


def test_a_model_without_a_class_axis_fails_in_one_line() -> None:
    with pytest.raises(ExportError, match=r"m: the model returns shape \(4,\); expected \(batch, classes\) logits"):
        model_accuracy(lambda x: np.zeros(len(x)), [(np.zeros((4, 1, 2, 2)), np.zeros(4, int))], "m")
