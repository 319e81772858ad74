"""Re-evaluate a saved classifier on a dataset split (command: ``bone-tumor evaluate``).

The split comes from ``--splits CSV``, else the ``splits.csv`` beside the model (the run's
own split), else the whole dataset (``--split all``). Images are prepared exactly as the
model's contract says (input size, crop mode). Writes ``metrics.json``, the plots and
``report.md`` to ``--out`` (default ``RUN/eval-<split>``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.pipeline import encode_labels, prepare_images
from bone_tumor_tf.data.splits import load_splits
from bone_tumor_tf.errors import DataError, ModelFileError
from bone_tumor_tf.evaluation import (
    evaluate_predictions,
    plot_confusion_matrix,
    plot_reliability_diagram,
    plot_roc_curves,
    write_classification_report,
)
from bone_tumor_tf.inference import predict_probabilities
from bone_tumor_tf.io import atomic_write_json
from bone_tumor_tf.models import is_segmentation_model, load_model, read_contract
from bone_tumor_tf.training.classification import resolve_data_dir

logger = logging.getLogger(__name__)


def evaluate_saved_model(model_path, data, split="test", splits_csv=None, out=None,
                         n_bootstrap=1000, seed=0, batch_size=32) -> Path:
    """Evaluate ``model_path`` on a split of ``data``; returns the output folder."""
    model_path = Path(model_path)
    model = load_model(model_path)
    if is_segmentation_model(model):
        raise ModelFileError(f"{model_path}: a segmentation model; its test-split evaluation "
                             "is the run's report.md (compare runs with bone-tumor evaluate "
                             "--compare RUN1 RUN2)")
    contract = read_contract(model)
    data_dir, synthetic = resolve_data_dir(str(data))
    dataset = load_dataset(data_dir)
    records = list(dataset.records)
    splits_csv = Path(splits_csv) if splits_csv else model_path.parent / "splits.csv"
    if split != "all":
        if not splits_csv.is_file():
            raise DataError(splits_csv, f"no splits file to select --split {split} (pass "
                                        "--splits CSV or --split all)")
        frame = load_splits(splits_csv)
        wanted = set(frame.loc[frame["split"] == split, "image_id"])
        records = [r for r in records if r.image_id in wanted]
        if not records:
            raise DataError(splits_csv, f"no image of split {split!r} is in {data_dir}")
    crop = contract.crop_mode
    if crop == "gt-box" and not hasattr(dataset, "sheet"):
        raise DataError(data_dir, "model was trained with crop mode gt-box, which needs "
                                  "BTXRD annotations")
    prepared = prepare_images(records, contract.image_size, crop_mode=crop, seed=seed)
    if prepared.failures:
        first = prepared.failures[0]
        raise DataError(first.file, f"{first.problem} ({len(prepared.failures)} bad files)")
    class_names = list(contract.class_names)
    targets = encode_labels([r.label for r in records], dataset.class_names, contract.task)
    probs = predict_probabilities(model, prepared.images, batch_size)
    metrics = evaluate_predictions(targets, probs, class_names, n_bootstrap=n_bootstrap,
                                   seed=seed)
    metrics["run"] = {"model": str(model_path), "data": str(data_dir), "split": split,
                      "crop_mode": crop, "synthetic_data": synthetic}
    out = Path(out) if out else model_path.parent / f"eval-{split}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", metrics)
    plots = {
        "ROC curves": plot_roc_curves(targets, probs, class_names, out / "roc_curves.png"),
        "Confusion matrix": plot_confusion_matrix(metrics["confusion_matrix"], class_names,
                                                  out / "confusion_matrix.png"),
        "Reliability diagram": plot_reliability_diagram(targets, probs,
                                                        out / "reliability.png"),
    }
    write_classification_report(
        out, metrics, title=f"Evaluation of {model_path.name} on the {split} split",
        data_source=str(data_dir) + (" (synthetic)" if synthetic else ""),
        split_kind=f"{split} split from {splits_csv if split != 'all' else 'all images'}",
        crop_mode=crop, model_info={k: getattr(contract, k) for k in
                                    ("arch", "task", "image_size", "weights_source")},
        plots={k: str(v) for k, v in plots.items()}, synthetic=synthetic)
    accuracy = float(np.mean(np.argmax(probs, 1) == targets))
    logger.info("%d images, accuracy %.3f", len(records), accuracy)
    return out


if __name__ == "__main__":  # the old spelling of ``bone-tumor evaluate``
    from bone_tumor_tf.cli.evaluate import main

    raise SystemExit(main())
