"""Evaluation figures: training curves, ROC / PR curves, confusion matrices, reliability diagram.

Segmentation runs get :func:`plot_segmentation_curves` (loss and Dice per epoch). Every function draws on a standalone ``matplotlib.figure.Figure`` rendered by the Agg
canvas (no display, no pyplot global state, safe in threads and headless jobs), writes one
PNG (dpi 120, parent folder created) and returns the path.
Inputs follow :mod:`bone_tumor_tf.evaluation.probabilities`: ``y_true`` class indices,
``probs`` ``(N, K)`` or a sigmoid ``(N,)`` / ``(N, 1)``, ``class_names`` in index order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from bone_tumor_tf.evaluation.calibration import (
    ECE_N_BINS,
    expected_calibration_error,
    reliability_bins,
)
from bone_tumor_tf.evaluation.probabilities import validate_inputs

__all__ = [
    "plot_confusion_matrix",
    "plot_pr_curves",
    "plot_reliability_diagram",
    "plot_roc_curves",
    "plot_segmentation_curves",
    "plot_training_curves",
]

DPI = 120
#: Accuracy-like Keras metric names, most preferred first; the first present is plotted.
_ACCURACY_METRICS = ("accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy")


def _new_figure(**subplots_kwargs):
    """A pyplot-free figure on an Agg canvas, and its axes (``Figure.subplots`` arguments)."""
    figsize = subplots_kwargs.pop("figsize")
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(**subplots_kwargs)


def _colors() -> list[str]:
    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def _save(fig: Figure, out_path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=DPI, bbox_inches="tight")
    return out_path


# --------------------------------------------------------------------------- training curves


def _load_histories(histories) -> list[pd.DataFrame]:
    if isinstance(histories, pd.DataFrame | str | os.PathLike):
        histories = [histories]
    frames = []
    for history in histories:
        frame = history.copy() if isinstance(history, pd.DataFrame) else pd.read_csv(history)
        if "epoch" not in frame.columns:
            frame["epoch"] = np.arange(len(frame))
        frames.append(frame.sort_values("epoch").reset_index(drop=True))
    return frames


def _continue_epochs(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Make each phase's epochs follow the previous phase's.

    Keras CSVLogger writes 0-based epochs; a second ``fit(initial_epoch=...)`` already
    continues the count. A phase whose first epoch does not come after the previous phase's
    last one (e.g. restarted at 0) is shifted so that it does.
    """
    last_epoch = -1
    shifted = []
    for frame in frames:
        if len(frame):
            first = frame["epoch"].iloc[0]
            if first <= last_epoch:
                frame = frame.assign(epoch=frame["epoch"] + (last_epoch + 1 - first))
            last_epoch = frame["epoch"].iloc[-1]
        shifted.append(frame)
    return shifted


def _metric_panels(frames: list[pd.DataFrame]) -> list[str]:
    columns = set().union(*(frame.columns for frame in frames))
    panels = ["loss"] if "loss" in columns or "val_loss" in columns else []
    accuracy = next((name for name in _ACCURACY_METRICS if name in columns or f"val_{name}" in columns), None)
    if accuracy:
        panels.append(accuracy)
    aucs = sorted(c for c in columns if c.startswith("auc"))
    if aucs:
        panels.append(aucs[0])
    return panels


