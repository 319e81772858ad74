"""Bootstrap confidence intervals: resampling, percentile intervals, vectorised replicates.

Cases are resampled with replacement by :func:`bootstrap_index_chunks` (one generator call
per replicate, so the resamples do not depend on chunking). :func:`bootstrap_ci` works for
any case-level metric; :func:`bootstrap_classification_replicates` computes accuracy, macro
F1 and per-class recall and ROC AUC of the SAME resamples at once, as matrix products on the
cases' multiplicities (about 100x faster than calling scikit-learn per replicate).
Intervals are percentile intervals (Efron & Tibshirani, 1993, ch. 13).

Cases that are not independent (several radiographs of one patient) are resampled by group
with :func:`bootstrap_resamples` (the cluster bootstrap: each replicate draws whole groups
with replacement; Davison & Hinkley, 1997, sec. 3.8), which :func:`bootstrap_ci` and
:func:`bootstrap_classification_replicates` take as ``groups`` (the same resamples for the
same seed); resampling the cases of such data gives intervals that are too narrow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

__all__ = [
    "bootstrap_ci",
    "bootstrap_classification_replicates",
    "bootstrap_index_chunks",
    "bootstrap_resamples",
    "group_numbers",
    "interval_summary",
    "percentile_interval",
    "row_groups",
]

#: Largest number of index entries (replicates x cases) held in memory at once by the bootstrap.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


def _optional_float(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def bootstrap_index_chunks(
    n_cases: int, n_bootstrap: int, seed: int = 0, max_elements: int = _BOOTSTRAP_CHUNK_ELEMENTS
) -> Iterator[np.ndarray]:
    """Yield the bootstrap resamples as integer arrays of shape ``(replicates_in_chunk, n_cases)``.

    Each replicate draws ``n_cases`` case indices uniformly with replacement with
    ``rng.integers(0, n_cases, size=n_cases)``, one call per replicate in order, from
    ``rng = numpy.random.default_rng(seed)``. Drawing per replicate makes the resamples
    identical however they are chunked, so :func:`bootstrap_ci` and the vectorised bootstrap
    of :func:`bootstrap_classification_replicates` see the very same replicates for the same seed.
    Chunks hold at most ``max_elements`` indices (at least one replicate).
    """
    if n_cases < 1:
        raise ValueError("bootstrap needs at least one case")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, max_elements // n_cases)
    for start in range(0, n_bootstrap, per_chunk):
        size = min(per_chunk, n_bootstrap - start)
        yield np.stack([rng.integers(0, n_cases, size=n_cases) for _ in range(size)])


def bootstrap_resamples(n_cases: int, n_bootstrap: int, seed: int = 0,
                        groups=None) -> Iterator[np.ndarray]:
    """Yield each replicate's case indices (``n_bootstrap`` arrays).

    Without ``groups``: the rows of :func:`bootstrap_index_chunks`, one per replicate. With
    ``groups`` (one label per case, e.g. the patient): the groups, numbered in order of
    first appearance, are resampled in the same way, and a replicate holds every case of
    each drawn group, once per draw (so its length varies). One group per case, in case
    order, gives exactly the plain resamples.
    """
    if groups is None:
        for chunk in bootstrap_index_chunks(n_cases, n_bootstrap, seed):
            yield from chunk
        return
    group_of_case = group_numbers(groups, n_cases)
    members = [np.flatnonzero(group_of_case == g) for g in range(group_of_case.max() + 1)]
    for chunk in bootstrap_index_chunks(len(members), n_bootstrap, seed):
        for drawn in chunk:
            yield np.concatenate([members[g] for g in drawn])


def row_groups(rows) -> list | None:
    """The patient (``"group"``) of each result row when every row names one, else None:
    rows written before patients were recorded are resampled one by one."""
    groups = [row.get("group") for row in rows]
    return groups if groups and all(g is not None for g in groups) else None


def group_numbers(groups, n_cases: int) -> np.ndarray:
    """Each case's group as an integer ``(n_cases,)``, groups numbered in order of first
    appearance (the numbering :func:`bootstrap_resamples` draws from)."""
    groups = list(groups)
    if len(groups) != n_cases:
        raise ValueError(f"groups has {len(groups)} labels for {n_cases} cases")
    number: dict = {}
    return np.array([number.setdefault(group, len(number)) for group in groups], dtype=np.int64)


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


def interval_summary(estimate, replicates: np.ndarray, confidence: float = 0.95) -> dict:
    """``{"estimate", "low", "high", "n_used"}``: the estimate (None when undefined), the
    :func:`percentile_interval` of the finite ``replicates`` and how many there were."""
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
    groups=None,
) -> dict:
    """Percentile bootstrap confidence interval of any case-level metric.

    ``metric_fn(*arrays)`` is evaluated on the full data (the estimate) and on
    ``n_bootstrap`` resamples of the cases (rows of every array resampled together with the
    same indices, drawn by :func:`bootstrap_resamples` with ``seed``; with ``groups``, one
    label per case, whole groups are resampled). Replicates on which
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
    for position, indices in enumerate(bootstrap_resamples(n_cases, n_bootstrap, seed, groups)):
        value = metric_fn(*(array[indices] for array in arrays))
        replicates[position] = np.nan if value is None else float(value)
    return interval_summary(metric_fn(*arrays), replicates, confidence)


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


def bootstrap_classification_replicates(
    labels: np.ndarray, probs: np.ndarray, n_bootstrap: int, seed: int, groups=None
) -> dict[str, np.ndarray]:
    """Vectorised replicate values of accuracy, macro F1 and per-class recall and ROC AUC.

    ``labels`` int ``(N,)`` in ``[0, K)`` and ``probs`` float ``(N, K)``, as checked by
    :func:`~bone_tumor_tf.evaluation.probabilities.validate_inputs`. Returns
    ``{"accuracy": (R,), "macro_f1": (R,), "recall": (K, R), "roc_auc": (K, R)}``.
    Each resample is represented by its case multiplicities (R, N) so every metric is a
    matrix product or a cumulative sum. With ``groups`` (one label per case, e.g. the
    patient) whole groups are drawn, exactly the resamples of :func:`bootstrap_resamples`
    with the same seed: a case's multiplicity is the number of times its group was drawn.
    NaN marks a replicate where the metric is undefined:
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
    group_of_case = (np.arange(n_cases) if groups is None
                     else group_numbers(groups, n_cases))
    n_groups = int(group_of_case.max()) + 1
    start = 0
    for chunk in bootstrap_index_chunks(n_groups, n_bootstrap, seed):
        n_rows = chunk.shape[0]
        stop = start + n_rows
        flat = (np.arange(n_rows)[:, None] * n_groups + chunk).ravel()
        drawn = np.bincount(flat, minlength=n_rows * n_groups).reshape(n_rows, n_groups)
        multiplicity = drawn[:, group_of_case].astype(np.float64)
        accuracy[start:stop] = multiplicity @ correct / multiplicity.sum(axis=1)
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
