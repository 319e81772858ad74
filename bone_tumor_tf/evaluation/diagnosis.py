"""Image-level comparison of the chain, the gt-box oracle and a whole-image model.

All systems are scored on the same images with scikit-learn's metrics: three-class
accuracy, balanced accuracy (the mean of per-class recalls), per-class recall and macro
one-vs-rest ROC AUC. Differences between two systems come with a **paired** bootstrap 95%
interval: each replicate resamples the images once (with replacement) and scores both
systems on that same resample, so that the image-to-image variation common to both cancels.
Given each image's patient (``groups``), a replicate resamples whole patients instead: one
patient's radiographs are not independent, and resampling them one by one makes the
intervals too narrow (on the real BTXRD test split about 15-27% narrower).
A replicate in which a class is missing has no AUC and is left out of the AUC interval
(its count is reported).

A system's class decision is the most probable class, or, with a **tumor threshold**
``t`` (an operating point, e.g. chosen on a validation split to bound the false alarms on
normal radiographs), a tumor when ``P(benign) + P(malignant) >= t`` (then the more probable
of the two) and normal otherwise (:func:`decide`). AUCs do not depend on it.

``oracle_advantage_recovered`` is ``(BA_chain - 1/3) / (BA_oracle - 1/3)``: the share of
the oracle's advantage over chance (1/3 for three classes) that the chain keeps once it
has to find the box itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score, roc_auc_score

from bone_tumor_tf.evaluation.stats import bootstrap_ci, bootstrap_resamples

CLASSES = ("normal", "benign", "malignant")
CHANCE_BALANCED_ACCURACY = 1.0 / 3.0


def _macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    if len(np.unique(y)) < len(CLASSES):
        return float("nan")
    return float(roc_auc_score(y, probs, multi_class="ovr", average="macro",
                               labels=list(range(len(CLASSES)))))


def decide(probs: np.ndarray, tumor_threshold: float | None = None) -> np.ndarray:
    """Class indices into ``CLASSES`` of ``(N, 3)`` probabilities (normal, benign, malignant).

    ``tumor_threshold`` None: the most probable class (ties to the first). Otherwise a
    tumor when ``P(benign) + P(malignant) >= tumor_threshold``, the more probable of benign
    and malignant (ties to benign), and normal below it.
    """
    probs = np.asarray(probs, np.float64).reshape(-1, len(CLASSES))
    if tumor_threshold is None:
        return probs.argmax(1)
    tumor = probs[:, 1] + probs[:, 2] >= tumor_threshold
    return np.where(tumor, np.where(probs[:, 2] > probs[:, 1], 2, 1), 0)


def image_metrics(y: np.ndarray, probs: np.ndarray, tumor_threshold: float | None = None
                  ) -> dict:
    """Accuracy, balanced accuracy, per-class recall and macro AUC of ``(N, 3)`` probabilities.

    Args:
        y: ``(N,)`` class indices into ``CLASSES``.
        probs: ``(N, 3)`` probabilities in the order of ``CLASSES``.
        tumor_threshold: the decision rule of :func:`decide` (None: most probable class).
    """
    y = np.asarray(y, int)
    probs = np.asarray(probs, np.float64)
    predicted = decide(probs, tumor_threshold)
    recalls = recall_score(y, predicted, labels=[0, 1, 2], average=None, zero_division=0)
    return {"accuracy": float(accuracy_score(y, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
            "macro_auc": _macro_auc(y, probs),
            "recall": {c: float(r) for c, r in zip(CLASSES, recalls, strict=True)}}


def _scalar_metrics(y, probs, tumor_threshold=None) -> np.ndarray:
    m = image_metrics(y, probs, tumor_threshold)
    return np.array([m["accuracy"], m["balanced_accuracy"], m["macro_auc"]])


def paired_bootstrap(y: np.ndarray, systems: Mapping[str, np.ndarray],
                     pairs: Sequence[tuple[str, str]], n_bootstrap: int = 2000,
                     seed: int = 0, confidence: float = 0.95,
                     tumor_thresholds: Mapping[str, float | None] | None = None,
                     groups: Sequence | None = None) -> dict:
    """Point estimates and paired bootstrap intervals of ``a - b`` for each pair.

    ``tumor_thresholds``: each system's decision rule (:func:`decide`; absent: the most
    probable class). ``groups``: one label per image (the patient); each replicate then
    resamples whole patients (:func:`bone_tumor_tf.evaluation.stats.bootstrap_resamples`).

    Returns:
        ``{"a - b": {metric: {"estimate", "low", "high", "replicates"}}}`` for the metrics
        accuracy, balanced_accuracy and macro_auc.
    """
    y = np.asarray(y, int)
    names = ("accuracy", "balanced_accuracy", "macro_auc")
    draws = list(bootstrap_resamples(len(y), n_bootstrap, seed, groups))
    rule = dict(tumor_thresholds or {})
    point = {name: _scalar_metrics(y, probs, rule.get(name)) for name, probs in systems.items()}
    replicates = {name: np.array([_scalar_metrics(y[idx], np.asarray(probs)[idx],
                                                  rule.get(name)) for idx in draws])
                  for name, probs in systems.items() if any(name in p for p in pairs)}
    alpha = (1.0 - confidence) / 2.0
    out = {}
    for a, b in pairs:
        diff = replicates[a] - replicates[b]
        entry = {}
        for k, metric in enumerate(names):
            values = diff[:, k][np.isfinite(diff[:, k])]
            estimate = point[a][k] - point[b][k]
            entry[metric] = {
                "estimate": float(estimate),
                "low": float(np.quantile(values, alpha)) if len(values) else None,
                "high": float(np.quantile(values, 1 - alpha)) if len(values) else None,
                "replicates": int(len(values))}
        out[f"{a} - {b}"] = entry
    return out


def oracle_advantage_recovered(chain_balanced_accuracy: float,
                               oracle_balanced_accuracy: float) -> float | None:
    """``(BA_chain - 1/3) / (BA_oracle - 1/3)``; None when the oracle is not above chance."""
    advantage = oracle_balanced_accuracy - CHANCE_BALANCED_ACCURACY
    if advantage <= 0:
        return None
    return float((chain_balanced_accuracy - CHANCE_BALANCED_ACCURACY) / advantage)


def false_tumor_rate(findings: Sequence[str], labels: Sequence[str], n_bootstrap: int = 2000,
                     seed: int = 0, groups: Sequence | None = None) -> dict:
    """Share of normal radiographs on which the chain reports a tumor, with a bootstrap CI
    (resampling the normal radiographs, or with ``groups`` their patients)."""
    normal = [label == "normal" for label in labels]
    flags = np.array([f != "normal" for f, is_normal in zip(findings, normal, strict=True)
                      if is_normal], float)
    if flags.size == 0:
        return {"rate": None, "low": None, "high": None, "n_normal": 0}
    normal_groups = None if groups is None else [
        g for g, is_normal in zip(groups, normal, strict=True) if is_normal]
    interval = bootstrap_ci(np.mean, flags, n_bootstrap=n_bootstrap, seed=seed,
                            groups=normal_groups)
    return {"rate": float(interval["estimate"]), "low": interval["low"],
            "high": interval["high"], "n_normal": int(flags.size)}
