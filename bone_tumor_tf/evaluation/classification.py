"""Classification metrics for bone-tumor radiograph models: :func:`evaluate_predictions`.

Inputs follow :mod:`.probabilities` (``y_true`` class indices, ``probs`` ``(N, K)`` or a
sigmoid ``(N,)``, ``class_names`` in index order); the predicted class is
``argmax(probs, axis=1)`` (the first maximum on ties). Metrics come from scikit-learn
wherever it has them; what it lacks (sensitivity at a fixed specificity here, calibration
in :mod:`.calibration`) is tested against hand-worked examples; bootstrap intervals come
from :mod:`.stats`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from bone_tumor_tf.evaluation.calibration import (
    ECE_N_BINS,
    expected_calibration_error,
    multiclass_brier_score,
)
from bone_tumor_tf.evaluation.probabilities import validate_inputs
from bone_tumor_tf.evaluation.stats import bootstrap_classification_replicates, interval_summary
from bone_tumor_tf.io import to_jsonable

__all__ = [
    "SPECIFICITY_TARGETS",
    "evaluate_predictions",
    "sensitivity_at_specificity",
]

#: Specificity operating points at which the malignant (or positive-class) sensitivity is reported.
SPECIFICITY_TARGETS = (0.90, 0.95)
#: Slack when comparing an achieved specificity (a ratio of counts) with a target such as 0.9.
_SPECIFICITY_TOLERANCE = 1e-9


# --------------------------------------------------------------------------- ranking metrics


def _roc_auc_or_none(y_binary: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC (``sklearn.metrics.roc_auc_score``); ``None`` unless both classes are present."""
    n_positive = int(y_binary.sum())
    if n_positive == 0 or n_positive == y_binary.size:
        return None
    return float(roc_auc_score(y_binary, scores))


def _average_precision_or_none(y_binary: np.ndarray, scores: np.ndarray) -> float | None:
    """PR AUC as average precision (``sklearn.metrics.average_precision_score``).

    ``None`` when there is no positive case (recall is then undefined).
    """
    if int(y_binary.sum()) == 0:
        return None
    return float(average_precision_score(y_binary, scores))


def sensitivity_at_specificity(y_binary, scores, specificity: float) -> dict:
    """Best sensitivity reachable while keeping specificity at or above ``specificity``.

    The decision rule is "positive if ``score >= threshold``". The candidate thresholds are
    every distinct score plus ``+inf`` (nothing called positive), i.e. the points of
    ``sklearn.metrics.roc_curve(y_binary, scores, drop_intermediate=False)``. At each, the
    specificity is ``1 - fpr`` = TN / (number of negative cases), measured on the negative
    rows only. Among the thresholds whose specificity is ``>= specificity`` (with a 1e-9 slack
    for floating point), the one with the highest sensitivity (TPR) is chosen; ties go to the
    highest threshold, i.e. the highest specificity.

    Args:
        y_binary: ``(N,)`` 0/1 (or bool) labels, 1 = target class.
        scores: ``(N,)`` scores, higher = more likely the target class.
        specificity: target specificity in ``[0, 1]``, e.g. 0.9.

    Returns:
        ``{"sensitivity", "specificity", "threshold"}``: the chosen sensitivity, the
        specificity actually achieved there, and the threshold. The threshold is ``+inf`` when
        only "call nothing positive" qualifies (written as ``null`` in JSON). All three are
        ``None`` when ``y_binary`` lacks positives or negatives.
    """
    if not 0.0 <= specificity <= 1.0:
        raise ValueError(f"specificity must be in [0, 1]; got {specificity}")
    y_binary = np.asarray(y_binary).astype(bool).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y_binary.shape != scores.shape:
        raise ValueError(f"y_binary {y_binary.shape} and scores {scores.shape} differ in length")
    n_positive = int(y_binary.sum())
    if n_positive == 0 or n_positive == y_binary.size:
        return {"sensitivity": None, "specificity": None, "threshold": None}
    fpr, tpr, thresholds = roc_curve(y_binary, scores, drop_intermediate=False)
    achieved_specificity = 1.0 - fpr
    eligible = np.flatnonzero(achieved_specificity >= specificity - _SPECIFICITY_TOLERANCE)
    # roc_curve orders thresholds from high to low and tpr is non-decreasing along them, so
    # argmax over the eligible points returns the first (highest-threshold) best sensitivity.
    best = eligible[np.argmax(tpr[eligible])]
    return {
        "sensitivity": float(tpr[best]),
        "specificity": float(achieved_specificity[best]),
        "threshold": float(thresholds[best]),
    }


# --------------------------------------------------------------------------- main entry point


def _resolve_tumor_classes(names: tuple[str, ...], tumor_classes) -> list[int] | None:
    if tumor_classes is None:
        if len(names) < 3 or "normal" not in names:
            return None
        return [i for i, name in enumerate(names) if name != "normal"]
    indices = []
    for item in tumor_classes:
        if isinstance(item, str):
            if item not in names:
                raise ValueError(f"tumor class {item!r} is not one of {names}")
            indices.append(names.index(item))
        else:
            index = int(item)
            if not 0 <= index < len(names):
                raise ValueError(f"tumor class index {index} is outside [0, {len(names)})")
            indices.append(index)
    indices = sorted(set(indices))
    if not indices or len(indices) == len(names):
        raise ValueError("tumor_classes must name at least one class and leave at least one out")
    return indices


