"""Tumor segmentation metrics (NumPy), at each image's original resolution.

Definitions, for a predicted binary mask P and a ground-truth mask G of one image:

- Dice (Sorensen, 1948; Dice, 1945; the F1 of the pixels) = 2|P n G| / (|P| + |G|)
- IoU (Jaccard, 1912) = |P n G| / |P u G|

both 1.0 when P and G are both empty (a correctly empty prediction on a normal image) and
0.0 when exactly one is empty. Per image, ``Dice = 2 IoU / (1 + IoU)``, so Dice >= IoU.
Probabilities are thresholded as ``prob >= threshold`` everywhere (here, in the Keras
metric :class:`bone_tumor_tf.models.metrics.DiceCoefficient` and in :func:`resize_mask`).

:func:`segmentation_report` gives per-image Dice / IoU with mean and median, pooled Dice /
IoU, pixel ROC AUC and the normal-image false-positive rate; :func:`evaluate_segmentation`
adds the same metrics of an all-empty prediction, the baseline every model must beat (on a
test set of tumor images its Dice is 0; every normal image adds a Dice of 1 to it), and
:func:`dice_by_tumor_size` (small tumors are where a U-Net at a low input size fails) and
:func:`segmentation_intervals` (bootstrap intervals over patients). The
probability maps and masks it scores come from
:func:`bone_tumor_tf.inference.segmentation.predictions_at_original_resolution`
(maps brought back through each image's pad/resize geometry, LabelMe polygons rasterised
at the original resolution).

Runs are compared by :func:`bone_tumor_tf.evaluation.reports.segmentation.write_comparison_report`
(command: ``bone-tumor evaluate --compare RUN1 RUN2 --out comparison.md``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from bone_tumor_tf.evaluation.stats import bootstrap_ci, row_groups

__all__ = [
    "dice_by_tumor_size",
    "dice_score",
    "empty_prediction_baseline",
    "evaluate_segmentation",
    "iou_score",
    "resize_mask",
    "segmentation_intervals",
    "segmentation_report",
]

# --------------------------------------------------------------------------- metrics


def _as_binary(mask, what):
    """A bool array from a bool or {0, 1} mask; ValueError for anything else."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask
    if not np.issubdtype(mask.dtype, np.number):
        raise ValueError(f"{what}: expected a numeric or bool mask, got dtype {mask.dtype}")
    binary = mask != 0
    if not np.array_equal(mask[binary], np.ones(np.count_nonzero(binary), dtype=mask.dtype)):
        raise ValueError(
            f"{what}: mask values must be 0/1 or bool (threshold probabilities first, "
            f"convert 0/255 masks with mask > 0); got values in "
            f"[{mask.min()}, {mask.max()}]"
        )
    return binary


def _counts(pred, true):
    """(|P n G|, |P|, |G|) of two binary masks of the same shape."""
    pred = _as_binary(pred, "pred")
    true = _as_binary(true, "true")
    if pred.shape != true.shape:
        raise ValueError(f"pred shape {pred.shape} != true shape {true.shape}")
    inter = int(np.count_nonzero(pred & true))
    return inter, int(np.count_nonzero(pred)), int(np.count_nonzero(true))


def _dice(inter, n_pred, n_true):
    denom = n_pred + n_true
    return 1.0 if denom == 0 else 2.0 * inter / denom


def _iou(inter, n_pred, n_true):
    union = n_pred + n_true - inter
    return 1.0 if union == 0 else inter / union


def dice_score(pred, true):
    """Dice = 2|P n G| / (|P| + |G|) of ONE image; 1.0 if both empty, 0.0 if one is.

    Args:
        pred: predicted binary mask (bool or values in {0, 1}), any shape.
        true: ground-truth binary mask, same shape.

    Returns:
        float in [0, 1].

    Raises:
        ValueError: different shapes, or values other than 0/1 (e.g. probabilities).
    """
    return _dice(*_counts(pred, true))


def iou_score(pred, true):
    """IoU = |P n G| / |P u G| of ONE image; 1.0 if both empty, 0.0 if one is.

    Same arguments and errors as :func:`dice_score`; returns a float in [0, 1].
    """
    return _iou(*_counts(pred, true))


