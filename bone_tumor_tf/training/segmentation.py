"""Training of the tumor segmentation U-Nets, evaluation and the run report.

Data: the tumor radiographs of a BTXRD-format dataset with their LabelMe polygon masks
(tumor images without an annotation, or whose annotation holds no polygon, are left out
and counted), or of a mask-folder set (``DIR/images`` + ``DIR/masks``, see
:mod:`bone_tumor_tf.data.mask_folders`; an all-zero mask makes a normal image, and with
patients unknown the split is in effect by image); with ``include_normals`` the normal radiographs join with empty masks, which
teaches the model to predict nothing on them and makes the normal-image false-positive
rate measurable. Every image is scaled (aspect preserved) and zero-padded to ``S x S``
(crop mode ``none``); masks follow the same geometry (nearest neighbour). The split is the
classification one (grouped by patient, stratified by label; saved as ``splits.csv``).

Model: :func:`bone_tumor_tf.models.unet.build_unet`, the U-Net of Ronneberger et al.
(MICCAI 2015, arXiv:1505.04597) or, by default, the Attention U-Net of Oktay et al.
(MIDL 2018, arXiv:1804.03999), optionally on a ResNet50 / DenseNet121 encoder; with
``init_from`` it starts from the weights of an earlier segmentation run
(:func:`load_initial_weights`).

Training: one phase (``"train"``) with Adam, :class:`~bone_tumor_tf.models.losses.BCEDiceLoss`
``alpha * BCE + (1 - alpha) * (1 - soft Dice)`` (per image) and
:class:`~bone_tumor_tf.models.metrics.DiceCoefficient`; joint geometric augmentation of image and
mask (:func:`~bone_tumor_tf.data.pipeline.make_segmentation_dataset`); the callbacks of
:func:`~bone_tumor_tf.training.runs.phase_callbacks` monitor ``val_dice`` (mode max):
``BackupAndRestore`` (an interrupted run resumes where its last finished epoch left off
when the same command is run again), ``ModelCheckpoint``, ``EarlyStopping`` restoring the
best weights, ``ReduceLROnPlateau``, ``CSVLogger`` and ``TensorBoard``.

Evaluation: :mod:`bone_tumor_tf.evaluation.segmentation`, on the test split at each
image's original resolution, next to the all-empty prediction baseline.

Run folder (see :mod:`bone_tumor_tf.training.runs`): ``config.json``, ``splits.csv``,
``history.csv``, ``logs/``, ``metrics.json``, ``report.md``, ``training_curves.png``,
``overlay_{best,median,worst}.png`` and, written last, ``model.keras`` (the best model,
its contract inside: :func:`bone_tumor_tf.models.contract.read_contract`). The run itself (run folder, resuming,
seeding, the phase, checkpoints, finalising) is
:func:`bone_tumor_tf.training.lifecycle.run_training`; :class:`SegmentationTrainer` supplies
the U-Net, its data and its evaluation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from bone_tumor_tf.data.dataset import load_run_data
from bone_tumor_tf.data.pipeline import make_segmentation_dataset
from bone_tumor_tf.errors import BoneTumorError, DataError, ModelConfigError, ModelFileError
from bone_tumor_tf.evaluation.plots import plot_segmentation_curves
from bone_tumor_tf.evaluation.reports.segmentation import (
    ARCH_NAMES,
    write_case_overlays,
    write_segmentation_report,
)
from bone_tumor_tf.evaluation.segmentation import (
    dice_score,
    evaluate_segmentation,
)
from bone_tumor_tf.inference.segmentation import (
    predict_probability_maps,
    predictions_at_original_resolution,
)
from bone_tumor_tf.io import atomic_write_json
from bone_tumor_tf.models.contract import is_segmentation_model, update_contract
from bone_tumor_tf.models.loading import load_model
from bone_tumor_tf.models.losses import BCEDiceLoss
from bone_tumor_tf.models.metrics import BestThresholdDice, DiceCoefficient
from bone_tumor_tf.models.unet import build_unet
from bone_tumor_tf.models.weights import copy_weights_by_name, weighted_layer_names
from bone_tumor_tf.training import runs
from bone_tumor_tf.training.lifecycle import Phase, RunData, Trainer, run_training
from bone_tumor_tf.training.options import SPLIT_DESCRIPTIONS, SegmentationOptions

logger = logging.getLogger(__name__)

MONITOR, MONITOR_MODE = "val_dice", "max"
#: Mask thresholds tried on the validation split (the monitored ``val_dice`` is the best of
#: them when the run chooses its threshold, see ``BestThresholdDice``).
THRESHOLD_CANDIDATES = tuple(round(0.1 * k, 1) for k in range(1, 10))
#: Under a false-alarm budget (``--max-normal-marked``) the grid goes higher: on real BTXRD
#: a U-Net trained with normals marks 32% of normal validation images at 0.9, 10% at 0.97.
BUDGET_THRESHOLD_CANDIDATES = THRESHOLD_CANDIDATES + (0.95, 0.97, 0.98, 0.99)
PHASE = "train"


@dataclass
class SegmentationSplit:
    """Model-space images and masks of one split.

    Attributes:
        images: ``uint8`` ``(N, S, S)`` in [0, 255].
        masks: ``uint8`` ``(N, S, S)`` in {0, 1}.
        geometries: per image, how the original became the input.
        records: per image, its record.
    """

    images: np.ndarray
    masks: np.ndarray
    geometries: list
    records: list

    def __len__(self) -> int:
        return len(self.records)


def wants_record(record, include_normals: bool) -> bool:
    """Records a segmentation run uses: annotated tumor images, normals on request."""
    if record.label == "normal":
        return include_normals
    return record.annotation is not None or record.mask is not None


def split_data(prepared, splits) -> tuple[dict[str, SegmentationSplit], int]:
    """Per-split images, masks, geometries and records; drops tumor images without mask.

    Returns:
        ``({"train": ..., "val": ..., "test": ...}, number of tumor images dropped because
        their annotation holds no polygon, i.e. their mask is empty)``.
    """
    tumor = np.array([r.label != "normal" for r in prepared.records], bool)
    empty = prepared.masks.reshape(len(prepared.records), -1).max(axis=1) == 0
    keep = ~(tumor & empty)
    names = splits["split"].to_numpy()
    out = {}
    for name in ("train", "val", "test"):
        index = np.flatnonzero((names == name) & keep)
        out[name] = SegmentationSplit(prepared.images[index], prepared.masks[index],
                                      [prepared.geometries[i] for i in index],
                                      [prepared.records[i] for i in index])
    return out, int((tumor & empty).sum())


def build_model(options: SegmentationOptions):
    """The (Attention) U-Net of ``options``, compiled (Adam, BCE + Dice, Dice metric).

    The metric, logged as ``dice`` / ``val_dice`` (the monitored quantity), is the per-image
    Dice at the best of ``THRESHOLD_CANDIDATES`` when the run chooses its threshold on the
    validation split (:class:`~bone_tumor_tf.models.metrics.BestThresholdDice`), else at
    ``options.threshold``.

    BatchNorm momentum is set to ``options.bn_momentum`` (0.9 by default, Keras' 0.99
    otherwise): a moving statistic after ``n`` steps keeps a weight ``momentum**n`` on its
    initial value, and with the ~20 steps per epoch of a small dataset 0.99 leaves
    inference-mode BatchNorm (validation, test) far from the data for the first ~10
    epochs, so ``val_dice`` (the monitored quantity) swings erratically.
    """
    try:
        model = build_unet(image_size=options.image_size, base_filters=options.base_filters,
                           depth=options.depth, attention=options.arch == "attention-unet",
                           encoder=options.encoder, encoder_weights=options.encoder_weights,
                           dropout=options.dropout)
    except ValueError as error:
        raise BoneTumorError(f"cannot build {options.arch}: {error}") from None
    if options.init_from is not None:
        load_initial_weights(model, options.init_model_path())
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = options.bn_momentum
    model.compile(optimizer=keras.optimizers.Adam(options.lr),
                  loss=BCEDiceLoss(alpha=options.alpha, smooth=options.smooth,
                                       dice_on=options.dice_on),
                  metrics=[BestThresholdDice(THRESHOLD_CANDIDATES) if options.choose_threshold
                           else DiceCoefficient(threshold=options.threshold)])
    return model


def load_initial_weights(model, path: Path) -> list[str]:
    """Start ``model`` from the weights of an earlier segmentation run (fine-tuning).

    Every weighted layer of the saved U-Net is copied by name; the two must have the same
    layers with the same weight shapes (same ``arch``, ``encoder``, ``base_filters`` and
    ``depth``). The input size may differ: a U-Net is fully convolutional, so a model
    trained at 128 px can start a 256-px run.

    Returns:
        The copied layer names.

    Raises:
        ModelFileError: the file is missing or cannot be loaded.
        ModelConfigError: not a segmentation model, or its layers differ from ``model``'s.
    """
    source = load_model(path)
    if not is_segmentation_model(source):
        raise ModelConfigError(f"{path}: not a segmentation model; --init-from takes a U-Net "
                               "run of this toolkit (a classifier starts a classifier through "
                               "train --weights)")
    names = weighted_layer_names(source)
    differing = sorted(set(names) ^ set(weighted_layer_names(model)))
    hint = "train with the same --arch, --encoder, --base-filters and --depth"
    if differing:
        raise ModelConfigError(f"{path}: its layers differ from the U-Net being built "
                               f"({', '.join(differing[:3])}{', ...' if len(differing) > 3 else ''}"
                               f"); {hint}")
    try:
        copy_weights_by_name(source, model, names)
    except ModelFileError as error:
        raise ModelConfigError(f"{path}: {error}; {hint}") from None
    logger.info("started from the weights of %s (%d layers)", path, len(names))
    return names


class SegmentationTrainer(Trainer):
    """Segmentation's part of the run lifecycle (:mod:`bone_tumor_tf.training.lifecycle`)."""

    monitor, monitor_mode = MONITOR, MONITOR_MODE
    empty_split_message = ("the {split} split has no annotated images; segmentation needs "
                           "BTXRD-format data with LabelMe tumor polygons (and enough of them)")

    def __init__(self, options: SegmentationOptions):
        super().__init__(options)
        self.dropped = 0
        self.threshold = options.threshold
        self.threshold_choice: dict | None = None

    def load_data(self, run_dir: Path, resuming: bool) -> RunData:
        options = self.options
        _, splits, prepared, data_dir, synthetic = load_run_data(
            options, run_dir, resuming, with_masks=True,
            records_filter=lambda r: wants_record(r, options.include_normals))
        data_dir = Path(data_dir).resolve()
        if not any(r.label != "normal" for r in prepared.records):
            raise DataError(data_dir, "no tumor images with LabelMe annotations or masks; "
                                      "segmentation needs BTXRD-format data with tumor "
                                      "polygons or a mask-folder set (DIR/images + DIR/masks)")
        arrays, self.dropped = split_data(prepared, splits)
        if self.dropped:
            logger.info("left out %d tumor images whose annotation holds no polygon",
                        self.dropped)
        counts = {name: {"images": len(part),
                         "normal": sum(r.label == "normal" for r in part.records)}
                  for name, part in arrays.items()}
        return RunData(arrays, data_dir, synthetic,
                       config={"task": "segmentation", "split_counts": counts,
                               "tumor_images_without_polygon": self.dropped})

    def build_model(self, data: RunData):
        return build_model(self.options)

    def phases(self, model, data: RunData) -> list[Phase]:
        """One phase, ``"train"``."""
        options, train, val = self.options, data.splits["train"], data.splits["val"]
        train_ds = make_segmentation_dataset(train.images, train.masks, options.batch_size,
                                             training=True, augmentation=options.augmentation,
                                             seed=options.seed)
        val_ds = make_segmentation_dataset(val.images, val.masks, options.batch_size)

        def start() -> None:
            logger.info("%s: %s, %s parameters, %d training images, %d epochs at most", PHASE,
                        options.arch, f"{model.count_params():,}", len(train), options.epochs)

        def fit(callbacks: list) -> None:
            model.fit(train_ds, validation_data=val_ds, epochs=options.epochs, shuffle=False,
                      callbacks=callbacks, verbose=options.verbose)

        return [Phase(PHASE, options.epochs, fit, start=start)]

    def finish_contract(self, model, data: RunData) -> None:
        if self.options.choose_threshold:
            choice = choose_threshold(model, data.splits["val"], self.options.batch_size,
                                      start=self.options.threshold,
                                      max_normal_marked=self.options.max_normal_marked)
            self.threshold_choice, self.threshold = choice, choice["chosen"]
            logger.info("mask threshold %.2f, chosen on the validation split: %s",
                        self.threshold, describe_threshold_choice(choice))
        update_contract(model, threshold=self.threshold,
                        data_source=str(data.data_dir), synthetic_data=bool(data.synthetic),
                        parameters=int(model.count_params()))

    def evaluate(self, model, run_dir: Path, data: RunData) -> None:
        evaluate_run(model, run_dir, data.splits, self.options, data.data_dir, data.synthetic,
                     self.dropped, threshold=self.threshold,
                     threshold_choice=self.threshold_choice)


