"""Options of a training run: the fields every run has, and those of each trainer.

:class:`TrainingOptions` holds the options classification and segmentation share (data,
run folder, split, seed, bad files, the basic schedule); :class:`ClassifierOptions` and
:class:`SegmentationOptions` add their own. Every options object validates itself when it
is created (and :meth:`TrainingOptions.validate` can be called again after a change):
bad or contradictory values raise :class:`~bone_tumor_tf.errors.BoneTumorError` with a
one-line message naming the command-line option, before any work. The whole object is
saved in the run's ``config.json``.

This module stays light (no TensorFlow): the command-line parsers take their defaults and
choices from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bone_tumor_tf.errors import BoneTumorError
from bone_tumor_tf.training.distribute import JIT_COMPILE, LR_SCALINGS, STRATEGIES

CROP_MODES = ("gt-box", "none")
#: The split kinds of :func:`bone_tumor_tf.data.splits.make_splits`, as reports describe them.
SPLIT_DESCRIPTIONS = {"patient": "by patient (grouped, stratified 70/15/15)",
                      "image": "by image (naive stratified 70/15/15, patients may leak)",
                      "center": "by center (one center held out as test)"}
SPLIT_KINDS = tuple(SPLIT_DESCRIPTIONS)
ON_BAD_FILE = ("stop", "skip")
CLASSIFIER_ARCHS = ("densenet121", "resnet50")
TASKS = ("multiclass", "binary")
CLASSIFIER_AUGMENTATIONS = ("standard", "randaugment", "none")
UNFREEZE = ("auto", "last-block", "all")
SEGMENTATION_ARCHS = ("attention-unet", "unet")
SEGMENTATION_AUGMENTATIONS = ("standard", "none")
#: The encoders of :func:`bone_tumor_tf.models.unet.build_unet` (its ``ENCODERS``) and the
#: ``dice_on`` choices of :class:`bone_tumor_tf.models.losses.BCEDiceLoss` (repeated here
#: because those modules import Keras; a test checks that they agree).
ENCODERS = ("none", "resnet50", "densenet121")
DICE_ON = ("all", "tumor")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise BoneTumorError(message)


def _choice(value, choices: tuple, flag: str) -> None:
    _require(value in choices, f"{flag} must be one of {', '.join(choices)}, got {value!r}")


@dataclass
class TrainingOptions:
    """The options every training run has (saved in ``config.json``).

    Trainers subclass it with their own fields and defaults and extend :meth:`validate`.
    """

    #: Valid ``arch`` and ``augmentation`` values of the trainer (set by subclasses).
    ARCHS: ClassVar[tuple[str, ...]] = ()
    AUGMENTATIONS: ClassVar[tuple[str, ...]] = ("standard", "none")

    data: str
    out: str
    arch: str = ""
    crop: str = "none"
    epochs: int = 10
    batch_size: int = 32
    image_size: int = 224
    lr: float = 1e-3
    dropout: float = 0.0
    patience: int = 5
    augmentation: str = "standard"
    split_by: str = "patient"
    holdout_center: int | None = None
    seed: int = 0
    deterministic: bool = False
    on_bad_file: str = "stop"
    overwrite: bool = False
    cache_dir: str | None = None
    verbose: str | int = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Refuse bad or contradictory options (one-line :class:`BoneTumorError`)."""
        if self.ARCHS:
            _choice(self.arch, self.ARCHS, "--arch")
        _choice(self.crop, CROP_MODES, "--crop")
        _choice(self.augmentation, self.AUGMENTATIONS, "--augmentation")
        _choice(self.split_by, SPLIT_KINDS, "--split-by")
        _choice(self.on_bad_file, ON_BAD_FILE, "--on-bad-file")
        _require(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        _require(self.image_size >= 32, f"--image-size must be >= 32, got {self.image_size}")
        _require(self.epochs >= 0, f"--epochs must be >= 0, got {self.epochs}")
        _require(self.patience >= 1, f"--patience must be >= 1, got {self.patience}")
        _require(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        _require(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}")


@dataclass
class ClassifierOptions(TrainingOptions):
    """Every option of a classification run (see :mod:`bone_tumor_tf.training.classification`)."""

    ARCHS: ClassVar[tuple[str, ...]] = CLASSIFIER_ARCHS
    AUGMENTATIONS: ClassVar[tuple[str, ...]] = CLASSIFIER_AUGMENTATIONS

    arch: str = "densenet121"
    crop: str = "gt-box"
    dropout: float = 0.5
    task: str = "multiclass"
    weights: str = "none"
    phase2_epochs: int | None = None
    phase2_lr: float = 1e-4
    weight_decay: float = 1e-4
    head_l2: float = 1e-4
    unfreeze: str = "auto"
    class_balanced: bool = False
    n_bootstrap: int = 1000
    cache_features: bool = False
    feature_views: int = 1
    strategy: str = "auto"
    lr_scaling: str = "none"
    mixed_precision: bool = False
    jit_compile: str = "auto"
    accumulate_steps: int = 1

    @property
    def micro_batch_size(self) -> int:
        """Images per forward/backward pass: ``batch_size / accumulate_steps``."""
        return self.batch_size // max(1, self.accumulate_steps)

    @property
    def phase_epochs(self) -> tuple[int, int]:
        """Epochs (at most) of phase 1 and phase 2 (``phase2_epochs`` defaults to ``epochs``)."""
        return self.epochs, self.epochs if self.phase2_epochs is None else self.phase2_epochs

    def validate(self) -> None:
        super().validate()
        _choice(self.task, TASKS, "--task")
        _choice(self.unfreeze, UNFREEZE, "--unfreeze")
        if self.arch == "resnet50" and str(self.weights).startswith("chexpert"):
            raise BoneTumorError("--weights chexpert exists for --arch densenet121 only")
        if self.accumulate_steps < 1 or self.batch_size % self.accumulate_steps:
            raise BoneTumorError(f"--accumulate-steps {self.accumulate_steps}: must be >= 1 "
                                 f"and divide --batch-size {self.batch_size}")
        _require(self.feature_views >= 1, "--feature-views must be >= 1")
        if self.feature_views > 1 and not self.cache_features:
            raise BoneTumorError("--feature-views needs --cache-features")
        if self.feature_views > 1 and self.augmentation == "none":
            raise BoneTumorError("--feature-views > 1 needs augmentation (--augmentation none "
                                 "makes every view the same)")
        for value, choices, flag in ((self.strategy, STRATEGIES, "--strategy"),
                                     (self.lr_scaling, LR_SCALINGS, "--lr-scaling"),
                                     (self.jit_compile, JIT_COMPILE, "--jit-compile")):
            if value not in choices:
                raise BoneTumorError(f"{flag} {value}: expected one of {', '.join(choices)}")


@dataclass
class SegmentationOptions(TrainingOptions):
    """Every option of a segmentation run (see :mod:`bone_tumor_tf.training.segmentation`).

    The defaults are tuned on the 400-image synthetic demo set (``data="demo"``): about
    2.5 CPU minutes (2 cores) for a test Dice near 0.7 against 0.0 for the empty
    prediction. Batch size 4 (twice the updates per epoch of 8) and ``patience`` 12 (so
    ``ReduceLROnPlateau``, at ``patience // 2``, does not cut the rate on the noisy early
    ``val_dice`` of a small validation split) mattered most. On BTXRD use a larger
    ``image_size`` (e.g. 256), ``base_filters`` (e.g. 32) and more epochs.
    """

    ARCHS: ClassVar[tuple[str, ...]] = SEGMENTATION_ARCHS
    AUGMENTATIONS: ClassVar[tuple[str, ...]] = SEGMENTATION_AUGMENTATIONS

    arch: str = "attention-unet"
    epochs: int = 25
    image_size: int = 128
    batch_size: int = 4
    lr: float = 2e-3
    patience: int = 12
    encoder: str = "none"
    encoder_weights: str = "none"
    base_filters: int = 8
    depth: int = 4
    bn_momentum: float = 0.9
    alpha: float = 0.5
    smooth: float = 1.0
    dice_on: str = "all"
    threshold: float = 0.5
    choose_threshold: bool = True
    #: A false-alarm budget for the chosen threshold: the share of normal validation images
    #: that may be given a tumor mask (``None``: the best mean Dice over all images).
    max_normal_marked: float | None = None
    include_normals: bool = False
    #: An earlier segmentation run (its folder or ``model.keras``) whose weights start this
    #: one (fine-tuning: e.g. a tumor-only U-Net trained on with normals, or a 128-px one
    #: at 256 px); ``None``: random initialisation (or ``encoder_weights``).
    init_from: str | None = None

    def init_model_path(self) -> Path | None:
        """The ``model.keras`` that ``init_from`` names (a run folder or the file itself)."""
        if self.init_from is None:
            return None
        path = Path(self.init_from).expanduser()
        return path / "model.keras" if path.is_dir() else path

    def validate(self) -> None:
        if self.crop != "none":  # before the shared checks: the message says why
            raise BoneTumorError("segmentation uses the whole image (crop mode none), "
                                 f"got crop {self.crop!r}")
        super().validate()
        _choice(self.encoder, ENCODERS, "--encoder")
        if self.encoder == "none" and str(self.encoder_weights).lower() != "none":
            raise BoneTumorError("--encoder-weights needs --encoder resnet50 or densenet121")
        if self.encoder != "none" and self.depth != 4:
            raise BoneTumorError("--depth must be 4 with an encoder (the backbone fixes it)")
        _require(self.base_filters >= 1 and self.depth >= 1,
                 "--base-filters and --depth must be >= 1")
        multiple = 32 if self.encoder != "none" else 2 ** self.depth
        _require(self.image_size % multiple == 0,
                 f"--image-size must be a multiple of {multiple} and >= 32, got "
                 f"{self.image_size}")
        _require(0.0 <= self.alpha <= 1.0, f"--alpha must be in [0, 1], got {self.alpha}")
        _choice(self.dice_on, DICE_ON, "--dice-on")
        _require(0.0 < self.threshold < 1.0,
                 f"--threshold must be in (0, 1), got {self.threshold}")
        _require(0.0 < self.bn_momentum < 1.0,
                 f"--bn-momentum must be in (0, 1), got {self.bn_momentum}")
        if self.max_normal_marked is not None:
            _require(0.0 <= self.max_normal_marked <= 1.0,
                     f"--max-normal-marked must be in [0, 1], got {self.max_normal_marked}")
            _require(self.include_normals, "--max-normal-marked needs --include-normals "
                                           "(the budget is measured on normal images)")
            _require(self.choose_threshold, "--max-normal-marked chooses the threshold; it "
                                            "cannot go with --no-choose-threshold")
        if self.init_from is not None:
            _require(str(self.encoder_weights).lower() == "none",
                     "--init-from and --encoder-weights both set the starting weights; "
                     "give one")
            path = self.init_model_path()
            _require(path.is_file(), f"--init-from {self.init_from}: {path} not found (give "
                                     "a finished segmentation run folder or its model.keras)")
