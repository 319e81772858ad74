"""Tumor regions from a segmentation probability map: connected components -> scored boxes.

The U-Net's probability map, already mapped back onto the original radiograph
(``(H, W)`` float in [0, 1]), is thresholded at the model's own mask threshold. Each
8-connected component (so regions touching at an edge or a corner are one region) becomes a
:class:`Region` with its inclusive-corner box in original pixels, its area in original
pixels and a score, the mean probability inside the component. Components smaller than
``min_area`` original pixels are dropped as specks. Boxes that overlap strongly are merged
(several tumors per image are real, e.g. multiple osteochondromas, so only overlap merges):
two boxes merge when their intersection covers at least ``merge_overlap`` of the smaller
box; the merged region's box is the union, its area the sum and its score the
area-weighted mean. Regions are returned in descending score order.

Box extent (``box_threshold``): the mask threshold that keeps false regions off normal
radiographs is high (the U-Net's own, e.g. 0.9), and its components are the confident core
of a tumor: on real BTXRD validation radiographs the radiologist's rectangle was about 1.35x
the core's box per side, so few boxes reached IoU 0.5. With ``box_threshold`` below the mask
threshold, each region is still found, filtered by area and scored on its core, but its box
is the bounding box of the component of ``p >= box_threshold`` that holds the core
(hysteresis, as in Canny's edge linking), e.g. the tumor's extent at the segmenter's
ordinary 0.5. Two cores inside one extent get the same box and merge. The box is also what
the crop classifier reads, so the extent changes the classification too (see
``DEFAULT_BOX_THRESHOLD``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_MIN_AREA = 64
DEFAULT_MERGE_OVERLAP = 0.5
#: Off by default: on real BTXRD the extent at 0.5 raised mAP50 (validation 0.088 -> 0.166,
#: test 0.029 -> 0.049) but is wider than the rectangle on benign tumors, and the crop
#: classifier reads those wider crops as malignant (docs/real-data-decisions.md, fifteenth
#: session): test balanced accuracy -0.023 [-0.034, -0.013].
DEFAULT_BOX_THRESHOLD: float | None = None


@dataclass(frozen=True)
class Region:
    """One proposed tumor: ``box = (x_min, y_min, x_max, y_max)`` inclusive, original pixels."""

    box: tuple[int, int, int, int]
    score: float
    area: int

    def to_dict(self) -> dict:
        return {"box": [int(v) for v in self.box], "score": float(self.score),
                "area": int(self.area)}


def _overlap_of_smaller(a, b) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0]) + 1
    iy = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if ix <= 0 or iy <= 0:
        return 0.0
    smaller = min((a[2] - a[0] + 1) * (a[3] - a[1] + 1), (b[2] - b[0] + 1) * (b[3] - b[1] + 1))
    return ix * iy / smaller


def merge_overlapping(regions: list[Region], merge_overlap: float = DEFAULT_MERGE_OVERLAP
                      ) -> list[Region]:
    """Merge regions whose boxes overlap by ``merge_overlap`` of the smaller box, until none do."""
    regions = list(regions)
    merged = True
    while merged:
        merged = False
        for i in range(len(regions)):
            for j in range(i + 1, len(regions)):
                a, b = regions[i], regions[j]
                if _overlap_of_smaller(a.box, b.box) >= merge_overlap:
                    area = a.area + b.area
                    box = (min(a.box[0], b.box[0]), min(a.box[1], b.box[1]),
                           max(a.box[2], b.box[2]), max(a.box[3], b.box[3]))
                    score = (a.score * a.area + b.score * b.area) / area
                    regions[i] = Region(box, score, area)
                    del regions[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(regions, key=lambda r: -r.score)


def _component_box(stats, index: int) -> tuple[int, int, int, int]:
    x, y = int(stats[index, cv2.CC_STAT_LEFT]), int(stats[index, cv2.CC_STAT_TOP])
    w, h = int(stats[index, cv2.CC_STAT_WIDTH]), int(stats[index, cv2.CC_STAT_HEIGHT])
    return x, y, x + w - 1, y + h - 1


def check_box_threshold(box_threshold: float | None) -> None:
    """Refuse a box level outside (0, 1]; None (no extent boxes) passes."""
    if box_threshold is not None and not 0.0 < box_threshold <= 1.0:
        raise ValueError(f"box_threshold={box_threshold}: must be in (0, 1]")


def effective_box_threshold(box_threshold: float | None, mask_threshold: float
                            ) -> float | None:
    """The box level as it acts: None when absent or at/above the mask threshold."""
    if box_threshold is None or box_threshold >= mask_threshold:
        return None
    return float(box_threshold)


def regions_from_probabilities(probabilities: np.ndarray, threshold: float = 0.5,
                               min_area: int = DEFAULT_MIN_AREA,
                               merge_overlap: float = DEFAULT_MERGE_OVERLAP,
                               box_threshold: float | None = None) -> list[Region]:
    """Scored tumor boxes of a probability map (see the module docstring).

    Args:
        probabilities: ``(H, W)`` tumor probabilities in [0, 1] on the original image.
        threshold: a pixel is tumor when its probability is ``>= threshold``.
        min_area: components with fewer pixels are dropped.
        merge_overlap: see :func:`merge_overlapping`.
        box_threshold: each region's box is the bounding box of the component of
            ``probabilities >= box_threshold`` that holds it (its area and score stay
            those of the component at ``threshold``). None, or a value ``>= threshold``:
            the box is the component's own.
    """
    probabilities = np.asarray(probabilities, np.float32)
    if probabilities.ndim != 2:
        raise ValueError(f"expected an (H, W) probability map, got shape {probabilities.shape}")
    check_box_threshold(box_threshold)
    mask = (probabilities >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    extent = None
    box_threshold = effective_box_threshold(box_threshold, threshold)
    if box_threshold is not None:
        # Every core pixel is >= box_threshold, so a core lies inside one extent component.
        _, extent_labels, extent_stats, _ = cv2.connectedComponentsWithStats(
            (probabilities >= box_threshold).astype(np.uint8), connectivity=8)
        extent = (extent_labels, extent_stats)
    regions = []
    for index in range(1, count):
        area = int(stats[index, cv2.CC_STAT_AREA])
        if area < min_area:
            continue
        inside = labels == index
        score = float(probabilities[inside].mean())
        if extent is None:
            box = _component_box(stats, index)
        else:
            extent_labels, extent_stats = extent
            box = _component_box(extent_stats, int(extent_labels[inside][0]))
        regions.append(Region(box, score, area))
    return merge_overlapping(regions, merge_overlap)