def train_segmentation(options: SegmentationOptions, callbacks: list | None = None) -> Path:
    """Train, evaluate and report one segmentation run; returns the run folder.

    Args:
        options: the run's options (see :class:`SegmentationOptions`; validated again here).
        callbacks: extra Keras callbacks, appended after the run's own (e.g. progress).

    Raises:
        BoneTumorError: bad options, a finished run in ``options.out`` without
            ``overwrite``, bad files (unless ``on_bad_file="skip"``), a dataset without
            tumor polygons or with an empty split, missing encoder weights.
    """
    return run_training(SegmentationTrainer(options), callbacks)


def _per_image_dice(probs, masks, threshold: float) -> np.ndarray:
    """Dice of each thresholded probability map against its mask (1 for empty/empty)."""
    return np.array([dice_score(p >= threshold, m) for p, m in zip(probs, masks)])


def split_scores(model, arrays: dict[str, SegmentationSplit], threshold: float,
                 batch_size: int) -> dict[str, dict]:
    """Per split, at the model's input resolution: the figures to choose settings on.

    ``dice_mean`` over all images (a normal image scores 1 when nothing is predicted on it),
    ``tumor_dice_mean`` over the tumor images, ``normal_fp_image_rate``: the share of
    normal images with at least one predicted tumor pixel (None without normal images).
    """
    out = {}
    for name, part in arrays.items():
        probs = predict_probability_maps(model, part.images, batch_size)
        dices = _per_image_dice(probs, part.masks, threshold)
        normal = np.array([r.label == "normal" for r in part.records], dtype=bool)
        marked = np.array([bool((p >= threshold).any()) for p in probs], dtype=bool)
        out[name] = {
            "dice_mean": float(dices.mean()) if len(dices) else None,
            "tumor_dice_mean": float(dices[~normal].mean()) if (~normal).any() else None,
            "normal_fp_image_rate": float(marked[normal].mean()) if normal.any() else None}
    return out


