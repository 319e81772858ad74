"""The evaluation of a classifier's predictions on one split: metrics, plots and report.

One function, :func:`write_classifier_evaluation`, for a training run (its test split)
and for a saved model re-evaluated later (``python -m bone_tumor_tf.evaluate``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bone_tumor_tf.evaluation.classification import evaluate_predictions
from bone_tumor_tf.evaluation.plots import (
    plot_confusion_matrix,
    plot_pr_curves,
    plot_reliability_diagram,
    plot_roc_curves,
    plot_training_curves,
)
from bone_tumor_tf.evaluation.reports.classification import write_classification_report
from bone_tumor_tf.io import atomic_write_json


def write_classifier_evaluation(out_dir, targets: np.ndarray, probabilities: np.ndarray,
                                class_names: Sequence[str], *, split: str, run_info: Mapping,
                                title: str, data_source: str, split_kind: str, crop_mode: str,
                                model_info: Mapping, n_bootstrap: int = 1000, seed: int = 0,
                                split_accuracies: Mapping | None = None,
                                histories: Sequence | None = None,
                                synthetic: bool = False,
                                groups: Sequence | None = None) -> dict:
    """Write ``metrics.json``, the plots and ``report.md`` to ``out_dir``; return the metrics.

    Args:
        out_dir: output folder (created).
        targets: ``(N,)`` integer class indices into ``class_names``.
        probabilities: ``(N, K)`` predicted class probabilities (rows sum to 1).
        class_names: the ``K`` class names.
        split: the split's name, shown in the plot captions (e.g. ``"test"``).
        run_info: what was evaluated (model, data, settings), saved as ``metrics["run"]``.
        title, data_source, split_kind, crop_mode, model_info, synthetic: the report's
            header (see
            :func:`~bone_tumor_tf.evaluation.reports.classification.write_classification_report`).
        n_bootstrap, seed: the bootstrap of the confidence intervals.
        groups: each case's patient group; given, the bootstrap draws whole patients
            (:func:`~bone_tumor_tf.evaluation.classification.evaluate_predictions`).
        split_accuracies: accuracy per split (saved as ``metrics["split_accuracy"]`` and
            shown in the report), when known.
        histories: the training phases' Keras histories (DataFrames), for the training-curves
            plot; without any epoch (None, or all empty: nothing was trained) that plot is
            left out.

    Plots: training curves (with ``histories``), ROC and precision-recall curves, the
    confusion matrix (counts and row-normalised) and the reliability diagram.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    class_names = list(class_names)
    metrics = evaluate_predictions(targets, probabilities, class_names,
                                   n_bootstrap=n_bootstrap, seed=seed, groups=groups)
    if split_accuracies is not None:
        metrics["split_accuracy"] = dict(split_accuracies)
    metrics["run"] = dict(run_info)
    atomic_write_json(out_dir / "metrics.json", metrics)
    plots = {}
    if histories is not None and any(len(history) for history in histories):
        plots["Training curves"] = plot_training_curves(list(histories),
                                                        out_dir / "training_curves.png")
    confusion = metrics["confusion_matrix"]
    plots.update({
        f"ROC curves ({split})": plot_roc_curves(targets, probabilities, class_names,
                                                 out_dir / "roc_curves.png"),
        f"Precision-recall curves ({split})": plot_pr_curves(targets, probabilities,
                                                             class_names,
                                                             out_dir / "pr_curves.png"),
        f"Confusion matrix ({split})": plot_confusion_matrix(
            confusion, class_names, out_dir / "confusion_matrix.png"),
        f"Confusion matrix, row-normalised ({split})": plot_confusion_matrix(
            confusion, class_names, out_dir / "confusion_matrix_normalized.png",
            normalized=True),
        f"Reliability diagram ({split})": plot_reliability_diagram(
            targets, probabilities, out_dir / "reliability.png"),
    })
    write_classification_report(
        out_dir, metrics, title=title, data_source=data_source, split_kind=split_kind,
        crop_mode=crop_mode, model_info=dict(model_info),
        split_accuracies=None if split_accuracies is None else dict(split_accuracies),
        plots={k: str(v) for k, v in plots.items()}, synthetic=synthetic)
    return metrics
