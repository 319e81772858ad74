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

The class-weighted categorical cross-entropy L = -sum_i w_i y_i log p_i is Keras'
``class_weight`` (each sample's loss is multiplied by the weight of its class) with
inverse-frequency weights w_c = N / (K n_c).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.pipeline import (
    EpochSeeds,
    class_weights,
    encode_labels,
    make_classification_dataset,
    prepare_images,
    task_class_names,
)
from bone_tumor_tf.data.splits import load_splits, make_splits, save_splits
from bone_tumor_tf.errors import BoneTumorError, DataError
from bone_tumor_tf.training import runs

MONITOR, MONITOR_MODE = "val_auc", "max"
#: BatchNorm momentum when training a random-init backbone (see :func:`set_trainable`).
RANDOM_INIT_BN_MOMENTUM = 0.9


@dataclass
class ClassifierOptions:
    """Every option of a classification run (saved in ``config.json``)."""

    data: str
    out: str
    arch: str = "densenet121"
    task: str = "multiclass"
    weights: str = "none"
    crop: str = "gt-box"
    epochs: int = 10
    phase2_epochs: int | None = None
    batch_size: int = 32
    image_size: int = 224
    lr: float = 1e-3
    phase2_lr: float = 1e-4
    weight_decay: float = 1e-4
    head_l2: float = 1e-4
    dropout: float = 0.5
    patience: int = 5
    unfreeze: str = "auto"
    split_by: str = "patient"
    holdout_center: int | None = None
    seed: int = 0
    deterministic: bool = False
    augmentation: str = "standard"
    class_balanced: bool = False
    on_bad_file: str = "stop"
    overwrite: bool = False
    cache_dir: str | None = None
    n_bootstrap: int = 1000
    verbose: str | int = "auto"
    cache_features: bool = False
    feature_views: int = 1
    strategy: str = "auto"
    lr_scaling: str = "none"
    mixed_precision: bool = False
    jit_compile: str = "auto"
    accumulate_steps: int = 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def micro_batch_size(self) -> int:
        """Images per forward/backward pass: ``batch_size / accumulate_steps``."""
        return self.batch_size // max(1, self.accumulate_steps)


@dataclass
class SplitArrays:
    """Prepared images and integer targets of one split."""

    images: np.ndarray
    targets: np.ndarray
    records: list


def resolve_data_dir(data: str, kind: str = "btxrd", seed: int = 0) -> tuple[Path, bool]:
    """``demo`` -> the embedded synthetic dataset (generated on first use); returns
    ``(path, is_synthetic)``."""
    if data == "demo":
        from bone_tumor_tf.data.synthetic import generate_btxrd, generate_folders

        root = Path("runs") / "demo-data" / kind
        if not (root / "SYNTHETIC.txt").is_file():
            if kind == "btxrd":
                generate_btxrd(root, n=400, seed=seed, min_side=192, max_side=384)
            else:
                generate_folders(root, n=240, seed=seed)
        return root, True
    path = Path(data).expanduser()
    return path, (path / "SYNTHETIC.txt").is_file()


def load_run_data(options, run_dir: Path, resuming: bool, with_masks: bool = False,
                  records_filter=None):
    """Dataset, validated split and prepared images of a run (shared with segmentation).

    Returns ``(dataset, splits DataFrame, PreparedImages, data_dir, synthetic)``. Fails
    before training, with every bad file listed in ``bad_files.txt``, unless
    ``options.on_bad_file == "skip"``.
    """
    data_dir, synthetic = resolve_data_dir(options.data, seed=options.seed)
    dataset = load_dataset(data_dir)
    if options.crop == "gt-box" and not hasattr(dataset, "sheet"):
        raise DataError(data_dir, "crop mode gt-box needs BTXRD annotations; this is a "
                                  "class-per-folder set: use --crop none")
    records = list(dataset.records)
    problems = []
    if hasattr(dataset, "sheet"):
        from bone_tumor_tf.data.inspection import sheet_problems

        problems = [p for p in sheet_problems(dataset) if p.severity == "error"]
    if records_filter is not None:
        records = [r for r in records if records_filter(r)]
    splits_path = run_dir / "splits.csv"
    if resuming and splits_path.is_file():
        splits = load_splits(splits_path)
        known = {r.image_id: r for r in records}
        records = [known[i] for i in splits["image_id"] if i in known]
    else:
        splits = make_splits(records, by=options.split_by, seed=options.seed,
                             holdout_center=options.holdout_center)
    prepared = prepare_images(records, options.image_size, crop_mode=options.crop,
                              seed=options.seed, with_masks=with_masks,
                              cache_dir=options.cache_dir, progress=True)
    failures = [f"{p.file}: {p.problem}" for p in problems] + [str(e) for e in prepared.failures]
    if failures:
        runs.write_bad_files(run_dir, failures)
        if options.on_bad_file != "skip":
            raise DataError(failures[0].split(": ")[0],
                            f"{failures[0].split(': ', 1)[1]} (and {len(failures) - 1} more "
                            f"problems; all listed in {run_dir / 'bad_files.txt'}; "
                            "--on-bad-file skip trains without them)")
        bad = {f.split(": ")[0] for f in failures}
        keep = np.array([str(r.path) not in bad and not any(r.image_id in b for b in bad)
                         for r in prepared.records])
        keep &= prepared.ok()
        prepared = prepared.subset(keep)
        splits = splits[splits["image_id"].isin({r.image_id for r in prepared.records})]
        print(f"skipping {int((~keep).sum())} bad files (listed in bad_files.txt)",
              file=sys.stderr)
    splits = splits.set_index("image_id").loc[[r.image_id for r in prepared.records]]
    splits = splits.reset_index()
    if not (resuming and splits_path.is_file()):
        save_splits(splits, splits_path)
    return dataset, splits, prepared, data_dir, synthetic


def split_arrays(prepared, splits, class_names, task) -> dict[str, SplitArrays]:
    targets = encode_labels([r.label for r in prepared.records], class_names, task)
    out = {}
    for name in ("train", "val", "test"):
        index = np.flatnonzero(splits["split"].to_numpy() == name)
        out[name] = SplitArrays(prepared.images[index], targets[index],
                                [prepared.records[i] for i in index])
    return out


def compile_for_phase(model, phase: int, options: ClassifierOptions, task: str):
    """Compile with the phase's optimizer, loss and metrics.

    The learning rates are scaled to the global batch by ``options.lr_scaling`` and XLA is
    chosen by ``options.jit_compile`` (see :mod:`bone_tumor_tf.training.distribute`).
    """
    import keras

    from bone_tumor_tf.training.distribute import resolve_jit_compile, scale_learning_rate

    rule, batch = getattr(options, "lr_scaling", "none"), options.batch_size
    # --accumulate-steps N: the optimizer sums N micro-batch gradients and applies their
    # mean once, so an update sees the gradient of the whole --batch-size while each
    # backward pass only stores the activations of batch_size / N images.
    accumulate = getattr(options, "accumulate_steps", 1)
    accumulation = {"gradient_accumulation_steps": accumulate} if accumulate > 1 else {}
    if phase == 1:
        optimizer = keras.optimizers.Adam(scale_learning_rate(options.lr, batch, rule),
                                          **accumulation)
    else:
        optimizer = keras.optimizers.AdamW(scale_learning_rate(options.phase2_lr, batch, rule),
                                           weight_decay=options.weight_decay, clipnorm=1.0,
                                           **accumulation)
    if task == "binary":
        loss = keras.losses.BinaryCrossentropy()
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    else:
        loss = keras.losses.CategoricalCrossentropy()
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"),
                   keras.metrics.AUC(name="auc")]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics,
                  jit_compile=resolve_jit_compile(getattr(options, "jit_compile", "auto")))


