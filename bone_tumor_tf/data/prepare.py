"""From records to model-sized ``uint8`` arrays: the first stage of every input pipeline.

So that a bad file fails in seconds and later epochs never touch the disk,
:func:`prepare_images` decodes every image once, in parallel threads (OpenCV releases
   the GIL), crops/pads/resizes it to the model's square input and keeps the result as
   ``uint8`` (1 byte per pixel: 3,746 BTXRD images at 224 px take 188 MB). Every file that
   fails is collected, and the whole list is reported before training starts. The result
   can be cached on disk (``cache_dir``), keyed by the files' paths, sizes and mtimes and
   the preprocessing options. The second stage, ``tf.data``, is
:mod:`bone_tumor_tf.data.pipeline`. Also here: label encoding and class weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from bone_tumor_tf.data.annotations import read_record_annotation
from bone_tumor_tf.data.images import read_image_with_scale
from bone_tumor_tf.data.preprocess import (
    CROP_MODES,
    CropGeometry,
    apply_geometry,
    crop_to_box,
    plan_geometry,
    random_normal_crop_box,
)
from bone_tumor_tf.data.records import ImageRecord
from bone_tumor_tf.errors import DataError

TASKS = ("multiclass", "binary")


# --------------------------------------------------------------------------- labels
def task_class_names(class_names: Sequence[str], task: str) -> tuple[str, ...]:
    """Class names of ``task``: the dataset's own, or (normal, <abnormal>) for binary."""
    class_names = tuple(class_names)
    if task == "multiclass" or len(class_names) == 2:
        return class_names
    if task != "binary":
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if "normal" not in class_names:
        raise DataError("task", f"binary task needs a 'normal' class; classes are {class_names}")
    return ("normal", "tumor")


def encode_labels(labels: Sequence[str], class_names: Sequence[str], task: str) -> np.ndarray:
    """Integer targets: index in the task's class names (binary: 0 normal, 1 abnormal)."""
    task_names = task_class_names(class_names, task)
    if task == "binary" and task_names == ("normal", "tumor") and tuple(class_names) != task_names:
        return np.array([0 if label == "normal" else 1 for label in labels], np.int32)
    index = {name: i for i, name in enumerate(task_names)}
    try:
        return np.array([index[label] for label in labels], np.int32)
    except KeyError as error:
        raise DataError("labels", f"label {error.args[0]!r} is not one of {task_names}") from None