def _images(batch, what):
    """Per-image 2D arrays from ``(N, H, W)``, ``(N, H, W, 1)`` or a sequence of them."""
    images = []
    for k, image in enumerate(batch):
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim != 2:
            raise ValueError(
                f"{what}[{k}]: expected an (H, W) or (H, W, 1) image, got shape {image.shape}"
            )
        images.append(image)
    return images


def segmentation_report(
    probs,
    masks,
    is_normal=None,
    threshold=0.5,
    *,
    max_auc_pixels=2_000_000,
    fp_min_pixels=1,
    seed=0,
):
    """Evaluate predicted tumor probabilities against ground-truth masks.

    Args:
        probs: probabilities in [0, 1]: array ``(N, H, W)`` / ``(N, H, W, 1)``, or a
            sequence of N ``(H_k, W_k[, 1])`` arrays (e.g. at each image's original size).
        masks: ground-truth binary masks (bool or {0, 1}), same layout and per-image shapes.
        is_normal: optional N booleans, True for tumor-free radiographs. If None, the
            normal images are those whose ground-truth mask is empty.
        threshold: ``pred = probs >= threshold``.
        max_auc_pixels: the pixel ROC AUC uses at most about this many pixels: above it,
            each image contributes ``ceil(n_k * max_auc_pixels / total)`` pixels drawn
            uniformly without replacement by ``numpy.random.default_rng(seed)``
            (deterministic for a given input and seed).
        fp_min_pixels: a normal image counts as a false-positive image when at least this
            many pixels are predicted as tumor (1: any pixel).
        seed: seed of the AUC subsample.

    Returns:
        dict (JSON-serialisable: floats, ints, lists, None):

        - ``n_images``, ``n_normal``, ``n_tumor``, ``threshold``, ``normal_source``
          (``"is_normal"`` or ``"empty_mask"``);
        - ``dice_mean``, ``dice_median``, ``iou_mean``, ``iou_median``: over the
          per-image scores of ALL images (normal images score 1.0 if nothing is
          predicted on them, else 0.0);
        - ``tumor_dice_mean``, ``tumor_dice_median``, ``tumor_iou_mean``,
          ``tumor_iou_median``: the same over the non-normal images only (None if none);
        - ``dice_pooled`` = 2 sum_k |P_k n G_k| / sum_k (|P_k| + |G_k|) and
          ``iou_pooled`` = sum_k |P_k n G_k| / sum_k |P_k u G_k| (dataset level, every
          pixel of every image weighs the same; 1.0 if the denominator is 0);
        - ``pixel_auc``: ROC AUC of the pixel probabilities vs. the pixel labels
          (``sklearn.metrics.roc_auc_score``), None if the pixels used hold one class only;
          ``auc_pixels``: how many pixels it used;
        - ``normal_fp_image_rate``: fraction of normal images with >= ``fp_min_pixels``
          predicted tumor pixels (image-level false-positive rate);
          ``normal_fp_pixel_fraction``: mean over normal images of (predicted tumor
          pixels / image pixels) (how much of a normal image is wrongly marked); both
          None without normal images;
        - ``dice_per_image``, ``iou_per_image``: lists of N floats, input order.

    Raises:
        ValueError: mismatched lengths or shapes, probabilities outside [0, 1], non-binary
            masks, empty input.
    """
    prob_images = _images(probs, "probs")
    mask_images = _images(masks, "masks")
    n = len(prob_images)
    if n == 0:
        raise ValueError("segmentation_report: no images")
    if len(mask_images) != n:
        raise ValueError(f"segmentation_report: {n} probability maps but {len(mask_images)} masks")

    inters, n_preds, n_trues, sizes = [], [], [], []
    dices, ious = [], []
    binary_masks = []
    for k, (prob, mask) in enumerate(zip(prob_images, mask_images)):
        if prob.shape != mask.shape:
            raise ValueError(f"image {k}: probs shape {prob.shape} != mask shape {mask.shape}")
        prob = prob.astype(np.float64, copy=False)
        if not np.all(np.isfinite(prob)) or prob.min() < 0.0 or prob.max() > 1.0:
            raise ValueError(
                f"image {k}: probabilities must be finite and in [0, 1], got range "
                f"[{np.nanmin(prob)}, {np.nanmax(prob)}]"
            )
        true = _as_binary(mask, f"masks[{k}]")
        binary_masks.append(true)
        inter, n_pred, n_true = _counts(prob >= threshold, true)
        inters.append(inter)
        n_preds.append(n_pred)
        n_trues.append(n_true)
        sizes.append(true.size)
        dices.append(_dice(inter, n_pred, n_true))
        ious.append(_iou(inter, n_pred, n_true))

    if is_normal is None:
        normal = np.array([t == 0 for t in n_trues], dtype=bool)
        normal_source = "empty_mask"
    else:
        normal = np.asarray(is_normal).astype(bool).reshape(-1)
        if normal.size != n:
            raise ValueError(f"segmentation_report: is_normal has {normal.size} entries, expected {n}")
        normal_source = "is_normal"

    dices_a, ious_a = np.array(dices), np.array(ious)
    sum_inter, sum_pred, sum_true = sum(inters), sum(n_preds), sum(n_trues)
    sum_union = sum_pred + sum_true - sum_inter

    def _stat(fn, values):
        return float(fn(values)) if values.size else None

    n_pred_a, sizes_a = np.array(n_preds), np.array(sizes)
    auc, auc_pixels = _pixel_auc(prob_images, binary_masks, max_auc_pixels, seed)

    return {
        "n_images": n,
        "n_normal": int(normal.sum()),
        "n_tumor": int(n - normal.sum()),
        "threshold": float(threshold),
        "normal_source": normal_source,
        "dice_mean": float(dices_a.mean()),
        "dice_median": float(np.median(dices_a)),
        "iou_mean": float(ious_a.mean()),
        "iou_median": float(np.median(ious_a)),
        "tumor_dice_mean": _stat(np.mean, dices_a[~normal]),
        "tumor_dice_median": _stat(np.median, dices_a[~normal]),
        "tumor_iou_mean": _stat(np.mean, ious_a[~normal]),
        "tumor_iou_median": _stat(np.median, ious_a[~normal]),
        "dice_pooled": _dice(sum_inter, sum_pred, sum_true),
        "iou_pooled": 1.0 if sum_union == 0 else sum_inter / sum_union,
        "pixel_auc": auc,
        "auc_pixels": auc_pixels,
        "normal_fp_image_rate": _stat(np.mean, n_pred_a[normal] >= fp_min_pixels),
        "normal_fp_pixel_fraction": _stat(np.mean, n_pred_a[normal] / sizes_a[normal]),
        "dice_per_image": [float(d) for d in dices],
        "iou_per_image": [float(v) for v in ious],
    }