def set_trainable(model, phase: int, options: ClassifierOptions) -> list[str]:
    from bone_tumor_tf.models.classifiers import set_trainable_for_phase

    names = set_trainable_for_phase(model, phase, options.arch)
    unfreeze_all = options.unfreeze == "all" or (
        options.unfreeze == "auto" and options.weights in ("none", None))
    if phase == 2 and unfreeze_all:
        import keras

        # Random-init backbone: everything, BN statistics included, must be learned. Keras'
        # default BN momentum (0.99) lets the moving statistics of a short run stay near
        # their initial values, so inference would normalise with the wrong statistics.
        for layer in model.layers:
            layer.trainable = True
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = min(layer.momentum, RANDOM_INIT_BN_MOMENTUM)
        names = [layer.name for layer in model.layers if layer.trainable_weights]
    return names


def train_classifier(options: ClassifierOptions) -> Path:
    """Train, evaluate and report; returns the run folder. See the module docstring."""
    import keras

    from bone_tumor_tf.models.classifiers import build_classifier, set_head_l2
    from bone_tumor_tf.models.contract import save_with_contract, update_contract
    from bone_tumor_tf.training import distribute

    run_dir, resuming = runs.prepare_run_dir(options.out, options.overwrite)
    if resuming:
        print(f"resuming the interrupted run in {run_dir}", file=sys.stderr)
    strategy = distribute.make_strategy(options.strategy)
    if strategy.num_replicas_in_sync > 1:
        distribute.check_global_batch(options.micro_batch_size, strategy)
        print(f"training with {distribute.describe_strategy(strategy)}, global batch "
              f"{options.batch_size}", file=sys.stderr)
    runs.seed_everything(options.seed, options.deterministic)
    dataset, splits, prepared, data_dir, synthetic = load_run_data(options, run_dir, resuming)
    class_names = task_class_names(dataset.class_names, options.task)
    arrays = split_arrays(prepared, splits, dataset.class_names, options.task)
    for name, part in arrays.items():
        if len(part.targets) == 0:
            raise DataError(data_dir, f"the {name} split is empty; the dataset is too small")
    runs.write_config(run_dir, {**options.to_dict(), "data_dir": str(data_dir),
                                "synthetic_data": synthetic, "class_names": list(class_names),
                                "split_counts": splits["split"].value_counts().to_dict()})

    num_classes = len(class_names)
    with distribute.precision_policy(options.mixed_precision), strategy.scope():
        model = build_classifier(arch=options.arch, task=options.task,
                                 num_classes=None if options.task == "binary" else num_classes,
                                 image_size=options.image_size, weights=options.weights,
                                 dropout=options.dropout, class_names=list(class_names))
    update_contract(model, crop_mode=options.crop, data_source=str(data_dir),
                    synthetic_data=synthetic)
    train, val = arrays["train"], arrays["val"]
    weights = class_weights(train.targets, num_classes)
    # Deterministic runs key shuffling and augmentation on (seed, epoch), so that a resumed
    # run sees the same batches as an uninterrupted one.
    epoch_seeds = EpochSeeds(options.seed) if options.deterministic else None
    micro_batch = options.micro_batch_size
    train_ds = make_classification_dataset(
        train.images, train.targets, num_classes, options.task, micro_batch,
        training=True, augmentation=options.augmentation, seed=options.seed,
        class_balanced=options.class_balanced, epoch_seeds=epoch_seeds)
    seed_callbacks = [epoch_seeds.callback()] if epoch_seeds is not None else []
    val_ds = make_classification_dataset(val.images, val.targets, num_classes, options.task,
                                         micro_batch)
    train_ds, val_ds = (distribute.shard_by_data(d, strategy) for d in (train_ds, val_ds))
    steps = int(np.ceil(len(train.targets) / micro_batch)) if options.class_balanced \
        else None
    phases = [("phase1", 1, options.epochs),
              ("phase2", 2, options.phase2_epochs if options.phase2_epochs is not None
               else options.epochs)]
    for phase_name, phase, epochs in phases:
        if phase == 2 and options.head_l2:
            set_head_l2(model, options.head_l2)
        done = runs.phase_done(run_dir, phase_name)
        if done is not None:
            model.load_weights(str(done))
            print(f"{phase_name}: already finished, weights loaded", file=sys.stderr)
            continue
        trainable = set_trainable(model, phase, options)
        with strategy.scope():
            compile_for_phase(model, phase, options, options.task)
        print(f"{phase_name}: {len(trainable)} trainable layers, {epochs} epochs at most",
              file=sys.stderr)
        if epochs > 0 and phase == 1 and options.cache_features:
            fit_phase1_on_cached_features(model, run_dir, train, val, num_classes, options,
                                          weights, steps, strategy)
        elif epochs > 0:
            model.fit(train_ds, validation_data=val_ds, epochs=epochs, steps_per_epoch=steps,
                      shuffle=False,
                      class_weight=None if options.class_balanced else weights,
                      callbacks=runs.phase_callbacks(run_dir, phase_name, MONITOR, MONITOR_MODE,
                                                     options.patience, extra=seed_callbacks),
                      verbose=options.verbose)
        runs.mark_phase_done(run_dir, phase_name, model)
    runs.merge_histories(run_dir, [p[0] for p in phases])
    model.trainable = True
    # the inference file: contract inside, no optimizer state (that stays in state/)
    model_path = save_with_contract(model, run_dir / "model.keras.partial.keras")
    evaluate_run(model, run_dir, arrays, class_names, options, data_dir, synthetic)
    # model.keras appears last: its presence (with metrics.json) marks a finished run.
    model_path.replace(run_dir / "model.keras")
    keras.backend.clear_session()
    return run_dir