def class_weights(targets: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights w_c = N / (K * n_c) (scikit-learn's ``balanced``).

    Classes absent from ``targets`` get weight 0 (they contribute no loss anyway).
    """
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(targets)
    weights = compute_class_weight("balanced", classes=present, y=targets)
    # sklearn normalises by the number of classes present; rescale to K classes.
    weights = weights * len(present) / num_classes
    out = {c: 0.0 for c in range(num_classes)}
    out.update({int(c): float(w) for c, w in zip(present, weights, strict=True)})
    return out


# --------------------------------------------------------------------------- decoding
@dataclass
class PreparedImages:
    """Images decoded and brought to the model's input geometry.

    Attributes:
        records: the records, in order.
        images: ``uint8`` array (N, size, size), 0 for records that failed.
        geometries: per record, how the original became the input (None on failure).
        masks: ``uint8`` {0, 1} array (N, size, size) of tumor masks when requested.
        failures: one :class:`DataError` per file that could not be used.
    """

    records: list[ImageRecord]
    images: np.ndarray
    geometries: list[CropGeometry | None]
    masks: np.ndarray | None = None
    failures: list[DataError] = field(default_factory=list)

    def ok(self) -> np.ndarray:
        """Boolean array: records that were prepared without error."""
        return np.array([g is not None for g in self.geometries], bool)

    def subset(self, index) -> PreparedImages:
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return PreparedImages(
            records=[self.records[i] for i in index], images=self.images[index],
            geometries=[self.geometries[i] for i in index],
            masks=None if self.masks is None else self.masks[index], failures=[],
        )


def tumor_relative_sizes(records: Sequence[ImageRecord]) -> np.ndarray:
    """(M, 2) array of union tumor box (width / image width, height / image height)."""
    sizes = []
    for record in records:
        if record.annotation is None and record.mask is None:
            continue
        try:
            annotation = read_record_annotation(record)
        except DataError:
            continue
        box = annotation.union_box()
        if box is not None:
            sizes.append(((box[2] - box[0] + 1) / annotation.image_width,
                          (box[3] - box[1] + 1) / annotation.image_height))
    return np.asarray(sizes, np.float64).reshape(-1, 2)


def prepare_record(record: ImageRecord, size: int, crop_mode: str = "none", seed: int = 0,
                   relative_sizes: np.ndarray | None = None, with_mask: bool = False):
    """Decode one record and bring it (and its mask) to (size, size).

    Returns ``(image uint8 (size, size), geometry, mask uint8 (size, size) or None)``.
    Raises :class:`DataError` naming the file on any problem.
    """
    image, scale = read_image_with_scale(record.path)
    annotation = read_record_annotation(record)
    if annotation is not None:
        # Annotations are in the file's pixels; huge images are decoded reduced.
        annotation = annotation.scaled(scale, image.shape[:2])
    box = None
    if crop_mode == "gt-box":
        box = annotation.union_box() if annotation is not None else None
        if box is None and record.label != "normal":
            raise DataError(record.path, "tumor image has no annotation (needed by crop "
                                         "mode gt-box)")
        if box is None:  # normal image (a mask-folder normal has an all-zero mask)
            box = random_normal_crop_box(image.shape[:2], relative_sizes
                                         if relative_sizes is not None else np.empty((0, 2)),
                                         record.image_id, seed)
    elif crop_mode != "none":
        raise ValueError(f"unknown crop mode {crop_mode!r}; expected one of {CROP_MODES}")
    if crop_mode == "gt-box":
        prepared, geometry = crop_to_box(image, box, size)
    else:
        geometry = plan_geometry(image.shape[:2], size, upscale=True)
        prepared = apply_geometry(image, geometry)
    mask = None
    if with_mask:
        full = annotation.mask() if annotation is not None else np.zeros(image.shape[:2], np.uint8)
        mask = apply_geometry(full, geometry, interpolation=cv2.INTER_NEAREST)
    return prepared, geometry, mask


def _cache_key(records, size, crop_mode, seed, with_masks, normal_crop_sizes=None) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([size, crop_mode, seed, with_masks, 2]).encode())
    if normal_crop_sizes is not None:
        digest.update(np.ascontiguousarray(normal_crop_sizes, np.float64).tobytes())
    for record in records:
        digest.update(b"r" if record.annotation_resized else b"o")
        for path in (record.path, record.annotation, record.mask):
            if path is None:
                digest.update(b"-")
                continue
            try:
                stat = os.stat(path)
                digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
            except OSError:
                digest.update(f"{path}|missing".encode())
    return digest.hexdigest()[:20]


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))


def prepare_images(records: Sequence[ImageRecord], size: int, crop_mode: str = "none",
                   seed: int = 0, with_masks: bool = False, workers: int | None = None,
                   cache_dir: str | Path | None = None, progress: bool = False,
                   normal_crop_sizes: np.ndarray | None = None) -> PreparedImages:
    """Decode and prepare every record in parallel; collect failures instead of raising.

    Args:
        records: images to prepare.
        size: side of the square model input (pixels).
        crop_mode: ``gt-box`` or ``none`` (see :mod:`bone_tumor_tf.data.preprocess`).
        seed: seeds the random crops of normal images in ``gt-box`` mode.
        with_masks: also rasterise the tumor polygons (empty masks for normal images).
        workers: decoding threads (default: CPU count, at most 8).
        cache_dir: when given, the prepared arrays are stored there as ``.npz`` and reused
            while no file changed.
        progress: print a one-line progress counter to stderr.
        normal_crop_sizes: the ``(M, 2)`` tumor box sizes a normal image's ``gt-box`` crop
            draws its size from (:func:`tumor_relative_sizes`). Default: those of
            ``records``. A training run draws from its whole dataset, so preparing one split
            of it again gives the run's own crops only with the whole dataset's sizes
            (``tumor_relative_sizes(dataset.records)``).
    """
    records = list(records)
    if crop_mode not in CROP_MODES:
        raise ValueError(f"unknown crop mode {crop_mode!r}; expected one of {CROP_MODES}")
    cache_path = None
    if cache_dir is not None:
        key = _cache_key(records, size, crop_mode, seed, with_masks, normal_crop_sizes)
        cache_path = Path(cache_dir) / f"prepared-{key}.npz"
        if cache_path.is_file():
            return _load_cache(cache_path, records)
    relative_sizes = None
    if crop_mode == "gt-box":
        relative_sizes = (tumor_relative_sizes(records) if normal_crop_sizes is None
                          else np.asarray(normal_crop_sizes, np.float64).reshape(-1, 2))
    images = np.zeros((len(records), size, size), np.uint8)
    masks = np.zeros((len(records), size, size), np.uint8) if with_masks else None
    geometries: list[CropGeometry | None] = [None] * len(records)
    failures: list[DataError] = []

    def work(i):
        try:
            return i, prepare_record(records[i], size, crop_mode, seed, relative_sizes,
                                     with_masks), None
        except DataError as error:
            return i, None, error

    with ThreadPoolExecutor(workers or default_workers()) as pool:
        for done, (i, result, error) in enumerate(pool.map(work, range(len(records))), 1):
            if error is not None:
                failures.append(error)
            else:
                images[i], geometries[i], mask = result
                if masks is not None:
                    masks[i] = mask
            if progress and (done % 50 == 0 or done == len(records)):
                print(f"\rpreparing images: {done}/{len(records)}", end="", flush=True,
                      file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    prepared = PreparedImages(records, images, geometries, masks, failures)
    if cache_path is not None and not failures:
        _save_cache(cache_path, prepared)
    return prepared


def _save_cache(path: Path, prepared: PreparedImages) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    geometries = json.dumps([g.to_dict() for g in prepared.geometries])
    tmp = path.with_suffix(".tmp.npz")
    arrays = {"images": prepared.images, "geometries": np.array(geometries)}
    if prepared.masks is not None:
        arrays["masks"] = prepared.masks
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_cache(path: Path, records) -> PreparedImages:
    with np.load(path) as data:
        geometries = [
            CropGeometry(**{k: tuple(v) if isinstance(v, list) else v for k, v in g.items()})
            for g in json.loads(str(data["geometries"]))
        ]
        masks = data["masks"] if "masks" in data else None
        return PreparedImages(list(records), data["images"], geometries, masks, [])
