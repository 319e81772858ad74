"""Classification metrics for bone-tumor radiograph models, with bootstrap confidence intervals.

Conventions used by every function here:

- ``y_true``: integer array ``(N,)`` of class indices in ``[0, K)``.
- ``probs``: float array ``(N, K)`` of class probabilities (rows sum to 1), ``K >= 2``; or,
  for a sigmoid binary model, ``(N,)`` or ``(N, 1)`` holding P(class 1). The sigmoid form
  is turned into ``(N, 2)`` as ``[1 - p, p]`` by :func:`as_probability_matrix`.
- ``class_names``: the K class names in label-index order, e.g. ``("normal", "benign",
  "malignant")`` or ``("normal", "tumor")``. Index 1 is the positive class of a binary task.
- The predicted class is ``argmax(probs, axis=1)`` (the first maximum on ties).

Metrics come from scikit-learn wherever it has them; what it lacks (expected calibration
error, sensitivity at a fixed specificity, the multi-class Brier score, a vectorised
bootstrap) is written here and tested against hand-worked examples and reference loops.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence

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

from bone_tumor_tf.io import to_jsonable

__all__ = [
    "ECE_N_BINS",
    "SPECIFICITY_TARGETS",
    "as_probability_matrix",
    "bootstrap_ci",
    "bootstrap_index_chunks",
    "evaluate_predictions",
    "expected_calibration_error",
    "multiclass_brier_score",
    "percentile_interval",
    "reliability_bins",
    "sensitivity_at_specificity",
    "validate_inputs",
]

#: Number of equal-width confidence bins for the expected calibration error (Guo et al., 2017).
ECE_N_BINS = 15
#: Specificity operating points at which the malignant (or positive-class) sensitivity is reported.
SPECIFICITY_TARGETS = (0.90, 0.95)
#: Slack when comparing an achieved specificity (a ratio of counts) with a target such as 0.9.
_SPECIFICITY_TOLERANCE = 1e-9
#: Largest number of index entries (replicates x cases) held in memory at once by the bootstrap.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


# --------------------------------------------------------------------------- input handling


def as_probability_matrix(probs, n_classes: int) -> np.ndarray:
    """Return ``probs`` as a float64 ``(N, n_classes)`` matrix of class probabilities.

    ``(N,)`` and ``(N, 1)`` inputs are sigmoid outputs P(class 1) and are only accepted when
    ``n_classes == 2``; they become ``[1 - p, p]`` column-wise. ``(N, n_classes)`` passes
    through. Raises ``ValueError`` on any other shape, on non-finite values, on values outside
    ``[0, 1]`` (beyond 1e-6) and on rows that do not sum to 1 (beyond 1e-3, the slack of a
    float32 softmax).
    """
    matrix = np.asarray(probs, dtype=np.float64)
    if matrix.ndim == 1 or (matrix.ndim == 2 and matrix.shape[1] == 1):
        if n_classes != 2:
            raise ValueError(
                f"probs of shape {matrix.shape} is a sigmoid output, but there are "
                f"{n_classes} classes (a sigmoid output needs exactly 2)"
            )
        positive = matrix.reshape(-1)
        matrix = np.column_stack([1.0 - positive, positive])
    elif matrix.ndim != 2 or matrix.shape[1] != n_classes:
        raise ValueError(f"probs has shape {matrix.shape}; expected (N, {n_classes}), (N,) or (N, 1)")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("probs contains NaN or infinite values")
    if matrix.size and (matrix.min() < -1e-6 or matrix.max() > 1 + 1e-6):
        raise ValueError(f"probs must lie in [0, 1]; found [{matrix.min():.4g}, {matrix.max():.4g}]")
    row_sums = matrix.sum(axis=1)
    if row_sums.size and not np.allclose(row_sums, 1.0, rtol=0.0, atol=1e-3):
        worst = row_sums[np.argmax(np.abs(row_sums - 1.0))]
        raise ValueError(f"probs rows must sum to 1 (softmax output); one row sums to {worst:.6g}")
    return matrix


def _as_labels(y_true, n_classes: int) -> np.ndarray:
    labels = np.asarray(y_true)
    if labels.ndim != 1:
        raise ValueError(f"y_true must be 1-D class indices; got shape {labels.shape}")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise ValueError("y_true must hold integer class indices")
    elif labels.dtype.kind not in "iub":
        raise ValueError(f"y_true must hold integer class indices; got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"y_true holds indices outside [0, {n_classes}): {sorted(set(labels.tolist()))}")
    return labels


def validate_inputs(y_true, probs, class_names) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Check and normalise one evaluation's inputs; return ``(labels, probs, names)``.

    ``labels`` int64 ``(N,)`` in ``[0, K)``, ``probs`` float64 ``(N, K)`` (sigmoid input
    expanded by :func:`as_probability_matrix`), ``names`` a tuple of K unique strings.
    Raises ``ValueError`` with a one-line message on any inconsistency or on N = 0.
    """
    names = tuple(str(name) for name in class_names)
    if len(names) < 2:
        raise ValueError(f"need at least 2 class names; got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique; got {names}")
    matrix = as_probability_matrix(probs, len(names))
    labels = _as_labels(y_true, len(names))
    if labels.shape[0] != matrix.shape[0]:
        raise ValueError(f"y_true has {labels.shape[0]} cases but probs has {matrix.shape[0]}")
    if labels.shape[0] == 0:
        raise ValueError("cannot evaluate zero cases")
    return labels, matrix, names


