"""Predict with a saved model on new images (no ground truth needed).

    python -m bone_tumor_tf.predict --model RUN/model.keras IMAGE_OR_FOLDER... [--json]
    python -m bone_tumor_tf.predict --model SEG/model.keras IMAGES... --out MASKS_DIR

Classifiers: per image the class probabilities and the predicted class, as a table or as
JSON lines (``--json``: one object per line with ``file``, ``predicted``, ``probability``
and ``probabilities``). Segmentation models: a mask PNG at the input's original resolution
and an overlay per image in ``--out``. JPEG, 8/16-bit PNG, grayscale or RGB, DICOM.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bone_tumor_tf.errors import BoneTumorError, DataError  # noqa: E402


def is_segmentation_model(model) -> bool:
    return len(model.outputs[0].shape) == 4


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
    model runs on the current one (OpenCV and TensorFlow release the GIL).
    """
    from bone_tumor_tf.data.pipeline import default_workers
    from bone_tumor_tf.inference import load_input, model_contract

    contract = model_contract(model)
    names, size = list(contract["class_names"]), int(contract["image_size"])
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bone_tumor_tf.predict",
        description="Class probabilities (classifiers) or tumor masks (segmentation models) "
                    "for images or folders of images.")
    parser.add_argument("--model", required=True, help="a .keras model saved by this toolkit")
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (searched "
                                                  "recursively)")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=None,
                        help="output folder for segmentation masks and overlays")
    parser.add_argument("--threshold", type=float, default=None,
                        help="mask threshold (segmentation; default: the run's, from "
                             "model.json, else 0.5)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from bone_tumor_tf.inference import expand_inputs, load_model, model_contract

    try:
        model = load_model(args.model)
        files = expand_inputs(args.inputs)
        if not files:
            raise DataError(" ".join(args.inputs), "no image files found")
        if is_segmentation_model(model):
            if not args.out:
                raise BoneTumorError("--out is required for a segmentation model (masks are "
                                     "written as PNG files)")
            from bone_tumor_tf.evaluation.segmentation import read_model_sidecar
            from bone_tumor_tf.evaluation.segmentation_predictions import predict_masks

            threshold = args.threshold
            if threshold is None:
                threshold = float((read_model_sidecar(args.model) or {}).get("threshold", 0.5))
            results = predict_masks(model, files, args.out, threshold=threshold,
                                    batch_size=args.batch_size)
            for row in results:
                print(json.dumps(row) if args.json else
                      "  ".join(f"{k}={v}" for k, v in row.items()))
            return 0
        contract = model_contract(model)
        if contract.get("crop_mode") == "gt-box":
            print("warning: this model was trained on images cropped to the ground-truth "
                  "tumor box (crop mode gt-box); whole radiographs given here differ from "
                  "what it saw in training, so its probabilities are not calibrated for them",
                  file=sys.stderr)
        failed = 0
        names = list(contract["class_names"])
        if not args.json:
            print("file\tpredicted\t" + "\t".join(f"p({n})" for n in names))
        for row in predict_classifier(model, files, args.batch_size, progress=not args.json):
            if "error" in row:
                failed += 1
                print(f"error: {row['error']}", file=sys.stderr)
                continue
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{row['file']}\t{row['predicted']}\t" + "\t".join(
                    f"{row['probabilities'][n]:.4f}" for n in names))
        return 1 if failed else 0
    except BoneTumorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