def _tumor_vs_normal(labels, probs, names, tumor_indices) -> dict:
    """Binary normal-vs-tumor result derived from a multi-class model."""
    is_tumor = np.isin(labels, tumor_indices)
    tumor_score = probs[:, tumor_indices].sum(axis=1)
    called_tumor = np.isin(probs.argmax(axis=1), tumor_indices)
    n_tumor = int(is_tumor.sum())
    n_normal = int(is_tumor.size - n_tumor)
    true_positive = int(np.sum(called_tumor & is_tumor))
    true_negative = int(np.sum(~called_tumor & ~is_tumor))
    return {
        "tumor_classes": [names[i] for i in tumor_indices],
        "normal_classes": [name for i, name in enumerate(names) if i not in tumor_indices],
        "n_tumor": n_tumor,
        "n_normal": n_normal,
        "roc_auc": _roc_auc_or_none(is_tumor, tumor_score),
        "pr_auc": _average_precision_or_none(is_tumor, tumor_score),
        "sensitivity": true_positive / n_tumor if n_tumor else None,
        "specificity": true_negative / n_normal if n_normal else None,
        "accuracy": float(np.mean(called_tumor == is_tumor)),
    }


def evaluate_predictions(
    y_true,
    probs,
    class_names: Sequence[str],
    n_bootstrap: int = 1000,
    seed: int = 0,
    tumor_classes: Sequence[str | int] | None = None,
    confidence: float = 0.95,
    groups: Sequence | None = None,
) -> dict:
    """Every test-set metric of a classifier, as a JSON-ready dict (plain floats, no NaN).

    Args:
        y_true: ``(N,)`` true class indices.
        probs: ``(N, K)`` class probabilities, or sigmoid ``(N,)`` / ``(N, 1)`` P(class 1).
        class_names: the K names in index order.
        n_bootstrap: bootstrap replicates for the confidence intervals (0 = no intervals).
        seed: seed of ``numpy.random.default_rng`` for the resampling.
        tumor_classes: names (or indices) of the tumor classes for the derived
            normal-vs-tumor result; default every class but ``"normal"`` when there are 3 or
            more classes and one is named ``"normal"``.
        confidence: coverage of the bootstrap intervals.
        groups: ``(N,)`` patient group of each case. Given, every bootstrap replicate draws
            whole patients with all their cases (the cluster bootstrap): a patient's
            radiographs are not independent, and resampling them one by one gives intervals
            that are too narrow. None: cases are resampled one by one.

    Returns a dict with these keys (undefined values are ``None``):

    - ``n``, ``class_names``, ``class_counts`` (cases per true class).
    - ``accuracy``; ``balanced_accuracy`` (``sklearn.metrics.balanced_accuracy_score``: mean
      recall over the classes present in ``y_true``); ``macro_f1`` (unweighted mean of the K
      per-class F1, ``f1_score(labels=range(K), average="macro", zero_division=0)``).
    - ``per_class``: ``{name: {"precision", "recall", "f1", "support", "roc_auc", "pr_auc"}}``.
      Precision/recall/F1/support from ``precision_recall_fscore_support(labels=range(K),
      zero_division=0)`` at the argmax decision; ``roc_auc`` one-vs-rest ``roc_auc_score`` of
      ``probs[:, k]`` (``None`` if class k or all other classes are absent); ``pr_auc``
      one-vs-rest ``average_precision_score`` (``None`` if class k is absent).
    - ``confusion_matrix``: K x K counts, rows = true class, columns = predicted class;
      ``confusion_matrix_normalized``: each row divided by its sum (a row of ``None`` for a
      class with no cases).
    - ``tumor_vs_normal``: ``None`` unless a tumor grouping applies (see ``tumor_classes``),
      else ``{"tumor_classes", "normal_classes", "n_tumor", "n_normal", "roc_auc", "pr_auc",
      "sensitivity", "specificity", "accuracy"}``. ROC/PR AUC use P(tumor) = sum of the tumor
      classes' probabilities; sensitivity, specificity and accuracy use the argmax decision
      (tumor if the predicted class is a tumor class), which is not the same as P(tumor) >= 0.5.
    - ``sensitivity_at_specificity``: ``{"target_class": name, "0.90": {"sensitivity",
      "specificity", "threshold"}, "0.95": {...}}`` from :func:`sensitivity_at_specificity`
      with the target class' probability as the score, the target class' rows as positives
      and every other row as negatives. The target class is the one named ``"malignant"``,
      else class 1 of a binary task; ``None`` if neither applies.
    - ``calibration``: ``{"n_bins": 15, "ece": top-label ECE (:func:`expected_calibration_error`),
      "brier": multi-class Brier score (:func:`multiclass_brier_score`, range [0, 2]),
      "brier_positive_class": ``sklearn.metrics.brier_score_loss`` on P(class 1) for binary
      tasks (range [0, 1], = brier / 2), ``None`` for K > 2}``.
    - ``bootstrap``: ``{"method": "percentile", "n_replicates", "confidence", "seed",
      "resampled": "patients" | "cases", "n_resampled": patients (or cases) drawn from,
      "accuracy": CI, "macro_f1": CI, "recall": {name: CI}, "roc_auc": {name: CI}}`` where each
      CI is ``{"estimate", "low", "high", "n_used"}``: the full-data estimate, the percentile
      interval, and the number of replicates on which the metric was defined (recall / AUC of
      class k need class k, and for AUC another class, in the resample; macro F1 needs every
      class of ``y_true``). The resamples are those of :func:`bootstrap_ci` with the same seed
      (and the same ``groups``).
    """
    labels, probs, names = validate_inputs(y_true, probs, class_names)
    n_cases, n_classes = probs.shape
    if groups is not None:
        groups = list(groups)
        if len(groups) != n_cases:
            raise ValueError(f"groups has {len(groups)} labels for {n_cases} cases")
    class_indices = list(range(n_classes))
    predictions = probs.argmax(axis=1)

    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=class_indices, zero_division=0
    )
    per_class = {}
    roc_aucs = []
    for k, name in enumerate(names):
        is_class = labels == k
        roc_aucs.append(_roc_auc_or_none(is_class, probs[:, k]))
        per_class[name] = {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
            "roc_auc": roc_aucs[k],
            "pr_auc": _average_precision_or_none(is_class, probs[:, k]),
        }

    counts = confusion_matrix(labels, predictions, labels=class_indices)
    row_sums = counts.sum(axis=1)
    normalized = [
        (row / total).tolist() if total > 0 else [None] * n_classes
        for row, total in zip(counts, row_sums)
    ]
    accuracy = float(accuracy_score(labels, predictions))
    with warnings.catch_warnings():
        # Predicting a class that is absent from y_true is legitimate here (it lowers precision).
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced_accuracy = float(balanced_accuracy_score(labels, predictions))
    macro_f1 = float(f1_score(labels, predictions, labels=class_indices, average="macro", zero_division=0))

    tumor_indices = _resolve_tumor_classes(names, tumor_classes)
    tumor_vs_normal = (
        _tumor_vs_normal(labels, probs, names, tumor_indices) if tumor_indices is not None else None
    )

    if "malignant" in names:
        target_index = names.index("malignant")
    elif n_classes == 2:
        target_index = 1
    else:
        target_index = None
    if target_index is None:
        at_specificity = None
    else:
        at_specificity = {"target_class": names[target_index]}
        for target in SPECIFICITY_TARGETS:
            at_specificity[f"{target:.2f}"] = sensitivity_at_specificity(
                labels == target_index, probs[:, target_index], target
            )

    calibration = {
        "n_bins": ECE_N_BINS,
        "ece": expected_calibration_error(labels, probs, ECE_N_BINS),
        "brier": multiclass_brier_score(labels, probs),
        "brier_positive_class": (
            float(brier_score_loss(labels == 1, probs[:, 1])) if n_classes == 2 else None
        ),
    }

    if n_bootstrap > 0:
        replicates = bootstrap_classification_replicates(labels, probs, n_bootstrap, seed,
                                                         groups=groups)
    else:
        replicates = {
            "accuracy": np.array([]), "macro_f1": np.array([]),
            "recall": np.empty((n_classes, 0)), "roc_auc": np.empty((n_classes, 0)),
        }
    bootstrap = {
        "method": "percentile",
        "n_replicates": int(n_bootstrap),
        "confidence": float(confidence),
        "seed": int(seed),
        "resampled": "cases" if groups is None else "patients",
        "n_resampled": int(n_cases if groups is None else len(set(groups))),
        "accuracy": interval_summary(accuracy, replicates["accuracy"], confidence),
        "macro_f1": interval_summary(macro_f1, replicates["macro_f1"], confidence),
        "recall": {
            name: interval_summary(recall[k], replicates["recall"][k], confidence)
            for k, name in enumerate(names)
        },
        "roc_auc": {
            name: interval_summary(roc_aucs[k], replicates["roc_auc"][k], confidence)
            for k, name in enumerate(names)
        },
    }

    result = {
        "n": int(n_cases),
        "class_names": list(names),
        "class_counts": {name: int(row_sums[k]) for k, name in enumerate(names)},
        "accuracy": accuracy,
        "balanced_accuracy": balanced_accuracy,
        "macro_f1": macro_f1,
        "per_class": per_class,
        "confusion_matrix": counts.tolist(),
        "confusion_matrix_normalized": normalized,
        "tumor_vs_normal": tumor_vs_normal,
        "sensitivity_at_specificity": at_specificity,
        "calibration": calibration,
        "bootstrap": bootstrap,
    }
    return to_jsonable(result)