def _optional_float(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


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


# --------------------------------------------------------------------------- calibration


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
    labels = _as_labels(y_true, probs.shape[1])
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
    labels = _as_labels(y_true, probs.shape[1])
    one_hot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - one_hot) ** 2, axis=1)))


# --------------------------------------------------------------------------- bootstrap


def bootstrap_index_chunks(
    n_cases: int, n_bootstrap: int, seed: int = 0, max_elements: int = _BOOTSTRAP_CHUNK_ELEMENTS
) -> Iterator[np.ndarray]:
    """Yield the bootstrap resamples as integer arrays of shape ``(replicates_in_chunk, n_cases)``.

    Each replicate draws ``n_cases`` case indices uniformly with replacement with
    ``rng.integers(0, n_cases, size=n_cases)``, one call per replicate in order, from
    ``rng = numpy.random.default_rng(seed)``. Drawing per replicate makes the resamples
    identical however they are chunked, so :func:`bootstrap_ci` and the vectorised bootstrap
    inside :func:`evaluate_predictions` see the very same replicates for the same seed.
    Chunks hold at most ``max_elements`` indices (at least one replicate).
    """
    if n_cases < 1:
        raise ValueError("bootstrap needs at least one case")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, max_elements // n_cases)
    for start in range(0, n_bootstrap, per_chunk):
        size = min(per_chunk, n_bootstrap - start)
        yield np.stack([rng.integers(0, n_cases, size=n_cases) for _ in range(size)])


