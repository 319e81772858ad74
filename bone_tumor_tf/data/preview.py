"""A PNG contact sheet of augmented training images, one row per class.

Lets a user see, before training, what the model will see: the crop mode, the padding and
the augmentation's strength. The sheet is drawn with NumPy and OpenCV at the images' own
resolution (one image pixel = one sheet pixel, no resampling), so what it shows is exactly
the model input.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.pipeline import build_augmentation
from bone_tumor_tf.data.prepare import prepare_images
from bone_tumor_tf.data.splits import make_splits
from bone_tumor_tf.errors import DataError
from bone_tumor_tf.io import write_png

#: Pixels between tiles and around the sheet.
GAP = 4
#: Height of the band that holds a title (the sheet's, and each row's above its tiles).
TITLE_HEIGHT = 18
_BACKGROUND = 255
_TEXT = 0


def tile_box(row: int, column: int, tile_size: int, titled: bool) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` (half-open, pixels) of tile ``(row, column)`` on a contact sheet
    of ``tile_size`` tiles; ``titled``: the sheet has a title band at the top."""
    top = GAP + (TITLE_HEIGHT if titled else 0)
    x0 = GAP + column * (tile_size + GAP)
    y0 = top + row * (TITLE_HEIGHT + tile_size + GAP) + TITLE_HEIGHT
    return x0, y0, x0 + tile_size, y0 + tile_size


def _put_title(sheet: np.ndarray, text: str, x: int, y_top: int, width: int) -> None:
    """Black text in the band starting at ``y_top``, shrunk to fit ``width`` pixels."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    text_width = cv2.getTextSize(text, font, scale, 1)[0][0]
    if text_width > width:
        scale = max(0.25, scale * width / text_width)
    baseline_y = y_top + TITLE_HEIGHT - 5
    cv2.putText(sheet, text, (x, baseline_y), font, scale, _TEXT, 1, cv2.LINE_AA)


def contact_sheet_image(rows: Sequence[np.ndarray], row_titles: Sequence[str],
                        title: str = "") -> np.ndarray:
    """A grid of images as one ``uint8`` gray array.

    Args:
        rows: per row, ``uint8`` images ``(n_i, S, S)`` (all rows the same ``S``).
        row_titles: one title per row, written above it.
        title: written above everything when not empty.

    Returns:
        ``(H, W)`` uint8 on a white background; image ``rows[i][j]`` sits unchanged at
        :func:`tile_box` ``(i, j, S, bool(title))``.
    """
    if len(rows) != len(row_titles):
        raise ValueError(f"{len(rows)} rows but {len(row_titles)} row titles")
    size = int(rows[0].shape[1])
    n_cols = max(1, max(len(r) for r in rows))
    width = GAP + n_cols * (size + GAP)
    height = tile_box(len(rows), 0, size, bool(title))[1] - TITLE_HEIGHT
    sheet = np.full((height, width), _BACKGROUND, np.uint8)
    if title:
        _put_title(sheet, title, GAP, GAP, width - 2 * GAP)
    for i, (images, name) in enumerate(zip(rows, row_titles)):
        x0, y0, _, _ = tile_box(i, 0, size, bool(title))
        _put_title(sheet, name, x0, y0 - TITLE_HEIGHT, width - 2 * GAP)
        for j, image in enumerate(images):
            x0, y0, x1, y1 = tile_box(i, j, size, bool(title))
            sheet[y0:y1, x0:x1] = image
    return sheet


def contact_sheet(rows: Sequence[np.ndarray], row_titles: Sequence[str], out_path: str | Path,
                  title: str = "") -> Path:
    """Save :func:`contact_sheet_image` of ``rows`` as a PNG (atomically); returns its path."""
    return write_png(out_path, contact_sheet_image(rows, row_titles, title))


def preview_dataset(data_dir, out_path, crop_mode: str = "gt-box", image_size: int = 128,
                    per_class: int = 8, augmentation: str = "standard", seed: int = 0) -> Path:
    """Prepare ``per_class`` training images of each class, augment them, save a sheet.

    The images are drawn (``seed``) from the training split of :func:`make_splits`; each
    class is one row of at most ``per_class`` tiles of ``image_size`` pixels, in the
    dataset's class order (see :func:`contact_sheet_image`).
    """
    dataset = load_dataset(data_dir)
    if crop_mode == "gt-box" and not dataset.annotated:
        crop_mode = "none"  # class-per-folder sets carry no boxes
    splits = make_splits(dataset.records, seed=seed)
    train = [r for r, s in zip(dataset.records, splits["split"], strict=True) if s == "train"]
    rng = np.random.default_rng(seed)
    chosen = []
    for name in dataset.class_names:
        members = [r for r in train if r.label == name]
        pick = rng.choice(len(members), size=min(per_class, len(members)), replace=False)
        chosen.append([members[i] for i in sorted(pick)])
    flat = [r for group in chosen for r in group]
    prepared = prepare_images(flat, image_size, crop_mode=crop_mode, seed=seed)
    if prepared.failures:
        raise DataError(prepared.failures[0].file, prepared.failures[0].problem)
    augment = build_augmentation(augmentation, seed)
    images = prepared.images[..., None].astype(np.float32)
    if augment is not None:
        images = np.clip(np.asarray(augment(images, training=True)), 0, 255)
    rows, start = [], 0
    for group in chosen:
        rows.append(images[start:start + len(group), ..., 0].astype(np.uint8))
        start += len(group)
    titles = [f"{name} ({len(g)})" for name, g in zip(dataset.class_names, chosen, strict=True)]
    return contact_sheet(rows, titles, out_path,
                         title=f"augmented training images, crop {crop_mode}, {image_size}px")
