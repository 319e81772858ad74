"""Evaluation metrics against hand-worked examples and independent references, plus the
figures, the Markdown report and the atomic writers."""

from __future__ import annotations

import json
import os
import time

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from bone_tumor_tf.evaluation.calibration import (
    expected_calibration_error,
    multiclass_brier_score,
    reliability_bins,
)
from bone_tumor_tf.evaluation.classification import (
    evaluate_predictions,
    sensitivity_at_specificity,
)
from bone_tumor_tf.evaluation.plots import (
    _continue_epochs,
    plot_confusion_matrix,
    plot_pr_curves,
    plot_reliability_diagram,
    plot_roc_curves,
    plot_training_curves,
)
from bone_tumor_tf.evaluation.probabilities import as_probability_matrix
from bone_tumor_tf.evaluation.reports.classification import write_classification_report
from bone_tumor_tf.evaluation.reports.markdown import SYNTHETIC_WARNING
from bone_tumor_tf.evaluation.stats import bootstrap_ci
from bone_tumor_tf.io import atomic_write_json, atomic_write_text, to_jsonable

THREE_CLASSES = ("normal", "benign", "malignant")

# Hand-worked 3-class example. Argmax predictions: 0, 1, 1, 2, 2, 2.
HAND_Y = np.array([0, 0, 1, 1, 2, 2])
HAND_PROBS = np.array([
    [0.7, 0.2, 0.1],  # normal,    predicted normal
    [0.4, 0.5, 0.1],  # normal,    predicted benign
    [0.1, 0.6, 0.3],  # benign,    predicted benign
    [0.2, 0.3, 0.5],  # benign,    predicted malignant
    [0.1, 0.1, 0.8],  # malignant, predicted malignant
    [0.3, 0.3, 0.4],  # malignant, predicted malignant
])


def random_predictions(n, n_classes=3, separation=1.5, seed=0):
    """Labels and softmax probabilities of a moderately good synthetic classifier."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), labels] += separation
    probs = np.exp(logits)
    return labels, probs / probs.sum(axis=1, keepdims=True)


def reference_ece(labels, probs, n_bins):
    """Straightforward loop over bins, as in Guo et al.'s published code."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return ece


# --------------------------------------------------------------------------- per-class metrics


def test_hand_worked_three_class_example():
    metrics = evaluate_predictions(HAND_Y, HAND_PROBS, THREE_CLASSES, n_bootstrap=0)
    # Confusion (rows true): normal [1, 1, 0], benign [0, 1, 1], malignant [0, 0, 2].
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]
    assert metrics["confusion_matrix_normalized"] == [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]
    expected = {
        # precision = TP / predicted, recall = TP / support, F1 = 2PR / (P + R)
        "normal": dict(precision=1 / 1, recall=1 / 2, f1=2 / 3, support=2,
                       # P(normal) of normals 0.7, 0.4 > all others (max 0.3): AUC 1
                       # ranked list P, P -> AP = 1
                       roc_auc=1.0, pr_auc=1.0),
        "benign": dict(precision=1 / 2, recall=1 / 2, f1=1 / 2, support=2,
                       # positives 0.6, 0.3 vs negatives 0.2, 0.5, 0.1, 0.3:
                       # 0.6 wins 4; 0.3 wins 2, ties 1 (1/2), loses 1 -> 6.5 / 8
                       # ranking 0.6 P, 0.5 N, {0.3 P, 0.3 N}: AP = 0.5*1 + 0.5*(2/4)
                       roc_auc=6.5 / 8, pr_auc=0.75),
        "malignant": dict(precision=2 / 3, recall=1.0, f1=0.8, support=2,
                          # positives 0.8, 0.4 vs negatives 0.1, 0.1, 0.3, 0.5 -> 7 / 8
                          # ranking 0.8 P, 0.5 N, 0.4 P: AP = 0.5*1 + 0.5*(2/3)
                          roc_auc=7 / 8, pr_auc=0.5 + 1 / 3),
    }
    for name, values in expected.items():
        for key, value in values.items():
            assert metrics["per_class"][name][key] == pytest.approx(value), (name, key)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["balanced_accuracy"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0.8) / 3)
    # Tumor vs normal: P(tumor) = 0.3, 0.6 (normals) vs 0.9, 0.8, 0.9, 0.7 (tumors) -> AUC 1.
    # Argmax calls case 1 (normal, predicted benign) a tumor: sens 4/4, spec 1/2, acc 5/6.
    tumor = metrics["tumor_vs_normal"]
    assert tumor["tumor_classes"] == ["benign", "malignant"]
    assert tumor["normal_classes"] == ["normal"]
    assert (tumor["n_tumor"], tumor["n_normal"]) == (4, 2)
    assert tumor["roc_auc"] == pytest.approx(1.0)
    assert tumor["pr_auc"] == pytest.approx(1.0)
    assert tumor["sensitivity"] == pytest.approx(1.0)
    assert tumor["specificity"] == pytest.approx(0.5)
    assert tumor["accuracy"] == pytest.approx(5 / 6)
    # Malignant at >= 90% specificity over 4 non-malignant cases: no false positive allowed,
    # so the threshold is 0.8 (the top malignant score): sensitivity 1/2.
    at_specificity = metrics["sensitivity_at_specificity"]
    assert at_specificity["target_class"] == "malignant"
    for key in ("0.90", "0.95"):
        assert at_specificity[key] == pytest.approx(
            {"sensitivity": 0.5, "specificity": 1.0, "threshold": 0.8})


