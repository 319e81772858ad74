"""Pixel-level helpers shared by the image and DICOM decoders (a leaf: imports no reader).

:mod:`bone_tumor_tf.data.images` hands DICOM files to :mod:`bone_tumor_tf.data.dicom`, and
both bring decoded pixels to the same ``uint8`` range and size limits with the helpers here.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["MAX_PIXELS", "shrink_to_max_side", "to_uint8"]

#: Largest image, in pixels (width x height in the header), that is decoded at all.
MAX_PIXELS = 20_000 * 20_000


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale a grayscale array of any integer or float depth to ``uint8``.

    ``uint8`` passes through unchanged; anything else is mapped linearly from its own
    [min, max] to [0, 255] (a constant image becomes zeros). ``uint16`` goes through a
    65,536-entry lookup table, so no float copy of a large image is made.
    """
    if image.dtype == np.uint8:
        return image
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, np.uint8)
    if image.dtype == np.uint16:
        values = np.arange(65536, dtype=np.float64)
        table = np.clip(np.round((values - low) * (255.0 / (high - low))), 0, 255)
        return table.astype(np.uint8)[image]
    image = image.astype(np.float32)
    return np.round((image - low) * (255.0 / (high - low))).astype(np.uint8)


def shrink_to_max_side(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink ``image`` (area interpolation) so that its long side is at most ``max_side``.

    Returns ``(image, factor)``: the long side becomes exactly ``max_side`` and the short
    side is rounded, so ``factor = max_side / long side`` maps original coordinates onto
    the result (to within half a pixel on the short axis). An image that already fits is
    returned unchanged with factor 1.0.
    """
    height, width = image.shape[:2]
    long_side = max(height, width)
    if long_side <= max_side:
        return image, 1.0
    factor = max_side / long_side
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor
