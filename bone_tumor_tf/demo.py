"""The main job on the embedded synthetic data (``make demo``, ``bone-tumor demo``).

Steps, each writing into ``--out``:

1. generate a synthetic BTXRD-format dataset (400 phantom radiographs, LabelMe JSON,
   ``dataset.xlsx``) and an MRI-style ``cancer/`` vs ``normal/`` folder set (inspected);
2. inspect the BTXRD-format set and split it by patient (``inspection.json``,
   ``splits.csv``), and save a contact sheet of one augmented training batch per class
   (``augmented_batch.png``);
3. train DenseNet121 three-class (normal / benign / malignant) and ResNet50 binary (tumor vs
   normal), both from random weights at 64 px with crop ``gt-box``, and evaluate them; then
   a DenseNet121 tumor-vs-normal classifier of WHOLE radiographs (crop ``none``, 128 px)
   whose backbone starts from the three-class run's (``weights=<run>/model.keras``);
4. train the attention U-Net on the tumor masks and evaluate it;
5. Grad-CAM and Grad-CAM++ overlays for the whole-image model's test images, and how often
   they hit the lesion (last conv layer, and ``pool3_relu`` at 16x16 resolution);
6. the diagnosis chain on the test split: the attention U-Net proposes tumors, the
   three-class ``gt-box`` classifier of step 3 reads each crop (``diagnosis/``:
   ``diagnosis_report.md``, ``index.html``), measured like a detector and against the
   classifier on the ground-truth crops;
7. ``summary.md``: the headline figures and where every report is.

The data are synthetic phantoms: the figures show that the pipeline learns, not clinical
performance. Runs that already finished are reused, so an interrupted demo picks up where
it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.dataset import resolve_data_dir
from bone_tumor_tf.data.inspection import inspect_dataset
from bone_tumor_tf.data.prepare import tumor_relative_sizes
from bone_tumor_tf.data.preview import preview_dataset
from bone_tumor_tf.data.splits import make_splits, save_splits
from bone_tumor_tf.diagnosis.command import split_records
from bone_tumor_tf.diagnosis.evaluate import evaluate_chain
from bone_tumor_tf.diagnosis.models import load_chain_models
from bone_tumor_tf.evaluation.reports.markdown import format_ci, format_number
from bone_tumor_tf.explain.scoring import CamOptions, explain
from bone_tumor_tf.io import atomic_write_json, atomic_write_text
from bone_tumor_tf.training.classification import ClassifierOptions, train_classifier
from bone_tumor_tf.training.segmentation import SegmentationOptions, train_segmentation

logger = logging.getLogger(__name__)


def _step(title: str) -> float:
    logger.info("\n=== %s", title)
    return time.perf_counter()


def _finished(run_dir: Path) -> bool:
    return (run_dir / "model.keras").is_file() and (run_dir / "metrics.json").is_file()


CACHE_DIR = Path("runs") / ".cache"


def demo_classifier(data, out, arch: str, task: str, crop: str, quick: bool):
    """Options of a demo classifier: random init, 64 px, 2 + 8 epochs (1 + 1 with quick)."""

    return ClassifierOptions(
        data=str(data), out=str(out), arch=arch, task=task, weights="none", crop=crop,
        epochs=1 if quick else 2, phase2_epochs=1 if quick else 8, image_size=64,
        batch_size=32, lr=3e-3, phase2_lr=1e-3, patience=4, cache_dir=str(CACHE_DIR),
        n_bootstrap=200 if quick else 1000, verbose=2)


def whole_image_classifier(data, out, init_model, quick: bool):
    """Options of the whole-radiograph tumor-vs-normal DenseNet121 (crop none, 128 px).

    From random weights a whole-image model does not learn within the demo's budget (see
    the README); its backbone therefore starts from the tumor-box run's, and every layer
    is fine-tuned (BatchNorm statistics kept).
    """

    return ClassifierOptions(
        data=str(data), out=str(out), arch="densenet121", task="binary",
        weights=str(init_model), unfreeze="all", crop="none",
        epochs=1 if quick else 2, phase2_epochs=1 if quick else 12,
        image_size=64 if quick else 128, batch_size=32, lr=3e-3, phase2_lr=3e-4,
        patience=5, cache_dir=str(CACHE_DIR), n_bootstrap=200 if quick else 1000,
        verbose=2)


#: Grad-CAM runs of the demo: (folder name, --layer or None for the default last conv).
CAM_RUNS = (("gradcam", None), ("gradcam-pool3", "pool3_relu"))


def run_demo(out: str | Path, quick: bool = False) -> Path:
    """Run every step; returns the path of ``summary.md``."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}

    start = _step("1. synthetic data")
    btxrd_dir, _ = resolve_data_dir("demo", "btxrd")
    folders_dir, _ = resolve_data_dir("demo", "folders")
    logger.info("BTXRD-format set: %s\nclass-per-folder set: %s", btxrd_dir, folders_dir)
    timings["data"] = time.perf_counter() - start

    start = _step("2. inspect, split, preview")
    report = inspect_dataset(btxrd_dir)
    logger.info("%s", report.format_text())
    atomic_write_json(out / "inspection.json", report.to_dict())
    folders_report = inspect_dataset(folders_dir)
    logger.info("%s", folders_report.format_text())
    atomic_write_json(out / "inspection_folders.json", folders_report.to_dict())
    dataset = load_dataset(btxrd_dir)
    splits = make_splits(dataset.records, by="patient", seed=0)
    save_splits(splits, out / "splits.csv")
    logger.info("%s", splits.groupby(["split", "label"]).size().unstack(fill_value=0).to_string())
    preview = preview_dataset(btxrd_dir, out / "augmented_batch.png", crop_mode="gt-box",
                              image_size=128)
    logger.info("augmented training batch: %s", preview)
    timings["inspect"] = time.perf_counter() - start

    densenet_dir = out / "densenet121-multiclass"
    start = _step("3a. DenseNet121, normal / benign / malignant (crop gt-box)")
    if not _finished(densenet_dir):
        train_classifier(demo_classifier(btxrd_dir, densenet_dir, "densenet121", "multiclass",
                                         "gt-box", quick))
    timings["densenet121"] = time.perf_counter() - start

    # The binary task runs on the BTXRD-format set: from random weights at 64 px, whole
    # images (the folder set, crop none) are not learned within the demo's budget.
    resnet_dir = out / "resnet50-binary"
    start = _step("3b. ResNet50, tumor vs normal (crop gt-box)")
    if not _finished(resnet_dir):
        train_classifier(demo_classifier(btxrd_dir, resnet_dir, "resnet50", "binary", "gt-box",
                                         quick))
    timings["resnet50"] = time.perf_counter() - start

    whole_dir = out / "densenet121-binary-whole-image"
    start = _step("3c. DenseNet121, tumor vs normal on whole radiographs (crop none), "
                  "backbone from 3a")
    if not _finished(whole_dir):
        train_classifier(whole_image_classifier(btxrd_dir, whole_dir,
                                                densenet_dir / "model.keras", quick))
    timings["densenet121_whole_image"] = time.perf_counter() - start

    unet_dir = out / "attention-unet"
    start = _step("4. attention U-Net, tumor masks")
    if not _finished(unet_dir):
        quick_settings = {"epochs": 2, "image_size": 64} if quick else {}
        train_segmentation(SegmentationOptions(
            data=str(btxrd_dir), out=str(unet_dir), arch="attention-unet",
            cache_dir=str(CACHE_DIR), verbose=2, **quick_settings))
    timings["attention_unet"] = time.perf_counter() - start

    start = _step("5. Grad-CAM on the whole-image model's test images")

    gradcam_dirs = []
    for name, layer in CAM_RUNS:
        gradcam_dirs.append(out / name)
        written = explain(CamOptions(
            model=whole_dir / "model.keras", data=btxrd_dir, split="test", out=out / name,
            methods=("gradcam", "gradcam++"), panel=True, progress=False,
            limit=24 if quick else 60, layer=layer))
        logger.info("wrote %s to %s", ", ".join(written), out / name)
    timings["gradcam"] = time.perf_counter() - start

    diagnosis_dir = out / "diagnosis"
    start = _step("6. diagnosis chain: attention U-Net finds the tumor, 3a classifies the crop")
    models = load_chain_models(unet_dir / "model.keras", densenet_dir / "model.keras")
    every = load_dataset(btxrd_dir).records
    records = split_records(btxrd_dir, "test", densenet_dir / "splits.csv",
                            unet_dir / "model.keras", every)
    evaluate_chain(models, records, diagnosis_dir, n_bootstrap=500 if quick else 2000,
                   normal_crop_sizes=tumor_relative_sizes(every))
    timings["diagnosis"] = time.perf_counter() - start

    summary = write_summary(out, densenet_dir, resnet_dir, unet_dir, gradcam_dirs, timings,
                            whole_dir, diagnosis_dir)
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=2))
    return summary


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _fmt(value, digits=3) -> str:
    return format_number(value, digits)


