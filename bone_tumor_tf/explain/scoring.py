"""CAM heatmaps of a saved classifier over a folder or a dataset split, and their scores.

:func:`explain` runs one CAM job (command: ``bone-tumor gradcam``): per image and method one
PNG ``<stem>_<method>.png`` at the image's ORIGINAL size (the model-space heatmap mapped
back through the crop/pad geometry), captioned with the predicted class, its probability
and the class the map explains (``panel``: radiograph | heatmap | overlay); ``summary.csv``
lists them. Region the model sees: with ``images`` the whole radiograph, scaled and padded
(crop mode ``none``; a ``gt-box`` model then sees images unlike its training crops, and a
warning says so); with ``data`` and a ``gt-box`` model each tumor image is cropped to its
annotation's union tumor box as in training, and each normal image to the random box its
training run drew for it (size from the whole dataset's tumor boxes, placement seeded by the
image and ``seed``: :func:`~bone_tumor_tf.data.preprocess.random_normal_crop_box`); tumor
images without an annotation are shown whole. Heatmaps are zero outside the region the
model saw.

With ``data`` (BTXRD layout) one split is explained (``splits`` CSV, else ``splits.csv``
next to the model, else all images with a warning) and every tumor image with a non-empty
mask is scored inside the region the model saw (:func:`score_localization`: pointing game,
energy inside the mask, IoU of the hottest 15 %, and the chance level, the mean fraction of
the region the mask covers); :mod:`bone_tumor_tf.explain.report` writes the per-image table,
means with 95 % bootstrap intervals and ``cam_report.md``. Ties of the pointing game go to
the first maximum in row-major order (on the coarse maps of small inputs that favours a
plateau's top-left pixel).

Bad input (missing model, unreadable image or annotation, unknown class or layer) raises a
:class:`~bone_tumor_tf.errors.BoneTumorError`; every image is read and checked first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import keras
import numpy as np

from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.annotations import read_record_annotation
from bone_tumor_tf.data.images import read_image
from bone_tumor_tf.data.prepare import default_workers, tumor_relative_sizes
from bone_tumor_tf.data.preprocess import crop_to_box, map_to_original, random_normal_crop_box
from bone_tumor_tf.data.splits import load_splits
from bone_tumor_tf.errors import BoneTumorError, DataError, ModelFileError
from bone_tumor_tf.explain.cam import METHODS, CamExplainer
from bone_tumor_tf.explain.localization import (
    energy_inside,
    mask_fraction,
    pointing_game_hit,
    top_fraction_iou,
)
from bone_tumor_tf.explain.overlay import annotate, overlay_heatmap, side_by_side_panel
from bone_tumor_tf.explain.report import METHOD_LABELS, localization_metrics, write_cam_outputs
from bone_tumor_tf.inference import expand_inputs, load_input
from bone_tumor_tf.io import unique_stems
from bone_tumor_tf.models import load_model, read_contract

logger = logging.getLogger(__name__)


@dataclass
class CamOptions:
    """One CAM job; the fields are the options of ``bone-tumor gradcam``.

    Exactly one of ``images`` (files and/or folders) and ``data`` (a dataset folder) is
    given. ``target_class``: None explains the predicted class, ``"true"`` each image's
    ground-truth class (``data`` only), else a class name of the model. ``alpha`` in
    [0, 1] is the overlay's heatmap opacity; ``top_fraction`` in (0, 1]. ``seed`` seeds the
    bootstrap and, for a ``gt-box`` model, the normal radiographs' crops (as training did).
    """

    model: str | Path
    out: str | Path
    images: Sequence[str | Path] | None = None
    data: str | Path | None = None
    split: str = "test"
    splits: str | Path | None = None
    methods: Sequence[str] = ("gradcam",)
    target_class: str | None = None
    alpha: float = 0.4
    panel: bool = False
    layer: str | None = None
    batch_size: int = 16
    limit: int | None = None
    scorecam_max_n: int | None = None
    top_fraction: float = 0.15
    n_bootstrap: int = 1000
    seed: int = 0
    progress: bool = True

    def check(self) -> None:
        """Raise :class:`BoneTumorError` (one line, naming the option) on a bad value."""
        if (self.images is None) == (self.data is None):
            raise BoneTumorError("give either --images or --data")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise BoneTumorError(f"--method {' '.join(unknown)}: one or more of "
                                 f"{', '.join(METHODS)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise BoneTumorError(f"--alpha {self.alpha}: must be in [0, 1]")
        if self.batch_size < 1:
            raise BoneTumorError(f"--batch-size {self.batch_size}: must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise BoneTumorError(f"--limit {self.limit}: must be >= 1")
        if self.scorecam_max_n is not None and self.scorecam_max_n < 1:
            raise BoneTumorError(f"--scorecam-max-n {self.scorecam_max_n}: must be >= 1")
        if not 0.0 < self.top_fraction <= 1.0:
            raise BoneTumorError(f"--top-fraction {self.top_fraction}: must be in (0, 1]")
        if self.n_bootstrap < 1:
            raise BoneTumorError(f"--n-bootstrap {self.n_bootstrap}: must be >= 1")
        if self.target_class == "true" and self.data is None:
            raise BoneTumorError("--class true needs --data (ground-truth labels)")


@dataclass
class CamItem:
    """One input image on its way through :func:`explain`."""

    path: Path
    stem: str
    record: object | None = None  # ImageRecord with --data
    annotation: object | None = None  # LabelMeAnnotation or MaskAnnotation of a tumor image
    input: np.ndarray | None = None  # uint8 (S, S)
    geometry: object | None = None  # CropGeometry
    true_index: int | None = None  # ground-truth class index (--class true)


# --------------------------------------------------------------------------- inputs


def select_split(records, split: str, splits_csv: str | None, model_path: Path):
    """Records of ``split``; returns ``(records, splits file used or None)``.

    The split comes from ``splits_csv``, else ``splits.csv`` next to the model, else the
    dataset's own train/val/test folder layout; without any of them every record is
    returned and a warning logged.
    """
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
        logger.warning("no --splits given and no %s: explaining all %d images of the "
                       "dataset (the model may have been trained on some of them)",
                       path, len(records))
        return list(records), None
    frame = load_splits(path)
    wanted = set(frame.loc[frame["split"] == split, "image_id"].astype(str))
    chosen = [r for r in records if r.image_id in wanted]
    if not chosen:
        raise DataError(path, f"no image of split {split!r} is in the dataset")
    missing = len(wanted) - len(chosen)
    if missing:
        logger.warning("%d image(s) of split %r in %s are not in the dataset",
                       missing, split, path)
    return chosen, path


def collect_items(options: CamOptions) -> tuple[list[CamItem], Path | None, list]:
    """The images to explain (``limit`` applied), the splits file used, if any, and every
    record of the dataset (empty without ``data``)."""
    if options.images is not None:
        files = expand_inputs(options.images)
        if not files:
            raise DataError(" ".join(map(str, options.images)), "no image files found")
        files = files[:options.limit] if options.limit else files
        return [CamItem(path=p, stem=s) for p, s in zip(files, unique_stems(files))], None, []
    dataset = load_dataset(options.data)
    records, splits_path = select_split(dataset.records, options.split, options.splits,
                                        Path(options.model))
    records = records[:options.limit] if options.limit else records
    paths = [Path(r.path) for r in records]
    items = [CamItem(path=p, stem=s, record=r)
             for p, s, r in zip(paths, unique_stems(paths), records)]
    return items, splits_path, list(dataset.records)


def _prepare(item: CamItem, image_size: int, gt_box: bool, normal_crop_sizes, seed: int
             ) -> CamItem:
    """Read the image (and the annotation of a tumor image); fill input and geometry."""
    record = item.record
    if record is not None and record.label != "normal":
        # In the file's own pixels; huge images are decoded reduced below.
        item.annotation = read_record_annotation(record)
    box = item.annotation.union_box() if gt_box and item.annotation is not None else None
    prepared = load_input(item.path, image_size, crop_box=box)
    if item.annotation is not None:
        item.annotation = item.annotation.scaled(prepared.scale, prepared.original.shape[:2])
    item.input, item.geometry = prepared.input, prepared.geometry
    if gt_box and normal_crop_sizes is not None and record is not None \
            and record.label == "normal":
        # the crop a training run on the dataset drew (bone_tumor_tf.data.prepare)
        box = random_normal_crop_box(prepared.original.shape[:2], normal_crop_sizes,
                                     record.image_id, seed)
        item.input, item.geometry = crop_to_box(prepared.original, box, image_size)
    return item


def prepare_items(items: list[CamItem], image_size: int, gt_box: bool,
                  normal_crop_sizes=None, seed: int = 0) -> None:
    """Read and check every input before any CAM; raise one error for all failures.

    ``normal_crop_sizes`` (with ``gt_box``): the dataset's tumor box sizes, from which each
    normal radiograph's crop is drawn as in training; None: normal radiographs are shown
    whole.
    """
    def work(item):
        try:
            return _prepare(item, image_size, gt_box, normal_crop_sizes, seed), None
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
    if not cv2.imwrite(str(path), image):
        raise DataError(path, "cannot write PNG")


@dataclass
class _Tally:
    """Rows and counts gathered over the batches of one job."""

    summary: list
    localization: list
    n_tumor: int = 0
    n_without_mask: int = 0


def _explain_batch(batch: list[CamItem], explainer, methods, target, class_names,
                   options: CamOptions, out: Path, pool, tally: _Tally) -> None:
    """Heatmap PNGs of one batch; appends its summary and localisation rows to ``tally``."""
    x = np.stack([it.input for it in batch])
    probs = explainer.probabilities(x, options.batch_size)
    predicted = np.argmax(probs, axis=1)
    if target is None:
        targets = predicted
    elif target == "true":
        targets = np.array([it.true_index for it in batch])
    else:
        targets = np.full(len(batch), target)
    heatmaps = {m: explainer(x, m, targets, options.batch_size) for m in methods}
    originals = list(pool.map(lambda it: read_image(it.path), batch))
    for i, (it, original) in enumerate(zip(batch, originals)):
        pred, tgt = int(predicted[i]), int(targets[i])
        true_class = it.record.label if it.record is not None else ""
        is_tumor = it.record is not None and it.record.label != "normal"
        mask = _tumor_mask(it) if is_tumor else None
        tally.n_tumor += is_tumor
        tally.n_without_mask += is_tumor and mask is None
        for method in methods:
            heatmap = np.clip(map_to_original(heatmaps[method][i], it.geometry), 0.0, 1.0)
            caption = (f"{class_names[pred]} {probs[i, pred]:.2f}\n"
                       f"{METHOD_LABELS[method]}: {class_names[tgt]}")
            image = annotate(overlay_heatmap(original, heatmap, options.alpha,
                                             region=it.geometry.crop_box), caption)
            if options.panel:
                image = side_by_side_panel(original, heatmap, image)
            png = out / f"{it.stem}_{method}.png"
            _write_png(png, image)
            tally.summary.append({
                "file": str(it.path), "method": method,
                "predicted_class": class_names[pred], "probability": float(probs[i, pred]),
                "target_class": class_names[tgt],
                "target_probability": float(probs[i, tgt]),
                "true_class": true_class, "output": png.name,
            })
            if mask is not None:
                tally.localization.append({
                    "file": str(it.path), "method": method, "true_class": true_class,
                    "group": it.record.group, "target_class": class_names[tgt],
                    **score_localization(heatmap, mask, it.geometry.crop_box,
                                         options.top_fraction),
                })


def explain(options: CamOptions) -> list[str]:
    """Run one CAM job into ``options.out``; returns what was written (for a summary line).

    Raises:
        BoneTumorError: a bad option, a missing or unsuitable model, an unreadable image
            or annotation (one line; every input is checked before any heatmap).
    """
    options.check()
    methods = list(dict.fromkeys(options.methods))
    model_path = Path(options.model)
    if not model_path.is_file():
        raise ModelFileError(f"{model_path}: model file not found")
    items, splits_path, dataset_records = collect_items(options)

    model = load_model(model_path)
    contract = read_contract(model)
    class_names = list(contract.class_names)
    crop_mode = contract.crop_mode
    target = _target_spec(options.target_class, class_names)
    explainer = CamExplainer(model, layer_name=options.layer,
                             scorecam_max_n=options.scorecam_max_n)
    if crop_mode == "gt-box" and options.images is not None:
        logger.warning("this model was trained on images cropped to the ground-truth tumor "
                       "box (crop mode gt-box); whole radiographs are outside its training "
                       "distribution")
    normal_crop_sizes = (tumor_relative_sizes(dataset_records)
                         if crop_mode == "gt-box" and dataset_records else None)
    prepare_items(items, contract.image_size, gt_box=crop_mode == "gt-box",
                  normal_crop_sizes=normal_crop_sizes, seed=options.seed)
    if crop_mode == "gt-box" and options.data is not None:
        uncropped = sum(1 for it in items if it.record.label != "normal"
                        and it.annotation is None)
        if uncropped:
            logger.warning("%d tumor image(s) have no annotation and are shown whole, not "
                           "cropped to a tumor box", uncropped)
    if target == "true":
        for it in items:
            it.true_index = _true_class_index(it.record.label, class_names)
            if it.true_index is None:
                raise DataError(it.path, f"label {it.record.label!r} is not a class of the "
                                         f"model ({', '.join(class_names)})")

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    tally = _Tally(summary=[], localization=[])
    bar = (keras.utils.Progbar(len(items), unit_name="image")
           if options.progress and len(items) > 1 else None)
    with ThreadPoolExecutor(default_workers()) as pool:
        for start in range(0, len(items), options.batch_size):
            batch = items[start:start + options.batch_size]
            _explain_batch(batch, explainer, methods, target, class_names, options, out,
                           pool, tally)
            if bar is not None:
                bar.update(min(start + len(batch), len(items)))

    if options.data is None:
        return write_cam_outputs(out, tally.summary)
    target_label = ("predicted class" if target is None else "ground-truth class"
                    if target == "true" else class_names[target])
    metrics = localization_metrics(
        tally.localization, model=model_path, data=options.data, split=options.split,
        splits_file=splits_path, methods=methods, target=target_label,
        layer=explainer.layer_name, crop_mode=crop_mode, top_fraction=options.top_fraction,
        n_bootstrap=options.n_bootstrap, seed=options.seed, n_images=len(items),
        n_tumor_images=tally.n_tumor, n_tumor_without_mask=tally.n_without_mask)
    return write_cam_outputs(out, tally.summary, tally.localization, metrics)
