"""Crop, pad and resize a radiograph to the model's square input, and map back.

Two crop modes:

- ``gt-box`` (the thesis' "human vision" pipeline): a tumor image is cropped to the
  union of its ground-truth tumor boxes; a crop smaller than ``size`` is zero-padded
  symmetrically, a larger one is down-scaled preserving its aspect ratio, then padded.
  Normal images get a random crop whose relative size is drawn from the tumor boxes'
  size distribution, so that "was cropped" cannot be learned as "tumor". This uses the
  ground truth and exists to mirror the thesis.
- ``none``: the whole image, scaled preserving its aspect ratio to fit ``size`` (up or
  down) and zero-padded symmetrically to a square: what inference on a new radiograph can do.

Every transform is described by a :class:`CropGeometry`, which also maps a heatmap or a
mask from model input space back onto the original image (:func:`map_to_original`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

CROP_MODES = ("gt-box", "none")


@dataclass(frozen=True)
class CropGeometry:
    """How an original image of ``original_hw`` became a ``size`` x ``size`` input.

    The region ``crop_box = (x0, y0, x1, y1)`` (pixels, half-open: x0 <= x < x1) of the
    original is resized by ``scale`` to ``resized_hw`` and placed at ``(pad_top,
    pad_left)`` of a zero canvas of ``size`` x ``size``.
    """

    original_hw: tuple[int, int]
    crop_box: tuple[int, int, int, int]
    scale: float
    resized_hw: tuple[int, int]
    pad_top: int
    pad_left: int
    size: int

    def to_dict(self) -> dict:
        return asdict(self)


def _clip_box(box: Sequence[float], height: int, width: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    x0 = int(np.clip(np.floor(x0), 0, width - 1))
    y0 = int(np.clip(np.floor(y0), 0, height - 1))
    # LabelMe corners are inclusive pixel coordinates: the box covers x1 itself.
    x1 = int(np.clip(np.floor(x1) + 1, x0 + 1, width))
    y1 = int(np.clip(np.floor(y1) + 1, y0 + 1, height))
    return x0, y0, x1, y1


def plan_geometry(original_hw: tuple[int, int], size: int, crop_box=None,
                  upscale: bool = True) -> CropGeometry:
    """Geometry for cropping ``crop_box`` (default: whole image) into a square of ``size``.

    Args:
        original_hw: (height, width) of the original image.
        size: side of the square model input.
        crop_box: ``(x_min, y_min, x_max, y_max)`` in original pixels (inclusive corners,
            as LabelMe writes them), or None for the whole image.
        upscale: scale a region smaller than ``size`` up to fit (mode ``none``); when False
            it keeps its pixel size and is only padded (mode ``gt-box``).
    """
    height, width = int(original_hw[0]), int(original_hw[1])
    if crop_box is None:
        box = (0, 0, width, height)
    else:
        box = _clip_box(crop_box, height, width)
    crop_w, crop_h = box[2] - box[0], box[3] - box[1]
    scale = size / max(crop_w, crop_h)
    if not upscale:
        scale = min(scale, 1.0)
    resized_h = max(1, min(size, int(round(crop_h * scale))))
    resized_w = max(1, min(size, int(round(crop_w * scale))))
    return CropGeometry(
        original_hw=(height, width), crop_box=tuple(int(v) for v in box), scale=float(scale),
        resized_hw=(resized_h, resized_w), pad_top=(size - resized_h) // 2,
        pad_left=(size - resized_w) // 2, size=int(size),
    )


def apply_geometry(image: np.ndarray, geometry: CropGeometry,
                   interpolation: int | None = None) -> np.ndarray:
    """Crop, resize and pad a 2-D array (image or mask) to (size, size), same dtype.

    Default interpolation: area averaging when shrinking, bilinear when enlarging. Pass
    ``cv2.INTER_NEAREST`` for masks so they stay binary.
    """
    x0, y0, x1, y1 = geometry.crop_box
    crop = image[y0:y1, x0:x1]
    resized_h, resized_w = geometry.resized_hw
    if crop.shape[:2] != (resized_h, resized_w):
        if interpolation is None:
            interpolation = cv2.INTER_AREA if geometry.scale < 1 else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (resized_w, resized_h), interpolation=interpolation)
    canvas = np.zeros((geometry.size, geometry.size) + image.shape[2:], image.dtype)
    canvas[geometry.pad_top:geometry.pad_top + resized_h,
           geometry.pad_left:geometry.pad_left + resized_w] = crop
    return canvas


def crop_to_box(image: np.ndarray, box, size: int) -> tuple[np.ndarray, CropGeometry]:
    """The ``gt-box`` crop of ``image`` around ``box``: ``(input (size, size), geometry)``.

    ``box`` is ``(x_min, y_min, x_max, y_max)`` with inclusive corners in ``image``'s
    pixels. The one function that cuts a tumor box for a crop classifier, in training
    (ground-truth boxes) and in the diagnosis chain (boxes the segmenter found): a region
    smaller than ``size`` keeps its pixel size and is zero-padded, a larger one is
    down-scaled preserving its aspect ratio.
    """
    geometry = plan_geometry(image.shape[:2], size, crop_box=box, upscale=False)
    return apply_geometry(image, geometry), geometry


def map_to_original(array: np.ndarray, geometry: CropGeometry,
                    interpolation: int = cv2.INTER_LINEAR, fill: float = 0.0) -> np.ndarray:
    """Map a (size, size) array in model-input space back onto the original image.

    Inverse of :func:`apply_geometry`: the padding is cut off, the rest resized to the
    crop's original size and placed at ``crop_box`` on a canvas of ``original_hw`` filled
    with ``fill`` (a heatmap is zero outside the region the model saw).
    """
    resized_h, resized_w = geometry.resized_hw
    inner = array[geometry.pad_top:geometry.pad_top + resized_h,
                  geometry.pad_left:geometry.pad_left + resized_w]
    x0, y0, x1, y1 = geometry.crop_box
    inner = cv2.resize(inner.astype(np.float32), (x1 - x0, y1 - y0), interpolation=interpolation)
    out = np.full(geometry.original_hw, fill, np.float32)
    out[y0:y1, x0:x1] = inner
    return out


def random_normal_crop_box(original_hw: tuple[int, int], relative_sizes: np.ndarray,
                           key: str, seed: int = 0) -> tuple[float, float, float, float]:
    """A crop box for a normal image in ``gt-box`` mode, reproducible per (key, seed).

    ``relative_sizes`` is an array (M, 2) of tumor box (width / image width, height /
    image height); one row is drawn and placed uniformly inside the image.
    """
    height, width = original_hw
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    if len(relative_sizes) == 0:
        rel_w, rel_h = 0.3, 0.3
    else:
        rel_w, rel_h = relative_sizes[rng.integers(len(relative_sizes))]
    crop_w = int(np.clip(round(rel_w * width), 8, width))
    crop_h = int(np.clip(round(rel_h * height), 8, height))
    x0 = int(rng.integers(0, width - crop_w + 1))
    y0 = int(rng.integers(0, height - crop_h + 1))
    return (x0, y0, x0 + crop_w - 1, y0 + crop_h - 1)
