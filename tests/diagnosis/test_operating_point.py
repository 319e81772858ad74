"""The chain's operating point: the tumor-threshold decision rule and its choice on
validation rows under a cap on false alarms among normal radiographs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from bone_tumor_tf.diagnosis.chain import Diagnosis
from bone_tumor_tf.diagnosis.evaluate import choose_operating_point
from bone_tumor_tf.evaluation.diagnosis import decide, image_metrics

PROBS = np.array([[0.50, 0.30, 0.20],   # argmax normal; P(tumor) 0.50
                  [0.40, 0.25, 0.35],   # argmax normal; P(tumor) 0.60, malignant > benign
                  [0.20, 0.40, 0.40],   # benign/malignant tie -> benign
                  [0.90, 0.05, 0.05]])  # P(tumor) 0.10


def test_decide_hand_worked():
    assert decide(PROBS).tolist() == [0, 0, 1, 0]
    assert decide(PROBS, 0.5).tolist() == [1, 2, 1, 0]  # 0.50 >= 0.5 counts as tumor
    assert decide(PROBS, 0.55).tolist() == [0, 2, 1, 0]
    assert decide(PROBS, 0.95).tolist() == [0, 0, 0, 0]


def test_finding_and_image_metrics_follow_the_operating_point():
    names = ("normal", "benign", "malignant")
    diagnosis = Diagnosis(dict(zip(names, PROBS[1], strict=True)), [], np.zeros((2, 2)))
    assert diagnosis.finding == "normal"
    diagnosis.tumor_threshold = 0.6
    assert diagnosis.finding == "malignant"
    y = np.array([1, 2, 1, 0])
    for t in (None, 0.5, 0.55):
        expected = balanced_accuracy_score(y, decide(PROBS, t))
        assert image_metrics(y, PROBS, t)["balanced_accuracy"] == pytest.approx(expected)
    # The threshold moves decisions, never the AUC.
    assert image_metrics(y, PROBS, 0.5)["macro_auc"] == image_metrics(y, PROBS)["macro_auc"]


def _row(name, chain, whole):
    keys = ("normal", "benign", "malignant")
    return {"file": name, "chain_probabilities": dict(zip(keys, chain, strict=True)),
            "whole_image_probabilities": dict(zip(keys, whole, strict=True))}


# Chain and whole-image model agree (so the weight does not matter). Two normals with
# P(tumor) 0.7 and 0.2, a benign at 0.8 and a malignant at 0.6.
ROWS = [_row("n1", (0.3, 0.5, 0.2), (0.3, 0.5, 0.2)), _row("n2", (0.8, 0.1, 0.1),
        (0.8, 0.1, 0.1)), _row("b", (0.2, 0.6, 0.2), (0.2, 0.6, 0.2)),
        _row("m", (0.4, 0.2, 0.4), (0.4, 0.2, 0.4))]
LABELS = {"n1": "normal", "n2": "normal", "b": "benign", "m": "malignant"}


def test_choice_without_a_cap_is_the_best_balanced_accuracy():
    # Most probable class: n1 benign (wrong), n2 normal, b benign, m normal/malignant tie ->
    # normal (wrong): recalls 1/2, 1, 0 -> 0.5. Threshold 0.6: n1 benign (wrong), n2
    # normal, b benign, m malignant: recalls 1/2, 1, 1 -> 5/6, the best; 0.3 ... 0.6 tie,
    # so the lowest (0.3) wins at the smallest weight.
    choice = choose_operating_point(ROWS, LABELS)
    assert choice["whole_image_weight"] == 0.0 and choice["tumor_threshold"] == 0.3
    assert choice["balanced_accuracy"] == pytest.approx(5 / 6)
    assert choice["false_tumor_rate"] == 0.5 and choice["met"]


def test_cap_on_false_alarms_moves_the_threshold_up():
    # At most 0 of the 2 normals called tumor: t = 0.7 clears n1 (0.7 >= 0.7 still counts),
    # so 0.8: n1 normal, n2 normal, b benign (0.8 >= 0.8), m normal -> recalls 1, 1, 0.
    choice = choose_operating_point(ROWS, LABELS, max_false_tumor_rate=0.0)
    assert choice["tumor_threshold"] == 0.8 and choice["false_tumor_rate"] == 0.0
    assert choice["balanced_accuracy"] == pytest.approx(2 / 3) and choice["met"]
    # A cap nothing meets: the fewest false alarms, then the best balanced accuracy.
    rows = [_row("n1", (0.0, 0.5, 0.5), (0.0, 0.5, 0.5))] + ROWS[2:]
    choice = choose_operating_point(rows, LABELS, max_false_tumor_rate=0.0,
                                    tumor_thresholds=(None, 0.5))
    assert not choice["met"] and choice["false_tumor_rate"] == 1.0
    assert len(choice["candidates"]) == 5 * 2