def choose_threshold(model, val: SegmentationSplit, batch_size: int,
                     candidates: tuple[float, ...] | None = None, start: float = 0.5,
                     max_normal_marked: float | None = None) -> dict:
    """The mask threshold chosen on the validation split (see :func:`threshold_choice`).

    Predicts ``val`` at the model's input resolution; ``candidates`` default to
    :data:`THRESHOLD_CANDIDATES`, or :data:`BUDGET_THRESHOLD_CANDIDATES` with a budget.
    """
    if candidates is None:
        candidates = (THRESHOLD_CANDIDATES if max_normal_marked is None
                      else BUDGET_THRESHOLD_CANDIDATES)
    probs = predict_probability_maps(model, val.images, batch_size)
    normal = np.array([r.label == "normal" for r in val.records], dtype=bool)
    return threshold_choice(probs, val.masks, normal, candidates, start, max_normal_marked)


def describe_threshold_choice(choice: dict) -> str:
    """One line for logs and reports: the objective and its value at the chosen threshold."""
    start = f"{choice.get('start', 0.5):g}"
    if choice.get("max_normal_marked") is None:
        return (f"mean Dice {choice['best_dice']:.3f} (normal images count 1 when left "
                f"empty), {choice['dice_at_start']:.3f} at {start}")
    k = choice["candidates"].index(choice["chosen"])
    kept = "within" if choice["budget_met"] else "NOT within"
    return (f"tumor Dice {choice['best_dice']:.3f} with {choice['normal_marked'][k]:.1%} of "
            f"normal images marked, {kept} the budget of {choice['max_normal_marked']:.1%} "
            f"(tumor Dice {choice['dice_at_start']:.3f} at {start})")


