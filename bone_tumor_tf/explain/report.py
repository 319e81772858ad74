"""Outputs of a CAM run: ``summary.csv``, ``cam_localization.csv``, ``cam_metrics.json``
and the Markdown ``cam_report.md`` (written by :func:`bone_tumor_tf.explain.scoring.explain`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from bone_tumor_tf.evaluation.reports.markdown import format_ci
from bone_tumor_tf.evaluation.stats import row_groups
from bone_tumor_tf.explain.localization import summarize_localization
from bone_tumor_tf.io import atomic_write_json, atomic_write_text

METHOD_LABELS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM"}
#: Columns of ``summary.csv``: one row per written PNG.
SUMMARY_COLUMNS = ("file", "method", "predicted_class", "probability", "target_class",
                   "target_probability", "true_class", "output")
#: Columns of ``cam_localization.csv``: one row per scored tumor image and method.
LOCALIZATION_COLUMNS = ("file", "method", "true_class", "group", "target_class",
                        "pointing_game", "energy_inside", "top_fraction_iou", "chance_level")


def localization_metrics(rows: Sequence[dict], *, model, data, split: str, splits_file,
                         methods: Sequence[str], target: str, layer: str, crop_mode: str,
                         top_fraction: float, n_bootstrap: int, seed: int, n_images: int,
                         n_tumor_images: int, n_tumor_without_mask: int) -> dict:
    """The content of ``cam_metrics.json``: the job's settings and counts, and per method
    the means of the ``cam_localization.csv`` rows with 95 % bootstrap intervals."""
    patients = row_groups(rows)
    return {
        "model": str(model),
        "data": str(data),
        "split": split,
        "splits_file": str(splits_file) if splits_file else None,
        "methods": list(methods),
        "target": target,
        "layer": layer,
        "crop_mode": crop_mode,
        "top_fraction": top_fraction,
        "n_bootstrap": n_bootstrap,
        # a patient's images are not independent: resample patients when they are known
        "resampled": "images" if patients is None else "patients",
        "n_patients": None if patients is None else len(set(patients)),
        "seed": seed,
        "confidence": 0.95,
        "n_images": n_images,
        "n_tumor_images": n_tumor_images,
        "n_tumor_without_mask": n_tumor_without_mask,
        "n_scored": n_tumor_images - n_tumor_without_mask,
        "scored_region": "the region the model saw: the crop box of the input "
                         "geometry (whole image for crop mode none)",
        "chance_level_definition": "mean fraction of the scored region covered by the "
                                   "tumor mask: the pointing-game hit rate of a "
                                   "uniformly random point",
        "metrics": summarize_localization(rows, n_bootstrap, seed),
    }


def _fmt_interval(entry: dict, signed: bool = False) -> str:
    return format_ci(entry, digits=2, signed=signed)


def render_report(metrics: Mapping) -> str:
    """``cam_report.md``: a short Markdown table of the ``cam_metrics.json`` content
    (:func:`bone_tumor_tf.explain.localization.summarize_localization` per method)."""
    pct = int(round(metrics["top_fraction"] * 100))
    lines = [
        "# CAM localisation",
        "",
        f"Model `{metrics['model']}`, data `{metrics['data']}` (split `{metrics['split']}`, "
        f"{metrics['n_images']} images, {metrics['n_scored']} tumor images with a mask "
        f"scored), target: {metrics['target']}, layer `{metrics['layer']}`, crop mode "
        f"`{metrics['crop_mode']}`.",
        "",
    ]
    if not metrics["metrics"]:
        lines += ["No tumor image with a non-empty tumor mask was explained, so nothing was "
                  "scored.", ""]
    else:
        lines += [
            f"| Method | Images | Pointing game | Chance level | Above chance | "
            f"Energy inside mask | Top-{pct}% IoU |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, entry in metrics["metrics"].items():
            lines.append(
                f"| {METHOD_LABELS.get(method, method)} | {entry['n_images']} | "
                f"{_fmt_interval(entry['pointing_game'])} | "
                f"{_fmt_interval(entry['chance_level'])} | "
                f"{_fmt_interval(entry['pointing_game_above_chance'], signed=True)} | "
                f"{_fmt_interval(entry['energy_inside'])} | "
                f"{_fmt_interval(entry['top_fraction_iou'])} |")
        lines += [
            "",
            "Pointing game: share of tumor images whose heatmap maximum lies inside the "
            "tumor mask. Chance level: mean fraction of the region the model saw that the "
            "mask covers, i.e. the hit rate of a random point (and the energy share of a "
            "uniform heatmap); 'Above chance' is the paired difference, and an interval "
            "above 0 means the maps point at the tumors more often than chance. "
            f"Intervals: {int(metrics['confidence'] * 100)}% percentile bootstrap over "
            + (f"the {metrics['n_patients']} patients, each with all its images"
               if metrics.get("resampled") == "patients" else "images")
            + f" ({metrics['n_bootstrap']} resamples).",
            "",
        ]
    if metrics["crop_mode"] == "gt-box":
        lines += ["Note: this model was trained on (and here shown) tumor images cropped to "
                  "the ground-truth tumor box, so the maps can only point inside that box; "
                  "the scores measure localisation within the box.", ""]
    if metrics["n_tumor_without_mask"]:
        lines += [f"{metrics['n_tumor_without_mask']} tumor image(s) without a tumor mask "
                  "(no annotation or no polygon) were not scored.", ""]
    return "\n".join(lines)


def write_cam_outputs(out: Path, summary_rows: Sequence[dict],
                      localization_rows: Sequence[dict] | None = None,
                      metrics: Mapping | None = None) -> list[str]:
    """Write ``summary.csv`` and, with ``metrics`` (a ``--data`` run), the localisation
    table, ``cam_metrics.json`` and ``cam_report.md`` into ``out``; returns what was
    written, for the command's one-line summary."""
    summary = pd.DataFrame(list(summary_rows), columns=list(SUMMARY_COLUMNS))
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    written = [f"{len(summary)} heatmap PNG(s)", "summary.csv"]
    if metrics is not None:
        localization = pd.DataFrame(list(localization_rows or []),
                                    columns=list(LOCALIZATION_COLUMNS))
        atomic_write_text(out / "cam_localization.csv", localization.to_csv(index=False))
        atomic_write_json(out / "cam_metrics.json", dict(metrics))
        atomic_write_text(out / "cam_report.md", render_report(metrics))
        written += ["cam_localization.csv", "cam_metrics.json", "cam_report.md"]
    return written