def _pixel_auc(prob_images, binary_masks, max_pixels, seed):
    """Pixel ROC AUC on all pixels or a deterministic per-image subsample; (auc|None, n)."""
    total = sum(m.size for m in binary_masks)
    rng = np.random.default_rng(seed)
    scores, labels = [], []
    for prob, true in zip(prob_images, binary_masks):
        prob, true = prob.reshape(-1), true.reshape(-1)
        if total > max_pixels:
            k = min(true.size, math.ceil(true.size * max_pixels / total))
            idx = rng.choice(true.size, size=k, replace=False)
            prob, true = prob[idx], true[idx]
        scores.append(prob)
        labels.append(true)
    scores, labels = np.concatenate(scores), np.concatenate(labels)
    if labels.all() or not labels.any():
        return None, int(labels.size)
    return float(roc_auc_score(labels, scores)), int(labels.size)


def resize_mask(mask, size, threshold=0.5):
    """Resize a mask or probability map to ``size = (h, w)`` and return a binary mask.

    Resamples in float (OpenCV ``INTER_AREA`` when shrinking both axes, which averages
    the covered pixels, else ``INTER_LINEAR``) and thresholds (``>= threshold``), so the
    result is binary with smooth boundaries; for a probability map this is "resize the
    probabilities, then threshold". Used to bring predictions back to a radiograph's
    original resolution. Note the order: ``size`` is ``(height, width)`` (OpenCV's
    ``dsize`` is ``(width, height)``; this function does the swap).

    Args:
        mask: ``(H, W)`` or ``(H, W, 1)``, bool or values in [0, 1].
        size: ``(h, w)`` positive ints.
        threshold: binarisation threshold on the resampled values.

    Returns:
        uint8 array in {0, 1}, shape ``(h, w)`` or ``(h, w, 1)`` (as the input).
    """
    array = np.asarray(mask)
    keep_channel = array.ndim == 3 and array.shape[-1] == 1
    if keep_channel:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"resize_mask: expected an (H, W) or (H, W, 1) mask, got {np.shape(mask)}")
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"resize_mask: size must be positive (h, w), got {size!r}")
    array = array.astype(np.float32)
    if array.size and (not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1):
        raise ValueError(
            "resize_mask: values must be in [0, 1] (a mask in {0, 1} or probabilities); "
            f"got range [{np.nanmin(array)}, {np.nanmax(array)}]"
        )
    shrink = h < array.shape[0] and w < array.shape[1]
    resized = cv2.resize(
        array, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    out = (resized.reshape(h, w) >= threshold).astype(np.uint8)
    return out[..., None] if keep_channel else out


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


def evaluate_segmentation(predictions, threshold: float = 0.5, seed: int = 0,
                          n_bootstrap: int = 1000) -> dict:
    """Test-set metrics at the original resolution, with the empty-prediction baseline.

    Args:
        predictions: an
            :class:`~bone_tumor_tf.inference.segmentation.OriginalResolutionPredictions`
            (``records``, ``probabilities``, ``masks``, ``is_normal``).
        threshold: ``prob >= threshold`` is tumor.
        seed: seed of the pixel-AUC subsample and of the bootstrap.
        n_bootstrap: replicates of :func:`segmentation_intervals`.

    Returns:
        The JSON-ready dict of :func:`segmentation_report` (keys
        ``dice_mean``, ``dice_median``, ``iou_mean``, ``iou_median``, ``tumor_*``,
        ``dice_pooled``, ``iou_pooled``, ``pixel_auc``, ``normal_fp_image_rate``,
        ``normal_fp_pixel_fraction``, counts; the per-image lists are moved into
        ``per_image``), plus:

        - ``resolution``: ``"original"``;
        - ``empty_prediction``: :func:`empty_prediction_baseline` of the same images;
        - ``dice_gain_over_empty``: ``dice_mean - empty_prediction.dice_mean``;
        - ``dice_by_tumor_size``: :func:`dice_by_tumor_size` of the per-image rows;
        - ``bootstrap``: :func:`segmentation_intervals` of the per-image rows;
        - ``per_image``: one dict per image (``image_id``, ``label``, ``group`` (patient),
          ``height``,
          ``width``, ``dice``, ``iou``, ``true_pixels``, ``predicted_pixels``).

    Raises:
        ValueError: no images.
    """
    report = segmentation_report(predictions.probabilities, predictions.masks,
                                 is_normal=predictions.is_normal, threshold=threshold, seed=seed)
    dices, ious = report.pop("dice_per_image"), report.pop("iou_per_image")
    baseline = empty_prediction_baseline(predictions.masks, predictions.is_normal)
    per_image = []
    for k, record in enumerate(predictions.records):
        prob, mask = predictions.probabilities[k], predictions.masks[k]
        per_image.append({
            "image_id": record.image_id, "label": record.label, "group": record.group,
            "height": int(mask.shape[0]), "width": int(mask.shape[1]),
            "dice": dices[k], "iou": ious[k], "true_pixels": int(np.count_nonzero(mask)),
            "predicted_pixels": int(np.count_nonzero(prob >= threshold)),
        })
    return {"resolution": "original", **report, "empty_prediction": baseline,
            "dice_gain_over_empty": report["dice_mean"] - baseline["dice_mean"],
            "dice_by_tumor_size": dice_by_tumor_size(per_image),
            "bootstrap": segmentation_intervals(per_image, n_bootstrap, seed),
            "per_image": per_image}


def segmentation_intervals(per_image: Sequence[Mapping], n_bootstrap: int = 1000,
                           seed: int = 0, confidence: float = 0.95) -> dict:
    """Percentile bootstrap intervals of the per-image means, resampling patients.

    Args:
        per_image: rows with ``label`` (``"normal"`` or a tumor class), ``dice``,
            ``predicted_pixels`` and ``group`` (the patient; rows without it, as written
            before patients were recorded, resample images).

    Returns:
        ``{"resampled": "patients" | "images", "n_patients", "n_replicates", "confidence",
        "dice_mean", "tumor_dice_mean", "normal_fp_image_rate"}``; each interval is
        :func:`~bone_tumor_tf.evaluation.stats.bootstrap_ci`'s ``{"estimate", "low",
        "high", "n_used"}`` over all images, the tumor images, and the normal images (flag:
        any predicted pixel), or None when there are no such images.
    """
    rows = list(per_image)
    patients = row_groups(rows)

    def interval(chosen, values):
        if not chosen:
            return None
        groups = None if patients is None else [r["group"] for r in chosen]
        return bootstrap_ci(np.mean, np.asarray(values, np.float64), n_bootstrap=n_bootstrap,
                            seed=seed, confidence=confidence, groups=groups)

    tumor = [r for r in rows if r["label"] != "normal"]
    normal = [r for r in rows if r["label"] == "normal"]
    return {
        "resampled": "images" if patients is None else "patients",
        "n_patients": None if patients is None else len(set(patients)),
        "n_replicates": int(n_bootstrap), "confidence": float(confidence),
        "dice_mean": interval(rows, [r["dice"] for r in rows]),
        "tumor_dice_mean": interval(tumor, [r["dice"] for r in tumor]),
        "normal_fp_image_rate": interval(normal, [r["predicted_pixels"] > 0 for r in normal]),
    }


def dice_by_tumor_size(per_image: Sequence[Mapping], n_groups: int = 3) -> list[dict]:
    """Mean Dice of the tumor images in ``n_groups`` groups by tumor size.

    Tumor images are those with ``true_pixels > 0``; a tumor's size is its share of the
    image, ``true_pixels / (height * width)`` (so it does not depend on the file's
    resolution). They are sorted by size (stable) and cut into ``n_groups`` consecutive
    groups of equal count, the first ones one image larger when the count does not divide
    (``numpy.array_split``). Normal images are left out.

    Args:
        per_image: the ``per_image`` rows of :func:`evaluate_segmentation` (``dice``,
            ``true_pixels``, ``height``, ``width``).
        n_groups: number of groups (3: thirds, small / medium / large).

    Returns:
        One dict per non-empty group, smallest tumors first: ``n``, ``area_min`` and
        ``area_max`` (size range, fractions of the image), ``dice_mean`` and ``missed``
        (share of the group's images with Dice 0, i.e. no overlap at all). ``[]`` without
        tumor images.
    """
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    tumors = [r for r in per_image if r["true_pixels"] > 0]
    if not tumors:
        return []
    area = np.array([r["true_pixels"] / (r["height"] * r["width"]) for r in tumors], float)
    dice = np.array([r["dice"] for r in tumors], float)
    groups = []
    for index in np.array_split(np.argsort(area, kind="stable"), n_groups):
        if index.size:
            groups.append({"n": int(index.size), "area_min": float(area[index].min()),
                           "area_max": float(area[index].max()),
                           "dice_mean": float(dice[index].mean()),
                           "missed": float(np.mean(dice[index] == 0.0))})
    return groups


if __name__ == "__main__":  # the old spelling of ``bone-tumor evaluate --compare``
    from bone_tumor_tf.cli.evaluate import main

    argv = sys.argv[1:]  # RUN1 RUN2 ... [--out FILE], or --help
    raise SystemExit(main(["--compare", *argv] if argv[:1] and argv[0][:1] != "-" else argv))
