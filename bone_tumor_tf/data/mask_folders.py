"""Mask-folder segmentation sets: images and their tumor masks in two folders.

Exact on-disk format read here (the layout most segmentation datasets ship)::

    DIR/
      images/IMG000001.png ...    # radiographs: PNG, JPEG, BMP, TIFF or DICOM, any size
      masks/IMG000001.png ...     # one mask per image, same file stem (any extension)

A mask is an 8-bit image of exactly its radiograph's size in which a nonzero pixel is tumor
(0/255 and 0/1 masks both read as binary; a mask with more than two values, e.g. soft or
JPEG-compressed edges, is read as nonzero = tumor and reported by ``inspect``). Matching is
by file stem; a stem with two files in one folder is an error naming both. Images without a
mask are left out (``inspect`` lists them, and masks without an image).

Labels: ``normal`` when the mask is all zero, else ``tumor`` (class names
``("normal", "tumor")``). Patients: unknown, so every image is its own group and every
split (``--split-by patient``, the default) is in effect a split by image: views of one
patient can sit on both sides. Centers are unknown (no ``--split-by center``).

A folder with ``images/``, ``masks/`` *and* a BTXRD sheet (``dataset.xlsx``/``.csv``) is
read as BTXRD (tumor shapes from ``Annotations/``); without a sheet, as a mask-folder set.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from bone_tumor_tf.data.folders import image_files_by_stem
from bone_tumor_tf.data.images import image_size, read_image_with_scale
from bone_tumor_tf.data.records import ImageRecord
from bone_tumor_tf.errors import DataError

logger = logging.getLogger(__name__)

IMAGES_DIR = "images"
MASKS_DIR = "masks"
CLASS_NAMES = ("normal", "tumor")
PATIENTS_NOTE = ("patients unknown: every image is its own group, so splits are by image "
                 "(views of one patient may sit on both sides)")


def is_mask_folder(root: str | Path) -> bool:
    """True when ``root`` has an ``images/`` and a ``masks/`` folder."""
    root = Path(root)
    return (root / IMAGES_DIR).is_dir() and (root / MASKS_DIR).is_dir()


@dataclass
class MaskAnnotation:
    """The tumor mask of one image, with the interface of a LabelMe annotation.

    Attributes:
        path: the mask file.
        image_width, image_height: the mask's (= its image's) size in pixels.
        pixels: ``uint8`` {0, 1} array (image_height, image_width), 1 = tumor.
        warnings: non-fatal problems (a mask that is not two-valued).
    """

    path: Path
    image_width: int
    image_height: int
    pixels: np.ndarray
    warnings: list[str] = field(default_factory=list)

    def mask(self) -> np.ndarray:
        """The mask as ``uint8`` {0, 1} (image_height, image_width)."""
        return self.pixels

    def union_box(self) -> tuple[float, float, float, float] | None:
        """``(x_min, y_min, x_max, y_max)`` of the tumor pixels (inclusive), None if none."""
        rows, cols = np.nonzero(self.pixels)
        if not len(rows):
            return None
        return float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())

    def scaled(self, scale: float, image_hw: tuple[int, int] | None = None) -> MaskAnnotation:
        """The mask for the image decoded at ``scale`` x its size (nearest neighbour)."""
        height, width = image_hw or (round(self.image_height * scale),
                                     round(self.image_width * scale))
        if (height, width) == (self.image_height, self.image_width):
            return self
        pixels = cv2.resize(self.pixels, (int(width), int(height)),
                            interpolation=cv2.INTER_NEAREST)
        return MaskAnnotation(self.path, int(width), int(height), pixels, list(self.warnings))


def read_mask(path: str | Path, image_hw: tuple[int, int] | None = None) -> MaskAnnotation:
    """Read a tumor mask as {0, 1} (nonzero = tumor).

    Args:
        path: the mask image.
        image_hw: ``(height, width)`` of its radiograph; a mask of another size is refused.

    Raises:
        DataError: the mask cannot be read, or its size differs from ``image_hw``.
    """
    path = Path(path)
    mask_hw = image_size(path)
    if image_hw is not None and tuple(image_hw) != tuple(mask_hw):
        raise DataError(path, f"mask size {mask_hw[1]}x{mask_hw[0]} differs from the image "
                              f"({image_hw[1]}x{image_hw[0]})")
    values, scale = read_image_with_scale(path)
    if scale != 1.0:  # huge masks are decoded reduced; back to the header size
        values = cv2.resize(values, (mask_hw[1], mask_hw[0]), interpolation=cv2.INTER_NEAREST)
    levels = np.unique(values)
    warnings = []
    if len(levels) > 2 or (len(levels) == 2 and levels[0] != 0):
        shown = ", ".join(str(v) for v in levels[:6]) + (", ..." if len(levels) > 6 else "")
        warnings.append(f"mask is not binary ({len(levels)} values: {shown}); "
                        "read as nonzero = tumor")
    return MaskAnnotation(path, int(mask_hw[1]), int(mask_hw[0]),
                          (values > 0).astype(np.uint8), warnings)


def _has_tumor(path: Path) -> bool | None:
    """True/False from the mask's pixels; None when it cannot be read."""
    try:
        return bool(read_mask(path).pixels.any())
    except DataError:
        return None