def fit_phase1_on_cached_features(model, run_dir: Path, train: SplitArrays, val: SplitArrays,
                                  num_classes: int, options: ClassifierOptions, weights: dict,
                                  steps: int | None, strategy) -> None:
    """Phase 1 on backbone features computed once (``--cache-features``).

    The head is trained alone (:func:`bone_tumor_tf.training.feature_cache.fit_head_on_features`)
    with the phase's callbacks, except that the best checkpoint is the FULL model with the
    trained head (written once the head is back in it), not the head model.
    """
    import keras

    from bone_tumor_tf.training.feature_cache import fit_head_on_features

    callbacks = [c for c in runs.phase_callbacks(run_dir, "phase1", MONITOR, MONITOR_MODE,
                                                 options.patience)
                 if not isinstance(c, keras.callbacks.ModelCheckpoint)]
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
    print(f"phase1: features of {options.feature_views} view(s) in {seconds['features']:.1f} s, "
          f"head trained in {seconds['fit']:.1f} s", file=sys.stderr)


def evaluate_run(model, run_dir: Path, arrays: dict, class_names, options, data_dir,
                 synthetic: bool) -> dict:
    """metrics.json, plots and report.md for a trained classifier."""
    from bone_tumor_tf.evaluation import (
        evaluate_predictions,
        plot_confusion_matrix,
        plot_pr_curves,
        plot_reliability_diagram,
        plot_roc_curves,
        plot_training_curves,
        write_classification_report,
    )
    from bone_tumor_tf.inference import predict_probabilities
    from bone_tumor_tf.io import atomic_write_json

    probs = {name: predict_probabilities(model, part.images, options.micro_batch_size)
             for name, part in arrays.items()}
    test = arrays["test"]
    metrics = evaluate_predictions(test.targets, probs["test"], class_names,
                                   n_bootstrap=options.n_bootstrap, seed=options.seed)
    split_accuracies = {name: float(np.mean(np.argmax(p, 1) == arrays[name].targets))
                        for name, p in probs.items()}
    metrics["split_accuracy"] = split_accuracies
    metrics["run"] = {"arch": options.arch, "task": options.task, "weights": options.weights,
                      "crop_mode": options.crop, "split_by": options.split_by,
                      "image_size": options.image_size, "data": str(data_dir),
                      "synthetic_data": synthetic}
    atomic_write_json(run_dir / "metrics.json", metrics)
    plots = {
        "Training curves": plot_training_curves(
            [runs.read_history(run_dir / f"history_{p}.csv") for p in ("phase1", "phase2")],
            run_dir / "training_curves.png"),
        "ROC curves (test)": plot_roc_curves(test.targets, probs["test"], class_names,
                                             run_dir / "roc_curves.png"),
        "Precision-recall curves (test)": plot_pr_curves(test.targets, probs["test"],
                                                         class_names, run_dir / "pr_curves.png"),
        "Confusion matrix (test)": plot_confusion_matrix(
            metrics["confusion_matrix"], class_names, run_dir / "confusion_matrix.png"),
        "Confusion matrix, row-normalised (test)": plot_confusion_matrix(
            metrics["confusion_matrix"], class_names, run_dir / "confusion_matrix_normalized.png",
            normalized=True),
        "Reliability diagram (test)": plot_reliability_diagram(
            test.targets, probs["test"], run_dir / "reliability.png"),
    }
    split_kind = {"patient": "by patient (grouped, stratified 70/15/15)",
                  "image": "by image (naive stratified 70/15/15, patients may leak)",
                  "center": "by center (one center held out as test)"}[options.split_by]
    crop_kind = {"gt-box": "gt-box: tumor images cropped to the ground-truth tumor box "
                           "(uses ground truth; mirrors the thesis)",
                 "none": "none: whole image, aspect-preserving pad to square"}[options.crop]
    write_classification_report(
        run_dir, metrics, title=f"{options.arch} {options.task} classifier",
        data_source=str(data_dir) + (" (synthetic)" if synthetic else ""),
        split_kind=split_kind, crop_mode=crop_kind,
        model_info={"architecture": options.arch, "task": options.task,
                    "weights": options.weights, "input": f"{options.image_size} px gray",
                    "classes": ", ".join(class_names), "seed": options.seed},
        split_accuracies=split_accuracies, plots={k: str(v) for k, v in plots.items()},
        synthetic=synthetic)
    return metrics


