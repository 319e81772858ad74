"""Does a heatmap point at the tumor? Localisation scores against ground-truth masks.

All functions take a ``heatmap`` (H, W) of non-negative floats (a CAM mapped back onto the
original radiograph, e.g. by :func:`bone_tumor_tf.data.preprocess.map_to_original`; zero
where the model saw nothing) and a ground-truth ``mask`` (H, W) of the same shape, nonzero
inside the tumor (e.g. :meth:`LabelMeAnnotation.mask`, uint8 {0, 1}).

* :func:`pointing_game_hit` - is the heatmap's maximum inside the tumor? (Zhang et al.,
  2018, "Top-down Neural Attention by Excitation Backprop", IJCV,
  https://arxiv.org/abs/1608.00507). Chance level: the fraction of the seen area that the
  mask covers (:func:`mask_fraction`), the hit rate of a uniformly random point.
* :func:`energy_inside` - share of the heatmap's total mass inside the tumor ("energy-based
  pointing game" of Score-CAM, Wang et al., 2020, https://arxiv.org/abs/1910.01279). A
  uniform heatmap scores the same chance level.
* :func:`top_fraction_iou` - IoU between the mask and the heatmap's hottest 15 % of pixels.
* :func:`summarize_localization` - means per method with percentile-bootstrap 95 %
  intervals (:func:`bone_tumor_tf.evaluation.stats.bootstrap_ci`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from bone_tumor_tf.evaluation.stats import bootstrap_ci, row_groups

__all__ = [
    "LOCALIZATION_METRICS",
    "energy_inside",
    "mask_fraction",
    "pointing_game_hit",
    "summarize_localization",
    "top_fraction_iou",
]

#: Per-image keys that :func:`summarize_localization` averages, in report order.
LOCALIZATION_METRICS = ("pointing_game", "energy_inside", "top_fraction_iou", "chance_level")


def _check(heatmap, mask) -> tuple[np.ndarray, np.ndarray]:
    heatmap = np.asarray(heatmap, np.float64)
    mask = np.asarray(mask) != 0
    if heatmap.ndim != 2 or heatmap.shape != mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and mask {mask.shape} must be 2-D arrays "
                         "of the same shape")
    if not np.isfinite(heatmap).all() or heatmap.min() < 0:
        raise ValueError("heatmap must hold finite, non-negative values")
    return heatmap, mask


def pointing_game_hit(heatmap, mask) -> bool:
    """True when the heatmap's maximum lies inside the mask.

    Ties: the FIRST maximum in row-major order (``numpy.argmax``: topmost row, then
    leftmost column) is the point; an all-zero heatmap therefore points at pixel (0, 0).
    No tolerance margin around the mask is used.

    Example: heatmap ``[[0, 1], [1, 0]]`` points at (0, 1); a mask of the right column
    ``[[0, 1], [0, 1]]`` is a hit, a mask of the bottom row is a miss.
    """
    heatmap, mask = _check(heatmap, mask)
    return bool(mask.reshape(-1)[int(np.argmax(heatmap))])


def energy_inside(heatmap, mask) -> float | None:
    """``sum(heatmap inside mask) / sum(heatmap)`` in [0, 1]; None for an all-zero heatmap."""
    heatmap, mask = _check(heatmap, mask)
    total = heatmap.sum()
    if total <= 0:
        return None
    return float(heatmap[mask].sum() / total)


def top_fraction_iou(heatmap, mask, fraction: float = 0.15) -> float | None:
    """IoU of the mask with the region of the heatmap's top ``fraction`` of pixels.

    The threshold is the value of the ``k``-th largest pixel, ``k = max(1,
    round(fraction * H * W))``; the region is every pixel ``>= threshold`` that is also
    ``> 0`` (zero heat is never "hot"). Ties at the threshold are all included, so on a
    plateau the region can exceed ``fraction``.

    Returns:
        IoU in [0, 1]; None for an all-zero heatmap (no region) or when both the region
        and the mask are empty.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction={fraction}: must be in (0, 1]")
    heatmap, mask = _check(heatmap, mask)
    if heatmap.max() <= 0:
        return None
    values = heatmap.reshape(-1)
    k = max(1, int(round(float(fraction) * values.size)))
    threshold = np.partition(values, values.size - k)[values.size - k]
    region = (heatmap >= threshold) & (heatmap > 0)
    union = np.logical_or(region, mask).sum()
    if union == 0:
        return None
    return float(np.logical_and(region, mask).sum() / union)