def plot_training_curves(
    history_csv_paths_or_dataframes,
    out_path,
    phase_names: Sequence[str] = ("phase 1", "phase 2"),
) -> Path:
    """Loss and main metrics (accuracy and/or AUC) for train and validation, across phases.

    Args:
        history_csv_paths_or_dataframes: one Keras CSVLogger history per training phase (CSV
            paths or DataFrames with an ``epoch`` column and ``loss``, ``val_loss``,
            ``accuracy``, ``val_accuracy``, optionally ``auc``/``val_auc``...), in phase order.
            A single path or DataFrame is accepted too.
        out_path: PNG file to write.
        phase_names: legend names of the phases; missing ones read "phase <i>".

    One panel per metric (loss, the first accuracy-like metric present, the first
    ``auc*`` metric present); solid lines = train, dashed = validation, one colour per
    phase; a dotted vertical line marks each phase boundary. The x axis is the 1-based epoch,
    continuing across phases (a phase that restarts at epoch 0 is shifted to follow the
    previous one).
    """
    frames = _continue_epochs(_load_histories(history_csv_paths_or_dataframes))
    names = [phase_names[i] if i < len(phase_names) else f"phase {i + 1}" for i in range(len(frames))]
    panels = _metric_panels(frames)
    if not panels:
        raise ValueError("the histories have no loss, accuracy or auc column to plot")
    fig, axes = _new_figure(nrows=1, ncols=len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    colors = _colors()
    for ax, metric in zip(axes[0], panels):
        for phase, (frame, name) in enumerate(zip(frames, names)):
            if not len(frame):
                continue
            epochs = frame["epoch"].to_numpy() + 1
            color = colors[phase % len(colors)]
            if metric in frame:
                ax.plot(epochs, frame[metric], "-o", ms=3, color=color, label=f"train ({name})")
            if f"val_{metric}" in frame:
                ax.plot(epochs, frame[f"val_{metric}"], "--s", ms=3, color=color,
                        label=f"validation ({name})")
        for frame in frames[1:]:
            if len(frame):
                ax.axvline(frame["epoch"].iloc[0] + 0.5, color="gray", linestyle=":", linewidth=1.2)
        pretty = metric.replace("_", " ")
        pretty = "AUC" + pretty[3:] if pretty.startswith("auc") else pretty
        ax.set_title(pretty[0].upper() + pretty[1:])
        ax.set_xlabel("Epoch")
        ax.set_ylabel(pretty)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Training curves (dotted line = phase boundary)")
    return _save(fig, out_path)


def plot_segmentation_curves(history, out_path) -> Path:
    """Loss and Dice per epoch of a segmentation run, train (solid) and validation (dashed).

    Args:
        history: DataFrame with ``epoch`` (1-based) and any of ``loss``, ``val_loss``,
            ``dice``, ``val_dice``.
        out_path: PNG file to write.
    """
    fig, axes = _new_figure(nrows=1, ncols=2, figsize=(10, 3.8))
    for ax, metric, title in zip(axes, ("loss", "dice"), ("Loss (BCE + Dice)", "Dice")):
        if metric in history:
            ax.plot(history["epoch"], history[metric], "-o", ms=3, label="train")
        if f"val_{metric}" in history:
            ax.plot(history["epoch"], history[f"val_{metric}"], "--s", ms=3, label="validation")
        ax.set_title(title)
        ax.set_xlabel("Epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out_path)


# --------------------------------------------------------------------------- ROC / PR curves


def _curve_classes(n_classes: int) -> list[int]:
    """Classes that get a curve: all for K > 2; only the positive class (1) for binary,
    whose negative-class curve is its mirror image with the same AUC."""
    return [1] if n_classes == 2 else list(range(n_classes))


def plot_roc_curves(y_true, probs, class_names: Sequence[str], out_path) -> Path:
    """One-vs-rest ROC curve per class (``sklearn.metrics.roc_curve`` of ``probs[:, k]``),
    with the AUC in the legend and the chance diagonal. Binary tasks show the positive class
    only. A class without cases, or without other cases, is listed as "AUC undefined"."""
    labels, probs, names = validate_inputs(y_true, probs, class_names)
    fig, ax = _new_figure(figsize=(5.5, 5.0))
    for k in _curve_classes(len(names)):
        positive = labels == k
        if positive.all() or not positive.any():
            ax.plot([], [], label=f"{names[k]} (AUC undefined: n={int(positive.sum())})")
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, k])
        ax.plot(fpr, tpr, linewidth=1.8, label=f"{names[k]} (AUC = {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="False positive rate (1 - specificity)",
           ylabel="True positive rate (sensitivity)", title="ROC curves (one-vs-rest)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return _save(fig, out_path)


def plot_pr_curves(y_true, probs, class_names: Sequence[str], out_path) -> Path:
    """One-vs-rest precision-recall curve per class (``sklearn.metrics.precision_recall_curve``)
    with the average precision (PR AUC) in the legend and, dotted, each class' prevalence
    (the precision of a random classifier). Binary tasks show the positive class only."""
    labels, probs, names = validate_inputs(y_true, probs, class_names)
    fig, ax = _new_figure(figsize=(5.5, 5.0))
    colors = _colors()
    for i, k in enumerate(_curve_classes(len(names))):
        positive = labels == k
        color = colors[i % len(colors)]
        if not positive.any():
            ax.plot([], [], color=color, label=f"{names[k]} (PR AUC undefined: no cases)")
            continue
        precision, recall, _ = precision_recall_curve(positive, probs[:, k])
        average_precision = average_precision_score(positive, probs[:, k])
        ax.step(recall, precision, where="post", color=color, linewidth=1.8,
                label=f"{names[k]} (AP = {average_precision:.3f})")
        ax.axhline(positive.mean(), color=color, linestyle=":", linewidth=1)
    ax.plot([], [], color="gray", linestyle=":", linewidth=1, label="prevalence (chance level)")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.05), xlabel="Recall (sensitivity)",
           ylabel="Precision (PPV)", title="Precision-recall curves (one-vs-rest)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=9)
    return _save(fig, out_path)