def test_per_class_metrics_match_scikit_learn_on_random_data():
    labels, probs = random_predictions(300, n_classes=4, seed=3)
    names = ("normal", "benign", "malignant", "other")
    metrics = evaluate_predictions(labels, probs, names, n_bootstrap=0)
    predictions = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predictions, zero_division=0)
    for k, name in enumerate(names):
        row = metrics["per_class"][name]
        assert row["precision"] == pytest.approx(precision[k])
        assert row["recall"] == pytest.approx(recall[k])
        assert row["f1"] == pytest.approx(f1[k])
        assert row["support"] == support[k]
        assert row["roc_auc"] == pytest.approx(roc_auc_score(labels == k, probs[:, k]))
        assert row["pr_auc"] == pytest.approx(average_precision_score(labels == k, probs[:, k]))
    assert metrics["confusion_matrix"] == confusion_matrix(labels, predictions).tolist()
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels, predictions, average="macro"))
    # The mean of the one-vs-rest AUCs is sklearn's macro OvR AUC.
    mean_auc = np.mean([metrics["per_class"][name]["roc_auc"] for name in names])
    assert mean_auc == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    # Malignant sensitivity at specificity uses malignant vs every other row.
    assert metrics["sensitivity_at_specificity"]["0.90"] == pytest.approx(
        sensitivity_at_specificity(labels == 2, probs[:, 2], 0.90))


def test_tumor_classes_can_be_chosen():
    metrics = evaluate_predictions(HAND_Y, HAND_PROBS, THREE_CLASSES, n_bootstrap=0,
                                   tumor_classes=("malignant",))
    tumor = metrics["tumor_vs_normal"]
    assert tumor["normal_classes"] == ["normal", "benign"]
    assert tumor["roc_auc"] == pytest.approx(metrics["per_class"]["malignant"]["roc_auc"])
    with pytest.raises(ValueError, match="not one of"):
        evaluate_predictions(HAND_Y, HAND_PROBS, THREE_CLASSES, tumor_classes=("osteosarcoma",))


# --------------------------------------------------------------------------- binary / sigmoid


