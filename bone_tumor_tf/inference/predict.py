"""Predictions of a saved model on new images (no ground truth needed).

Classifiers: per image the class probabilities and the predicted class
(:func:`predict_classifier`). Segmentation models: a mask PNG at the input's original
resolution and an overlay per image (:func:`predict_segmentation`). JPEG, 8/16-bit PNG,
grayscale or RGB, DICOM. Command: ``bone-tumor predict``.
"""

from __future__ import annotations

import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bone_tumor_tf.data.prepare import default_workers
from bone_tumor_tf.errors import DataError
from bone_tumor_tf.inference.inputs import load_input
from bone_tumor_tf.inference.segmentation import predict_masks
from bone_tumor_tf.models.contract import read_contract

logger = logging.getLogger(__name__)


def batch_probabilities(model, images: np.ndarray) -> np.ndarray:
    """Class probabilities (n, K) of ONE batch of ``uint8`` images (n, S, S).

    Same values as :func:`bone_tumor_tf.inference.predict_probabilities` (sigmoid output
    -> ``[1 - p, p]``), through ``model.predict_on_batch``: ``model.predict`` sets up a
    data adapter and iterator on every call, which costs about as much as decoding the
    batch (``bench/predict_throughput.py``).
    """
    probs = np.asarray(model.predict_on_batch(np.asarray(images, np.float32)[..., None]),
                       np.float64)
    if probs.shape[-1] == 1:
        probs = np.concatenate([1.0 - probs, probs], axis=-1)
    return probs


def predict_classifier(model, files, batch_size: int = 32, progress: bool = True):
    """Yield one result dict per file: ``{"file", "predicted", "probability",
    "probabilities"}``, or ``{"file", "error"}`` for a file that cannot be read.

    Files are decoded in a thread pool one batch ahead: the next batch decodes while the
    model runs on the current one (OpenCV and TensorFlow release the GIL). A model trained
    on tumor-box crops (crop mode ``gt-box``) gets a warning: whole radiographs differ from
    what it saw.
    """
    contract = read_contract(model)
    names, size = list(contract.class_names), contract.image_size
    if contract.crop_mode == "gt-box":
        logger.warning("this model was trained on images cropped to the ground-truth tumor "
                       "box (crop mode gt-box); whole radiographs given here differ from "
                       "what it saw in training, so its probabilities are not calibrated "
                       "for them")
    # Progress goes to stderr, so that stdout stays a clean table / JSON lines.
    show_progress = progress and len(files) > batch_size

    def load(path):
        try:
            return load_input(path, size).input, None
        except DataError as error:
            return None, str(error)

    with ThreadPoolExecutor(default_workers()) as pool:
        pending = [pool.submit(load, path) for path in files[:batch_size]]
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            loaded = [future.result() for future in pending]
            pending = [pool.submit(load, path)
                       for path in files[start + batch_size:start + 2 * batch_size]]
            good = [i for i, (image, _) in enumerate(loaded) if image is not None]
            probs = batch_probabilities(model, np.stack([loaded[i][0] for i in good])) \
                if good else np.empty((0, len(names)))
            by_index = dict(zip(good, probs, strict=True))
            for i, path in enumerate(chunk):
                if i not in by_index:
                    yield {"file": str(path), "error": loaded[i][1]}
                    continue
                p = by_index[i]
                k = int(np.argmax(p))
                yield {"file": str(path), "predicted": names[k], "probability": float(p[k]),
                       "probabilities": {n: float(v) for n, v in zip(names, p, strict=True)}}
            if show_progress:
                done = min(start + batch_size, len(files))
                print(f"\rpredicted {done}/{len(files)} images", end="\n" if done == len(files)
                      else "", file=sys.stderr, flush=True)


def predict_segmentation(model, files, out: str | Path, threshold: float | None = None,
                         batch_size: int = 8, tta: str = "none") -> list[dict]:
    """Masks and overlays of ``files`` in ``out`` (see
    :func:`bone_tumor_tf.inference.segmentation.predict_masks`); one dict per file.

    ``threshold`` defaults to the one in the model's contract (the run's), else 0.5.
    """
    if threshold is None:
        threshold = read_contract(model).threshold
    return predict_masks(model, files, out, threshold=threshold, batch_size=batch_size,
                         tta=tta)
