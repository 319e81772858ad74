"""Command line: CAM heatmaps of a saved classifier, and their localisation on BTXRD.

    python gradcam.py --model RUN/model.keras --images IMAGE_OR_FOLDER... --out CAMS
    python gradcam.py --model RUN/model.keras --data BTXRD --split test --out CAMS \\
        --method gradcam gradcam++ --panel

Per input image and method one PNG ``<stem>_<method>.png`` at the image's ORIGINAL size
(the model-space heatmap is mapped back through the crop/pad geometry), captioned with
the predicted class, its probability and the class the map explains; ``--panel`` writes
radiograph | heatmap | overlay side by side instead (three times as wide). ``summary.csv``
lists file, method, predicted class, probability, target class (and more) per PNG.

Which region of an image the model sees:

* ``--images``: the whole radiograph, scaled and padded to the model's square input (crop
  mode ``none``). A model trained with crop mode ``gt-box`` saw tumor-box crops in
  training; whole radiographs are then outside its training distribution (a warning says
  so).
* ``--data DIR`` with a ``gt-box`` model: like training, each tumor image is cropped to its
  annotation's union tumor box; normal images (and tumor images without an annotation) are
  shown whole, which is fine for a heatmap (their training crops were random boxes of
  tumor-box size, so there is no ground-truth region to imitate). Heatmaps are zero outside
  the region the model saw, and only that region is coloured in the overlay.

With ``--data`` (BTXRD layout), the images of one split are explained (``--splits CSV``,
else ``splits.csv`` next to the model, else all images with a warning) and every tumor
image with a non-empty tumor mask is scored (pointing game, energy inside the mask, IoU of
the hottest 15 % with the mask; :mod:`bone_tumor_tf.explain.localization`): per-image
scores in ``cam_localization.csv``, means with 95 % bootstrap intervals per method in
``cam_metrics.json`` and ``cam_report.md``, next to the pointing game's chance level (the
mean fraction of the seen region covered by the mask: the hit rate of a random point).
All scores are computed inside the region the model saw (the crop box of the geometry: the
whole image for crop mode ``none``, the tumor box for ``gt-box`` tumor images), so the
hottest 15 % are 15 % of that region. Ties of the pointing game go to the first maximum in
row-major order; on the coarse maps of small inputs (2 x 2 cells at 64 px) the enlarged map
has flat plateaus, so that rule favours the plateau's top-left pixel.

Bad input (missing model, unreadable image or annotation, unknown class or layer): one
line ``error: ...`` on stderr, exit status 2; every image is read and checked before any
heatmap is computed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bone_tumor_tf.errors import BoneTumorError, DataError  # noqa: E402
from bone_tumor_tf.io import unique_stems  # noqa: E402

# As bone_tumor_tf.explain.cam.METHODS, repeated so that --help needs no TensorFlow.
METHODS = ("gradcam", "gradcam++", "scorecam")
METHOD_LABELS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM"}
SUMMARY_COLUMNS = ("file", "method", "predicted_class", "probability", "target_class",
                   "target_probability", "true_class", "output")
LOCALIZATION_COLUMNS = ("file", "method", "true_class", "target_class", "pointing_game",
                        "energy_inside", "top_fraction_iou", "chance_level")


@dataclass
class CamItem:
    """One input image on its way through the CLI."""

    path: Path
    stem: str
    record: object | None = None  # ImageRecord with --data
    annotation: object | None = None  # LabelMeAnnotation or MaskAnnotation of a tumor image
    input: np.ndarray | None = None  # uint8 (S, S)
    geometry: object | None = None  # CropGeometry
    true_index: int | None = None  # ground-truth class index (--class true)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcam.py",
        description="Class activation maps (Grad-CAM, Grad-CAM++, Score-CAM; tf-keras-vis) of\n"
                    "a saved classifier, drawn over the original radiographs. With --data on a\n"
                    "BTXRD-format folder, also scores how well the maps point at the annotated\n"
                    "tumors (pointing game, energy inside the mask, top-15% IoU) with 95%\n"
                    "bootstrap intervals, next to the pointing game's chance level.",
        epilog="""examples:
  python gradcam.py --model runs/densenet/model.keras --images xray.png folder/ --out cams
  python gradcam.py --model runs/densenet/model.keras --data /data/BTXRD --split test \\
      --method gradcam gradcam++ --class true --panel --out cams

outputs in --out:
  <stem>_<method>.png   one per image and method, at the image's original size
                        (--panel: image | heatmap | overlay, three times as wide)
  summary.csv           file, method, predicted_class, probability, target_class, ...
  with --data also      cam_localization.csv (per image), cam_metrics.json, cam_report.md

