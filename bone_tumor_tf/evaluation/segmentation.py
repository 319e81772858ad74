"""Tumor segmentation: evaluation at the original resolution, overlays, reports, new masks.

Evaluation is honest about resolution: the model sees each radiograph scaled (aspect
preserved) and zero-padded to ``S x S`` (crop mode ``none``), but every number here is
computed at the image's ORIGINAL resolution. The ``(S, S)`` probability map is mapped back
through the image's :class:`~bone_tumor_tf.data.preprocess.CropGeometry` (padding cut off,
bilinear resize; :func:`~bone_tumor_tf.data.preprocess.map_to_original`), then thresholded
(``prob >= threshold``); the ground truth is the union of the LabelMe polygons rasterised
at the original resolution (empty for a normal radiograph). Metrics come from
:func:`bone_tumor_tf.metrics.segmentation_report` (per-image Dice / IoU with mean and
median, pooled Dice / IoU, pixel ROC AUC, normal-image false-positive rate), next to the
same metrics of an all-empty prediction, the baseline every model must beat (on a test set
of tumor images its Dice is 0; every normal image adds a Dice of 1 to it).

Dice (Sorensen, 1948; Dice, 1945) = 2|P n G| / (|P| + |G|); IoU (Jaccard, 1912) =
|P n G| / |P u G|; per image Dice >= IoU. The architectures compared: U-Net (Ronneberger
et al., MICCAI 2015, arXiv:1505.04597) and Attention U-Net (Oktay et al., MIDL 2018,
arXiv:1804.03999).

Memory: the test split's probability maps and masks are held at original resolution, about
5 bytes per original pixel (float32 probabilities + bool masks).

Besides the run report this module writes:

- overlays (PNG): the radiograph with the ground-truth outline in green and the predicted
  outline in red, for the best, median and worst test tumor image by Dice;
- ``model.json``, the sidecar holding a segmentation model's preprocessing contract
  (the U-Net graph carries no metadata layer; see :func:`write_model_sidecar`);
- ``<stem>_mask.png`` / ``<stem>_overlay.png`` for new radiographs (:func:`predict_masks`);
- a table comparing run folders, e.g. U-Net vs Attention U-Net
  (:func:`write_comparison_report`; CLI: ``python -m bone_tumor_tf.evaluation.segmentation
  RUN1 RUN2 --out comparison.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bone_tumor_tf.data.preprocess import CropGeometry, map_to_original
from bone_tumor_tf.errors import BoneTumorError, DataError, ModelFileError
from bone_tumor_tf.io import atomic_write_json, atomic_write_text

__all__ = [
    "ARCH_NAMES",
    "OVERLAY_CASES",
    "SIDECAR_NAME",
    "OriginalResolutionPredictions",
    "draw_overlay",
    "empty_prediction_baseline",
    "evaluate_segmentation",
    "ground_truth_mask",
    "is_segmentation_model",
    "plot_segmentation_curves",
    "predict_masks",
    "predict_probability_maps",
    "predictions_at_original_resolution",
    "read_model_sidecar",
    "select_cases",
    "write_case_overlays",
    "write_comparison_report",
    "write_model_sidecar",
    "write_png",
    "write_segmentation_report",
]

#: File name of the preprocessing contract written next to ``model.keras``.
SIDECAR_NAME = "model.json"
#: Overlay cases of a run report, in report order.
OVERLAY_CASES = ("best", "median", "worst")
#: Outline colours (OpenCV BGR): ground truth green, prediction red.
TRUTH_BGR = (0, 200, 0)
PREDICTION_BGR = (0, 0, 255)

#: Display names of the ``--arch`` values.
ARCH_NAMES = {"unet": "U-Net", "attention-unet": "Attention U-Net"}


# --------------------------------------------------------------------------- contract


def write_model_sidecar(model_path: str | Path, contract: Mapping) -> Path:
    """Write ``model.json`` (JSON, atomically) next to ``model_path``; returns its path.

    ``contract`` should hold at least ``task`` (``"segmentation"``), ``image_size`` (S),
    ``channels`` (1), ``crop_mode`` (``"none"``: whole image, aspect-preserving pad to
    square), ``input_range`` (``[0, 255]``), ``arch`` and ``threshold``.
    """
    return atomic_write_json(Path(model_path).with_name(SIDECAR_NAME), dict(contract))


def read_model_sidecar(model_path: str | Path) -> dict | None:
    """The ``model.json`` next to ``model_path`` as a dict, or None when there is none.

    Raises:
        ModelFileError: the sidecar exists but is not a JSON object.
    """
    path = Path(model_path).with_name(SIDECAR_NAME)
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: unreadable model sidecar ({error})") from None
    if not isinstance(content, dict):
        raise ModelFileError(f"{path}: model sidecar is not a JSON object")
    return content


def is_segmentation_model(model) -> bool:
    """True when ``model`` maps ``(N, S, S, C)`` to a one-channel map ``(N, S, S, 1)``."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return False
    in_shape, out_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    return len(out_shape) == 4 and out_shape[-1] == 1 and out_shape[1:3] == in_shape[1:3]


