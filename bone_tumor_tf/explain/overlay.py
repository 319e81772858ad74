"""Draw on radiographs: heatmap and mask overlays, caption, three-panel figure (OpenCV, BGR).

Every function works at the resolution it is given; to show a CAM or a predicted mask on
the ORIGINAL radiograph, first map the model-space map back with
:func:`bone_tumor_tf.data.preprocess.map_to_original` (zero outside the region the model
saw). Outputs are ``uint8`` BGR images, ready for :func:`bone_tumor_tf.io.write_png`.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["PREDICTION_BGR", "TRUTH_BGR", "annotate", "colorize_heatmap", "overlay_heatmap",
           "overlay_masks", "side_by_side_panel"]

#: Mask outline colours (OpenCV BGR): ground truth green, prediction red.
TRUTH_BGR = (0, 200, 0)
PREDICTION_BGR = (0, 0, 255)


def _check_gray(gray) -> np.ndarray:
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"gray must be a uint8 (H, W) image; got {gray.dtype} {gray.shape}")
    return gray


def colorize_heatmap(heatmap, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """(H, W) heatmap in [0, 1] -> BGR uint8 (H, W, 3) with an OpenCV colormap.

    Values are clipped to [0, 1] and quantised to 0..255 before ``cv2.applyColorMap``.
    """
    heatmap = np.asarray(heatmap, np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be (H, W); got {heatmap.shape}")
    levels = np.round(np.clip(np.nan_to_num(heatmap), 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.applyColorMap(levels, colormap)


def overlay_heatmap(gray, heatmap, alpha: float = 0.4,
                    colormap: int = cv2.COLORMAP_JET, region=None) -> np.ndarray:
    """Blend a colour-mapped heatmap over a grey radiograph.

    Args:
        gray: uint8 (H, W) radiograph.
        heatmap: float (H, W) in [0, 1], same size as ``gray``.
        alpha: weight of the heatmap colours, in [0, 1] (0 = radiograph only).
        colormap: an OpenCV colormap (``cv2.COLORMAP_*``).
        region: optional ``(x0, y0, x1, y1)`` half-open box (e.g. a
            :class:`CropGeometry`'s ``crop_box``): colour only there, the part of the image
            the model saw; elsewhere the radiograph is left unchanged instead of looking
            "cold".

    Returns:
        BGR uint8 (H, W, 3): ``alpha * colours + (1 - alpha) * radiograph``.
    """
    gray = _check_gray(gray)
    if np.shape(heatmap) != gray.shape:
        raise ValueError(f"heatmap {np.shape(heatmap)} and image {gray.shape} differ in size; "
                         "map the heatmap back with map_to_original first")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha={alpha}: must be in [0, 1]")
    colors = colorize_heatmap(heatmap, colormap)
    base = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    blended = cv2.addWeighted(colors, float(alpha), base, 1.0 - float(alpha), 0.0)
    if region is None:
        return blended
    x0, y0, x1, y1 = (int(v) for v in region)
    base[y0:y1, x0:x1] = blended[y0:y1, x0:x1]
    return base


def annotate(image, text: str) -> np.ndarray:
    """Write ``text`` (e.g. "malignant 0.87 | Grad-CAM") in the top-left corner.

    The font scales with the image (about 1/25 of its shorter side, at least OpenCV scale
    0.3), is shrunk further so that every line fits the width, and is drawn white with a
    black outline on a darkened band, so it stays readable on any background and size.
    ``\\n`` starts a new line.

    Args:
        image: uint8 (H, W) grey or (H, W, 3) BGR image; not modified.

    Returns:
        A BGR uint8 copy with the caption.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"image must be uint8 (H, W) or (H, W, 3); got {image.dtype} "
                         f"{image.shape}")
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    lines = str(text).split("\n")
    height, width = out.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    margin = max(2, min(height, width) // 60)
    # Hershey simplex glyphs are about 22 px tall at scale 1.
    scale = max(0.3, min(height, width) / 25.0 / 22.0)
    widest = max(cv2.getTextSize(line, font, scale, 1)[0][0] for line in lines)
    if widest > width - 2 * margin and widest > 0:
        scale = max(0.2, scale * (width - 2 * margin) / widest)
    thickness = max(1, int(round(scale * 1.5)))
    line_height = cv2.getTextSize("Ag", font, scale, thickness)[0][1]
    step = int(round(line_height * 1.6)) + thickness
    band = min(height, margin * 2 + step * len(lines))
    out[:band] = (out[:band].astype(np.float32) * 0.45).astype(np.uint8)
    for i, line in enumerate(lines):
        origin = (margin, margin + line_height + i * step)
        cv2.putText(out, line, origin, font, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.putText(out, line, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def side_by_side_panel(gray, heatmap, overlay, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Radiograph | colour-mapped heatmap | overlay, side by side.

    Args:
        gray: uint8 (H, W) radiograph.
        heatmap: float (H, W) in [0, 1].
        overlay: uint8 (H, W, 3) BGR, e.g. from :func:`overlay_heatmap` (maybe annotated).

    Returns:
        BGR uint8 (H, 3 W, 3).
    """
    gray = _check_gray(gray)
    overlay = np.asarray(overlay)
    if np.shape(heatmap) != gray.shape or overlay.shape != gray.shape + (3,):
        raise ValueError(f"panel parts differ in size: image {gray.shape}, heatmap "
                         f"{np.shape(heatmap)}, overlay {overlay.shape}")
    return np.concatenate(
        [cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), colorize_heatmap(heatmap, colormap),
         overlay.astype(np.uint8)], axis=1)


def _outline(canvas: np.ndarray, mask: np.ndarray, color, thickness: int) -> None:
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, color, thickness, lineType=cv2.LINE_8)


def overlay_masks(gray, predicted=None, truth=None, caption: str | None = None,
                  fill_alpha: float = 0.0) -> np.ndarray:
    """The radiograph with mask outlines: ground truth green, prediction red.

    Args:
        gray: uint8 (H, W) radiograph.
        predicted: predicted mask ``(H, W)`` (bool, {0, 1} or {0, 255}), or None.
        truth: ground-truth mask ``(H, W)``, or None.
        caption: text drawn at the top-left with :func:`annotate`, or None.
        fill_alpha: opacity in [0, 1] of a red fill of the predicted region (0: outline only).

    Returns:
        BGR uint8 (H, W, 3). Outlines are ``cv2.findContours`` (external) drawn with
        ``cv2.drawContours``, about 1/300 of the longer side thick (>= 1 px).
    """
    gray = _check_gray(gray)
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
    return annotate(canvas, caption) if caption else canvas
