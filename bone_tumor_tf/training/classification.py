"""Two-phase training of the radiograph classifiers, evaluation and the run report.

Phase 1 trains the head on a frozen backbone (Adam, ``ReduceLROnPlateau(factor=0.3)``,
``EarlyStopping(restore_best_weights=True)``). Phase 2 unfreezes the last block
(DenseNet121 ``conv5_*``; ResNet50 ``conv5_*``; BatchNorm layers stay in inference mode),
adds L2 kernel regularisation to the head and trains with AdamW (weight decay) and gradient
clipping to L2 norm 1 at a lower learning rate, with the same callbacks. With random
initial weights (``weights="none"``) freezing a random backbone is pointless, so by default
phase 2 then unfreezes the whole network (``unfreeze="auto"``).

Performance options (see :mod:`bone_tumor_tf.training.feature_cache` and
:mod:`bone_tumor_tf.training.distribute`): ``cache_features`` trains phase 1's head on
backbone features computed once (``feature_views`` augmented views per image) and copies
the head's weights back; ``strategy`` distributes training with tf.distribute
(``batch_size`` is then the global batch, ``lr_scaling`` optionally scales the learning
rates with it); ``mixed_precision`` and ``jit_compile`` choose the numerics and XLA;
``accumulate_steps`` N runs each ``batch_size`` batch as N micro-batches whose gradients the
optimizer sums before one update (activation memory of ``batch_size / N`` images).

The run itself (run folder, resuming, seeding, phases, checkpoints, finalising) is
:func:`bone_tumor_tf.training.lifecycle.run_training`; :class:`ClassifierTrainer` supplies
the classifier, its data, its phases and its evaluation.

The class-weighted categorical cross-entropy L = -sum_i w_i y_i log p_i is Keras'
``class_weight`` (each sample's loss is multiplied by the weight of its class) with
inverse-frequency weights w_c = N / (K n_c).
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np

from bone_tumor_tf.data.dataset import SplitArrays, load_run_data, split_arrays
from bone_tumor_tf.data.pipeline import EpochSeeds, make_classification_dataset
from bone_tumor_tf.data.prepare import class_weights, task_class_names
from bone_tumor_tf.evaluation.classifier_evaluation import write_classifier_evaluation
from bone_tumor_tf.inference import predict_probabilities
from bone_tumor_tf.models.classifiers import (
    build_classifier,
    set_head_l2,
    set_trainable_for_phase,
)
from bone_tumor_tf.models.contract import update_contract
from bone_tumor_tf.training import distribute, runs
from bone_tumor_tf.training.feature_cache import fit_head_on_features
from bone_tumor_tf.training.lifecycle import Phase, RunData, Trainer, run_training
from bone_tumor_tf.training.options import SPLIT_DESCRIPTIONS, ClassifierOptions

logger = logging.getLogger(__name__)

MONITOR, MONITOR_MODE = "val_auc", "max"
#: BatchNorm momentum when training a random-init backbone (see :func:`set_trainable`).
RANDOM_INIT_BN_MOMENTUM = 0.9
CROP_DESCRIPTIONS = {"gt-box": "gt-box: tumor images cropped to the ground-truth tumor box "
                              "(uses ground truth; mirrors the thesis)",
                     "none": "none: whole image, aspect-preserving pad to square"}


def compile_for_phase(model, phase: int, options: ClassifierOptions, task: str):
    """Compile with the phase's optimizer, loss and metrics.

    The learning rates are scaled to the global batch by ``options.lr_scaling`` and XLA is
    chosen by ``options.jit_compile`` (see :mod:`bone_tumor_tf.training.distribute`).
    """
    rule, batch = getattr(options, "lr_scaling", "none"), options.batch_size
    # --accumulate-steps N: the optimizer sums N micro-batch gradients and applies their
    # mean once, so an update sees the gradient of the whole --batch-size while each
    # backward pass only stores the activations of batch_size / N images.
    accumulate = getattr(options, "accumulate_steps", 1)
    accumulation = {"gradient_accumulation_steps": accumulate} if accumulate > 1 else {}
    if phase == 1:
        optimizer = keras.optimizers.Adam(
            distribute.scale_learning_rate(options.lr, batch, rule), **accumulation)
    else:
        optimizer = keras.optimizers.AdamW(
            distribute.scale_learning_rate(options.phase2_lr, batch, rule),
            weight_decay=options.weight_decay, clipnorm=1.0, **accumulation)
    if task == "binary":
        loss = keras.losses.BinaryCrossentropy()
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    else:
        loss = keras.losses.CategoricalCrossentropy()
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"),
                   keras.metrics.AUC(name="auc")]
    jit_compile = distribute.resolve_jit_compile(getattr(options, "jit_compile", "auto"))
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile)


def set_trainable(model, phase: int, options: ClassifierOptions) -> list[str]:
    names = set_trainable_for_phase(model, phase, options.arch)
    unfreeze_all = options.unfreeze == "all" or (
        options.unfreeze == "auto" and options.weights in ("none", None))
    if phase == 2 and unfreeze_all:
        # Random-init backbone: everything, BN statistics included, must be learned. Keras'
        # default BN momentum (0.99) lets the moving statistics of a short run stay near
        # their initial values, so inference would normalise with the wrong statistics.
        for layer in model.layers:
            layer.trainable = True
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = min(layer.momentum, RANDOM_INIT_BN_MOMENTUM)
        names = [layer.name for layer in model.layers if layer.trainable_weights]
    return names


class ClassifierTrainer(Trainer):
    """Classification's part of the run lifecycle (:mod:`bone_tumor_tf.training.lifecycle`)."""

    monitor, monitor_mode = MONITOR, MONITOR_MODE
    empty_split_message = "the {split} split is empty; the dataset is too small"

    def __init__(self, options: ClassifierOptions):
        super().__init__(options)
        self.strategy = None
        self.run_dir: Path | None = None
        self.class_names: tuple[str, ...] = ()

    def validate(self) -> None:
        super().validate()
        if self.options.mixed_precision:
            distribute.mixed_precision_policy()  # refuses a CPU without bfloat16 instructions

    def setup(self) -> None:
        options = self.options
        self.strategy = distribute.make_strategy(options.strategy)
        if self.strategy.num_replicas_in_sync > 1:
            distribute.check_global_batch(options.micro_batch_size, self.strategy)
            logger.info("training with %s, global batch %d",
                        distribute.describe_strategy(self.strategy), options.batch_size)

    def load_data(self, run_dir: Path, resuming: bool) -> RunData:
        options, self.run_dir = self.options, run_dir
        dataset, splits, prepared, data_dir, synthetic = load_run_data(options, run_dir,
                                                                       resuming)
        self.class_names = task_class_names(dataset.class_names, options.task)
        arrays = split_arrays(prepared, splits, dataset.class_names, options.task)
        return RunData(arrays, data_dir, synthetic,
                       config={"class_names": list(self.class_names),
                               "split_counts": splits["split"].value_counts().to_dict()})

    def build_model(self, data: RunData):
        options = self.options
        task_classes = None if options.task == "binary" else len(self.class_names)
        with distribute.precision_policy(options.mixed_precision), self.strategy.scope():
            model = build_classifier(arch=options.arch, task=options.task,
                                     num_classes=task_classes, image_size=options.image_size,
                                     weights=options.weights, dropout=options.dropout,
                                     class_names=list(self.class_names))
        update_contract(model, crop_mode=options.crop, data_source=str(data.data_dir),
                        synthetic_data=data.synthetic)
        return model

    def phases(self, model, data: RunData) -> list[Phase]:
        """Phase 1 (head on the frozen backbone), phase 2 (fine-tuning); see the module doc."""
        options, strategy = self.options, self.strategy
        num_classes = len(self.class_names)
        train, val = data.splits["train"], data.splits["val"]
        weights = class_weights(train.targets, num_classes)
        # Deterministic runs key shuffling and augmentation on (seed, epoch), so that a
        # resumed run sees the same batches as an uninterrupted one.
        epoch_seeds = EpochSeeds(options.seed) if options.deterministic else None
        micro_batch = options.micro_batch_size
        train_ds = make_classification_dataset(
            train.images, train.targets, num_classes, options.task, micro_batch,
            training=True, augmentation=options.augmentation, seed=options.seed,
            class_balanced=options.class_balanced, epoch_seeds=epoch_seeds)
        seed_callbacks = [epoch_seeds.callback()] if epoch_seeds is not None else []
        val_ds = make_classification_dataset(val.images, val.targets, num_classes,
                                             options.task, micro_batch)
        train_ds, val_ds = (distribute.shard_by_data(d, strategy) for d in (train_ds, val_ds))
        steps = int(np.ceil(len(train.targets) / micro_batch)) if options.class_balanced \
            else None
        class_weight = None if options.class_balanced else weights

        def start(phase: int, epochs: int):
            def start_phase() -> None:
                trainable = set_trainable(model, phase, options)
                with strategy.scope():
                    compile_for_phase(model, phase, options, options.task)
                logger.info("phase%d: %d trainable layers, %d epochs at most", phase,
                            len(trainable), epochs)
            return start_phase

        def fit(epochs: int):
            def fit_phase(callbacks: list) -> None:
                model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                          steps_per_epoch=steps, shuffle=False, class_weight=class_weight,
                          callbacks=callbacks, verbose=options.verbose)
            return fit_phase

        def fit_cached(callbacks: list) -> None:
            fit_phase1_on_cached_features(model, self.run_dir, train, val, num_classes,
                                          options, weights, steps, strategy, callbacks)

        epochs1, epochs2 = options.phase_epochs
        phase1 = (Phase("phase1", epochs1, fit_cached, start=start(1, epochs1))
                  if options.cache_features else
                  Phase("phase1", epochs1, fit(epochs1), start=start(1, epochs1),
                        first_callbacks=seed_callbacks))
        add_head_l2 = (lambda: set_head_l2(model, options.head_l2)) if options.head_l2 else None
        phase2 = Phase("phase2", epochs2, fit(epochs2), prepare=add_head_l2,
                       start=start(2, epochs2), first_callbacks=seed_callbacks)
        return [phase1, phase2]

    def evaluate(self, model, run_dir: Path, data: RunData) -> None:
        evaluate_run(model, run_dir, data.splits, self.class_names, self.options,
                     data.data_dir, data.synthetic)