def write_summary(out, densenet_dir, resnet_dir, unet_dir, gradcam_dirs, timings,
                  whole_dir=None, diagnosis_dir=None) -> Path:
    """``summary.md``: headline figures of every step with links to the full reports."""

    densenet = _load(densenet_dir / "metrics.json")
    resnet = _load(resnet_dir / "metrics.json")
    whole = _load(whole_dir / "metrics.json") if whole_dir is not None else {}
    unet = _load(unet_dir / "metrics.json")
    lines = [
        "# bone_tumor_tf demo (synthetic phantom data, not clinical performance)", "",
        "| step | figure | value |", "|---|---|---|",
    ]
    if densenet:
        tvn = densenet.get("tumor_vs_normal") or {}
        malignant = densenet["per_class"].get("malignant", {})
        lines += [
            f"| DenseNet121 3-class | test accuracy | {_fmt(densenet['accuracy'])} |",
            f"| DenseNet121 3-class | test macro F1 | {_fmt(densenet['macro_f1'])} |",
            f"| DenseNet121 3-class | tumor vs normal ROC AUC | {_fmt(tvn.get('roc_auc'))} |",
            f"| DenseNet121 3-class | malignant recall | {_fmt(malignant.get('recall'))} |",
        ]
    if resnet:
        positive = resnet["class_names"][1]
        lines += [
            f"| ResNet50 binary | test accuracy | {_fmt(resnet['accuracy'])} |",
            f"| ResNet50 binary | {positive} ROC AUC | "
            f"{_fmt(resnet['per_class'][positive]['roc_auc'])} |",
        ]
    if whole:
        positive = whole["class_names"][1]
        lines += [
            f"| DenseNet121 whole image (crop none) | test accuracy | "
            f"{_fmt(whole['accuracy'])} |",
            f"| DenseNet121 whole image (crop none) | {positive} ROC AUC | "
            f"{_fmt(whole['per_class'][positive]['roc_auc'])} |",
        ]
    if unet:
        empty = unet.get("empty_prediction") or {}
        lines += [
            f"| attention U-Net | test Dice, mean / median per image | "
            f"{_fmt(unet.get('dice_mean'))} / {_fmt(unet.get('dice_median'))} |",
            f"| attention U-Net | test IoU, mean per image | {_fmt(unet.get('iou_mean'))} |",
            f"| attention U-Net | pixel ROC AUC | {_fmt(unet.get('pixel_auc'))} |",
            f"| attention U-Net | Dice of an empty prediction | {_fmt(empty.get('dice_mean'))} |",
        ]
    for gradcam_dir in gradcam_dirs:
        cams = _load(Path(gradcam_dir) / "cam_metrics.json")
        for method, entry in (cams.get("metrics") or {}).items():
            hit, chance = entry["pointing_game"], entry["chance_level"]
            lines.append(
                f"| {method} (layer {cams.get('layer')}) | pointing game [95% CI] vs chance | "
                f"{format_ci(hit)} vs "
                f"{_fmt(chance['estimate'])} |")
    diagnosis = _load(Path(diagnosis_dir) / "diagnosis_metrics.json") if diagnosis_dir else {}
    if diagnosis:
        chain, oracle = (diagnosis["image_level"][k]["balanced_accuracy"]
                         for k in ("chain", "oracle"))
        difference = diagnosis["differences"]["chain - oracle"]["balanced_accuracy"]
        rate = dict(diagnosis["normal_false_tumor_rate"])
        rate["estimate"] = rate.pop("rate")
        lines += [
            f"| diagnosis chain | detection mAP50 | {_fmt(diagnosis['detection']['map'])} |",
            f"| diagnosis chain | balanced accuracy: chain / gt-box oracle | {_fmt(chain)} / "
            f"{_fmt(oracle)} |",
            f"| diagnosis chain | chain - oracle (paired 95% CI) | "
            f"{format_ci(difference, signed=True)} |",
            f"| diagnosis chain | share of the oracle's advantage over chance kept | "
            f"{_fmt(diagnosis['oracle_advantage_recovered'])} |",
            f"| diagnosis chain | normal radiographs given a tumor | {format_ci(rate)} |",
        ]
    lines += ["", "Reports:", ""]
    reports = [densenet_dir / "report.md", resnet_dir / "report.md"]
    if whole_dir is not None:
        reports.append(whole_dir / "report.md")
    reports += [unet_dir / "report.md"]
    reports += [Path(d) / "cam_report.md" for d in gradcam_dirs]
    if diagnosis_dir is not None:
        reports += [Path(diagnosis_dir) / "diagnosis_report.md",
                    Path(diagnosis_dir) / "index.html"]
    for path in (*reports, Path(out) / "augmented_batch.png"):
        if path.exists():
            lines.append(f"- {path}")
    lines += ["", "Wall time per step (s): " + ", ".join(
        f"{k} {v:.0f}" for k, v in timings.items()), ""]
    return atomic_write_text(Path(out) / "summary.md", "\n".join(lines))


if __name__ == "__main__":  # the old spelling of ``bone-tumor demo``
    from bone_tumor_tf.cli.demo import main

    raise SystemExit(main())