def threshold_choice(probs: np.ndarray, masks: np.ndarray, normal: np.ndarray,
                     candidates: tuple[float, ...] = THRESHOLD_CANDIDATES, start: float = 0.5,
                     max_normal_marked: float | None = None) -> dict:
    """The mask threshold with the best validation score among ``candidates``.

    Args:
        probs: ``(N, S, S)`` tumor probabilities in [0, 1] of the validation images.
        masks: ``(N, S, S)`` ground-truth masks in {0, 1} (empty on normal images).
        normal: ``(N,)`` bool, the normal radiographs.
        max_normal_marked: ``None``: the best mean per-image Dice over every image, a tumor
            image by its Dice, a normal image by 1 when nothing is predicted on it and 0
            otherwise (with many normals this favours marking nothing at all). A share in
            [0, 1] (a false-alarm budget): the best mean Dice over the *tumor* images among
            the thresholds at which at most this share of the normal images has a marked
            pixel; when none keeps to it, the threshold that marks the fewest normal images
            (``budget_met`` False).

    Ties go to the larger threshold (fewer marked pixels).

    Returns:
        ``{"split": "val", "candidates": [...], "dice_mean": [...], "tumor_dice_mean":
        [...], "normal_marked": [...] (None without normal images), "max_normal_marked",
        "budget_met" (None without a budget), "chosen": t, "best_dice": the chosen
        threshold's score under the objective, "start", "dice_at_start": the score at
        ``start`` (the training threshold)}``. ``tumor_dice_mean`` is None without tumor
        images.
    """
    candidates = tuple(candidates)
    grid = candidates if start in candidates else candidates + (start,)
    dices = [_per_image_dice(probs, masks, t) for t in grid]
    marked = [np.array([bool((p >= t).any()) for p in probs]) for t in grid]
    mean_all = [float(d.mean()) for d in dices]
    tumor = [float(d[~normal].mean()) if (~normal).any() else None for d in dices]
    normal_marked = ([float(m[normal].mean()) for m in marked] if normal.any() else None)
    objective = mean_all
    pool = list(range(len(candidates)))
    budget_met = None
    if max_normal_marked is not None:
        if normal_marked is None or tumor[0] is None:
            raise BoneTumorError("--max-normal-marked needs both normal and tumor images in "
                                 "the validation split")
        objective = tumor
        within = [k for k in pool if normal_marked[k] <= max_normal_marked + 1e-12]
        budget_met = bool(within)
        pool = within or [min(pool, key=lambda k: (normal_marked[k], -tumor[k]))]
    best = max(pool, key=lambda k: (objective[k], candidates[k]))
    n = len(candidates)
    return {"split": "val", "candidates": list(candidates), "dice_mean": mean_all[:n],
            "tumor_dice_mean": tumor[:n],
            "normal_marked": normal_marked[:n] if normal_marked is not None else None,
            "max_normal_marked": max_normal_marked, "budget_met": budget_met,
            "chosen": float(candidates[best]), "best_dice": objective[best],
            "start": start, "dice_at_start": objective[grid.index(start)]}