def train_classifier(options: ClassifierOptions, callbacks: list | None = None) -> Path:
    """Train, evaluate and report; returns the run folder. See the module docstring.

    Args:
        options: the run's options (validated again here).
        callbacks: extra Keras callbacks, after the run's own in both phases.

    Raises:
        BoneTumorError: bad options, a finished run in ``options.out`` without
            ``overwrite``, bad files (unless ``on_bad_file="skip"``), an empty split.
    """
    return run_training(ClassifierTrainer(options), callbacks)


def fit_phase1_on_cached_features(model, run_dir: Path, train: SplitArrays, val: SplitArrays,
                                  num_classes: int, options: ClassifierOptions, weights: dict,
                                  steps: int | None, strategy, callbacks: list) -> None:
    """Phase 1 on backbone features computed once (``--cache-features``).

    The head is trained alone (:func:`bone_tumor_tf.training.feature_cache.fit_head_on_features`)
    with the phase's ``callbacks`` except ``ModelCheckpoint``: the best checkpoint is the
    FULL model with the trained head (written once the head is back in it), not the head
    model.
    """
    callbacks = [c for c in callbacks if not isinstance(c, keras.callbacks.ModelCheckpoint)]
    _, _, seconds = fit_head_on_features(
        model, train.images, train.targets, val.images, val.targets, num_classes=num_classes,
        task=options.task, compile_head=lambda head: compile_for_phase(head, 1, options,
                                                                       options.task),
        epochs=options.epochs, batch_size=options.micro_batch_size, views=options.feature_views,
        augmentation=options.augmentation, seed=options.seed,
        class_balanced=options.class_balanced,
        class_weight=None if options.class_balanced else weights, steps_per_epoch=steps,
        callbacks=callbacks, verbose=options.verbose, scope=strategy.scope)
    runs.save_model_atomic(model, run_dir / "checkpoints" / "best_phase1.keras")
    logger.info("phase1: features of %d view(s) in %.1f s, head trained in %.1f s",
                options.feature_views, seconds["features"], seconds["fit"])