# --------------------------------------------------------------------------- prediction


def predict_probability_maps(model, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Tumor probabilities of model-space images.

    Args:
        model: a segmentation model, input ``(N, S, S, 1)`` in [0, 255].
        images: ``uint8`` (or float in [0, 255]) array ``(N, S, S)`` or ``(N, S, S, 1)``.
        batch_size: images per forward pass.

    Returns:
        float32 ``(N, S, S)``, values in [0, 1].
    """
    x = np.asarray(images, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if len(x) == 0:
        return np.zeros(x.shape[:3], np.float32)
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    return np.clip(np.asarray(probs, np.float32)[..., 0], 0.0, 1.0)


def ground_truth_mask(record, original_hw: tuple[int, int]) -> np.ndarray:
    """A record's tumor mask at the decoded image's resolution ``original_hw``: bool ``(H, W)``.

    ``original_hw`` is the size the image was decoded at, which for huge files is reduced
    (see :func:`bone_tumor_tf.data.images.read_image_with_scale`); the annotation is
    checked against the file's own size and scaled to the decoded one.

    The union of its LabelMe polygons, or its mask image (mask-folder sets), as
    :func:`bone_tumor_tf.data.annotations.read_record_annotation` reads them (scaled when
    the set is a resized copy); all False for a record without either (a normal radiograph).

    Raises:
        DataError: the annotation is unreadable or its size disagrees with the image file.
    """
    from bone_tumor_tf.data.annotations import read_record_annotation

    annotation = read_record_annotation(record)
    if annotation is None:
        return np.zeros(tuple(original_hw), bool)
    scale = original_hw[0] / annotation.image_height
    return annotation.scaled(scale, tuple(original_hw)).mask().astype(bool)


@dataclass
class OriginalResolutionPredictions:
    """Predictions and ground truth of a set of images, each at its original resolution.

    Attributes:
        records: the images' records, in order.
        probabilities: per image, float32 ``(H_k, W_k)`` tumor probabilities in [0, 1].
        masks: per image, bool ``(H_k, W_k)`` ground-truth masks.
        is_normal: bool ``(N,)``, True for tumor-free radiographs (label ``normal``).
    """

    records: list
    probabilities: list[np.ndarray]
    masks: list[np.ndarray]
    is_normal: np.ndarray

    def __len__(self) -> int:
        return len(self.records)


def predictions_at_original_resolution(model, images: np.ndarray,
                                       geometries: Sequence[CropGeometry], records: Sequence,
                                       batch_size: int = 8) -> OriginalResolutionPredictions:
    """Predict model-space maps and bring them, and the ground truth, to original size.

    Args:
        model: segmentation model.
        images: ``uint8`` ``(N, S, S)`` model inputs (crop mode ``none``).
        geometries: per image, how the original became the input.
        records: per image, its record (``annotation`` -> ground truth, ``label``).
        batch_size: images per forward pass.

    Returns:
        :class:`OriginalResolutionPredictions`; probabilities are bilinearly resampled
        (``map_to_original``; 0 outside the region the model saw, which in mode ``none``
        is nothing).
    """
    if not (len(images) == len(geometries) == len(records)):
        raise ValueError(f"{len(images)} images, {len(geometries)} geometries and "
                         f"{len(records)} records")
    probabilities, masks = [], []
    for start in range(0, len(images), max(64, batch_size)):
        chunk = predict_probability_maps(model, images[start:start + max(64, batch_size)],
                                         batch_size)
        for offset, prob in enumerate(chunk):
            geometry = geometries[start + offset]
            probabilities.append(np.clip(map_to_original(prob, geometry), 0.0, 1.0))
            masks.append(ground_truth_mask(records[start + offset], geometry.original_hw))
    is_normal = np.array([r.label == "normal" for r in records], bool)
    return OriginalResolutionPredictions(list(records), probabilities, masks, is_normal)


# --------------------------------------------------------------------------- metrics


def empty_prediction_baseline(masks: Sequence[np.ndarray], is_normal: Sequence[bool]) -> dict:
    """Metrics of predicting "no tumor anywhere" for every image (the trivial baseline).

    Per image Dice = IoU = 1 when the true mask is empty too, else 0; pooled Dice / IoU
    are 0 as soon as one image has tumor pixels; a constant score has pixel ROC AUC 0.5;
    no normal image gets a false positive.

    Returns:
        dict with ``dice_mean``, ``dice_median``, ``iou_mean``, ``iou_median``,
        ``tumor_dice_mean`` (None without tumor images), ``dice_pooled``, ``iou_pooled``,
        ``pixel_auc`` and ``normal_fp_image_rate`` (None without normal images).
    """
    from bone_tumor_tf.metrics import dice_score

    per_image = np.array([dice_score(np.zeros(m.shape, bool), m) for m in masks], float)
    normal = np.asarray(is_normal, bool)
    any_tumor_pixel = any(bool(np.any(m)) for m in masks)
    pooled = 0.0 if any_tumor_pixel else 1.0
    return {
        "dice_mean": float(per_image.mean()) if per_image.size else None,
        "dice_median": float(np.median(per_image)) if per_image.size else None,
        "iou_mean": float(per_image.mean()) if per_image.size else None,
        "iou_median": float(np.median(per_image)) if per_image.size else None,
        "tumor_dice_mean": float(per_image[~normal].mean()) if (~normal).any() else None,
        "dice_pooled": pooled,
        "iou_pooled": pooled,
        "pixel_auc": 0.5 if any_tumor_pixel else None,
        "normal_fp_image_rate": 0.0 if normal.any() else None,
    }


def evaluate_segmentation(predictions: OriginalResolutionPredictions, threshold: float = 0.5,
                          seed: int = 0) -> dict:
    """Test-set metrics at the original resolution, with the empty-prediction baseline.

    Returns:
        The JSON-ready dict of :func:`bone_tumor_tf.metrics.segmentation_report` (keys
        ``dice_mean``, ``dice_median``, ``iou_mean``, ``iou_median``, ``tumor_*``,
        ``dice_pooled``, ``iou_pooled``, ``pixel_auc``, ``normal_fp_image_rate``,
        ``normal_fp_pixel_fraction``, counts; the per-image lists are moved into
        ``per_image``), plus:

        - ``resolution``: ``"original"``;
        - ``empty_prediction``: :func:`empty_prediction_baseline` of the same images;
        - ``dice_gain_over_empty``: ``dice_mean - empty_prediction.dice_mean``;
        - ``per_image``: one dict per image (``image_id``, ``label``, ``height``,
          ``width``, ``dice``, ``iou``, ``true_pixels``, ``predicted_pixels``).

    Raises:
        ValueError: no images.
    """
    from bone_tumor_tf.metrics import segmentation_report

    report = segmentation_report(predictions.probabilities, predictions.masks,
                                 is_normal=predictions.is_normal, threshold=threshold, seed=seed)
    dices, ious = report.pop("dice_per_image"), report.pop("iou_per_image")
    baseline = empty_prediction_baseline(predictions.masks, predictions.is_normal)
    per_image = []
    for k, record in enumerate(predictions.records):
        prob, mask = predictions.probabilities[k], predictions.masks[k]
        per_image.append({
            "image_id": record.image_id, "label": record.label,
            "height": int(mask.shape[0]), "width": int(mask.shape[1]),
            "dice": dices[k], "iou": ious[k], "true_pixels": int(np.count_nonzero(mask)),
            "predicted_pixels": int(np.count_nonzero(prob >= threshold)),
        })
    return {"resolution": "original", **report, "empty_prediction": baseline,
            "dice_gain_over_empty": report["dice_mean"] - baseline["dice_mean"],
            "per_image": per_image}


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


# --------------------------------------------------------------------------- images


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Encode ``image`` (uint8 gray ``(H, W)`` or BGR ``(H, W, 3)``) as PNG, atomically.

    The bytes go to a hidden temporary file in the destination folder (created if missing),
    which is then renamed over ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:  # pragma: no cover - OpenCV fails only on unsupported arrays
        raise ValueError(f"{path}: cannot encode a {image.dtype} {image.shape} array as PNG")
    handle = tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp", delete=False)
    temp = Path(handle.name)
    try:
        with handle:
            handle.write(encoded.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _outline(canvas: np.ndarray, mask: np.ndarray, color, thickness: int) -> None:
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, color, thickness, lineType=cv2.LINE_8)


def draw_overlay(image: np.ndarray, predicted: np.ndarray | None = None,
                 truth: np.ndarray | None = None, caption: str | None = None,
                 fill_alpha: float = 0.0) -> np.ndarray:
    """The radiograph with mask outlines: ground truth green, prediction red.

    Args:
        image: ``uint8`` gray ``(H, W)``.
        predicted: predicted mask ``(H, W)`` (bool, {0, 1} or {0, 255}), or None.
        truth: ground-truth mask ``(H, W)``, or None.
        caption: text drawn at the top-left (white on a black band), or None.
        fill_alpha: opacity in [0, 1] of a red fill of the predicted region (0: outline only).

    Returns:
        ``uint8`` BGR ``(H, W, 3)``. Outlines are ``cv2.findContours`` (external) drawn
        with ``cv2.drawContours``, about 1/300 of the longer side thick (>= 1 px).
    """
    gray = np.asarray(image, np.uint8)
    canvas = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    thickness = max(1, int(round(max(gray.shape) / 300)))
    if predicted is not None and fill_alpha > 0:
        region = np.asarray(predicted) > 0
        tint = np.zeros_like(canvas)
        tint[region] = PREDICTION_BGR
        blended = cv2.addWeighted(canvas, 1.0 - fill_alpha, tint, fill_alpha, 0.0)
        canvas[region] = blended[region]
    if truth is not None:
        _outline(canvas, np.asarray(truth) > 0, TRUTH_BGR, thickness)
    if predicted is not None:
        _outline(canvas, np.asarray(predicted) > 0, PREDICTION_BGR, thickness)
    if caption:
        font = cv2.FONT_HERSHEY_SIMPLEX
        scale = max(0.3, max(gray.shape) / 900)
        weight = max(1, int(round(scale * 1.5)))
        (text_w, _), _ = cv2.getTextSize(caption, font, scale, weight)
        scale = max(0.2, min(scale, scale * 0.95 * gray.shape[1] / max(text_w, 1)))
        (text_w, text_h), baseline = cv2.getTextSize(caption, font, scale, weight)
        pad = max(2, text_h // 3)
        cv2.rectangle(canvas, (0, 0), (text_w + 2 * pad, text_h + baseline + 2 * pad),
                      (0, 0, 0), thickness=-1)
        cv2.putText(canvas, caption, (pad, pad + text_h), font, scale, (255, 255, 255),
                    weight, cv2.LINE_AA)
    return canvas


def write_case_overlays(predictions: OriginalResolutionPredictions, metrics: Mapping,
                        out_dir: str | Path, threshold: float = 0.5) -> dict[str, Path]:
    """``overlay_{best,median,worst}.png`` at original resolution; returns case -> path.

    Cases come from :func:`select_cases` on ``metrics["per_image"]``; each overlay is
    :func:`draw_overlay` of the re-read radiograph with the ground truth (green) and the
    thresholded prediction (red), captioned with the image id and its Dice.
    """
    from bone_tumor_tf.data.images import read_image

    dices = [item["dice"] for item in metrics["per_image"]]
    written = {}
    for case, index in select_cases(dices, predictions.is_normal).items():
        record = predictions.records[index]
        image = read_image(record.path)
        overlay = draw_overlay(image, predictions.probabilities[index] >= threshold,
                               predictions.masks[index],
                               caption=f"{case}: {record.image_id} Dice {dices[index]:.3f}")
        written[case] = write_png(Path(out_dir) / f"overlay_{case}.png", overlay)
    return written


def plot_segmentation_curves(history, out_path: str | Path) -> Path:
    """Loss and Dice per epoch, train (solid) and validation (dashed), as a PNG.

    Args:
        history: DataFrame with ``epoch`` (1-based) and any of ``loss``, ``val_loss``,
            ``dice``, ``val_dice``.
        out_path: PNG file to write.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, metric, title in zip(axes, ("loss", "dice"), ("Loss (BCE + Dice)", "Dice")):
        if metric in history:
            ax.plot(history["epoch"], history[metric], "-o", ms=3, label="train")
        if f"val_{metric}" in history:
            ax.plot(history["epoch"], history[f"val_{metric}"], "--s", ms=3, label="validation")
        ax.set_title(title)
        ax.set_xlabel("Epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    return out_path


# --------------------------------------------------------------------------- reports


def _fmt(value, digits: int = 3) -> str:
    from bone_tumor_tf.evaluation.report import format_number

    return format_number(value, digits)


def _table(header, rows, numeric: bool = True) -> list[str]:
    """Markdown table lines (first column left-aligned, others right-aligned if numeric)."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    align = "---:" if numeric else "---"
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join(["---"] + [align] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows] + [""]


def _relative_link(path: str | Path, base: Path) -> str:
    """``path`` relative to ``base`` (POSIX), in angle brackets when it holds a space."""
    link = Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()
    return f"<{link}>" if " " in link else link


def _metric_rows(metrics: Mapping) -> list[list[str]]:
    base = metrics["empty_prediction"]
    no_normals = metrics.get("n_normal", 0) == 0
    fp_note = " (no normal test images)" if no_normals else ""
    rows = [
        ["Dice, mean per image", metrics["dice_mean"], base["dice_mean"]],
        ["Dice, median per image", metrics["dice_median"], base["dice_median"]],
        ["IoU, mean per image", metrics["iou_mean"], base["iou_mean"]],
        ["IoU, median per image", metrics["iou_median"], base["iou_median"]],
        ["Dice, mean over tumor images", metrics.get("tumor_dice_mean"),
         base.get("tumor_dice_mean")],
        ["Dice, pooled over all pixels", metrics["dice_pooled"], base["dice_pooled"]],
        ["IoU, pooled over all pixels", metrics["iou_pooled"], base["iou_pooled"]],
        ["Pixel ROC AUC", metrics["pixel_auc"], base["pixel_auc"]],
        [f"Normal images with a false positive{fp_note}", metrics["normal_fp_image_rate"],
         base["normal_fp_image_rate"]],
    ]
    return [[name, _fmt(model), _fmt(empty)] for name, model, empty in rows]


def write_segmentation_report(run_dir: str | Path, metrics: Mapping, *, title: str,
                              data_source: str, split_kind: str, model_info: Mapping,
                              split_dice: Mapping | None = None,
                              figures: Mapping[str, str | Path] | None = None,
                              synthetic: bool = False) -> Path:
    """Write ``<run_dir>/report.md`` (atomically) for one segmentation run; returns its path.

    Args:
        run_dir: the run folder (figure links are made relative to it).
        metrics: the dict of :func:`evaluate_segmentation` (test split).
        title: heading.
        data_source: where the images come from.
        split_kind: how train/val/test were formed.
        model_info: key/value rows of the "Model" table.
        split_dice: optional mean per-image Dice per split at the model's input resolution
            (``{"train": .., "val": .., "test": ..}``), to spot over-fitting.
        figures: caption -> PNG path, embedded in order.
        synthetic: add the synthetic-data warning.

    Sections: setting, warning, Model, Table 1 (test metrics at original resolution, model
    vs empty prediction), Table 2 (Dice by split at input resolution), figures.
    """
    from bone_tumor_tf.evaluation.report import SYNTHETIC_WARNING

    run_dir = Path(run_dir)
    lines = [
        f"# {title}", "",
        f"- **Data source:** {data_source}",
        f"- **Split kind:** {split_kind}",
        "- **Input:** whole radiograph, aspect-preserving scale and zero pad to a square "
        "(crop mode none)",
        f"- **Test images:** {metrics['n_images']} ({metrics['n_tumor']} tumor, "
        f"{metrics['n_normal']} normal)",
        f"- **Evaluation:** at each image's original resolution; probability maps mapped back "
        f"through the pad/resize geometry (bilinear) and thresholded at "
        f"{metrics['threshold']:g}; ground truth = LabelMe polygons rasterised at the original "
        "resolution (empty for normal images)",
        "",
    ]
    if synthetic:
        lines += [SYNTHETIC_WARNING, ""]
    lines += ["## Model", ""]
    lines += _table(["Setting", "Value"], [[k, v] for k, v in model_info.items()], numeric=False)
    lines += ["## Table 1. Test-set segmentation at the original resolution", "",
              "Per-image scores count a normal image as 1 when nothing is predicted on it and 0 "
              "otherwise. *Empty prediction* is the trivial model that never marks a pixel: "
              "the model is only useful where it beats that column.", ""]
    lines += _table(["Metric", "Model", "Empty prediction"], _metric_rows(metrics))
    gain = metrics.get("dice_gain_over_empty")
    lines += [f"Mean Dice gain over the empty prediction: **{_fmt(gain)}**.", ""]
    if split_dice:
        lines += ["## Table 2. Mean per-image Dice by split (model input resolution)", ""]
        lines += _table(["Split", "Dice"], [[name, _fmt(value)] for name, value in
                                            split_dice.items()])
    if figures:
        lines += ["## Figures", ""]
        for caption, path in figures.items():
            lines += [f"### {caption}", "", f"![{caption}]({_relative_link(path, run_dir)})", ""]
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
                     *(_fmt(metrics.get(key)) for key in (
                         "dice_mean", "dice_median", "iou_mean", "iou_median", "dice_pooled",
                         "iou_pooled", "pixel_auc", "normal_fp_image_rate"))])
    base = runs[0][1]["empty_prediction"]
    rows.append(["(empty prediction)", "-", "-", "-", "-",
                 *(_fmt(base.get(key)) for key in (
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
        from bone_tumor_tf.evaluation.report import SYNTHETIC_WARNING

        lines += [SYNTHETIC_WARNING, ""]
    lines += _table(header, rows)
    lines += ["Runs: " + ", ".join(str(d) for d, _ in runs), ""]
    return atomic_write_text(out, "\n".join(lines).rstrip("\n") + "\n")


# --------------------------------------------------------------------------- new images


def _unique_stems(files: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for path in files:
        stem = path.stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def predict_masks(model, files: Sequence[str | Path], out_dir: str | Path,
                  image_size: int | None = None, threshold: float = 0.5,
                  batch_size: int = 8) -> list[dict]:
    """Tumor masks of new radiographs, at each input's original resolution.

    Each image is read as gray, scaled (aspect preserved) and zero-padded to the model's
    ``S x S`` input (crop mode ``none``, :func:`bone_tumor_tf.inference.load_input`); the
    probability map is mapped back to the original size (bilinear) and thresholded
    (``prob >= threshold``). Writes, per input, ``<stem>_mask.png`` (uint8, 0 background /
    255 tumor, the input's height x width) and ``<stem>_overlay.png`` (the radiograph with
    the predicted region outlined and tinted red). A stem seen before gets ``_2``, ``_3``...

    Args:
        model: a segmentation ``keras.Model`` (input ``(N, S, S, 1)`` in [0, 255], output
            ``(N, S, S, 1)`` probabilities) or the path of its ``.keras`` file (loaded with
            ``safe_mode=True``).
        files: image files and/or folders (searched recursively for images).
        out_dir: output folder (created).
        image_size: S; default the model's input size (must agree with it when static).
        threshold: probability threshold in (0, 1).
        batch_size: images per forward pass (and per decoding chunk).

    Returns:
        One dict per input, in input order: ``file``, ``mask``, ``overlay`` (paths as
        str), ``height``, ``width``, ``tumor_pixels``, ``tumor_fraction`` (of the image's
        pixels), ``max_probability``, ``threshold``.

    Raises:
        ModelFileError: not a segmentation model, or ``image_size`` contradicts it.
        DataError: a missing or unreadable input (one line naming the file).
    """
    from bone_tumor_tf.inference import expand_inputs, load_input, load_model

    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if not is_segmentation_model(model):
        raise ModelFileError(f"model {model.name!r}: not a segmentation model (output "
                             f"{tuple(model.outputs[0].shape)}, expected (N, S, S, 1))")
    if not 0.0 < float(threshold) < 1.0:
        raise BoneTumorError(f"threshold must be in (0, 1), got {threshold!r}")
    static = model.inputs[0].shape[1]
    if image_size is None:
        if static is None:
            raise ModelFileError(f"model {model.name!r} has no fixed input size: pass image_size")
        image_size = int(static)
    elif static is not None and int(image_size) != int(static):
        raise ModelFileError(f"model {model.name!r} expects {static} px inputs, "
                             f"got image_size={image_size}")
    paths = expand_inputs(files)
    stems = _unique_stems(paths)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    batch_size = max(1, int(batch_size))
    for start in range(0, len(paths), batch_size):
        prepared = [load_input(p, int(image_size)) for p in paths[start:start + batch_size]]
        probs = predict_probability_maps(model, np.stack([p.input for p in prepared]),
                                         batch_size)
        for offset, (item, prob) in enumerate(zip(prepared, probs)):
            stem = stems[start + offset]
            prob_original = np.clip(map_to_original(prob, item.geometry), 0.0, 1.0)
            mask = prob_original >= threshold
            mask_path = write_png(out_dir / f"{stem}_mask.png", mask.astype(np.uint8) * 255)
            overlay_path = write_png(out_dir / f"{stem}_overlay.png",
                                     draw_overlay(item.original, predicted=mask,
                                                  fill_alpha=0.25))
            tumor_pixels = int(np.count_nonzero(mask))
            results.append({
                "file": str(item.path), "mask": str(mask_path), "overlay": str(overlay_path),
                "height": int(mask.shape[0]), "width": int(mask.shape[1]),
                "tumor_pixels": tumor_pixels, "tumor_fraction": tumor_pixels / mask.size,
                "max_probability": float(prob_original.max()), "threshold": float(threshold),
            })
    return results


# --------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    """``python -m bone_tumor_tf.evaluation.segmentation RUN1 RUN2 [...] --out FILE``."""
    parser = argparse.ArgumentParser(
        prog="python -m bone_tumor_tf.evaluation.segmentation",
        description="Compare finished segmentation run folders (e.g. U-Net vs Attention "
                    "U-Net) in one Markdown table read from their metrics.json.")
    parser.add_argument("runs", nargs="+", help="run folders written by train_segmentation.py")
    parser.add_argument("--compare", action="append", default=[], metavar="RUN",
                        help="another run folder to compare with (repeatable)")
    parser.add_argument("--out", default=None,
                        help="Markdown file to write (default: comparison.md in the first run)")
    args = parser.parse_args(argv)
    run_dirs = list(args.runs) + list(args.compare)
    out = Path(args.out) if args.out else Path(run_dirs[0]) / "comparison.md"
    try:
        path = write_comparison_report(run_dirs, out)
    except BoneTumorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path.read_text(encoding="utf-8"))
    print(f"comparison: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