#: Below this validation tumor Dice a segmenter's masks are reported as useless.
USELESS_TUMOR_DICE = 0.01


def training_warnings(history, by_split: dict[str, dict]) -> list[str]:
    """What a user must know before trusting a segmentation run (empty list: nothing).

    - the monitored ``val_dice`` never rose above its first epoch over 3 or more epochs:
      early stopping then restores the first epoch's weights;
    - at the saved threshold the model marks no pixel on any validation image although
      tumor images are there: it is an empty predictor;
    - at the saved threshold its validation tumor Dice is below :data:`USELESS_TUMOR_DICE`
      while it still marks some images: its masks miss the tumors (typically a
      ``--max-normal-marked`` budget too strict for the model).
    """
    warnings = []
    if MONITOR in history and len(history) >= 3:
        values = history[MONITOR].to_numpy(float)
        if np.nanmax(values[1:]) <= values[0]:
            warnings.append(f"{MONITOR} never rose above its epoch-1 value {values[0]:.4f} in "
                            f"{len(values)} epochs, so the saved weights are epoch 1's: the run "
                            "did not learn (more epochs, a higher --lr, or tumor images only)")
    val = by_split.get("val") or {}
    tumor_dice = val.get("tumor_dice_mean")
    if tumor_dice == 0.0 and not val.get("normal_fp_image_rate"):
        warnings.append("at its threshold the model marks no tumor pixel on any validation "
                        "image: it is no better than an empty mask")
    elif tumor_dice is not None and tumor_dice < USELESS_TUMOR_DICE:
        warnings.append(f"at its threshold the validation tumor Dice is {tumor_dice:.4f}: the "
                        "masks miss the tumors (with --max-normal-marked: a budget too strict "
                        "for this model)")
    return warnings


