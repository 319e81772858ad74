"""Re-evaluate a saved classifier or U-Net on a dataset split (``bone-tumor evaluate``).

The split comes from ``--splits CSV``, else the ``splits.csv`` beside the model (the run's
own split), else the whole dataset (``--split all``). Images are prepared exactly as the
model's contract says (input size, crop mode). Writes ``metrics.json``, the plots and
``report.md`` to ``--out`` (default ``RUN/eval-<split>``).

A U-Net is evaluated as its training run evaluates the test split (at each image's original
resolution, at the model's saved threshold, next to the empty prediction), on the split's
annotated tumor images and its normal radiographs: so settings can be compared on the
validation split at one resolution whatever each model's input size. A U-Net trained on
tumor images only has only those in its ``splits.csv``; give a classifier run's
``splits.csv`` (the same split, see :func:`bone_tumor_tf.data.dataset.load_run_data`) to
count the normal radiographs it marks.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.dataset import resolve_data_dir
from bone_tumor_tf.data.prepare import encode_labels, prepare_images, tumor_relative_sizes
from bone_tumor_tf.data.splits import select_split
from bone_tumor_tf.errors import DataError
from bone_tumor_tf.evaluation.classifier_evaluation import write_classifier_evaluation
from bone_tumor_tf.evaluation.reports.segmentation import (
    write_case_overlays,
    write_segmentation_report,
)
from bone_tumor_tf.evaluation.segmentation import evaluate_segmentation
from bone_tumor_tf.inference import predict_probabilities
from bone_tumor_tf.inference.segmentation import (
    OriginalResolutionPredictions,
    predictions_at_original_resolution,
)
from bone_tumor_tf.io import atomic_write_json
from bone_tumor_tf.models import is_segmentation_model, load_model, read_contract
from bone_tumor_tf.training.runs import read_history
from bone_tumor_tf.training.segmentation import wants_record

logger = logging.getLogger(__name__)


def evaluate_saved_model(model_path, data, split="test", splits_csv=None, out=None,
                         n_bootstrap=1000, seed=0, batch_size=32) -> Path:
    """Evaluate ``model_path`` on a split of ``data``; returns the output folder.

    Writes what a training run writes for its test split
    (:func:`~bone_tumor_tf.evaluation.classifier_evaluation.write_classifier_evaluation`):
    ``metrics.json``, the plots (the training curves too when the model's run folder holds
    its ``history_phase*.csv``) and ``report.md``.
    """
    model_path = Path(model_path)
    model = load_model(model_path)
    contract = read_contract(model)
    data_dir, synthetic = resolve_data_dir(str(data))
    dataset = load_dataset(data_dir)
    splits_csv = Path(splits_csv) if splits_csv else model_path.parent / "splits.csv"
    records = select_split(dataset.records, split, splits_csv, data_dir)
    out = Path(out) if out else model_path.parent / f"eval-{split}"
    split_kind = f"{split} split from {splits_csv if split != 'all' else 'all images'}"
    if is_segmentation_model(model):
        return _evaluate_segmenter(model, model_path, contract, records, data_dir, synthetic,
                                   split, split_kind, out, seed, batch_size)
    crop = contract.crop_mode
    if crop == "gt-box" and not dataset.annotated:
        raise DataError(data_dir, "model was trained with crop mode gt-box, which needs "
                                  "BTXRD annotations")
    # normal images' gt-box crops drawn as the training run drew them (from the whole dataset)
    sizes = tumor_relative_sizes(dataset.records) if crop == "gt-box" else None
    prepared = _prepared_or_error(records, contract.image_size, crop, seed, sizes)
    class_names = list(contract.class_names)
    targets = encode_labels([r.label for r in records], dataset.class_names, contract.task)
    probs = predict_probabilities(model, prepared.images, batch_size)
    histories = [read_history(path)
                 for path in sorted(model_path.parent.glob("history_phase*.csv"))]
    metrics = write_classifier_evaluation(
        out, targets, probs, class_names, split=split, n_bootstrap=n_bootstrap, seed=seed,
        run_info={"model": str(model_path), "data": str(data_dir), "split": split,
                  "crop_mode": crop, "synthetic_data": synthetic},
        histories=histories,
        title=f"Evaluation of {model_path.name} on the {split} split",
        data_source=str(data_dir) + (" (synthetic)" if synthetic else ""),
        split_kind=split_kind,
        crop_mode=crop, model_info={k: getattr(contract, k) for k in
                                    ("arch", "task", "image_size", "weights_source")},
        synthetic=synthetic, groups=[record.group for record in records])
    logger.info("%d images, accuracy %.3f", len(records), metrics["accuracy"])
    return out


def _prepared_or_error(records, image_size: int, crop_mode: str, seed: int,
                       normal_crop_sizes=None):
    prepared = prepare_images(records, image_size, crop_mode=crop_mode, seed=seed,
                              normal_crop_sizes=normal_crop_sizes)
    if prepared.failures:
        first = prepared.failures[0]
        raise DataError(first.file, f"{first.problem} ({len(prepared.failures)} bad files)")
    return prepared


def _evaluate_segmenter(model, model_path: Path, contract, records, data_dir, synthetic,
                        split: str, split_kind: str, out: Path, seed: int,
                        batch_size: int) -> Path:
    """A U-Net on the split's annotated tumor images and normal radiographs (see above)."""
    records = [r for r in records if wants_record(r, include_normals=True)]
    if not any(r.label != "normal" for r in records):
        raise DataError(data_dir, f"no annotated tumor image in the {split} split to score "
                                  "the segmentation model on")
    prepared = _prepared_or_error(records, contract.image_size, "none", seed)
    predictions = predictions_at_original_resolution(model, prepared.images,
                                                     prepared.geometries, records, batch_size)
    # as in training: a tumor image whose annotation holds no polygon has no mask to score
    keep = [k for k in range(len(records))
            if predictions.is_normal[k] or predictions.masks[k].any()]
    predictions = OriginalResolutionPredictions(
        [records[k] for k in keep], [predictions.probabilities[k] for k in keep],
        [predictions.masks[k] for k in keep], predictions.is_normal[keep])
    threshold = contract.threshold
    metrics = {"task": "segmentation", "split": split,
               **evaluate_segmentation(predictions, threshold, seed=seed),
               "run": {"model": str(model_path), "data": str(data_dir), "split": split,
                       "synthetic_data": bool(synthetic),
                       "tumor_images_without_polygon": len(records) - len(keep)}}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", metrics)
    overlays = write_case_overlays(predictions, metrics, out, threshold)
    write_segmentation_report(
        out, metrics, title=f"Evaluation of {model_path.name} on the {split} split",
        data_source=str(data_dir) + (" (synthetic)" if synthetic else ""),
        split_kind=split_kind, split=split,
        model_info={"model": str(model_path), "input": f"{contract.image_size} px",
                    "mask threshold": f"{threshold:g}"},
        figures={f"{case.capitalize()} {split} case by Dice (green: ground truth, red: "
                 "prediction)": path for case, path in overlays.items()},
        synthetic=synthetic)
    logger.info("%d images, mean Dice per tumor image %.3f", len(keep),
                metrics["tumor_dice_mean"])
    return out


if __name__ == "__main__":  # the old spelling of ``bone-tumor evaluate``
    from bone_tumor_tf.cli.evaluate import main

    raise SystemExit(main())
