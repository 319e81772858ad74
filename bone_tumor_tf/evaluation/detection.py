"""Detection metrics as the BTXRD paper reports its YOLOv8 baselines: P, R and AP at IoU 0.5.

Boxes are ``(x_min, y_min, x_max, y_max)`` in pixels of the original radiograph, with the
inclusive corners LabelMe writes (a box from x=10 to x=19 is 10 pixels wide), so the area
of a box is ``(x_max - x_min + 1) * (y_max - y_min + 1)``.

Matching (per class, per image, as in PASCAL VOC and COCO): predictions are taken in
descending score order; each is matched to the unmatched ground-truth box of the same class
with the highest IoU, and counts as a true positive when that IoU is at least
``iou_threshold``; otherwise (no unmatched box reaches the threshold) it is a false positive.
Every ground-truth box can be matched once.

Average precision is the **all-point interpolated** AP (PASCAL VOC 2010 and later; COCO uses
the same envelope sampled at 101 recall points): with precision ``p(r)`` and recall ``r``
after each prediction in score order, the precision envelope
``p_interp(r) = max_{r' >= r} p(r')`` is integrated over recall,
``AP = sum_i (r_i - r_{i-1}) * p_interp(r_i)``, with ``r_0 = 0``.

Empty cases, chosen explicitly: a class with ground-truth boxes and no predictions has
AP 0, precision 0 (by convention) and recall 0; a class without any ground-truth box has
AP ``None`` (undefined, left out of mAP) and recall ``None``. ``precision`` and
``recall`` are those of all the predictions given (the caller's score threshold is the
operating point).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class Detection:
    """One predicted box of an image: ``box`` in original pixels, ``label``, ``score``."""

    image_id: str
    label: str
    box: tuple[float, float, float, float]
    score: float


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two inclusive-corner boxes ``(x0, y0, x1, y1)``."""
    ix = min(a[2], b[2]) - max(a[0], b[0]) + 1
    iy = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return float(inter / (area_a + area_b - inter))


def match_detections(detections: Sequence[Detection],
                     ground_truth: Mapping[str, Sequence[tuple]],
                     iou_threshold: float = DEFAULT_IOU_THRESHOLD) -> np.ndarray:
    """True-positive flags of ``detections`` (one class) sorted by descending score.

    Args:
        detections: predictions of one class, any order.
        ground_truth: image id -> ground-truth boxes of that class.

    Returns:
        bool array aligned with ``sorted(detections, key=score, reverse=True)``
        (a stable sort, so ties keep their given order).
    """
    order = sorted(range(len(detections)), key=lambda i: -detections[i].score)
    used = {image: np.zeros(len(boxes), bool) for image, boxes in ground_truth.items()}
    flags = np.zeros(len(order), bool)
    for rank, index in enumerate(order):
        det = detections[index]
        boxes = ground_truth.get(det.image_id, ())
        best, best_iou = -1, iou_threshold
        for j, box in enumerate(boxes):
            if used[det.image_id][j]:
                continue
            iou = box_iou(det.box, box)
            if iou >= best_iou:
                best, best_iou = j, iou
        if best >= 0:
            used[det.image_id][best] = True
            flags[rank] = True
    return flags


def all_point_average_precision(true_positive: np.ndarray, n_ground_truth: int) -> float:
    """All-point interpolated AP from score-ordered TP flags (see the module docstring)."""
    if n_ground_truth <= 0:
        raise ValueError("AP is undefined without ground-truth boxes")
    tp = np.cumsum(np.asarray(true_positive, bool))
    if tp.size == 0:
        return 0.0
    ranks = np.arange(1, tp.size + 1)
    precision = tp / ranks
    recall = tp / n_ground_truth
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    previous = np.concatenate([[0.0], recall[:-1]])
    return float(np.sum((recall - previous) * envelope))


def detection_metrics(detections: Sequence[Detection],
                      ground_truth: Mapping[str, Sequence[tuple[str, tuple]]],
                      classes: Sequence[str],
                      iou_threshold: float = DEFAULT_IOU_THRESHOLD) -> dict:
    """Per-class precision, recall, AP at ``iou_threshold`` and their mean (mAP).

    Args:
        detections: every predicted box of every evaluated image.
        ground_truth: image id -> list of ``(label, box)`` for EVERY evaluated image
            (an image without tumors maps to an empty list, so that its predictions count
            as false positives).
        classes: the classes to report, e.g. ``("benign", "malignant")``.

    Returns:
        ``{"per_class": {cls: {"precision", "recall", "ap", "n_ground_truth",
        "n_predictions", "true_positives"}}, "map": mean AP over classes with ground
        truth, "iou_threshold": ...}``.
    """
    unknown = {d.image_id for d in detections} - set(ground_truth)
    if unknown:
        raise ValueError(f"detections for images without ground truth: {sorted(unknown)[:3]}")
    per_class = {}
    for cls in classes:
        dets = [d for d in detections if d.label == cls]
        boxes = {image: [box for label, box in items if label == cls]
                 for image, items in ground_truth.items()}
        n_gt = sum(len(b) for b in boxes.values())
        flags = match_detections(dets, boxes, iou_threshold)
        n_tp = int(flags.sum())
        per_class[cls] = {
            "n_ground_truth": n_gt,
            "n_predictions": len(dets),
            "true_positives": n_tp,
            "precision": n_tp / len(dets) if dets else 0.0,
            "recall": n_tp / n_gt if n_gt else None,
            "ap": all_point_average_precision(flags, n_gt) if n_gt else None,
        }
    aps = [m["ap"] for m in per_class.values() if m["ap"] is not None]
    return {"per_class": per_class, "map": float(np.mean(aps)) if aps else None,
            "iou_threshold": iou_threshold}
