"""Segmentation predictions at each radiograph's original resolution.

The model sees each radiograph scaled (aspect preserved) and zero-padded to ``S x S``
(crop mode ``none``); its ``(S, S)`` probability map is mapped back through the image's
:class:`~bone_tumor_tf.data.preprocess.CropGeometry` (padding cut off, bilinear resize;
:func:`~bone_tumor_tf.data.preprocess.map_to_original`), so every mask and every number
computed from it is at the image's ORIGINAL resolution. The ground truth is the union of
the LabelMe polygons rasterised at that resolution (empty for a normal radiograph).

- :func:`predictions_at_original_resolution`: maps and ground truth of a test split, for
  :func:`bone_tumor_tf.evaluation.segmentation.evaluate_segmentation`;
- :func:`predict_masks`: ``<stem>_mask.png`` / ``<stem>_overlay.png`` for new radiographs.

Memory: a split's probability maps and masks are held at original resolution, about 5 bytes
per original pixel (float32 probabilities + bool masks).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bone_tumor_tf.data.annotations import read_record_annotation
from bone_tumor_tf.data.preprocess import CropGeometry, map_to_original
from bone_tumor_tf.errors import BoneTumorError, DataError, ModelFileError
from bone_tumor_tf.explain.overlay import overlay_masks
from bone_tumor_tf.inference import expand_inputs, load_input
from bone_tumor_tf.inference.inputs import SEGMENTATION_TTA, predict_on_batches
from bone_tumor_tf.io import unique_stems, write_png
from bone_tumor_tf.models.contract import is_segmentation_model
from bone_tumor_tf.models.loading import load_model

__all__ = [
    "SEGMENTATION_TTA",
    "OriginalResolutionPredictions",
    "ground_truth_mask",
    "predict_masks",
    "predict_probability_maps",
    "predictions_at_original_resolution",
]


def predict_probability_maps(model, images: np.ndarray, batch_size: int = 8,
                             tta: str = "none") -> np.ndarray:
    """Tumor probabilities of model-space images.

    Args:
        model: a segmentation model, input ``(N, S, S, 1)`` in [0, 255].
        images: ``uint8`` (or float in [0, 255]) array ``(N, S, S)`` or ``(N, S, S, 1)``.
        batch_size: images per forward pass.
        tta: ``none``, or ``flip``: the mean of the map of the image and the mirrored map
            of its left-right mirror image (the training augmentation flips left-right, so
            both are maps the model was taught to make). Costs a second forward pass. On
            the real BTXRD validation split it marked fewer normal radiographs at equal
            tumor Dice (``docs/real-data-decisions.md``, eleventh session).

    Returns:
        float32 ``(N, S, S)``, values in [0, 1].
    """
    if tta not in SEGMENTATION_TTA:
        raise ValueError(f"tta={tta!r}: expected one of {SEGMENTATION_TTA}")
    x = np.asarray(images, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if len(x) == 0:
        return np.zeros(x.shape[:3], np.float32)
    probs = predict_on_batches(model, x, batch_size)[..., 0]
    if tta == "flip":
        mirrored = np.ascontiguousarray(x[:, :, ::-1])
        probs = (probs + predict_on_batches(model, mirrored, batch_size)[..., 0][:, :, ::-1]) / 2
    return np.clip(probs, 0.0, 1.0).astype(np.float32)


def ground_truth_mask(record, original_hw: tuple[int, int]) -> np.ndarray:
    """A record's tumor mask at the decoded image's resolution ``original_hw``: bool ``(H, W)``.

    ``original_hw`` is the size the image was decoded at, which for huge files is reduced
    (see :func:`bone_tumor_tf.data.images.read_image_with_scale`); the annotation is
    checked against the file's own size and scaled to the decoded one.

    The union of its LabelMe polygons, or its mask image (mask-folder sets), as
    :func:`bone_tumor_tf.data.annotations.read_record_annotation` reads them (scaled when
    the set is a resized copy); all False for a record without either (a normal radiograph).

    Raises:
        DataError: the annotation is unreadable or its size disagrees with the image file.
    """
    annotation = read_record_annotation(record)
    if annotation is None:
        return np.zeros(tuple(original_hw), bool)
    scale = original_hw[0] / annotation.image_height
    return annotation.scaled(scale, tuple(original_hw)).mask().astype(bool)


@dataclass
class OriginalResolutionPredictions:
    """Predictions and ground truth of a set of images, each at its original resolution.

    Attributes:
        records: the images' records, in order.
        probabilities: per image, float32 ``(H_k, W_k)`` tumor probabilities in [0, 1].
        masks: per image, bool ``(H_k, W_k)`` ground-truth masks.
        is_normal: bool ``(N,)``, True for tumor-free radiographs (label ``normal``).
    """

    records: list
    probabilities: list[np.ndarray]
    masks: list[np.ndarray]
    is_normal: np.ndarray

    def __len__(self) -> int:
        return len(self.records)


def predictions_at_original_resolution(model, images: np.ndarray,
                                       geometries: Sequence[CropGeometry], records: Sequence,
                                       batch_size: int = 8) -> OriginalResolutionPredictions:
    """Predict model-space maps and bring them, and the ground truth, to original size.

    Args:
        model: segmentation model.
        images: ``uint8`` ``(N, S, S)`` model inputs (crop mode ``none``).
        geometries: per image, how the original became the input.
        records: per image, its record (``annotation`` -> ground truth, ``label``).
        batch_size: images per forward pass.

    Returns:
        :class:`OriginalResolutionPredictions`; probabilities are bilinearly resampled
        (``map_to_original``; 0 outside the region the model saw, which in mode ``none``
        is nothing).
    """
    if not (len(images) == len(geometries) == len(records)):
        raise ValueError(f"{len(images)} images, {len(geometries)} geometries and "
                         f"{len(records)} records")
    probabilities, masks = [], []
    for start in range(0, len(images), max(64, batch_size)):
        chunk = predict_probability_maps(model, images[start:start + max(64, batch_size)],
                                         batch_size)
        for offset, prob in enumerate(chunk):
            geometry = geometries[start + offset]
            probabilities.append(np.clip(map_to_original(prob, geometry), 0.0, 1.0))
            masks.append(ground_truth_mask(records[start + offset], geometry.original_hw))
    is_normal = np.array([r.label == "normal" for r in records], bool)
    return OriginalResolutionPredictions(list(records), probabilities, masks, is_normal)


def predict_masks(model, files: Sequence[str | Path], out_dir: str | Path,
                  image_size: int | None = None, threshold: float = 0.5,
                  batch_size: int = 8, tta: str = "none") -> list[dict]:
    """Tumor masks of new radiographs, at each input's original resolution.

    Each image is read as gray, scaled (aspect preserved) and zero-padded to the model's
    ``S x S`` input (crop mode ``none``, :func:`bone_tumor_tf.inference.load_input`); the
    probability map is mapped back to the original size (bilinear) and thresholded
    (``prob >= threshold``). Writes, per input, ``<stem>_mask.png`` (uint8, 0 background /
    255 tumor, the input's height x width) and ``<stem>_overlay.png`` (the radiograph with
    the predicted region outlined and tinted red). A stem seen before gets ``_2``, ``_3``...

    Args:
        model: a segmentation ``keras.Model`` (input ``(N, S, S, 1)`` in [0, 255], output
            ``(N, S, S, 1)`` probabilities) or the path of its ``.keras`` file (loaded with
            ``safe_mode=True``).
        files: image files and/or folders (searched recursively for images).
        out_dir: output folder (created).
        image_size: S; default the model's input size (must agree with it when static).
        threshold: probability threshold in (0, 1).
        batch_size: images per forward pass (and per decoding chunk).
        tta: test-time augmentation (:func:`predict_probability_maps`).

    Returns:
        One dict per input, in input order (``file`` and a one-line ``error`` for a file
        that cannot be read; the others go on): ``file``, ``mask``, ``overlay`` (paths as
        str), ``height``, ``width``, ``tumor_pixels``, ``tumor_fraction`` (of the image's
        pixels), ``max_probability``, ``threshold``.

    Raises:
        ModelFileError: not a segmentation model, or ``image_size`` contradicts it.
        DataError: a missing or unreadable input (one line naming the file).
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if not is_segmentation_model(model):
        raise ModelFileError(f"model {model.name!r}: not a segmentation model (output "
                             f"{tuple(model.outputs[0].shape)}, expected (N, S, S, 1))")
    if not 0.0 < float(threshold) < 1.0:
        raise BoneTumorError(f"threshold must be in (0, 1), got {threshold!r}")
    static = model.inputs[0].shape[1]
    if image_size is None:
        if static is None:
            raise ModelFileError(f"model {model.name!r} has no fixed input size: pass image_size")
        image_size = int(static)
    elif static is not None and int(image_size) != int(static):
        raise ModelFileError(f"model {model.name!r} expects {static} px inputs, "
                             f"got image_size={image_size}")
    paths = expand_inputs(files)
    stems = unique_stems(paths, separator="_")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict] = {}
    batch_size = max(1, int(batch_size))
    for start in range(0, len(paths), batch_size):
        prepared, chunk = [], range(start, min(start + batch_size, len(paths)))
        for index in chunk:
            try:  # one unreadable file is reported in its row; the others go on
                prepared.append((index, load_input(paths[index], int(image_size))))
            except DataError as error:
                results[index] = {"file": str(paths[index]), "error": str(error)}
        if not prepared:
            continue
        probs = predict_probability_maps(model, np.stack([p.input for _, p in prepared]),
                                         batch_size, tta=tta)
        for (index, item), prob in zip(prepared, probs, strict=True):
            stem = stems[index]
            prob_original = np.clip(map_to_original(prob, item.geometry), 0.0, 1.0)
            mask = prob_original >= threshold
            mask_path = write_png(out_dir / f"{stem}_mask.png", mask.astype(np.uint8) * 255)
            overlay_path = write_png(out_dir / f"{stem}_overlay.png",
                                     overlay_masks(item.original, predicted=mask,
                                                   fill_alpha=0.25))
            tumor_pixels = int(np.count_nonzero(mask))
            results[index] = {
                "file": str(item.path), "mask": str(mask_path), "overlay": str(overlay_path),
                "height": int(mask.shape[0]), "width": int(mask.shape[1]),
                "tumor_pixels": tumor_pixels, "tumor_fraction": tumor_pixels / mask.size,
                "max_probability": float(prob_original.max()), "threshold": float(threshold),
            }
    return [results[index] for index in range(len(paths))]
