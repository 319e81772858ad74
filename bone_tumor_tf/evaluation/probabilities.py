"""Checked classification inputs: class-index labels and probability matrices.

Conventions used by every classification metric and plot:

- ``y_true``: integer array ``(N,)`` of class indices in ``[0, K)``.
- ``probs``: float array ``(N, K)`` of class probabilities (rows sum to 1), ``K >= 2``; or,
  for a sigmoid binary model, ``(N,)`` or ``(N, 1)`` holding P(class 1). The sigmoid form
  is turned into ``(N, 2)`` as ``[1 - p, p]`` by :func:`as_probability_matrix`.
- ``class_names``: the K class names in label-index order, e.g. ``("normal", "benign",
  "malignant")`` or ``("normal", "tumor")``. Index 1 is the positive class of a binary task.
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_labels", "as_probability_matrix", "validate_inputs"]


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


def as_labels(y_true, n_classes: int) -> np.ndarray:
    """``y_true`` as int64 class indices ``(N,)`` in ``[0, n_classes)``; ``ValueError`` otherwise."""
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
    labels = as_labels(y_true, len(names))
    if labels.shape[0] != matrix.shape[0]:
        raise ValueError(f"y_true has {labels.shape[0]} cases but probs has {matrix.shape[0]}")
    if labels.shape[0] == 0:
        raise ValueError("cannot evaluate zero cases")
    return labels, matrix, names
