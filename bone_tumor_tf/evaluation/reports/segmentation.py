"""Markdown reports of segmentation runs: one run's ``report.md`` and a comparison of runs.

:func:`write_segmentation_report` writes the run report (test metrics at the original
resolution next to the empty prediction, Dice by split, figures); :func:`write_case_overlays`
draws its best / median / worst test case; :func:`write_comparison_report` puts finished runs
(e.g. U-Net, Ronneberger et al., MICCAI 2015, vs Attention U-Net, Oktay et al., MIDL 2018)
side by side from their ``metrics.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bone_tumor_tf.data.images import read_image
from bone_tumor_tf.errors import BoneTumorError, DataError
from bone_tumor_tf.evaluation.reports.markdown import (
    SYNTHETIC_WARNING,
    format_ci,
    format_number,
    markdown_table,
    relative_link,
)
from bone_tumor_tf.explain.overlay import overlay_masks
from bone_tumor_tf.io import atomic_write_text, write_png

__all__ = [
    "ARCH_NAMES",
    "OVERLAY_CASES",
    "select_cases",
    "write_case_overlays",
    "write_comparison_report",
    "write_segmentation_report",
]

#: Overlay cases of a run report, in report order.
OVERLAY_CASES = ("best", "median", "worst")
#: Display names of the ``--arch`` values.
ARCH_NAMES = {"unet": "U-Net", "attention-unet": "Attention U-Net"}


# --------------------------------------------------------------------------- figures


def select_cases(dices: Sequence[float], is_normal: Sequence[bool]) -> dict[str, int]:
    """Indices of the best, median and worst image by Dice.

    Chosen among the tumor images when there are any (an empty prediction on a normal
    image scores a trivial 1.0), else among all. Ties are broken by input order; the
    median is the element at position ``n // 2`` of the ascending order.

    Returns:
        ``{"best": i, "median": j, "worst": k}`` (empty for no images).
    """
    dices = np.asarray(dices, float)
    normal = np.asarray(is_normal, bool)
    candidates = np.flatnonzero(~normal) if (~normal).any() else np.arange(len(dices))
    if candidates.size == 0:
        return {}
    order = candidates[np.lexsort((candidates, dices[candidates]))]  # ascending Dice
    return {"best": int(order[-1]), "median": int(order[len(order) // 2]),
            "worst": int(order[0])}


def write_case_overlays(predictions, metrics: Mapping, out_dir: str | Path,
                        threshold: float = 0.5) -> dict[str, Path]:
    """``overlay_{best,median,worst}.png`` at original resolution; returns case -> path.

    ``predictions`` is an
    :class:`~bone_tumor_tf.inference.segmentation.OriginalResolutionPredictions`
    and ``metrics`` the dict of
    :func:`~bone_tumor_tf.evaluation.segmentation.evaluate_segmentation`.
    Cases come from :func:`select_cases` on ``metrics["per_image"]``; each overlay is
    :func:`~bone_tumor_tf.explain.overlay.overlay_masks` of the re-read radiograph with the
    ground truth (green) and the thresholded prediction (red), captioned with the image id
    and its Dice.
    """
    dices = [item["dice"] for item in metrics["per_image"]]
    written = {}
    for case, index in select_cases(dices, predictions.is_normal).items():
        record = predictions.records[index]
        image = read_image(record.path)
        overlay = overlay_masks(image, predictions.probabilities[index] >= threshold,
                                predictions.masks[index],
                                caption=f"{case}: {record.image_id} Dice {dices[index]:.3f}")
        written[case] = write_png(Path(out_dir) / f"overlay_{case}.png", overlay)
    return written


# --------------------------------------------------------------------------- reports


def _metric_rows(metrics: Mapping) -> list[list[str]]:
    base = metrics["empty_prediction"]
    intervals = metrics.get("bootstrap") or {}

    def model(key):  # the estimate with its interval where one was computed
        interval = intervals.get(key)
        return format_ci(interval) if interval else format_number(metrics.get(key))

    no_normals = metrics.get("n_normal", 0) == 0
    fp_note = " (no normal test images)" if no_normals else ""
    rows = [
        ["Dice, mean per image", model("dice_mean"), base["dice_mean"]],
        ["Dice, median per image", metrics["dice_median"], base["dice_median"]],
        ["IoU, mean per image", metrics["iou_mean"], base["iou_mean"]],
        ["IoU, median per image", metrics["iou_median"], base["iou_median"]],
        ["Dice, mean over tumor images", model("tumor_dice_mean"),
         base.get("tumor_dice_mean")],
        ["Dice, pooled over all pixels", metrics["dice_pooled"], base["dice_pooled"]],
        ["IoU, pooled over all pixels", metrics["iou_pooled"], base["iou_pooled"]],
        ["Pixel ROC AUC", metrics["pixel_auc"], base["pixel_auc"]],
        [f"Normal images with a false positive{fp_note}", model("normal_fp_image_rate"),
         base["normal_fp_image_rate"]],
    ]
    return [[name, value if isinstance(value, str) else format_number(value),
             format_number(empty)] for name, value, empty in rows]


def _intervals_sentence(bootstrap: Mapping | None) -> str:
    if not bootstrap:
        return ""
    over = (f"the {bootstrap['n_patients']} patients, each with all its images"
            if bootstrap["resampled"] == "patients" else "images")
    return (f" Intervals: {bootstrap['confidence'] * 100:g}% percentile bootstrap over {over} "
            f"({bootstrap['n_replicates']} replicates).")


def write_segmentation_report(run_dir: str | Path, metrics: Mapping, *, title: str,
                              data_source: str, split_kind: str, model_info: Mapping,
                              split_scores: Mapping | None = None,
                              figures: Mapping[str, str | Path] | None = None,
                              synthetic: bool = False, split: str = "test") -> Path:
    """Write ``<run_dir>/report.md`` (atomically) for one segmentation run; returns its path.

    Args:
        run_dir: the run folder (figure links are made relative to it).
        metrics: the dict of
            :func:`~bone_tumor_tf.evaluation.segmentation.evaluate_segmentation` (test split).
        title: heading.
        data_source: where the images come from.
        split_kind: how train/val/test were formed.
        model_info: key/value rows of the "Model" table.
        split_scores: optional figures per split at the model's input resolution
            (``{"train": {...}, "val": {...}, "test": {...}}`` from
            :func:`bone_tumor_tf.training.segmentation.split_scores`), to spot over-fitting
            and to choose settings on the validation split.
        figures: caption -> PNG path, embedded in order.
        synthetic: add the synthetic-data warning.
        split: the split ``metrics`` scores (``test`` for a training run).

    Sections: setting, warning, Model, Table 1 (test metrics at original resolution, model
    vs empty prediction; then Dice by tumor size when ``metrics`` has it), Table 2
    (figures by split at input resolution), figures.
    """
    run_dir = Path(run_dir)
    lines = [
        f"# {title}", "",
        f"- **Data source:** {data_source}",
        f"- **Split kind:** {split_kind}",
        "- **Input:** whole radiograph, aspect-preserving scale and zero pad to a square "
        "(crop mode none)",
        f"- **{split.capitalize()} images:** {metrics['n_images']} ({metrics['n_tumor']} tumor, "
        f"{metrics['n_normal']} normal)",
        f"- **Evaluation:** at each image's original resolution; probability maps mapped back "
        f"through the pad/resize geometry (bilinear) and thresholded at "
        f"{metrics['threshold']:g}; ground truth = LabelMe polygons rasterised at the original "
        "resolution (empty for normal images)",
        "",
    ]
    if synthetic:
        lines += [SYNTHETIC_WARNING, ""]
    for warning in metrics.get("warnings") or []:
        lines += [f"> **WARNING:** {warning}.", ""]
    lines += ["## Model", ""]
    lines += markdown_table(["Setting", "Value"], [[k, v] for k, v in model_info.items()],
                            numeric=False)
    lines += [f"## Table 1. {split.capitalize()}-set segmentation at the original resolution",
              "",
              "Per-image scores count a normal image as 1 when nothing is predicted on it and 0 "
              "otherwise. *Empty prediction* is the trivial model that never marks a pixel: "
              "the model is only useful where it beats that column."
              + _intervals_sentence(metrics.get("bootstrap")), ""]
    lines += markdown_table(["Metric", "Model", "Empty prediction"], _metric_rows(metrics))
    gain = metrics.get("dice_gain_over_empty")
    lines += [f"Mean Dice gain over the empty prediction: **{format_number(gain)}**.", ""]
    by_size = metrics.get("dice_by_tumor_size")
    if by_size:
        lines += ["### Dice by tumor size", "",
                  f"Tumor {split} images in equal-count groups by tumor area (share of the "
                  "image). Missed: no overlap at all (Dice 0).", ""]
        lines += markdown_table(
            ["Tumor area (% of image)", "Images", "Mean Dice", "Missed"],
            [[f"{100 * g['area_min']:.2f} - {100 * g['area_max']:.2f}", g["n"],
              format_number(g["dice_mean"]), format_number(g["missed"])] for g in by_size])
    if split_scores:
        lines += ["## Table 2. By split, at the model input resolution", "",
                  "Choose settings on *val*, never on *test*. Normal images marked: the share "
                  "of normal radiographs with at least one predicted tumor pixel.", ""]
        lines += markdown_table(
            ["Split", "Mean Dice (all images)", "Mean Dice (tumor images)",
             "Normal images marked"],
            [[name, format_number(v["dice_mean"]), format_number(v["tumor_dice_mean"]),
              format_number(v["normal_fp_image_rate"])] for name, v in split_scores.items()])
    if figures:
        lines += ["## Figures", ""]
        for caption, path in figures.items():
            lines += [f"### {caption}", "", f"![{caption}]({relative_link(path, run_dir)})", ""]
    return atomic_write_text(run_dir / "report.md", "\n".join(lines).rstrip("\n") + "\n")


def _read_run_metrics(run_dir: Path) -> dict:
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise DataError(path, "missing: not a finished segmentation run folder")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(path, f"unreadable metrics ({error})") from None
    if not isinstance(metrics, dict) or metrics.get("task") != "segmentation":
        raise DataError(path, "not the metrics of a segmentation run (task != segmentation)")
    return metrics


def write_comparison_report(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """One Markdown table comparing segmentation runs (e.g. U-Net vs Attention U-Net).

    Reads each run's ``metrics.json``; one row per run (architecture, encoder, input size,
    parameters, Dice / IoU mean and median, pooled Dice / IoU, pixel AUC, normal-image
    false-positive rate) plus one row for the empty prediction of the first run's test
    set. States whether the runs were tested on the same images (otherwise the numbers
    are not directly comparable).

    Args:
        run_dirs: two or more finished run folders.
        out: the Markdown file to write (atomically).

    Raises:
        DataError: a folder without a segmentation ``metrics.json``.
        BoneTumorError: fewer than two runs.
    """
    if len(run_dirs) < 2:
        raise BoneTumorError("comparison needs at least two run folders")
    runs = [(Path(d), _read_run_metrics(Path(d))) for d in run_dirs]
    header = ["Run", "Architecture", "Encoder", "Input px", "Params", "Dice mean",
              "Dice median", "IoU mean", "IoU median", "Dice pooled", "IoU pooled",
              "Pixel AUC", "Normal FP rate"]
    rows = []
    for run_dir, metrics in runs:
        info = metrics.get("run", {})
        params = info.get("parameters")
        rows.append([run_dir.name, ARCH_NAMES.get(info.get("arch"), info.get("arch", "?")),
                     info.get("encoder", "?"), info.get("image_size", "?"),
                     f"{params:,}" if isinstance(params, int) else "?",
                     *(format_number(metrics.get(key)) for key in (
                         "dice_mean", "dice_median", "iou_mean", "iou_median", "dice_pooled",
                         "iou_pooled", "pixel_auc", "normal_fp_image_rate"))])
    base = runs[0][1]["empty_prediction"]
    rows.append(["(empty prediction)", "-", "-", "-", "-",
                 *(format_number(base.get(key)) for key in (
                     "dice_mean", "dice_median", "iou_mean", "iou_median", "dice_pooled",
                     "iou_pooled", "pixel_auc", "normal_fp_image_rate"))])
    test_sets = [sorted(item["image_id"] for item in m.get("per_image", [])) for _, m in runs]
    same = all(t == test_sets[0] for t in test_sets[1:])
    synthetic = any(m.get("run", {}).get("synthetic_data") for _, m in runs)
    lines = ["# Segmentation comparison", "",
             f"Test split at the original resolution; threshold "
             f"{runs[0][1].get('threshold', 0.5):g}. Same test images in every run: "
             f"**{'yes' if same else 'NO: numbers are not directly comparable'}**.", ""]
    if synthetic:
        lines += [SYNTHETIC_WARNING, ""]
    lines += markdown_table(header, rows)
    lines += ["Runs: " + ", ".join(str(d) for d, _ in runs), ""]
    return atomic_write_text(out, "\n".join(lines).rstrip("\n") + "\n")