Bad input: one line 'error: ...' on stderr and exit status 2.""",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a .keras classifier saved by this "
                                                       "toolkit (e.g. RUN/model.keras)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", metavar="PATH",
                        help="image files and/or folders (searched recursively)")
    source.add_argument("--data", metavar="DIR",
                        help="dataset folder (BTXRD layout: images/, Annotations/, sheet; or "
                             "class folders): explain one split and score localisation")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                        help="split of --data to explain (default: test)")
    parser.add_argument("--splits", metavar="CSV", default=None,
                        help="splits.csv (image_id,label,group,split); default: splits.csv "
                             "next to the model, else all images")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--method", nargs="+", action="extend", choices=METHODS,
                        default=None, metavar="METHOD",
                        help=f"one or more of {', '.join(METHODS)} (default: gradcam)")
    parser.add_argument("--class", dest="target_class", default=None, metavar="NAME",
                        help="explain this class for every image instead of the predicted "
                             "one; 'true' = each image's ground-truth class (--data only)")
    parser.add_argument("--alpha", type=float, default=0.4,
                        help="heatmap opacity of the overlay, in [0, 1] (default: 0.4)")
    parser.add_argument("--panel", action="store_true",
                        help="write image | heatmap | overlay side by side instead of the "
                             "overlay alone")
    parser.add_argument("--layer", default=None, metavar="NAME",
                        help="layer whose feature map is explained (default: the last one, "
                             "conv5_block3_out for ResNet50, relu for DenseNet121)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="images per model / tf-keras-vis call (default: 16)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="explain only the first N images")
    parser.add_argument("--scorecam-max-n", type=int, default=None, metavar="N",
                        help="Faster Score-CAM: use the N feature channels of largest "
                             "variance (default: all channels; 1,024 to 2,048 forward passes "
                             "per image)")
    parser.add_argument("--top-fraction", type=float, default=0.15,
                        help="hottest fraction of pixels compared with the tumor mask by IoU "
                             "(default: 0.15)")
    parser.add_argument("--n-bootstrap", type=int, default=1000,
                        help="bootstrap resamples for the 95%% intervals (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _check_options(args) -> None:
    if not 0.0 <= args.alpha <= 1.0:
        raise BoneTumorError(f"--alpha {args.alpha}: must be in [0, 1]")
    if args.batch_size < 1:
        raise BoneTumorError(f"--batch-size {args.batch_size}: must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise BoneTumorError(f"--limit {args.limit}: must be >= 1")
    if args.scorecam_max_n is not None and args.scorecam_max_n < 1:
        raise BoneTumorError(f"--scorecam-max-n {args.scorecam_max_n}: must be >= 1")
    if not 0.0 < args.top_fraction <= 1.0:
        raise BoneTumorError(f"--top-fraction {args.top_fraction}: must be in (0, 1]")
    if args.n_bootstrap < 1:
        raise BoneTumorError(f"--n-bootstrap {args.n_bootstrap}: must be >= 1")
    if args.target_class == "true" and args.data is None:
        raise BoneTumorError("--class true needs --data (ground-truth labels)")


# --------------------------------------------------------------------------- inputs


def select_split(records, split: str, splits_csv: str | None, model_path: Path):
    """Records of ``split``; returns ``(records, splits file used or None)``.

    The split comes from ``splits_csv``, else ``splits.csv`` next to the model, else the
    dataset's own train/val/test folder layout; without any of them every record is
    returned and a warning printed.
    """
    from bone_tumor_tf.data.splits import load_splits

    if split == "all":
        return list(records), None
    path = Path(splits_csv) if splits_csv else model_path.parent / "splits.csv"
    if not path.is_file():
        if splits_csv:
            raise DataError(path, "missing splits file")
        if records and all(getattr(r, "split", None) for r in records):
            # Class folders laid out as train/val/test fix the split themselves.
            chosen = [r for r in records if r.split == split]
            if not chosen:
                raise DataError("--split", f"the dataset's own layout has no {split!r} images")
            return chosen, None
        print(f"warning: no --splits given and no {path}: explaining all {len(records)} "
              "images of the dataset (the model may have been trained on some of them)",
              file=sys.stderr)
        return list(records), None
    frame = load_splits(path)
    wanted = set(frame.loc[frame["split"] == split, "image_id"].astype(str))
    chosen = [r for r in records if r.image_id in wanted]
    if not chosen:
        raise DataError(path, f"no image of split {split!r} is in the dataset")
    missing = len(wanted) - len(chosen)
    if missing:
        print(f"warning: {missing} image(s) of split {split!r} in {path} are not in the "
              "dataset", file=sys.stderr)
    return chosen, path


def _collect_items(args, model_path: Path):
    from bone_tumor_tf.inference import expand_inputs

    if args.images is not None:
        files = expand_inputs(args.images)
        if not files:
            raise DataError(" ".join(args.images), "no image files found")
        files = files[:args.limit] if args.limit else files
        return [CamItem(path=p, stem=s) for p, s in zip(files, unique_stems(files))], None
    from bone_tumor_tf.data import load_dataset

    dataset = load_dataset(args.data)
    records, splits_path = select_split(dataset.records, args.split, args.splits, model_path)
    records = records[:args.limit] if args.limit else records
    paths = [Path(r.path) for r in records]
    items = [CamItem(path=p, stem=s, record=r)
             for p, s, r in zip(paths, unique_stems(paths), records)]
    return items, splits_path


def _prepare(item: CamItem, image_size: int, gt_box: bool) -> CamItem:
    """Read the image (and the annotation of a tumor image); fill input and geometry."""
    from bone_tumor_tf.data.annotations import read_record_annotation
    from bone_tumor_tf.inference import load_input

    record = item.record
    if record is not None and record.label != "normal":
        # In the file's own pixels; huge images are decoded reduced below.
        item.annotation = read_record_annotation(record)
    box = item.annotation.union_box() if gt_box and item.annotation is not None else None
    prepared = load_input(item.path, image_size, crop_box=box)
    if item.annotation is not None:
        item.annotation = item.annotation.scaled(prepared.scale, prepared.original.shape[:2])
    item.input, item.geometry = prepared.input, prepared.geometry
    return item


def prepare_items(items: list[CamItem], image_size: int, gt_box: bool) -> None:
    """Read and check every input before any CAM; raise one error for all failures."""
    from bone_tumor_tf.data.pipeline import default_workers

    def work(item):
        try:
            return _prepare(item, image_size, gt_box), None
        except DataError as error:
            return item, error

    with ThreadPoolExecutor(default_workers()) as pool:
        errors = [error for _, error in pool.map(work, items) if error is not None]
    if errors:
        more = f" (and {len(errors) - 1} more unreadable input(s))" if len(errors) > 1 else ""
        raise DataError(errors[0].file, f"{errors[0].problem}{more}")


# --------------------------------------------------------------------------- targets


def _true_class_index(label: str, class_names: list[str]) -> int | None:
    if label in class_names:
        return class_names.index(label)
    if len(class_names) == 2 and class_names[0] == "normal":
        return 1 if label != "normal" else 0
    return None


def _target_spec(name: str | None, class_names: list[str]):
    """None (predicted), 'true', or a class index."""
    if name is None or name == "true":
        return name
    if name not in class_names:
        raise BoneTumorError(f"--class {name!r}: not a class of the model "
                             f"({', '.join(class_names)}; or 'true')")
    return class_names.index(name)


# --------------------------------------------------------------------------- report


def _fmt_interval(entry: dict, signed: bool = False) -> str:
    # Lazy: the evaluation package imports scikit-learn, too slow for `--help`.
    from bone_tumor_tf.evaluation.reports.markdown import format_ci

    return format_ci(entry, digits=2, signed=signed)


def render_report(metrics: dict) -> str:
    """``cam_report.md``: a short Markdown table of :func:`summarize_localization`."""
    pct = int(round(metrics["top_fraction"] * 100))
    lines = [
        "# CAM localisation",
        "",
        f"Model `{metrics['model']}`, data `{metrics['data']}` (split `{metrics['split']}`, "
        f"{metrics['n_images']} images, {metrics['n_scored']} tumor images with a mask "
        f"scored), target: {metrics['target']}, layer `{metrics['layer']}`, crop mode "
        f"`{metrics['crop_mode']}`.",
        "",
    ]
    if not metrics["metrics"]:
        lines += ["No tumor image with a non-empty tumor mask was explained, so nothing was "
                  "scored.", ""]
    else:
        lines += [
            f"| Method | Images | Pointing game | Chance level | Above chance | "
            f"Energy inside mask | Top-{pct}% IoU |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, entry in metrics["metrics"].items():
            lines.append(
                f"| {METHOD_LABELS.get(method, method)} | {entry['n_images']} | "
                f"{_fmt_interval(entry['pointing_game'])} | "
                f"{_fmt_interval(entry['chance_level'])} | "
                f"{_fmt_interval(entry['pointing_game_above_chance'], signed=True)} | "
                f"{_fmt_interval(entry['energy_inside'])} | "
                f"{_fmt_interval(entry['top_fraction_iou'])} |")
        lines += [
            "",
            "Pointing game: share of tumor images whose heatmap maximum lies inside the "
            "tumor mask. Chance level: mean fraction of the region the model saw that the "
            "mask covers, i.e. the hit rate of a random point (and the energy share of a "
            "uniform heatmap); 'Above chance' is the paired difference, and an interval "
            "above 0 means the maps point at the tumors more often than chance. "
            f"Intervals: {int(metrics['confidence'] * 100)}% percentile bootstrap over "
            f"images ({metrics['n_bootstrap']} resamples).",
            "",
        ]
    if metrics["crop_mode"] == "gt-box":
        lines += ["Note: this model was trained on (and here shown) tumor images cropped to "
                  "the ground-truth tumor box, so the maps can only point inside that box; "
                  "the scores measure localisation within the box.", ""]
    if metrics["n_tumor_without_mask"]:
        lines += [f"{metrics['n_tumor_without_mask']} tumor image(s) without a tumor mask "
                  "(no annotation or no polygon) were not scored.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- scoring


def _tumor_mask(item: CamItem) -> np.ndarray | None:
    """The tumor mask (H, W) of a tumor image, or None when unknown or empty."""
    if item.annotation is None:
        return None
    mask = item.annotation.mask()
    return mask if mask.any() else None


def score_localization(heatmap: np.ndarray, mask: np.ndarray, region,
                       top_fraction: float = 0.15) -> dict:
    """Pointing game, energy inside, top-fraction IoU and chance level of one map.

    Computed inside ``region`` ``(x0, y0, x1, y1)``, the part of the original image the
    model saw (the geometry's crop box): a CAM is zero outside it.
    """
    from bone_tumor_tf.explain.localization import (
        energy_inside,
        mask_fraction,
        pointing_game_hit,
        top_fraction_iou,
    )

    x0, y0, x1, y1 = (int(v) for v in region)
    seen, seen_mask = heatmap[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    return {
        "pointing_game": pointing_game_hit(seen, seen_mask),
        "energy_inside": energy_inside(seen, seen_mask),
        "top_fraction_iou": top_fraction_iou(seen, seen_mask, top_fraction),
        "chance_level": mask_fraction(seen_mask),
    }


# --------------------------------------------------------------------------- main loop


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), image):
        raise DataError(path, "cannot write PNG")


def run(args) -> int:
    """Everything after argument parsing; raises :class:`BoneTumorError` on bad input."""
    import pandas as pd

    from bone_tumor_tf.data.images import read_image
    from bone_tumor_tf.data.preprocess import map_to_original
    from bone_tumor_tf.errors import ModelFileError
    from bone_tumor_tf.explain.localization import summarize_localization
    from bone_tumor_tf.explain.overlay import annotate, overlay_heatmap, side_by_side_panel
    from bone_tumor_tf.inference import load_model, model_contract
    from bone_tumor_tf.io import atomic_write_json, atomic_write_text

    # Checks that need no TensorFlow come first (importing it takes seconds).
    _check_options(args)
    methods = list(dict.fromkeys(args.method or ["gradcam"]))
    model_path = Path(args.model)
    if not model_path.is_file():
        raise ModelFileError(f"{model_path}: model file not found")
    items, splits_path = _collect_items(args, model_path)

    import keras

    from bone_tumor_tf.explain.cam import CamExplainer

    model = load_model(model_path)
    contract = model_contract(model)
    class_names = [str(c) for c in contract["class_names"]]
    image_size = int(contract["image_size"])
    crop_mode = str(contract["crop_mode"])
    target = _target_spec(args.target_class, class_names)
    explainer = CamExplainer(model, layer_name=args.layer,
                             scorecam_max_n=args.scorecam_max_n)

    if crop_mode == "gt-box" and args.images is not None:
        print("warning: this model was trained on images cropped to the ground-truth tumor "
              "box (crop mode gt-box); whole radiographs are outside its training "
              "distribution", file=sys.stderr)
    prepare_items(items, image_size, gt_box=crop_mode == "gt-box")
    if crop_mode == "gt-box" and args.data is not None:
        uncropped = sum(1 for it in items if it.record.label != "normal"
                        and it.annotation is None)
        if uncropped:
            print(f"warning: {uncropped} tumor image(s) have no annotation and are shown "
                  "whole, not cropped to a tumor box", file=sys.stderr)

    if target == "true":
        for it in items:
            it.true_index = _true_class_index(it.record.label, class_names)
            if it.true_index is None:
                raise DataError(it.path, f"label {it.record.label!r} is not a class of the "
                                         f"model ({', '.join(class_names)})")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary_rows, localization_rows = [], []
    n_tumor, n_without_mask = 0, 0
    bar = (keras.utils.Progbar(len(items), unit_name="image")
           if not args.quiet and len(items) > 1 else None)
    from bone_tumor_tf.data.pipeline import default_workers

    with ThreadPoolExecutor(default_workers()) as pool:
        for start in range(0, len(items), args.batch_size):
            batch = items[start:start + args.batch_size]
            x = np.stack([it.input for it in batch])
            probs = explainer.probabilities(x, args.batch_size)
            predicted = np.argmax(probs, axis=1)
            if target is None:
                targets = predicted
            elif target == "true":
                targets = np.array([it.true_index for it in batch])
            else:
                targets = np.full(len(batch), target)
            heatmaps = {m: explainer(x, m, targets, args.batch_size) for m in methods}
            originals = list(pool.map(lambda it: read_image(it.path), batch))
            for i, (it, original) in enumerate(zip(batch, originals)):
                pred, tgt = int(predicted[i]), int(targets[i])
                true_class = it.record.label if it.record is not None else ""
                is_tumor = it.record is not None and it.record.label != "normal"
                mask = _tumor_mask(it) if is_tumor else None
                n_tumor += is_tumor
                n_without_mask += is_tumor and mask is None
                for method in methods:
                    heatmap = map_to_original(heatmaps[method][i], it.geometry)
                    heatmap = np.clip(heatmap, 0.0, 1.0)
                    caption = (f"{class_names[pred]} {probs[i, pred]:.2f}\n"
                               f"{METHOD_LABELS[method]}: {class_names[tgt]}")
                    image = annotate(overlay_heatmap(original, heatmap, args.alpha,
                                                     region=it.geometry.crop_box), caption)
                    if args.panel:
                        image = side_by_side_panel(original, heatmap, image)
                    png = out / f"{it.stem}_{method}.png"
                    _write_png(png, image)
                    summary_rows.append({
                        "file": str(it.path), "method": method,
                        "predicted_class": class_names[pred],
                        "probability": float(probs[i, pred]),
                        "target_class": class_names[tgt],
                        "target_probability": float(probs[i, tgt]),
                        "true_class": true_class, "output": png.name,
                    })
                    if mask is not None:
                        localization_rows.append({
                            "file": str(it.path), "method": method,
                            "true_class": true_class, "target_class": class_names[tgt],
                            **score_localization(heatmap, mask, it.geometry.crop_box,
                                                 args.top_fraction),
                        })
            if bar is not None:
                bar.update(min(start + len(batch), len(items)))

    summary = pd.DataFrame(summary_rows, columns=list(SUMMARY_COLUMNS))
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    written = [f"{len(summary_rows)} heatmap PNG(s)", "summary.csv"]
    if args.data is not None:
        localization = pd.DataFrame(localization_rows, columns=list(LOCALIZATION_COLUMNS))
        atomic_write_text(out / "cam_localization.csv", localization.to_csv(index=False))
        metrics = {
            "model": str(model_path),
            "data": str(args.data),
            "split": args.split,
            "splits_file": str(splits_path) if splits_path else None,
            "methods": methods,
            "target": ("predicted class" if target is None else "ground-truth class"
                       if target == "true" else class_names[target]),
            "layer": explainer.layer_name,
            "crop_mode": crop_mode,
            "top_fraction": args.top_fraction,
            "n_bootstrap": args.n_bootstrap,
            "seed": args.seed,
            "confidence": 0.95,
            "n_images": len(items),
            "n_tumor_images": n_tumor,
            "n_tumor_without_mask": n_without_mask,
            "n_scored": n_tumor - n_without_mask,
            "scored_region": "the region the model saw: the crop box of the input "
                             "geometry (whole image for crop mode none)",
            "chance_level_definition": "mean fraction of the scored region covered by the "
                                       "tumor mask: the pointing-game hit rate of a "
                                       "uniformly random point",
            "metrics": summarize_localization(localization_rows, args.n_bootstrap, args.seed),
        }
        atomic_write_json(out / "cam_metrics.json", metrics)
        atomic_write_text(out / "cam_report.md", render_report(metrics))
        written += ["cam_localization.csv", "cam_metrics.json", "cam_report.md"]
    print(f"wrote {', '.join(written)} to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gradcam.py``; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except BoneTumorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; lower --batch-size (or --scorecam-max-n for "
              "scorecam)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
