"""Re-evaluate a saved classifier on a dataset split (command: ``bone-tumor evaluate``).

The split comes from ``--splits CSV``, else the ``splits.csv`` beside the model (the run's
own split), else the whole dataset (``--split all``). Images are prepared exactly as the
model's contract says (input size, crop mode). Writes ``metrics.json``, the plots and
``report.md`` to ``--out`` (default ``RUN/eval-<split>``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.dataset import resolve_data_dir
from bone_tumor_tf.data.prepare import encode_labels, prepare_images
from bone_tumor_tf.data.splits import select_split
from bone_tumor_tf.errors import DataError, ModelFileError
from bone_tumor_tf.evaluation.classifier_evaluation import write_classifier_evaluation
from bone_tumor_tf.inference import predict_probabilities
from bone_tumor_tf.models import is_segmentation_model, load_model, read_contract
from bone_tumor_tf.training.runs import read_history

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
    if is_segmentation_model(model):
        raise ModelFileError(f"{model_path}: a segmentation model; its test-split evaluation "
                             "is the run's report.md (compare runs with bone-tumor evaluate "
                             "--compare RUN1 RUN2)")
    contract = read_contract(model)
    data_dir, synthetic = resolve_data_dir(str(data))
    dataset = load_dataset(data_dir)
    splits_csv = Path(splits_csv) if splits_csv else model_path.parent / "splits.csv"
    records = select_split(dataset.records, split, splits_csv, data_dir)
    crop = contract.crop_mode
    if crop == "gt-box" and not dataset.annotated:
        raise DataError(data_dir, "model was trained with crop mode gt-box, which needs "
                                  "BTXRD annotations")
    prepared = prepare_images(records, contract.image_size, crop_mode=crop, seed=seed)
    if prepared.failures:
        first = prepared.failures[0]
        raise DataError(first.file, f"{first.problem} ({len(prepared.failures)} bad files)")
    class_names = list(contract.class_names)
    targets = encode_labels([r.label for r in records], dataset.class_names, contract.task)
    probs = predict_probabilities(model, prepared.images, batch_size)
    histories = [read_history(path)
                 for path in sorted(model_path.parent.glob("history_phase*.csv"))]
    out = Path(out) if out else model_path.parent / f"eval-{split}"
    metrics = write_classifier_evaluation(
        out, targets, probs, class_names, split=split, n_bootstrap=n_bootstrap, seed=seed,
        run_info={"model": str(model_path), "data": str(data_dir), "split": split,
                  "crop_mode": crop, "synthetic_data": synthetic},
        histories=histories,
        title=f"Evaluation of {model_path.name} on the {split} split",
        data_source=str(data_dir) + (" (synthetic)" if synthetic else ""),
        split_kind=f"{split} split from {splits_csv if split != 'all' else 'all images'}",
        crop_mode=crop, model_info={k: getattr(contract, k) for k in
                                    ("arch", "task", "image_size", "weights_source")},
        synthetic=synthetic)
    logger.info("%d images, accuracy %.3f", len(records), metrics["accuracy"])
    return out


if __name__ == "__main__":  # the old spelling of ``bone-tumor evaluate``
    from bone_tumor_tf.cli.evaluate import main

    raise SystemExit(main())