def evaluate_run(model, run_dir: Path, arrays: dict[str, SegmentationSplit],
                 options: SegmentationOptions, data_dir, synthetic: bool,
                 dropped: int = 0, threshold: float | None = None,
                 threshold_choice: dict | None = None) -> dict:
    """``metrics.json``, overlays, training curves and ``report.md`` of a trained model.

    ``threshold``: the mask threshold (default ``options.threshold``); ``threshold_choice``:
    how it was chosen on the validation split (:func:`choose_threshold`), if it was.
    """
    threshold = options.threshold if threshold is None else threshold
    test = arrays["test"]
    predictions = predictions_at_original_resolution(model, test.images, test.geometries,
                                                     test.records, options.batch_size)
    metrics = {"task": "segmentation", "split": "test",
               **evaluate_segmentation(predictions, threshold, seed=options.seed)}
    by_split = split_scores(model, arrays, threshold, options.batch_size)
    metrics["split_scores_input_resolution"] = by_split
    metrics["threshold_choice"] = threshold_choice
    history = runs.read_history(run_dir / f"history_{PHASE}.csv")
    metrics["warnings"] = training_warnings(history, by_split)
    if threshold_choice and threshold_choice.get("budget_met") is False:
        choice = threshold_choice
        marked = choice["normal_marked"][choice["candidates"].index(choice["chosen"])]
        metrics["warnings"].append(
            f"no mask threshold up to {choice['candidates'][-1]:g} keeps to "
            f"--max-normal-marked {choice['max_normal_marked']:g} on the validation split; "
            f"{choice['chosen']:g} marks the fewest normal images ({marked:.1%})")
    for warning in metrics["warnings"]:
        logger.warning("%s: %s", run_dir, warning)
    metrics["run"] = {"arch": options.arch, "encoder": options.encoder,
                      "encoder_weights": options.encoder_weights,
                      "init_from": options.init_from,
                      "image_size": options.image_size, "base_filters": options.base_filters,
                      "depth": options.depth, "parameters": int(model.count_params()),
                      "include_normals": options.include_normals,
                      "alpha": options.alpha, "dice_on": options.dice_on,
                      "split_by": options.split_by, "seed": options.seed,
                      "data": str(data_dir), "synthetic_data": bool(synthetic),
                      "tumor_images_without_polygon": dropped}
    atomic_write_json(run_dir / "metrics.json", metrics)

    figures = {}
    if not history.empty:
        history = history.assign(epoch=history["epoch"] + 1)
        figures["Training curves"] = plot_segmentation_curves(
            history, run_dir / "training_curves.png")
    overlays = write_case_overlays(predictions, metrics, run_dir, threshold)
    for case, path in overlays.items():
        figures[f"{case.capitalize()} test case by Dice (green: ground truth, red: "
                "prediction)"] = path
    arch_name = ARCH_NAMES[options.arch]
    write_segmentation_report(
        run_dir, metrics, title=f"{arch_name} tumor segmentation",
        data_source=str(data_dir) + (" (synthetic)" if synthetic else ""),
        split_kind=SPLIT_DESCRIPTIONS[options.split_by],
        model_info={"architecture": arch_name, "encoder": options.encoder,
                    "encoder weights": options.encoder_weights,
                    "started from": options.init_from or "random initialisation",
                    "input": f"{options.image_size} px gray",
                    "base filters / depth": f"{options.base_filters} / {options.depth}",
                    "parameters": f"{model.count_params():,}",
                    "loss": f"{options.alpha:g} BCE + {1 - options.alpha:g} (1 - soft Dice)"
                            + (", Dice on tumor images only" if options.dice_on == "tumor"
                               else ""),
                    "normal images in training": "yes" if options.include_normals else "no",
                    "mask threshold": (f"{threshold:g} (chosen on the validation split: "
                                       f"{describe_threshold_choice(threshold_choice)})"
                                       if threshold_choice else f"{threshold:g}"),
                    "training images": len(arrays["train"]), "seed": options.seed},
        split_scores=by_split, figures=figures, synthetic=synthetic)
    return metrics