def mask_fraction(mask, region=None) -> float:
    """Fraction of ``region`` covered by ``mask``: the pointing game's chance level.

    Args:
        mask: (H, W) ground-truth mask.
        region: ``(x0, y0, x1, y1)`` half-open pixel box of the part of the image the model
            saw (a :class:`CropGeometry`'s ``crop_box``), or None for the whole image.
            A CAM is zero outside that region, so a random point inside it is the fair
            baseline; for crop mode ``none`` the region is the whole image.
    """
    mask = np.asarray(mask) != 0
    if region is not None:
        x0, y0, x1, y1 = (int(v) for v in region)
        mask = mask[y0:y1, x0:x1]
    if mask.size == 0:
        raise ValueError(f"empty region {region}")
    return float(mask.mean())


def _mean(values) -> float:
    return float(np.mean(values))


def summarize_localization(rows: Iterable[Mapping], n_bootstrap: int = 1000, seed: int = 0,
                           confidence: float = 0.95) -> dict:
    """Means with percentile-bootstrap intervals, per CAM method.

    Args:
        rows: one mapping per (image, method) with ``"method"`` and the keys of
            :data:`LOCALIZATION_METRICS`: ``pointing_game`` (bool), ``energy_inside`` and
            ``top_fraction_iou`` (float or None = undefined for that image) and
            ``chance_level`` (float, :func:`mask_fraction`).
        n_bootstrap, seed, confidence: passed to ``bootstrap_ci``. Rows with a ``"group"``
            (the patient) resample patients, each with all its images; rows without one
            resample images.

    Returns:
        ``{method: {"n_images": int, metric: {"estimate", "low", "high", "n_used", "n"},
        ..., "pointing_game_above_chance": {...}}}`` for every metric of
        :data:`LOCALIZATION_METRICS`; ``n`` counts the images where the metric is defined,
        ``estimate`` is None when there are none. ``pointing_game_above_chance`` is the
        paired difference ``mean(hit) - mean(chance_level)`` over the same resamples: an
        interval above 0 means the maps point at the tumor more often than random points.
    """
    by_method: dict[str, list[Mapping]] = {}
    for row in rows:
        by_method.setdefault(str(row["method"]), []).append(row)
    summary = {}
    for method, method_rows in by_method.items():
        entry: dict = {"n_images": len(method_rows)}
        for key in LOCALIZATION_METRICS:
            defined = [r for r in method_rows if r.get(key) is not None]
            values = np.array([float(r[key]) for r in defined])
            if values.size == 0:
                entry[key] = {"estimate": None, "low": None, "high": None, "n_used": 0, "n": 0}
                continue
            result = bootstrap_ci(_mean, values, n_bootstrap=n_bootstrap, seed=seed,
                                  confidence=confidence, groups=row_groups(defined))
            entry[key] = {**result, "n": int(values.size)}
        paired = [r for r in method_rows
                  if r.get("pointing_game") is not None and r.get("chance_level") is not None]
        if paired:
            hits = np.array([float(r["pointing_game"]) for r in paired])
            chance = np.array([float(r["chance_level"]) for r in paired])
            result = bootstrap_ci(lambda h, c: float(np.mean(h) - np.mean(c)), hits, chance,
                                  n_bootstrap=n_bootstrap, seed=seed, confidence=confidence,
                                  groups=row_groups(paired))
            entry["pointing_game_above_chance"] = {**result, "n": len(paired)}
        else:
            entry["pointing_game_above_chance"] = {"estimate": None, "low": None,
                                                   "high": None, "n_used": 0, "n": 0}
        summary[method] = entry
    return summary