def check_options(options: ClassifierOptions) -> None:
    """Refuse contradictory options before any work (one-line errors)."""
    if options.arch == "resnet50" and str(options.weights).startswith("chexpert"):
        raise BoneTumorError("--weights chexpert exists for --arch densenet121 only")
    if options.batch_size < 1 or options.image_size < 32:
        raise BoneTumorError("--batch-size must be >= 1 and --image-size >= 32")
    if options.accumulate_steps < 1 or options.batch_size % options.accumulate_steps:
        raise BoneTumorError(f"--accumulate-steps {options.accumulate_steps}: must be >= 1 and "
                             f"divide --batch-size {options.batch_size}")
    if options.feature_views < 1:
        raise BoneTumorError("--feature-views must be >= 1")
    if options.feature_views > 1 and not options.cache_features:
        raise BoneTumorError("--feature-views needs --cache-features")
    if options.feature_views > 1 and options.augmentation == "none":
        raise BoneTumorError("--feature-views > 1 needs augmentation (--augmentation none "
                             "makes every view the same)")
    from bone_tumor_tf.training.distribute import (
        JIT_COMPILE,
        LR_SCALINGS,
        STRATEGIES,
        mixed_precision_policy,
    )

    for value, choices, flag in ((options.strategy, STRATEGIES, "--strategy"),
                                 (options.lr_scaling, LR_SCALINGS, "--lr-scaling"),
                                 (options.jit_compile, JIT_COMPILE, "--jit-compile")):
        if value not in choices:
            raise BoneTumorError(f"{flag} {value}: expected one of {', '.join(choices)}")
    if options.mixed_precision:
        mixed_precision_policy()  # refuses a CPU without bfloat16 instructions