def test_sigmoid_output_is_handled_like_two_columns():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 80)
    positive = np.clip(0.35 * labels + rng.uniform(0, 0.65, 80), 0, 1)
    two_columns = np.column_stack([1 - positive, positive])
    names = ("normal", "tumor")
    reference = evaluate_predictions(labels, two_columns, names, n_bootstrap=50, seed=1)
    assert evaluate_predictions(labels, positive, names, n_bootstrap=50, seed=1) == reference
    assert evaluate_predictions(labels, positive[:, None], names, n_bootstrap=50, seed=1) == reference
    np.testing.assert_allclose(as_probability_matrix(positive, 2), two_columns)
    assert reference["tumor_vs_normal"] is None
    assert reference["sensitivity_at_specificity"]["target_class"] == "tumor"
    assert reference["per_class"]["tumor"]["roc_auc"] == pytest.approx(roc_auc_score(labels, positive))


def test_binary_target_is_the_positive_class_whatever_its_name():
    labels, probs = random_predictions(50, n_classes=2, seed=2)
    metrics = evaluate_predictions(labels, probs, ("normal", "cancer"), n_bootstrap=0)
    assert metrics["sensitivity_at_specificity"]["target_class"] == "cancer"


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="sigmoid"):
        evaluate_predictions([0, 1], [0.2, 0.9], THREE_CLASSES)
    with pytest.raises(ValueError, match="sum to 1"):
        evaluate_predictions([0, 1], [[0.5, 0.2, 0.1], [0.1, 0.1, 0.8]], THREE_CLASSES)
    with pytest.raises(ValueError, match="outside"):
        evaluate_predictions([0, 3], HAND_PROBS[:2], THREE_CLASSES)
    with pytest.raises(ValueError, match="cases"):
        evaluate_predictions([0, 1, 2], HAND_PROBS[:2], THREE_CLASSES)


# --------------------------------------------------------------------------- absent class / JSON


def test_absent_class_gives_none_and_strict_json():
    labels = np.array([0, 0, 1, 1, 0, 1])  # no malignant case
    probs = HAND_PROBS[[0, 1, 2, 3, 0, 2]]
    metrics = evaluate_predictions(labels, probs, THREE_CLASSES, n_bootstrap=100)
    malignant = metrics["per_class"]["malignant"]
    assert malignant["support"] == 0
    assert malignant["roc_auc"] is None and malignant["pr_auc"] is None
    assert metrics["confusion_matrix_normalized"][2] == [None, None, None]
    assert metrics["sensitivity_at_specificity"]["0.90"] == {
        "sensitivity": None, "specificity": None, "threshold": None}
    assert metrics["bootstrap"]["roc_auc"]["malignant"] == {
        "estimate": None, "low": None, "high": None, "n_used": 0}
    assert metrics["bootstrap"]["recall"]["malignant"]["n_used"] == 0
    text = json.dumps(metrics, allow_nan=False)
    assert json.loads(text) == metrics


# --------------------------------------------------------------------------- sensitivity at specificity


def test_sensitivity_at_specificity_hand_example():
    # 10 negatives and 4 positives; "positive if score >= threshold".
    negatives = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    positives = [0.97, 0.92, 0.85, 0.6]
    labels = np.r_[np.zeros(10), np.ones(4)]
    scores = np.r_[negatives, positives]
    # >= 90%: at most 1 false positive -> threshold 0.92 catches 0.97 and 0.92 (FP: 0.95).
    assert sensitivity_at_specificity(labels, scores, 0.90) == pytest.approx(
        {"sensitivity": 0.5, "specificity": 0.9, "threshold": 0.92})
    # >= 95%: no false positive -> threshold 0.97, one positive caught.
    assert sensitivity_at_specificity(labels, scores, 0.95) == pytest.approx(
        {"sensitivity": 0.25, "specificity": 1.0, "threshold": 0.97})
    # >= 80%: 2 false positives (0.9, 0.95) -> threshold 0.85, three positives caught.
    assert sensitivity_at_specificity(labels, scores, 0.80) == pytest.approx(
        {"sensitivity": 0.75, "specificity": 0.8, "threshold": 0.85})
    # >= 0%: every positive is caught first at 0.6 (the highest such threshold), 5 FP.
    assert sensitivity_at_specificity(labels, scores, 0.0) == pytest.approx(
        {"sensitivity": 1.0, "specificity": 0.5, "threshold": 0.6})


