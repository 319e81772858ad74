"""Bringing new images to saved models: shared by predict, evaluate and Grad-CAM.

A model saved by this toolkit carries its preprocessing contract (``image_size``,
``channels``, ``crop_mode``, ``class_names``, ``task``) inside its ``.keras`` file: load it
with :func:`bone_tumor_tf.models.loading.load_model` and read it with
:func:`bone_tumor_tf.models.contract.read_contract`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bone_tumor_tf.data.images import is_dicom_file, is_image_file, read_image_with_scale
from bone_tumor_tf.data.preprocess import CropGeometry, apply_geometry, plan_geometry
from bone_tumor_tf.errors import DataError


@dataclass
class PreparedInput:
    """One image brought to a model's input.

    Attributes:
        path: the source file.
        original: the decoded image, ``uint8`` (H, W).
        input: the model-space image, ``uint8`` (size, size).
        geometry: how ``original`` became ``input`` (for mapping heatmaps and masks back).
        scale: ``original``'s size / the file's size (1.0 unless a huge image was decoded
            reduced); annotations in file pixels are multiplied by it.
    """

    path: Path
    original: np.ndarray
    input: np.ndarray
    geometry: CropGeometry
    scale: float = 1.0


def load_input(path: str | Path, image_size: int, crop_box=None) -> PreparedInput:
    """Read an image and fit it into (image_size, image_size).

    Without ``crop_box`` the whole image is scaled preserving its aspect ratio and padded
    (crop mode ``none``); with a box (ground-truth tumor box, in the file's original pixels)
    the ``gt-box`` geometry is used. ``original`` is the decoded image, which for huge files
    is reduced (long side <= ``images.MAX_DECODE_SIDE``); the box is scaled to it.
    """
    original, scale = read_image_with_scale(path)
    if crop_box is not None and scale != 1.0:
        crop_box = tuple(v * scale for v in crop_box)
    geometry = plan_geometry(original.shape, image_size, crop_box=crop_box,
                             upscale=crop_box is None)
    return PreparedInput(Path(path), original, apply_geometry(original, geometry), geometry,
                         scale)


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files named directly, plus the image/DICOM files inside named folders (recursive)."""

    files: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and (
                is_image_file(p) or is_dicom_file(p)))
        elif item.exists():
            files.append(item)
        else:
            raise DataError(item, "no such file or folder")
    return files


#: Test-time augmentations of a segmenter
#: (:func:`bone_tumor_tf.inference.segmentation.predict_probability_maps`).
SEGMENTATION_TTA = ("none", "flip")


def predict_on_batches(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model`` on float inputs ``x`` batch by batch: the outputs concatenated (float32).

    Batches go through ``predict_on_batch``: the same compiled predict function as
    ``model.predict``, without the ``tf.data`` pipeline that ``predict`` builds on every
    call, which costs more than the model itself for the few images of one radiograph
    (the diagnosis chain calls this once per chunk of images; ``bench/diagnose_chain.py``).
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    chunks = [np.asarray(model.predict_on_batch(x[i:i + int(batch_size)]), np.float32)
              for i in range(0, len(x), int(batch_size))]
    if chunks:
        return np.concatenate(chunks)
    return np.zeros((0, *(int(d) for d in model.outputs[0].shape[1:])), np.float32)


def predict_probabilities(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class probabilities (N, K) for ``uint8`` inputs (N, S, S); sigmoid -> [1 - p, p].

    Batch by batch through :func:`predict_on_batches`.
    """
    x = np.asarray(images, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    probs = predict_on_batches(model, x, batch_size).astype(np.float64)
    if probs.shape[-1] == 1:
        probs = np.concatenate([1.0 - probs, probs], axis=-1)
    return probs
