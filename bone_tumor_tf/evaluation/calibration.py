"""Calibration of classifier probabilities: reliability bins, ECE, multi-class Brier score.

Inputs follow :mod:`.probabilities`. scikit-learn has neither a top-label ECE nor a
multi-class Brier score, so both are written here and tested against hand-worked examples.
"""

from __future__ import annotations

import numpy as np

from bone_tumor_tf.evaluation.probabilities import as_labels, as_probability_matrix

__all__ = ["ECE_N_BINS", "expected_calibration_error", "multiclass_brier_score",
           "reliability_bins"]

#: Number of equal-width confidence bins for the expected calibration error (Guo et al., 2017).
ECE_N_BINS = 15


def reliability_bins(y_true, probs, n_bins: int = ECE_N_BINS) -> dict:
    """Top-label reliability statistics over ``n_bins`` equal-width confidence bins.

    The confidence of a case is its largest class probability and its prediction the argmax.
    Bin ``b`` (``b = 0 .. n_bins-1``) holds the cases with confidence in
    ``(b / n_bins, (b + 1) / n_bins]`` (bin 0 also takes confidence 0), the bin edges being
    ``numpy.linspace(0, 1, n_bins + 1)`` as in Guo et al. (2017).

    Returns:
        ``{"edges": (n_bins+1,), "count": (n_bins,) int, "accuracy": (n_bins,),
        "confidence": (n_bins,)}`` as numpy arrays; ``accuracy`` and ``confidence`` are the
        bin means and NaN for empty bins.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1 or (probs.ndim == 2 and probs.shape[1] == 1):
        probs = as_probability_matrix(probs, 2)
    labels = as_labels(y_true, probs.shape[1])
    if labels.shape[0] != probs.shape[0]:
        raise ValueError(f"y_true has {labels.shape[0]} cases but probs has {probs.shape[0]}")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Number of inner edges strictly below the confidence = index of the right-closed bin.
    bin_index = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(bin_index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_accuracy = np.bincount(bin_index, weights=correct, minlength=n_bins) / count
        mean_confidence = np.bincount(bin_index, weights=confidence, minlength=n_bins) / count
    return {"edges": edges, "count": count, "accuracy": mean_accuracy, "confidence": mean_confidence}


def expected_calibration_error(y_true, probs, n_bins: int = ECE_N_BINS) -> float:
    """Top-label expected calibration error (Guo et al., 2017, "On Calibration of Modern
    Neural Networks"), with ``n_bins`` equal-width bins as in :func:`reliability_bins`::

        ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|

    where ``B_b`` is the set of cases whose top-label confidence falls in bin ``b``,
    ``acc(B_b)`` the fraction of them whose argmax equals the true class, and ``conf(B_b)``
    their mean top-label confidence. Empty bins contribute 0. Range ``[0, 1]``, 0 = perfectly
    calibrated. ``probs`` may be ``(N, K)`` or a sigmoid ``(N,)`` / ``(N, 1)``.
    """
    bins = reliability_bins(y_true, probs, n_bins)
    occupied = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][occupied] - bins["confidence"][occupied])
    return float(np.sum(bins["count"][occupied] * gaps) / np.sum(bins["count"]))


def multiclass_brier_score(y_true, probs) -> float:
    """Multi-class Brier score (Brier, 1950): ``mean_i sum_k (p_ik - y_ik)^2``.

    ``y_ik`` is the one-hot true label. Range ``[0, 2]``, 0 = perfect. For a binary task it is
    exactly twice ``sklearn.metrics.brier_score_loss`` on the positive class.
    ``probs`` may be ``(N, K)`` or a sigmoid ``(N,)`` / ``(N, 1)``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1 or (probs.ndim == 2 and probs.shape[1] == 1):
        probs = as_probability_matrix(probs, 2)
    labels = as_labels(y_true, probs.shape[1])
    one_hot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - one_hot) ** 2, axis=1)))