# --------------------------------------------------------------------------- confusion matrix


def plot_confusion_matrix(cm, class_names: Sequence[str], out_path, normalized: bool = False) -> Path:
    """Annotated confusion matrix, rows = true class, columns = predicted class.

    ``cm`` holds counts (K x K). With ``normalized=True`` each row is divided by its sum
    (so the diagonal shows per-class recall) and cells read "0.85\\n(34)"; a class without
    cases gets an empty row marked "-".
    """
    counts = np.asarray(cm, dtype=np.float64)
    names = list(class_names)
    if counts.shape != (len(names), len(names)):
        raise ValueError(f"cm has shape {counts.shape}; expected ({len(names)}, {len(names)})")
    if normalized:
        row_sums = counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(row_sums > 0, counts / np.where(row_sums > 0, row_sums, 1), np.nan)
        vmax = 1.0
    else:
        values = counts
        vmax = max(counts.max(), 1.0)
    size = 1.3 + 1.1 * len(names)
    fig, ax = _new_figure(figsize=(size + 1.2, size))
    image = ax.imshow(np.nan_to_num(values), cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="fraction of true class" if normalized else "cases")
    for i in range(len(names)):
        for j in range(len(names)):
            if normalized:
                text = "-" if np.isnan(values[i, j]) else f"{values[i, j]:.2f}\n({int(counts[i, j])})"
            else:
                text = f"{int(counts[i, j])}"
            shade = 0.0 if np.isnan(values[i, j]) else values[i, j] / vmax
            ax.text(j, i, text, ha="center", va="center", fontsize=10,
                    color="white" if shade > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title("Confusion matrix (row-normalised)" if normalized else "Confusion matrix (counts)")
    return _save(fig, out_path)


# --------------------------------------------------------------------------- calibration


def plot_reliability_diagram(y_true, probs, out_path, n_bins: int = ECE_N_BINS) -> Path:
    """Top-label reliability diagram with the expected calibration error in the title.

    Upper panel: per confidence bin (the bins of
    :func:`~bone_tumor_tf.evaluation.calibration.reliability_bins`), the accuracy as a bar
    and the gap to the bin's mean confidence shaded red; the diagonal is perfect calibration.
    Lower panel: number of cases per bin.
    """
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = 2 if probs.ndim == 1 or probs.shape[1] == 1 else probs.shape[1]
    labels, probs, _ = validate_inputs(y_true, probs, [str(k) for k in range(n_classes)])
    bins = reliability_bins(labels, probs, n_bins)
    ece = expected_calibration_error(labels, probs, n_bins)
    edges = bins["edges"]
    width = np.diff(edges)
    occupied = bins["count"] > 0
    fig, (top, bottom) = _new_figure(nrows=2, ncols=1, figsize=(5.5, 6.2), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    top.bar(edges[:-1][occupied], bins["accuracy"][occupied], width=width[occupied], align="edge",
            color="tab:blue", edgecolor="black", linewidth=0.6, label="accuracy")
    gap_low = np.minimum(bins["accuracy"], bins["confidence"])[occupied]
    gap = np.abs(bins["accuracy"] - bins["confidence"])[occupied]
    top.bar(edges[:-1][occupied], gap, bottom=gap_low, width=width[occupied], align="edge",
            color="tab:red", alpha=0.35, edgecolor="tab:red", hatch="//", label="gap to confidence")
    top.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="Accuracy",
            title=f"Reliability diagram (ECE = {ece:.3f}, {n_bins} bins, N = {labels.size})")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=9)
    bottom.bar(edges[:-1], bins["count"], width=width, align="edge", color="gray", edgecolor="black",
               linewidth=0.6)
    bottom.set(xlabel="Confidence (top-label probability)", ylabel="Cases")
    bottom.grid(alpha=0.3)
    return _save(fig, out_path)
