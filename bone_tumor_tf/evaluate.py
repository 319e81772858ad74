"""Re-evaluate a saved classifier on a dataset split.

    python -m bone_tumor_tf.evaluate --model RUN/model.keras --data DIR [--split test]

The split comes from ``--splits CSV``, else the ``splits.csv`` beside the model (the run's
own split), else the whole dataset (``--split all``). Images are prepared exactly as the
model's contract says (input size, crop mode). Writes ``metrics.json``, the plots and
``report.md`` to ``--out`` (default ``RUN/eval-<split>``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bone_tumor_tf.errors import BoneTumorError, DataError  # noqa: E402


def evaluate_saved_model(model_path, data, split="test", splits_csv=None, out=None,
                         n_bootstrap=1000, seed=0, batch_size=32) -> Path:
    """Evaluate ``model_path`` on a split of ``data``; returns the output folder."""
    import numpy as np

    from bone_tumor_tf.data import load_dataset
    from bone_tumor_tf.data.pipeline import encode_labels, prepare_images
    from bone_tumor_tf.data.splits import load_splits
    from bone_tumor_tf.evaluation import (
        evaluate_predictions,
        plot_confusion_matrix,
        plot_reliability_diagram,
        plot_roc_curves,
        write_classification_report,
    )
    from bone_tumor_tf.inference import load_model, model_contract, predict_probabilities
    from bone_tumor_tf.io import atomic_write_json
    from bone_tumor_tf.training.classification import resolve_data_dir

    model_path = Path(model_path)
    model = load_model(model_path)
    contract = model_contract(model)
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
    crop = contract["crop_mode"]
    if crop == "gt-box" and not hasattr(dataset, "sheet"):
        raise DataError(data_dir, "model was trained with crop mode gt-box, which needs "
                                  "BTXRD annotations")
    prepared = prepare_images(records, int(contract["image_size"]), crop_mode=crop, seed=seed)
    if prepared.failures:
        first = prepared.failures[0]
        raise DataError(first.file, f"{first.problem} ({len(prepared.failures)} bad files)")
    class_names = list(contract["class_names"])
    targets = encode_labels([r.label for r in records], dataset.class_names, contract["task"])
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
        crop_mode=crop, model_info={k: contract.get(k) for k in
                                    ("arch", "task", "image_size", "weights_source")},
        plots={k: str(v) for k, v in plots.items()}, synthetic=synthetic)
    accuracy = float(np.mean(np.argmax(probs, 1) == targets))
    print(f"{len(records)} images, accuracy {accuracy:.3f}; report: {out / 'report.md'}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bone_tumor_tf.evaluate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="RUN/model.keras")
    parser.add_argument("--data", required=True, help="dataset folder or 'demo'")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    parser.add_argument("--splits", default=None, help="splits.csv (default: beside the model)")
    parser.add_argument("--out", default=None, help="output folder")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        evaluate_saved_model(args.model, args.data, args.split, args.splits, args.out,
                             args.n_bootstrap, args.seed)
    except BoneTumorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