def test_sensitivity_at_specificity_when_only_nothing_positive_qualifies():
    # The top score is a negative: only "call nothing positive" keeps 100% specificity.
    result = sensitivity_at_specificity([0, 1, 0], [0.9, 0.5, 0.1], 1.0)
    assert result["sensitivity"] == 0.0 and result["specificity"] == 1.0
    assert result["threshold"] == np.inf
    assert to_jsonable(result)["threshold"] is None


# --------------------------------------------------------------------------- calibration


def test_ece_hand_example():
    # 5 bins: (0, .2], (.2, .4], (.4, .6], (.6, .8], (.8, 1].
    labels = np.array([0, 0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8], [0.05, 0.95]])
    # bin (.8, 1]: conf .9 right, .95 wrong -> |0.5 - 0.925| * 2/5 = 0.17
    # bin (.6, .8]: conf .7 wrong, .8 right -> |0.5 - 0.75| * 2/5 = 0.10
    # bin (.4, .6]: conf .55 right           -> |1 - 0.55| * 1/5 = 0.09
    assert expected_calibration_error(labels, probs, n_bins=5) == pytest.approx(0.36)
    bins = reliability_bins(labels, probs, n_bins=5)
    assert bins["count"].tolist() == [0, 0, 1, 2, 2]
    np.testing.assert_allclose(bins["accuracy"][2:], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(bins["confidence"][2:], [0.55, 0.75, 0.925])
    # Sigmoid input: the same cases as P(class 1).
    assert expected_calibration_error(labels, probs[:, 1], n_bins=5) == pytest.approx(0.36)


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_matches_reference_loop(n_bins):
    labels, probs = random_predictions(500, n_classes=3, seed=11)
    assert expected_calibration_error(labels, probs, n_bins) == pytest.approx(
        reference_ece(labels, probs, n_bins), abs=1e-12)


def test_brier_scores():
    labels, probs = random_predictions(200, n_classes=3, seed=4)
    one_hot = np.eye(3)[labels]
    expected = np.mean(np.sum((probs - one_hot) ** 2, axis=1))
    assert multiclass_brier_score(labels, probs) == pytest.approx(expected)
    assert evaluate_predictions(labels, probs, THREE_CLASSES, n_bootstrap=0)["calibration"] == (
        pytest.approx({"n_bins": 15, "ece": reference_ece(labels, probs, 15),
                       "brier": expected, "brier_positive_class": None}))
    # Binary: the multi-class score is twice sklearn's positive-class Brier score.
    labels, probs = random_predictions(200, n_classes=2, seed=4)
    sklearn_brier = brier_score_loss(labels, probs[:, 1])
    assert multiclass_brier_score(labels, probs) == pytest.approx(2 * sklearn_brier)
    calibration = evaluate_predictions(labels, probs[:, 1], ("normal", "tumor"), n_bootstrap=0)["calibration"]
    assert calibration["brier_positive_class"] == pytest.approx(sklearn_brier)
    assert calibration["brier"] == pytest.approx(2 * sklearn_brier)


# --------------------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("by_patient", [False, True], ids=["cases", "patients"])
def test_vectorised_bootstrap_equals_generic_bootstrap_ci(by_patient):
    """The fast bootstrap inside evaluate_predictions sees the same resamples as
    bootstrap_ci (cases, or whole patients: the cluster bootstrap) and gives the same
    intervals as scikit-learn on each resample."""
    labels, probs = random_predictions(40, n_classes=3, separation=1.0, seed=8)
    groups = None
    if by_patient:  # 15 patients with 1-5 radiographs each, not adjacent in case order
        rng = np.random.default_rng(5)
        groups = rng.permutation(np.repeat(np.arange(15), [1, 2, 3, 4, 5] * 3)[:40])
        groups = [f"p{g}" for g in groups]
    n_bootstrap, seed = 150, 3
    metrics = evaluate_predictions(labels, probs, THREE_CLASSES, n_bootstrap=n_bootstrap,
                                   seed=seed, groups=groups)
    boot = metrics["bootstrap"]
    assert (boot["resampled"], boot["n_resampled"]) == (
        ("patients", len(set(groups))) if by_patient else ("cases", 40))

    def generic(fn):
        return bootstrap_ci(fn, labels, probs, n_bootstrap=n_bootstrap, seed=seed,
                            groups=groups)

    assert boot["accuracy"] == pytest.approx(generic(lambda y, p: np.mean(p.argmax(1) == y)))

    def macro_f1(y, p):
        if not set(labels.tolist()) <= set(y.tolist()):
            return None
        return f1_score(y, p.argmax(1), labels=[0, 1, 2], average="macro", zero_division=0)

    assert boot["macro_f1"] == pytest.approx(generic(macro_f1))
    for k, name in enumerate(THREE_CLASSES):
        def auc(y, p, k=k):
            return roc_auc_score(y == k, p[:, k]) if 0 < np.sum(y == k) < y.size else None

        def recall(y, p, k=k):
            return np.mean(p[y == k].argmax(1) == k) if np.any(y == k) else None

        assert boot["roc_auc"][name] == pytest.approx(generic(auc))
        assert boot["recall"][name] == pytest.approx(generic(recall))


def test_bootstrap_ci_contains_estimate_and_narrows_with_more_data():
    widths = []
    for n in (100, 1600):
        labels, probs = random_predictions(n, seed=n)
        boot = evaluate_predictions(labels, probs, THREE_CLASSES, n_bootstrap=400)["bootstrap"]
        for interval in [boot["accuracy"], boot["macro_f1"], *boot["recall"].values(),
                         *boot["roc_auc"].values()]:
            assert interval["low"] <= interval["estimate"] <= interval["high"]
            assert interval["n_used"] == 400
        widths.append(boot["accuracy"]["high"] - boot["accuracy"]["low"])
    # The width shrinks like 1/sqrt(n): 16x the data, about a quarter of the width.
    assert widths[1] < 0.5 * widths[0]


def test_bootstrap_is_seeded():
    labels, probs = random_predictions(60, seed=1)
    first = evaluate_predictions(labels, probs, THREE_CLASSES, n_bootstrap=100, seed=7)
    assert evaluate_predictions(labels, probs, THREE_CLASSES, n_bootstrap=100, seed=7) == first
    other = evaluate_predictions(labels, probs, THREE_CLASSES, n_bootstrap=100, seed=8)
    assert other["bootstrap"]["accuracy"] != first["bootstrap"]["accuracy"]


def test_bootstrap_of_600_cases_is_fast():
    """The vectorised bootstrap (8 intervals, 1000 replicates of 600 cases) costs a small
    fraction of the per-replicate scikit-learn route it replaces, timed here on the same
    machine, and its accuracy interval matches the normal approximation."""
    labels, probs = random_predictions(600, seed=2)
    start = time.perf_counter()
    metrics = evaluate_predictions(labels, probs, THREE_CLASSES, n_bootstrap=1000)
    fast = time.perf_counter() - start
    assert fast < 10.0  # about 0.1 s on one idle core
    assert metrics["bootstrap"]["n_replicates"] == 1000

    def same_eight_metrics(y, p):
        predicted = p.argmax(1)
        values = [np.mean(predicted == y),
                  f1_score(y, predicted, labels=[0, 1, 2], average="macro", zero_division=0)]
        values += [np.mean(predicted[y == k] == k) for k in range(3)]
        values += [roc_auc_score(y == k, p[:, k]) for k in range(3)]
        return float(np.mean(values))

    n_slow = 20
    start = time.perf_counter()
    bootstrap_ci(same_eight_metrics, labels, probs, n_bootstrap=n_slow)
    slow_per_1000 = (time.perf_counter() - start) * 1000 / n_slow
    assert fast < slow_per_1000 / 5, (fast, slow_per_1000)  # measured: about 1/90

    # Accuracy is a mean of 0/1 cases: its 95% interval is about the Wald interval's width.
    accuracy = metrics["bootstrap"]["accuracy"]
    p = accuracy["estimate"]
    wald_width = 2 * 1.959964 * np.sqrt(p * (1 - p) / 600)
    assert accuracy["high"] - accuracy["low"] == pytest.approx(wald_width, rel=0.15)


# --------------------------------------------------------------------------- plots


#: Matplotlib's default colour cycle (C0, C1, ...) in OpenCV's BGR order.
CYCLE_BGR = {"C0": (180, 119, 31), "C1": (14, 127, 255), "C2": (44, 160, 44),
             "C3": (40, 39, 214)}


def read_png(path) -> np.ndarray:
    """The PNG at ``path`` as a BGR array; fails for a missing, tiny or blank file."""
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None and min(image.shape[:2]) >= 200
    # A figure has axes, text and data in many shades; a blank canvas has one colour.
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50
    return image


def assert_png(path):
    read_png(path)


def curve_colors(image: np.ndarray, min_pixels: int = 300) -> list[str]:
    """Colour-cycle entries covering >= ``min_pixels`` pixels: drawn curves; a legend key
    alone covers about 30."""
    close = {name: np.all(np.abs(image.astype(int) - bgr) <= 12, axis=-1).sum()
             for name, bgr in CYCLE_BGR.items()}
    return [name for name, count in close.items() if count >= min_pixels]


def test_plots_write_png_files(tmp_path):
    labels, probs = random_predictions(120, seed=6)
    cm = confusion_matrix(labels, probs.argmax(1), labels=[0, 1, 2])
    roc = read_png(plot_roc_curves(labels, probs, THREE_CLASSES, tmp_path / "roc.png"))
    assert curve_colors(roc) == ["C0", "C1", "C2"]  # one curve per class
    pr = read_png(plot_pr_curves(labels, probs, THREE_CLASSES, tmp_path / "pr.png"))
    assert curve_colors(pr) == ["C0", "C1", "C2"]
    counts = read_png(plot_confusion_matrix(cm, THREE_CLASSES, tmp_path / "cm.png"))
    normalized = read_png(plot_confusion_matrix(cm, THREE_CLASSES, tmp_path / "cm_norm.png",
                                                normalized=True))
    assert not np.array_equal(counts, normalized)
    reliability = read_png(plot_reliability_diagram(labels, probs,
                                                    tmp_path / "sub" / "reliability.png"))
    assert "C0" in curve_colors(reliability)  # the accuracy bars
    # Other predictions draw other curves.
    other_labels, other_probs = random_predictions(120, separation=0.5, seed=7)
    other = read_png(plot_roc_curves(other_labels, other_probs, THREE_CLASSES,
                                     tmp_path / "roc_other.png"))
    assert other.shape != roc.shape or not np.array_equal(other, roc)
    # Binary sigmoid input and a class without cases must not fail.
    positive = probs[:, 1] / probs[:, :2].sum(1)
    roc2 = read_png(plot_roc_curves(labels % 2, positive, ("normal", "tumor"),
                                    tmp_path / "roc2.png"))
    assert curve_colors(roc2) == ["C0"]  # the positive class only
    pr0 = read_png(plot_pr_curves(np.zeros(5, int), HAND_PROBS[:5], THREE_CLASSES,
                                  tmp_path / "pr0.png"))
    assert curve_colors(pr0) == ["C0"]  # classes 1 and 2 have no cases: legend entries only
    assert_png(plot_confusion_matrix([[2, 1, 0], [0, 0, 0], [0, 1, 3]], THREE_CLASSES,
                                     tmp_path / "cm0.png", normalized=True))


def test_training_curves_across_two_phases(tmp_path):
    columns = lambda epochs: {  # noqa: E731
        "epoch": epochs, "loss": np.linspace(1, 0.5, len(epochs)),
        "val_loss": np.linspace(1.1, 0.6, len(epochs)), "accuracy": np.linspace(0.5, 0.8, len(epochs)),
        "val_accuracy": np.linspace(0.45, 0.75, len(epochs)), "auc": np.linspace(0.6, 0.9, len(epochs)),
        "val_auc": np.linspace(0.55, 0.85, len(epochs)), "learning_rate": 1e-4,
    }
    pd.DataFrame(columns(range(4))).to_csv(tmp_path / "phase1.csv", index=False)
    pd.DataFrame(columns(range(4, 10))).to_csv(tmp_path / "phase2.csv", index=False)
    out = plot_training_curves([tmp_path / "phase1.csv", tmp_path / "phase2.csv"], tmp_path / "curves.png",
                               phase_names=("frozen backbone", "fine-tuning"))
    assert_png(out)
    # A single history given as a DataFrame works too.
    assert_png(plot_training_curves(pd.DataFrame(columns(range(3))), tmp_path / "one.png"))
    # A second phase that restarts at epoch 0 is shifted to follow the first.
    shifted = _continue_epochs([pd.DataFrame(columns(range(4))), pd.DataFrame(columns(range(3)))])
    assert shifted[1]["epoch"].tolist() == [4, 5, 6]


# --------------------------------------------------------------------------- report


def write_report(tmp_path, synthetic):
    metrics = evaluate_predictions(HAND_Y, HAND_PROBS, THREE_CLASSES, n_bootstrap=50)
    figure = plot_roc_curves(HAND_Y, HAND_PROBS, THREE_CLASSES, tmp_path / "figures" / "roc.png")
    return write_classification_report(
        tmp_path / "report", metrics, title="Test report", data_source="BTXRD phantom set",
        split_kind="center-held-out", crop_mode="bbox-crop",
        model_info={"backbone": "EfficientNetB0", "input size": "224 x 224"},
        split_accuracies={"train": 0.91, "val": 0.85}, plots={"ROC curves": str(figure)},
        synthetic=synthetic,
    )


def test_report_contents(tmp_path):
    path = write_report(tmp_path, synthetic=True)
    assert path == tmp_path / "report" / "report.md"
    text = path.read_text()
    head = text[: text.index("## Model")]
    for fact in ("BTXRD phantom set", "center-held-out", "bbox-crop", SYNTHETIC_WARNING):
        assert fact in head
    # Per-class rows: precision, recall, F1, AUC-ROC, PR-AUC, support (hand-worked above).
    assert "| normal | 1.000 | 0.500 | 0.667 | 1.000 | 1.000 | 2 |" in text
    assert "| benign | 0.500 | 0.500 | 0.500 | 0.812 | 0.750 | 2 |" in text
    assert "| malignant | 0.667 | 1.000 | 0.800 | 0.875 | 0.833 | 2 |" in text
    assert "| Train | 0.910 |" in text and "| Validation | 0.850 |" in text
    assert "| Test | 0.667 [" in text
    assert "Malignant sensitivity at 90% specificity | 0.500" in text
    assert "![ROC curves](../figures/roc.png)" in text
    assert "EfficientNetB0" in text


def test_report_without_synthetic_warning(tmp_path):
    text = write_report(tmp_path, synthetic=False).read_text()
    assert "synthetic" not in text.lower()


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    atomic_write_json(target, {"a": np.float32(0.5), "b": np.arange(3), "c": float("nan")})
    assert json.loads(target.read_text()) == {"a": 0.5, "b": [0, 1, 2], "c": None}
    atomic_write_json(target, {"a": np.int64(2)})
    assert json.loads(target.read_text()) == {"a": 2}
    atomic_write_text(tmp_path / "out" / "report.md", "hello\n")
    assert sorted(os.listdir(tmp_path / "out")) == ["metrics.json", "report.md"]


def test_atomic_write_failure_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    atomic_write_text(target, "old")

    def failing_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.md"]


def test_to_jsonable_converts_numpy_and_non_finite_values():
    converted = to_jsonable({1: np.bool_(True), "x": (np.float64(np.inf), np.int32(3)),
                             "y": np.array([[1.5, np.nan]])})
    assert converted == {"1": True, "x": [None, 3], "y": [[1.5, None]]}
    json.dumps(converted, allow_nan=False)
