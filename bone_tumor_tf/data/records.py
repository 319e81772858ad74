"""The unit every pipeline consumes: one image with its label and grouping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    Attributes:
        image_id: file name as the dataset names it (``IMG000001.jpeg``, or a path
            relative to the dataset root for class-per-folder sets).
        path: absolute path of the image file.
        label: class name (``normal``/``benign``/``malignant`` for BTXRD).
        group: patient group; images of one group never sit on two sides of a split.
        annotation: path of the LabelMe JSON (tumor images of BTXRD), else None.
        annotation_resized: the annotation was drawn on the original of a resized copy: its
            shapes are scaled per axis to this image's size when read (see
            :mod:`bone_tumor_tf.data.annotations`).
        mask: path of the tumor mask image (mask-folder sets), else None.
        center: acquiring center (BTXRD 1-3), else None.
        view: ``frontal``/``lateral``/``oblique`` (BTXRD), else None.
        split: a split fixed by the dataset's layout (``train``/``val``/``test``), else None.
    """

    image_id: str
    path: Path
    label: str
    group: str
    annotation: Path | None = None
    center: int | None = None
    view: str | None = None
    split: str | None = None
    annotation_resized: bool = False
    mask: Path | None = None
