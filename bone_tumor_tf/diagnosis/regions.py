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
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_MIN_AREA = 64
DEFAULT_MERGE_OVERLAP = 0.5


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


def regions_from_probabilities(probabilities: np.ndarray, threshold: float = 0.5,
                               min_area: int = DEFAULT_MIN_AREA,
                               merge_overlap: float = DEFAULT_MERGE_OVERLAP) -> list[Region]:
    """Scored tumor boxes of a probability map (see the module docstring).

    Args:
        probabilities: ``(H, W)`` tumor probabilities in [0, 1] on the original image.
        threshold: a pixel is tumor when its probability is ``>= threshold``.
        min_area: components with fewer pixels are dropped.
        merge_overlap: see :func:`merge_overlapping`.
    """
    probabilities = np.asarray(probabilities, np.float32)
    if probabilities.ndim != 2:
        raise ValueError(f"expected an (H, W) probability map, got shape {probabilities.shape}")
    mask = (probabilities >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    regions = []
    for index in range(1, count):
        area = int(stats[index, cv2.CC_STAT_AREA])
        if area < min_area:
            continue
        x, y = int(stats[index, cv2.CC_STAT_LEFT]), int(stats[index, cv2.CC_STAT_TOP])
        w, h = int(stats[index, cv2.CC_STAT_WIDTH]), int(stats[index, cv2.CC_STAT_HEIGHT])
        score = float(probabilities[labels == index].mean())
        regions.append(Region((x, y, x + w - 1, y + h - 1), score, area))
    return merge_overlapping(regions, merge_overlap)