def evaluate_run(model, run_dir: Path, arrays: dict[str, SplitArrays], class_names,
                 options: ClassifierOptions, data_dir, synthetic: bool) -> dict:
    """``metrics.json``, plots and ``report.md`` of a trained classifier (test split)."""
    # One predict call for every split: each call with new batch shapes retraces the model.
    names = list(arrays)
    stacked = predict_probabilities(model, np.concatenate([arrays[n].images for n in names]),
                                    options.micro_batch_size)
    ends = np.cumsum([len(arrays[n].images) for n in names])
    probs = dict(zip(names, np.split(stacked, ends[:-1]), strict=True))
    split_accuracies = {name: float(np.mean(np.argmax(p, 1) == arrays[name].targets))
                        for name, p in probs.items()}
    test = arrays["test"]
    return write_classifier_evaluation(
        run_dir, test.targets, probs["test"], class_names, split="test",
        n_bootstrap=options.n_bootstrap, seed=options.seed,
        run_info={"arch": options.arch, "task": options.task, "weights": options.weights,
                  "crop_mode": options.crop, "split_by": options.split_by,
                  "image_size": options.image_size, "data": str(data_dir),
                  "synthetic_data": synthetic},
        histories=[runs.read_history(run_dir / f"history_{p}.csv")
                   for p in ("phase1", "phase2")],
        title=f"{options.arch} {options.task} classifier",
        data_source=str(data_dir) + (" (synthetic)" if synthetic else ""),
        split_kind=SPLIT_DESCRIPTIONS[options.split_by],
        crop_mode=CROP_DESCRIPTIONS[options.crop],
        model_info={"architecture": options.arch, "task": options.task,
                    "weights": options.weights, "input": f"{options.image_size} px gray",
                    "classes": ", ".join(class_names), "seed": options.seed},
        split_accuracies=split_accuracies, synthetic=synthetic,
        groups=[record.group for record in test.records])
