"""The demo's steps on a real BTXRD folder (``bone-tumor demo --data PATH``).

``PATH`` is a BTXRD-layout folder as figshare ships it (``images/``, ``Annotations/``,
``dataset.xlsx``) or a resized copy of it (e.g. 256-px PNGs with the original LabelMe files
and sheet, read as :mod:`bone_tumor_tf.data.annotations` describes). Every step runs one of
the toolkit's own commands with the arguments written in ``summary.md``, so each figure can
be reproduced on its own. All models start from random initialisation (no pretrained
weights can be downloaded on the machines this was built on); the split is the default
patient-grouped one (seed 0), the same in every step.

Steps (``OUT/<step>/``), in the order that gives the chain its models first:

1. ``bone-tumor data inspect`` (``inspection.json``);
2. DenseNet121 normal / benign / malignant on tumor-box crops (``gt-box``, 64 px);
3. attention U-Net on the tumor images' masks (128 px, 25 epochs; with
   ``--include-normals`` from random weights it collapsed to empty masks on real BTXRD,
   see the README), then 7 more epochs with the normal radiographs (``--init-from``):
   the chain's segmenter; that U-Net is also scored at the mask threshold that gives at
   most 15% of the normal validation radiographs a mask (``--max-normal-marked``, no
   training);
4. DenseNet121 three classes on whole radiographs (``none``, 128 px), backbone from step 2;
5. Grad-CAM and Grad-CAM++ of step 4 at two layers on the VALIDATION split; the best
   pointing game there picks the method and layer that run on the test split;
6. the diagnosis chain (3's second U-Net finds, 2 classifies, 4 as whole-image model) on
   the validation split at three mask thresholds, where its operating point
   (``--threshold``, ``--whole-image-weight`` and ``--tumor-threshold``) is chosen under a
   15% false-alarm budget on normal radiographs, then on the test split;
7. ResNet50 tumor vs normal on whole radiographs (``none``, 128 px);
8. ``summary.md``: one table, each figure with its 95% interval, split, crop, input size,
   wall time and command.

A step whose outputs exist is skipped, so an interrupted demo resumes where it stopped. The
settings are sized for about two hours on 2 CPU cores; nothing here was chosen on a test
split.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from pathlib import Path

import numpy as np

from bone_tumor_tf.cli import diagnose as diagnose_cli
from bone_tumor_tf.cli import gradcam as gradcam_cli
from bone_tumor_tf.cli import segment as segment_cli
from bone_tumor_tf.cli import train as train_cli
from bone_tumor_tf.data.dataset import resolve_data_dir
from bone_tumor_tf.data.inspection import inspect_dataset
from bone_tumor_tf.diagnosis.command import split_records
from bone_tumor_tf.diagnosis.operating_point import (
    best_point,
    choose_operating_point,
    selection_optimism,
)
from bone_tumor_tf.diagnosis.run import read_results
from bone_tumor_tf.errors import DataError
from bone_tumor_tf.evaluation.reports.markdown import format_ci, format_number, markdown_table
from bone_tumor_tf.evaluation.segmentation import dice_by_tumor_size, segmentation_intervals
from bone_tumor_tf.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

#: False-alarm budget of the chain's operating point, chosen on validation: at most this
#: share of normal radiographs called a tumor (the real-data issue's target; BTXRD-LViT's
#: U-Net marks 32%).
MAX_NORMAL_FALSE_TUMOR_RATE = 0.15

#: The chain's mask thresholds tried on validation (None: the segmenter's own). A lower
#: threshold proposes more regions and the crop classifier and the tumor threshold filter
#: them: on the real validation split 0.8 beat the normals U-Nets' own 0.9 by 0.024 and
#: 0.005 balanced accuracy, a gain the test split did not confirm
#: (docs/real-data-decisions.md, eleventh session).
CHAIN_MASK_THRESHOLDS = (None, 0.8, 0.7)

#: ``(method, layer)`` pairs tried on the validation split (None: the last conv layer).
CAM_CANDIDATES = ((None, ("gradcam", "gradcam++")), ("pool3_relu", ("gradcam", "gradcam++")))

COMMANDS = {train_cli: "train", segment_cli: "segment", gradcam_cli: "gradcam",
            diagnose_cli: "diagnose"}


def _command(module, argv: list[str]) -> str:
    return f"bone-tumor {COMMANDS[module]} {shlex.join(argv)}"


class RealDemo:
    """State of one real-data demo: the output folder, step timings, commands."""

    def __init__(self, data: str | Path, out: str | Path, quick: bool = False):
        self.data, synthetic = resolve_data_dir(str(data))
        if not self.data.is_dir():
            raise DataError(self.data, "no such folder")
        self.synthetic = synthetic
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.quick = quick
        self.cache = str(self.out / ".cache")
        self.timings_path = self.out / "timings.json"
        self.timings = (json.loads(self.timings_path.read_text())
                        if self.timings_path.is_file() else {})
        self.commands: dict[str, str] = {}

    @property
    def size(self) -> int:
        """Input side of the whole-image models and the U-Net (px)."""
        return 64 if self.quick else 128

    def epochs(self, full: int) -> str:
        return "1" if self.quick else str(full)

    def step(self, name: str, module, argv: list[str], done: Path) -> None:
        """Run ``bone-tumor <command> argv`` unless ``done`` exists; time it.

        The step's wall time adds up over attempts: an interrupted or failed attempt
        (whose finished epochs the resumed run keeps) counts as well, so ``timings.json``
        holds what the step cost in all.
        """
        self.commands[name] = _command(module, argv)
        if done.exists():
            logger.info("=== %s: done earlier (%s)", name, done)
            return
        logger.info("\n=== %s\n%s", name, self.commands[name])
        start = time.perf_counter()
        try:
            module.run(module.build_parser().parse_args(argv))
        finally:
            spent = time.perf_counter() - start
            self.timings[name] = round(self.timings.get(name, 0.0) + spent, 1)
            atomic_write_text(self.timings_path, json.dumps(self.timings, indent=2))

    def classifier(self, name: str, arch: str, task: str, crop: str, size: int,
                   extra: list[str], phase2_epochs: int = 8) -> Path:
        run = self.out / name
        argv = ["--data", str(self.data), "--out", str(run), "--arch", arch, "--task", task,
                "--crop", crop, "--image-size", str(size), "--epochs", self.epochs(2),
                "--phase2-epochs", self.epochs(phase2_epochs), "--cache-features", "--cache-dir",
                self.cache, *extra]
        self.step(name, train_cli, argv, run / "metrics.json")
        return run


def run_real_demo(data: str | Path, out: str | Path, quick: bool = False) -> Path:
    """Run every step on the dataset folder ``data``; returns the path of ``summary.md``."""
    demo = RealDemo(data, out, quick)
    out = demo.out

    report = inspect_dataset(demo.data)
    logger.info("%s", report.format_text())
    atomic_write_json(out / "inspection.json", report.to_dict())
    if not report.usable:
        raise DataError(demo.data, "inspection found errors; see inspection.json")

    runs = {name: out / name for name in (
        "densenet121-3class-gt-box", "attention-unet", "attention-unet-normals",
        "attention-unet-normals-budget", "densenet121-3class-whole-image",
        "gradcam-test", "diagnosis-test", "resnet50-tumor-vs-normal-whole-image")}
    choices: dict = {}
    try:
        _run_steps(demo, runs, choices)
    finally:  # an interrupted demo still summarises the steps that finished
        atomic_write_json(out / "choices.json", choices)
        summary = write_real_summary(
            demo, runs["densenet121-3class-gt-box"], runs["attention-unet"],
            runs["densenet121-3class-whole-image"], runs["resnet50-tumor-vs-normal-whole-image"],
            runs["gradcam-test"], runs["diagnosis-test"], choices,
            unet_normals=runs["attention-unet-normals"],
            unet_budget=runs["attention-unet-normals-budget"])
    return summary


def _run_steps(demo: RealDemo, runs: dict[str, Path], choices: dict) -> None:
    size = demo.size
    crops = demo.classifier("densenet121-3class-gt-box", "densenet121", "multiclass", "gt-box",
                            64, ["--lr", "3e-3", "--phase2-lr", "1e-3", "--patience", "4"])

    # Tumor images only (the thesis' setting): with --include-normals the attention U-Net
    # collapsed to empty masks on real BTXRD (validation Dice flat at the empty level).
    # 25 epochs (the command's default): validation Dice 0.251 against 0.149 after 12.
    unet = runs["attention-unet"]
    demo.step("attention-unet", segment_cli, [
        "--data", str(demo.data), "--out", str(unet), "--arch", "attention-unet",
        "--image-size", str(size), "--epochs", demo.epochs(25), "--cache-dir", demo.cache],
        unet / "metrics.json")

    # Then on with the normal radiographs, from the tumor-only weights (from random weights
    # the U-Net collapsed to empty masks with them). On validation the chain with this
    # segmenter scored balanced accuracy 0.580 with 13.5% of normals flagged, against 0.515
    # with 12.1% with the tumor-only U-Net (docs/real-data-decisions.md). 7 epochs: the best
    # validation Dice came at epoch 5 and epoch 7 of two 10-epoch runs.
    segmenter = runs["attention-unet-normals"]
    demo.step("attention-unet-normals", segment_cli, [
        "--data", str(demo.data), "--out", str(segmenter), "--arch", "attention-unet",
        "--include-normals", "--dice-on", "tumor", "--init-from", str(unet),
        "--image-size", str(size), "--epochs", demo.epochs(7), "--lr", "5e-4",
        "--patience", "6", "--cache-dir", demo.cache], segmenter / "metrics.json")

    # The same weights at the mask threshold that keeps to the false-alarm budget on
    # validation (no training): what the U-Net gives when at most 15% of normals may be
    # marked, the real-data issue's target. The chain keeps the U-Net above, whose regions
    # its own operating point filters.
    budget = runs["attention-unet-normals-budget"]
    demo.step("attention-unet-normals-budget", segment_cli, [
        "--data", str(demo.data), "--out", str(budget), "--arch", "attention-unet",
        "--include-normals", "--dice-on", "tumor", "--init-from", str(segmenter),
        "--image-size", str(size), "--epochs", "0",
        "--max-normal-marked", str(MAX_NORMAL_FALSE_TUMOR_RATE), "--cache-dir", demo.cache],
        budget / "metrics.json")

    # 3 phase-2 epochs: in four 5-epoch runs the best validation AUC came after epoch 1, 1,
    # 1 and 3 (docs/real-data-decisions.md); epochs 4-5 cost about 500 s and never won.
    whole = demo.classifier(
        "densenet121-3class-whole-image", "densenet121", "multiclass", "none", size,
        ["--weights", str(crops / "model.keras"), "--unfreeze", "all", "--lr", "3e-3",
         "--phase2-lr", "3e-4", "--patience", "5"], phase2_epochs=3)

    choices["cam"] = choose_cam(demo, whole)
    method, layer = choices["cam"]["method"], choices["cam"]["layer"]
    cam_test = runs["gradcam-test"]
    demo.step("gradcam-test", gradcam_cli, [
        "--model", str(whole / "model.keras"), "--data", str(demo.data), "--split", "test",
        "--out", str(cam_test), "--method", method, *(["--layer", layer] if layer else []),
        "--limit", "60" if demo.quick else "200", "--quiet"], cam_test / "cam_metrics.json")

    point = choose_point(demo, segmenter, crops, whole)
    choices["mask_threshold"] = mask = point["mask_threshold"]
    choices["whole_image_weight"] = weight = point["whole_image_weight"]
    choices["tumor_threshold"] = threshold = point["tumor_threshold"]
    if "selection" in point:  # absent only where a test stands in for choose_point
        choices["chain_selection"] = point["selection"]
    diagnosis = runs["diagnosis-test"]
    demo.step("diagnosis-test", diagnose_cli, [
        "--segmenter", str(segmenter / "model.keras"), "--classifier",
        str(crops / "model.keras"), "--whole-image", str(whole / "model.keras"),
        "--whole-image-weight", str(weight),
        *(["--threshold", str(mask)] if mask is not None else []),
        *(["--tumor-threshold", str(threshold)] if threshold is not None else []),
        "--data", str(demo.data), "--split", "test", "--out", str(diagnosis)],
        diagnosis / "diagnosis_metrics.json")

    demo.classifier("resnet50-tumor-vs-normal-whole-image", "resnet50", "binary", "none", size,
                    ["--lr", "3e-3", "--phase2-lr", "1e-3", "--patience", "4"],
                    phase2_epochs=6)


def choose_cam(demo: RealDemo, whole: Path) -> dict:
    """Grad-CAM / Grad-CAM++ at two layers on the validation split; the best pointing game."""
    results = []
    for layer, methods in CAM_CANDIDATES:
        cam_dir = demo.out / f"gradcam-val-{layer or 'last-conv'}"
        demo.step(cam_dir.name, gradcam_cli, [
            "--model", str(whole / "model.keras"), "--data", str(demo.data), "--split", "val",
            "--out", str(cam_dir), "--method", *methods, *(["--layer", layer] if layer else []),
            "--limit", "60" if demo.quick else "200", "--quiet"], cam_dir / "cam_metrics.json")
        metrics = json.loads((cam_dir / "cam_metrics.json").read_text())
        for method, entry in metrics["metrics"].items():
            results.append({"method": method, "layer": layer, "resolved_layer": metrics["layer"],
                            "val_pointing_game": entry["pointing_game"]["estimate"],
                            "val_chance": entry["chance_level"]["estimate"]})
    best = max(results, key=lambda r: r["val_pointing_game"] or 0.0)
    return {**best, "candidates": results}


def choose_point(demo: RealDemo, unet: Path, crops: Path, whole: Path) -> dict:
    """The chain's ``--threshold`` (one of :data:`CHAIN_MASK_THRESHOLDS`),
    ``--whole-image-weight`` and ``--tumor-threshold`` from its validation rows: the best
    balanced accuracy with at most :data:`MAX_NORMAL_FALSE_TUMOR_RATE` of the normal
    validation radiographs called a tumor (ties: the earlier mask threshold; when nothing
    meets the budget, the fewest false alarms). ``selection`` holds that choice's optimism
    (:func:`~bone_tumor_tf.diagnosis.operating_point.selection_optimism`): what the
    validation figures are expected to lose on new images, because they are the best of
    many settings."""
    records = split_records(demo.data, "val", crops / "splits.csv", unet / "model.keras")
    labels = {str(r.path): r.label for r in records}
    points, row_sets = [], []
    for mask in CHAIN_MASK_THRESHOLDS:
        val_dir = demo.out / ("diagnosis-val" if mask is None else f"diagnosis-val-mask{mask:g}")
        demo.step(val_dir.name, diagnose_cli, [
            "--segmenter", str(unet / "model.keras"), "--classifier",
            str(crops / "model.keras"), "--whole-image", str(whole / "model.keras"),
            *(["--threshold", str(mask)] if mask is not None else []),
            "--data", str(demo.data), "--split", "val", "--cam", "none", "--out",
            str(val_dir)], val_dir / "diagnosis_metrics.json")
        row_sets.append(read_results(val_dir))
        point = choose_operating_point(row_sets[-1], labels,
                                       max_false_tumor_rate=MAX_NORMAL_FALSE_TUMOR_RATE)
        point["mask_threshold"] = mask
        atomic_write_json(val_dir / "operating_point.json", point)
        points.append(point)
    best = dict(points[best_point(points)])
    best["selection"] = selection_optimism(
        row_sets, labels, groups={str(r.path): r.group for r in records},
        max_false_tumor_rate=MAX_NORMAL_FALSE_TUMOR_RATE)
    logger.info("mask threshold %s, whole-image weight %s, tumor threshold %s (validation "
                "balanced accuracy %.3f, normal false-tumor rate %s; optimism-corrected: "
                "%s)", best["mask_threshold"], best["whole_image_weight"],
                best["tumor_threshold"], best["balanced_accuracy"],
                best["false_tumor_rate"], best["selection"]["corrected"])
    return best


def _percent(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1%}"


def _selection_line(selection: dict) -> str:
    """The summary's line on the chain's choice: validation figures, and the same figures
    corrected for choosing the best of many settings (an estimate, not a test figure)."""
    apparent, corrected = selection["apparent"], selection["corrected"]
    over = (corrected["false_tumor_rate"] is not None
            and corrected["false_tumor_rate"] > MAX_NORMAL_FALSE_TUMOR_RATE)
    return (f"- that choice on validation: balanced accuracy "
            f"{format_number(apparent['balanced_accuracy'])} with "
            f"{_percent(apparent['false_tumor_rate'])} of normal radiographs flagged, the "
            f"best under the cap among {selection['n_settings']} candidates (mask "
            f"thresholds x weights x tumor thresholds). Optimism-corrected estimate "
            f"(bootstrap over the {selection['n_groups']} validation patients, "
            f"{selection['n_resamples']} resamples; Harrell, Lee & Mark 1996): "
            f"{format_number(corrected['balanced_accuracy'])} with "
            f"{_percent(corrected['false_tumor_rate'])} flagged"
            + (f", above the {MAX_NORMAL_FALSE_TUMOR_RATE:.0%} budget" if over else "")
            + f"; the same setting won on {selection['same_choice']:.0%} of the resamples. "
            "The test rows above are the measurement on new patients")


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _segmentation_rows(metrics: dict) -> list[tuple[str, str]]:
    images = metrics.get("per_image") or []
    dice = np.array([r["dice"] for r in images if r["label"] != "normal"], float)
    # intervals over patients (rows of runs before patients were recorded: images)
    intervals = segmentation_intervals(images) if images else {}
    rows = []
    if dice.size:
        rows.append(("test Dice, mean per tumor image", format_ci(intervals["tumor_dice_mean"])))
        rows.append(("test Dice, median per tumor image", format_number(np.median(dice))))
    groups = dice_by_tumor_size(images) if images and "true_pixels" in images[0] else []
    if len(groups) == 3:
        rows.append(("test Dice by tumor size, smallest / middle / largest third (missed)",
                     " / ".join(f"{format_number(g['dice_mean'])} ({format_number(g['missed'])})"
                                for g in groups)))
    if intervals.get("normal_fp_image_rate"):
        rows.append(("normal test radiographs given a tumor mask",
                     format_ci(intervals["normal_fp_image_rate"])))
    return rows


def _classifier_rows(metrics: dict) -> list[tuple[str, str]]:
    if not metrics:
        return []
    boot = metrics["bootstrap"]
    rows = [("test accuracy", format_ci(boot["accuracy"])),
            ("test macro F1", format_ci(boot["macro_f1"]))]
    names = metrics["class_names"]
    if len(names) == 2:
        rows.append((f"{names[1]} ROC AUC", format_ci(boot["roc_auc"][names[1]])))
        return rows
    aucs = [metrics["per_class"][c]["roc_auc"] for c in names]
    rows.append(("macro ROC AUC (one vs rest)", format_number(float(np.mean(aucs)))))
    rows.append(("malignant F1", format_number(metrics["per_class"]["malignant"]["f1"])))
    rows.append(("malignant recall", format_ci(boot["recall"]["malignant"])))
    at90 = (metrics.get("sensitivity_at_specificity") or {}).get("0.90") or {}
    rows.append(("malignant sensitivity at 90% specificity",
                 format_number(at90.get("sensitivity"))))
    tvn = metrics.get("tumor_vs_normal") or {}
    rows.append(("tumor vs normal ROC AUC", format_number(tvn.get("roc_auc"))))
    return rows


def write_real_summary(demo: RealDemo, crops, unet, whole, resnet, cam_test, diagnosis,
                       choices, unet_normals=None, unet_budget=None) -> Path:
    """``summary.md``: the real-data table and the validation choices (``unet_normals``:
    the U-Net trained on with normal radiographs, the chain's segmenter; ``unet_budget``:
    that U-Net at the threshold chosen under the normal-image budget)."""
    size = str(demo.size)
    t = demo.timings
    table = []

    steps = list(demo.commands)

    def add(system, rows, crop, input_size, step):
        for figure, value in rows:
            table.append([system, figure, value, "patient-grouped test", crop, input_size,
                          f"{t[step]:.0f}" if step in t else "earlier run",
                          f"[{steps.index(step) + 1}]" if step in steps else ""])

    add("DenseNet121 3-class", _classifier_rows(_load(crops / "metrics.json")), "gt-box", "64",
        "densenet121-3class-gt-box")
    add("DenseNet121 3-class, whole image", _classifier_rows(_load(whole / "metrics.json")),
        "none", size, "densenet121-3class-whole-image")
    add("ResNet50 tumor vs normal, whole image",
        _classifier_rows(_load(resnet / "metrics.json")), "none", size,
        "resnet50-tumor-vs-normal-whole-image")
    add("attention U-Net (tumor images)", _segmentation_rows(_load(unet / "metrics.json")),
        "none", size, "attention-unet")
    if unet_normals is not None:
        add("attention U-Net, then with normals (the chain's segmenter)",
            _segmentation_rows(_load(unet_normals / "metrics.json")), "none", size,
            "attention-unet-normals")
    budget_choice = (_load(unet_budget / "metrics.json").get("threshold_choice")
                     if unet_budget is not None else None)
    if budget_choice:
        add(f"same U-Net, mask threshold {budget_choice['chosen']:g} (at most "
            f"{budget_choice['max_normal_marked']:.0%} of normal val images marked)",
            _segmentation_rows(_load(unet_budget / "metrics.json")), "none", size,
            "attention-unet-normals-budget")
    cams = _load(cam_test / "cam_metrics.json")
    for method, entry in (cams.get("metrics") or {}).items():
        add(f"{method}, layer {cams.get('layer')} (chosen on val)", [
            ("pointing game on tumor test images", format_ci(entry["pointing_game"])),
            ("chance level", format_number(entry["chance_level"]["estimate"])),
            ("energy inside the tumor", format_ci(entry["energy_inside"]))],
            "none", size, "gradcam-test")
    chain = _load(diagnosis / "diagnosis_metrics.json")
    if chain:
        rows = []
        for cls, entry in chain["detection"]["per_class"].items():
            rows.append((f"detection {cls}: precision / recall / AP50",
                         " / ".join(format_number(entry[k]) for k in
                                    ("precision", "recall", "ap"))))
        rows.append(("detection mAP50", format_number(chain["detection"]["map"])))
        for name, entry in chain["image_level"].items():
            rows.append((f"{name}: balanced accuracy / macro AUC",
                         f"{format_number(entry['balanced_accuracy'])} / "
                         f"{format_number(entry['macro_auc'])}"))
        for pair, entry in chain["differences"].items():
            rows.append((f"{pair}, balanced accuracy (paired)",
                         format_ci(entry["balanced_accuracy"], signed=True)))
        rows.append(("share of the oracle's advantage over chance kept",
                     format_number(chain["oracle_advantage_recovered"])))
        rate = dict(chain["normal_false_tumor_rate"])
        rate["estimate"] = rate.pop("rate")
        rows.append(("normal radiographs given a tumor", format_ci(rate)))
        threshold = choices.get("tumor_threshold")
        rule = "most probable class" if threshold is None else f"tumor threshold {threshold}"
        mask = choices.get("mask_threshold")
        add(f"diagnosis chain (mask threshold {'own' if mask is None else mask}, whole-image "
            f"weight {choices.get('whole_image_weight')}, {rule}, chosen on val)", rows,
            "found by the U-Net", f"{size} / 64",
            "diagnosis-test")
    header = ["system", "figure", "value [95% CI]", "split", "crop", "input px", "wall s",
              "command"]
    cam = choices.get("cam")
    chosen = []
    if cam:
        chosen.append(
            f"- CAM: {cam['method']} at layer {cam['resolved_layer']} (validation pointing game "
            f"{format_number(cam['val_pointing_game'])}, chance "
            f"{format_number(cam['val_chance'])}); candidates: "
            + "; ".join(f"{c['method']} @ {c['resolved_layer']} "
                        f"{format_number(c['val_pointing_game'])}" for c in cam["candidates"]))
    if budget_choice:
        k = budget_choice["candidates"].index(budget_choice["chosen"])
        chosen.append(f"- U-Net mask threshold under the normal-image budget: "
                      f"{budget_choice['chosen']:g} (validation tumor Dice "
                      f"{format_number(budget_choice['tumor_dice_mean'][k])} with "
                      f"{budget_choice['normal_marked'][k]:.1%} of normal radiographs marked"
                      + ("" if budget_choice["budget_met"] else "; NO threshold kept to the "
                         "budget") + ")")
    if "whole_image_weight" in choices:
        mask = choices.get("mask_threshold")
        mask_text = "the segmenter's own" if mask is None else f"{mask:g}"
        chosen.append(f"- chain operating point: mask threshold {mask_text}, "
                      f"whole-image weight {choices['whole_image_weight']}, tumor threshold "
                      f"{choices.get('tumor_threshold')} (None: the most probable class), the "
                      f"best validation balanced accuracy with at most "
                      f"{MAX_NORMAL_FALSE_TUMOR_RATE:.0%} of normal radiographs called a tumor "
                      f"(see {demo.out}/diagnosis-val*/operating_point.json)")
    selection = choices.get("chain_selection")
    if selection:
        chosen.append(_selection_line(selection))
    lines = [
        f"# bone_tumor_tf demo on {demo.data}", "",
        "Random initialisation (no pretrained weights); patient-grouped split (seed 0), test "
        "split figures with percentile-bootstrap 95% intervals over patients; wall times on this machine "
        "(steps done in an earlier run show 'earlier run'). "
        + ("The folder is SYNTHETIC phantom data: not clinical performance." if demo.synthetic
           else ""), "",
        *markdown_table(header, table, numeric=False),
        "Commands (each step's wall time is in the table; `timings.json` has them all):", "",
        *(f"{k}. `{demo.commands[name]}`" for k, name in enumerate(steps, 1)), "",
        "Chosen on the validation split:", "", *(chosen or ["- nothing yet"]), "",
    ]
    return atomic_write_text(demo.out / "summary.md", "\n".join(lines))