def percentile_interval(values, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile-method interval: the ``(1-confidence)/2`` and ``(1+confidence)/2`` quantiles
    of ``values`` (``numpy.percentile``, linear interpolation). NaN entries (undefined
    replicates) are dropped first; ``(None, None)`` if nothing is left."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def _interval_summary(estimate, replicates: np.ndarray, confidence: float) -> dict:
    low, high = percentile_interval(replicates, confidence)
    return {
        "estimate": _optional_float(estimate),
        "low": low,
        "high": high,
        "n_used": int(np.isfinite(replicates).sum()),
    }


def bootstrap_ci(
    metric_fn: Callable[..., float | None],
    *arrays,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Percentile bootstrap confidence interval of any case-level metric.

    ``metric_fn(*arrays)`` is evaluated on the full data (the estimate) and on
    ``n_bootstrap`` resamples of the cases (rows of every array resampled together with the
    same indices, drawn by :func:`bootstrap_index_chunks` with ``seed``). Replicates on which
    the metric returns ``None`` or NaN (e.g. an AUC when a class is missing from the
    resample) are skipped. The interval is :func:`percentile_interval` of the rest.

    Returns:
        ``{"estimate", "low", "high", "n_used"}``; ``n_used`` = replicates that contributed.
        ``low``/``high`` are ``None`` when no replicate was usable.

    Example::

        bootstrap_ci(lambda y, p: roc_auc_score(y, p), y_binary, scores, n_bootstrap=2000)
    """
    arrays = tuple(np.asarray(array) for array in arrays)
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array to resample")
    n_cases = arrays[0].shape[0]
    if any(array.shape[0] != n_cases for array in arrays):
        raise ValueError("all arrays must have the same number of rows (cases)")
    replicates = np.full(n_bootstrap, np.nan)
    position = 0
    for chunk in bootstrap_index_chunks(n_cases, n_bootstrap, seed):
        for indices in chunk:
            value = metric_fn(*(array[indices] for array in arrays))
            replicates[position] = np.nan if value is None else float(value)
            position += 1
    return _interval_summary(metric_fn(*arrays), replicates, confidence)


def _grouped_auc(weights: np.ndarray, positive_sorted: np.ndarray, group_starts: np.ndarray) -> np.ndarray:
    """Weighted Mann-Whitney AUC for each row of ``weights`` (cases sorted by score).

    ``weights`` (R, N) are case multiplicities in score-ascending order; cases with equal
    scores form the groups beginning at ``group_starts``. A positive beats a negative with a
    lower score (1) and ties with an equal score (1/2), which is exactly the area under the
    trapezoidal ROC curve that ``roc_auc_score`` computes. NaN where a row lacks a class.
    """
    positive_weight = np.add.reduceat(weights * positive_sorted, group_starts, axis=1)
    negative_weight = np.add.reduceat(weights * ~positive_sorted, group_starts, axis=1)
    negatives_below = np.cumsum(negative_weight, axis=1) - negative_weight
    wins = np.sum(positive_weight * (negatives_below + 0.5 * negative_weight), axis=1)
    pairs = positive_weight.sum(axis=1) * negative_weight.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)


def _bootstrap_replicates(
    labels: np.ndarray, probs: np.ndarray, n_bootstrap: int, seed: int
) -> dict[str, np.ndarray]:
    """Vectorised replicate values of accuracy, macro F1 and per-class recall and ROC AUC.

    Each resample is represented by its case multiplicities (R, N) so every metric is a
    matrix product or a cumulative sum. NaN marks a replicate where the metric is undefined:
    recall / AUC of class k when k (or, for AUC, every other class) is absent from the
    resample; macro F1 when a class present in ``labels`` is absent from the resample.
    """
    n_cases, n_classes = probs.shape
    predictions = probs.argmax(axis=1)
    correct = (predictions == labels).astype(np.float64)
    # One-hot of the (true, predicted) pair of each case: multiplicities @ pairs = confusion.
    pair_one_hot = np.eye(n_classes * n_classes)[labels * n_classes + predictions]
    present_classes = np.unique(labels)
    score_orders = []
    for k in range(n_classes):
        order = np.argsort(probs[:, k], kind="mergesort")
        sorted_scores = probs[order, k]
        group_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        score_orders.append((order, labels[order] == k, group_starts))

    accuracy = np.full(n_bootstrap, np.nan)
    macro_f1 = np.full(n_bootstrap, np.nan)
    recall = np.full((n_classes, n_bootstrap), np.nan)
    roc_auc = np.full((n_classes, n_bootstrap), np.nan)
    start = 0
    for chunk in bootstrap_index_chunks(n_cases, n_bootstrap, seed):
        n_rows = chunk.shape[0]
        stop = start + n_rows
        flat = (np.arange(n_rows)[:, None] * n_cases + chunk).ravel()
        multiplicity = np.bincount(flat, minlength=n_rows * n_cases).reshape(n_rows, n_cases)
        multiplicity = multiplicity.astype(np.float64)
        accuracy[start:stop] = multiplicity @ correct / n_cases
        confusion = (multiplicity @ pair_one_hot).reshape(n_rows, n_classes, n_classes)
        true_positive = np.diagonal(confusion, axis1=1, axis2=2)
        support = confusion.sum(axis=2)
        predicted = confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall[:, start:stop] = np.where(support > 0, true_positive / support, np.nan).T
            # F1 = 2TP / (2TP + FP + FN) = 2TP / (support + predicted); 0 when both are 0,
            # matching precision_recall_fscore_support(zero_division=0).
            denominator = support + predicted
            f1 = np.where(denominator > 0, 2.0 * true_positive / np.maximum(denominator, 1), 0.0)
        all_present = np.all(support[:, present_classes] > 0, axis=1)
        macro_f1[start:stop] = np.where(all_present, f1.mean(axis=1), np.nan)
        for k, (order, positive_sorted, group_starts) in enumerate(score_orders):
            roc_auc[k, start:stop] = _grouped_auc(multiplicity[:, order], positive_sorted, group_starts)
        start = stop
    return {"accuracy": accuracy, "macro_f1": macro_f1, "recall": recall, "roc_auc": roc_auc}


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
      "accuracy": CI, "macro_f1": CI, "recall": {name: CI}, "roc_auc": {name: CI}}`` where each
      CI is ``{"estimate", "low", "high", "n_used"}``: the full-data estimate, the percentile
      interval, and the number of replicates on which the metric was defined (recall / AUC of
      class k need class k, and for AUC another class, in the resample; macro F1 needs every
      class of ``y_true``). The resamples are those of :func:`bootstrap_ci` with the same seed.
    """
    labels, probs, names = validate_inputs(y_true, probs, class_names)
    n_cases, n_classes = probs.shape
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
        replicates = _bootstrap_replicates(labels, probs, n_bootstrap, seed)
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
        "accuracy": _interval_summary(accuracy, replicates["accuracy"], confidence),
        "macro_f1": _interval_summary(macro_f1, replicates["macro_f1"], confidence),
        "recall": {
            name: _interval_summary(recall[k], replicates["recall"][k], confidence)
            for k, name in enumerate(names)
        },
        "roc_auc": {
            name: _interval_summary(roc_aucs[k], replicates["roc_auc"][k], confidence)
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
