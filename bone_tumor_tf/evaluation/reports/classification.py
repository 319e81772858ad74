"""Markdown report of one evaluation, laid out like the tables of the published thesis.

The report reads the dict made by
:func:`bone_tumor_tf.evaluation.classification.evaluate_predictions` and writes
``report.md`` atomically, with the formatting of :mod:`.markdown` (3 decimals, intervals as
``0.812 [0.771, 0.850]``, ``n/a`` when undefined).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bone_tumor_tf.evaluation.reports.markdown import (
    MISSING,
    SYNTHETIC_WARNING,
    format_ci,
    format_number,
    markdown_table,
    relative_link,
)
from bone_tumor_tf.io import atomic_write_text

__all__ = ["REPORT_FILENAME", "write_classification_report"]

REPORT_FILENAME = "report.md"
_SPLIT_ORDER = ("train", "val", "validation", "test")
_SPLIT_LABELS = {"train": "Train", "val": "Validation", "validation": "Validation", "test": "Test"}


def _split_value(value) -> str:
    return format_ci(value) if isinstance(value, Mapping) else format_number(value)


def _split_table(metrics: Mapping, split_accuracies: Mapping | None) -> list[str]:
    given = dict(split_accuracies or {})
    ordered = [key for key in _SPLIT_ORDER if key in given] + [k for k in given if k not in _SPLIT_ORDER]
    rows = [[_SPLIT_LABELS.get(key, str(key)), _split_value(given[key])] for key in ordered]
    if "test" not in given:
        rows.append(["Test", format_ci(metrics["bootstrap"]["accuracy"])])
    return markdown_table(["Split", "Accuracy"], rows)


def _per_class_table(metrics: Mapping) -> list[str]:
    names = metrics["class_names"]
    per_class = metrics["per_class"]
    columns = ("precision", "recall", "f1", "roc_auc", "pr_auc")
    rows = [[name] + [format_number(per_class[name][c]) for c in columns]
            + [per_class[name]["support"]] for name in names]
    macro = []
    for column in columns:
        values = [per_class[name][column] for name in names]
        macro.append(MISSING if any(v is None for v in values) else format_number(sum(values) / len(values)))
    rows.append(["**macro average**"] + macro + [sum(per_class[name]["support"] for name in names)])
    return markdown_table(
        ["Class", "Precision", "Recall", "F1", "AUC-ROC", "PR-AUC", "Support"], rows)


def _operating_point(point: Mapping | None) -> str:
    if not point or point.get("sensitivity") is None:
        return MISSING
    threshold = point.get("threshold")
    threshold_text = "+inf, no case called positive" if threshold is None else f"P >= {format_number(threshold)}"
    return (f"{format_number(point['sensitivity'])} (specificity {format_number(point['specificity'])}, "
            f"threshold {threshold_text})")


def _summary_table(metrics: Mapping) -> list[str]:
    bootstrap = metrics["bootstrap"]
    rows = [
        ["Accuracy", format_ci(bootstrap["accuracy"])],
        ["Balanced accuracy", format_number(metrics["balanced_accuracy"])],
        ["Macro F1", format_ci(bootstrap["macro_f1"])],
    ]
    tumor = metrics.get("tumor_vs_normal")
    if tumor:
        group = " + ".join(tumor["tumor_classes"])
        rows += [
            [f"Tumor vs normal ROC AUC (P(tumor) = P({group}))", format_number(tumor["roc_auc"])],
            ["Tumor vs normal PR AUC", format_number(tumor["pr_auc"])],
            ["Tumor vs normal sensitivity (argmax decision)", format_number(tumor["sensitivity"])],
            ["Tumor vs normal specificity (argmax decision)", format_number(tumor["specificity"])],
            ["Tumor vs normal accuracy (argmax decision)", format_number(tumor["accuracy"])],
        ]
    at_specificity = metrics.get("sensitivity_at_specificity")
    if at_specificity:
        target = at_specificity["target_class"]
        for key, point in at_specificity.items():
            if key == "target_class":
                continue
            percent = f"{float(key) * 100:g}%"
            rows.append([f"{target.capitalize()} sensitivity at {percent} specificity",
                         _operating_point(point)])
    calibration = metrics["calibration"]
    rows.append([f"ECE (top-label, {calibration['n_bins']} bins)", format_number(calibration["ece"])])
    rows.append(["Brier score (multi-class: sum over classes, range 0-2)",
                 format_number(calibration["brier"])])
    if calibration.get("brier_positive_class") is not None:
        rows.append(["Brier score (positive class, range 0-1)",
                     format_number(calibration["brier_positive_class"])])
    return markdown_table(["Metric", "Value"], rows)


def _resampled(bootstrap: Mapping) -> str:
    """What each replicate draws, in words (metrics written before patients: cases)."""
    if bootstrap.get("resampled") == "patients":
        return (f"over the {bootstrap['n_resampled']} patients (each replicate draws whole "
                "patients with all their radiographs)")
    return "over cases"


def _bootstrap_table(metrics: Mapping) -> list[str]:
    bootstrap = metrics["bootstrap"]
    rows = []
    for name in metrics["class_names"]:
        recall, auc = bootstrap["recall"][name], bootstrap["roc_auc"][name]
        rows.append([name, format_ci(recall), format_ci(auc),
                     f"{recall['n_used']} / {auc['n_used']}"])
    return markdown_table(
        ["Class", "Recall (95% CI)", "AUC-ROC (95% CI)", "Replicates used (recall / AUC)"], rows)


def _confusion_table(metrics: Mapping) -> list[str]:
    names = metrics["class_names"]
    rows = [[f"**{name}**"] + list(counts) for name, counts in zip(names, metrics["confusion_matrix"])]
    return markdown_table(["True \\ Predicted"] + list(names), rows)


def write_classification_report(
    out_dir,
    metrics: dict,
    *,
    title: str,
    data_source: str,
    split_kind: str,
    crop_mode: str,
    model_info: dict,
    split_accuracies: dict | None = None,
    plots: dict[str, str] | None = None,
    synthetic: bool = False,
) -> Path:
    """Write ``<out_dir>/report.md`` (atomically; folder created) and return its path.

    Args:
        out_dir: folder of the report; plot links are made relative to it.
        metrics: the dict returned by ``evaluate_predictions`` for the test set.
        title: the report's heading.
        data_source: where the images come from (e.g. "BTXRD (Yao et al., 2025)").
        split_kind: how train/val/test were formed (e.g. "random stratified", "center-held-out").
        crop_mode: what the model sees (e.g. "full image", "tumor bounding-box crop").
        model_info: key/value pairs shown in a "Model" table (architecture, input size...).
        split_accuracies: accuracy per split, e.g. ``{"train": 0.95, "val": 0.90, "test": 0.87}``
            (a value may also be a bootstrap ``{"estimate", "low", "high"}`` dict). When
            ``"test"`` is missing it is taken, with its CI, from ``metrics``.
        plots: caption -> PNG path (absolute, relative to the working directory, or already
            relative to ``out_dir``); each is embedded with a relative link.
        synthetic: add a prominent warning that the numbers come from synthetic phantom
            data and are not clinical performance.

    Sections, in order: the setting (data source, split kind, crop mode, test cases), the
    synthetic-data warning, Model, Table 1 (accuracy by split), Table 2 (per-class precision,
    recall, F1, AUC-ROC, PR-AUC, support, macro average), Table 3 (summary: accuracy and macro
    F1 with 95% CI, balanced accuracy, tumor-vs-normal, target-class sensitivity at 90/95%
    specificity, ECE, Brier), Table 4 (per-class recall and AUC-ROC with 95% CI), the confusion
    matrix, then the figures.
    """
    out_dir = Path(out_dir)
    names = metrics["class_names"]
    bootstrap = metrics["bootstrap"]
    counts = ", ".join(f"{name} {metrics['per_class'][name]['support']}" for name in names)
    lines = [
        f"# {title}",
        "",
        f"- **Data source:** {data_source}",
        f"- **Split kind:** {split_kind}",
        f"- **Crop mode:** {crop_mode}",
        f"- **Test cases:** {metrics['n']} ({counts})",
        "",
    ]
    if synthetic:
        lines += [SYNTHETIC_WARNING, ""]
    lines += ["## Model", ""]
    lines += markdown_table(["Setting", "Value"],
                            [[key, value] for key, value in model_info.items()], numeric=False)
    lines += ["## Table 1. Accuracy by split", ""]
    lines += _split_table(metrics, split_accuracies)
    lines += ["## Table 2. Per-class results on the test set", "",
              "Precision, recall and F1 at the argmax decision; AUC-ROC and PR-AUC (average "
              "precision) one-vs-rest.", ""]
    lines += _per_class_table(metrics)
    confidence = f"{bootstrap['confidence'] * 100:g}%"
    lines += ["## Table 3. Summary on the test set", "",
              f"Intervals: {confidence} percentile bootstrap {_resampled(bootstrap)}, "
              f"{bootstrap['n_replicates']} replicates (seed {bootstrap['seed']}).", ""]
    lines += _summary_table(metrics)
    lines += [f"## Table 4. Per-class {confidence} bootstrap confidence intervals", "",
              "Replicates in which a class (or, for AUC, every other class) is absent are skipped.", ""]
    lines += _bootstrap_table(metrics)
    lines += ["## Confusion matrix (rows = true class, columns = predicted class)", ""]
    lines += _confusion_table(metrics)
    if plots:
        lines += ["## Figures", ""]
        for caption, path in plots.items():
            link = relative_link(path, out_dir)
            lines += [f"### {caption}", "", f"![{caption}]({link})", ""]
    return atomic_write_text(out_dir / REPORT_FILENAME, "\n".join(lines).rstrip("\n") + "\n")