def _unique_by_stem(folder: Path) -> dict[str, Path]:
    index = image_files_by_stem(folder)
    ambiguous = {stem: paths for stem, paths in index.items() if len(paths) > 1}
    if ambiguous:
        stem, paths = next(iter(ambiguous.items()))
        more = f" (and {len(ambiguous) - 1} more stems)" if len(ambiguous) > 1 else ""
        raise DataError(paths[0], f"two files with stem {stem!r} in {folder.name}/: "
                                  f"{paths[0].name} and {paths[1].name}{more}; keep one")
    return {stem: paths[0] for stem, paths in index.items()}


@dataclass
class MaskFolderDataset:
    """A mask-folder segmentation set (see module docstring), read once.

    Attributes:
        root: the dataset folder.
        records: one :class:`ImageRecord` per image with a mask (``mask`` set), stem order.
        class_names: ``("normal", "tumor")``.
        images_without_mask, masks_without_image: files matched by no stem.
        notes: what ``inspect`` says about the set as a whole.
        annotated: True: the masks are tumor annotations (see ``data.dataset.Dataset``).
    """

    annotated: ClassVar[bool] = True
    root: Path
    records: list[ImageRecord] = field(default_factory=list)
    class_names: tuple[str, ...] = CLASS_NAMES
    images_without_mask: list[Path] = field(default_factory=list)
    masks_without_image: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, root: str | Path, workers: int | None = None) -> MaskFolderDataset:
        """Pair images and masks by stem and label each image from its mask's pixels.

        A mask that cannot be read gives the label ``tumor`` (unknown); reading it again
        (training, ``inspect``) reports the file.
        """
        root = Path(root).expanduser().resolve()
        if not is_mask_folder(root):
            raise DataError(root, f"not a mask-folder set (needs {IMAGES_DIR}/ and "
                                  f"{MASKS_DIR}/)")
        images = _unique_by_stem(root / IMAGES_DIR)
        masks = _unique_by_stem(root / MASKS_DIR)
        stems = sorted(set(images) & set(masks))
        if not stems:
            raise DataError(root, f"no image in {IMAGES_DIR}/ has a mask of the same stem in "
                                  f"{MASKS_DIR}/")
        with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
            has_tumor = list(pool.map(_has_tumor, [masks[s] for s in stems]))
        records = []
        for stem, tumor in zip(stems, has_tumor, strict=True):
            image_id = images[stem].name
            records.append(ImageRecord(image_id=image_id, path=images[stem],
                                       label="normal" if tumor is False else "tumor",
                                       group=image_id, mask=masks[stem]))
        logger.warning("%s: mask-folder set; %s", root, PATIENTS_NOTE)
        return cls(root=root, records=records,
                   images_without_mask=[images[s] for s in sorted(set(images) - set(masks))],
                   masks_without_image=[masks[s] for s in sorted(set(masks) - set(images))],
                   notes=[PATIENTS_NOTE])
