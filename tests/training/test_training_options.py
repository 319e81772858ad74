"""Training options that validate themselves, the shared CLI flags, and the Dataset protocol."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from bone_tumor_tf.cli import segment as segment_cli
from bone_tumor_tf.cli import train as train_cli
from bone_tumor_tf.cli.training_args import SHARED_FIELDS
from bone_tumor_tf.errors import BoneTumorError, DataError
from bone_tumor_tf.training.options import (
    DICE_ON,
    ENCODERS,
    ClassifierOptions,
    SegmentationOptions,
    TrainingOptions,
)

BASE = {"data": "demo", "out": "runs/x"}


@pytest.mark.parametrize("options_class, overrides, flag", [
    (ClassifierOptions, {"batch_size": 0}, "--batch-size"),
    (ClassifierOptions, {"image_size": 16}, "--image-size"),
    (ClassifierOptions, {"epochs": -1}, "--epochs"),
    (ClassifierOptions, {"lr": 0.0}, "--lr"),
    (ClassifierOptions, {"dropout": 1.0}, "--dropout"),
    (ClassifierOptions, {"patience": 0}, "--patience"),
    (ClassifierOptions, {"split_by": "hospital"}, "--split-by"),
    (ClassifierOptions, {"on_bad_file": "ignore"}, "--on-bad-file"),
    (ClassifierOptions, {"arch": "vgg16"}, "--arch"),
    (ClassifierOptions, {"augmentation": "mixup"}, "--augmentation"),
    (ClassifierOptions, {"task": "regression"}, "--task"),
    (ClassifierOptions, {"unfreeze": "half"}, "--unfreeze"),
    (ClassifierOptions, {"arch": "resnet50", "weights": "chexpert"}, "--weights chexpert"),
    (ClassifierOptions, {"feature_views": 2}, "--feature-views"),
    (ClassifierOptions, {"strategy": "tpu"}, "--strategy"),
    (SegmentationOptions, {"batch_size": 0}, "--batch-size"),
    (SegmentationOptions, {"augmentation": "randaugment"}, "--augmentation"),
    (SegmentationOptions, {"arch": "densenet121"}, "--arch"),
    (SegmentationOptions, {"crop": "gt-box"}, "crop mode none"),
    (SegmentationOptions, {"encoder": "vgg16"}, "--encoder"),
    (SegmentationOptions, {"image_size": 100}, "--image-size"),
    (SegmentationOptions, {"threshold": 1.0}, "--threshold"),
    (SegmentationOptions, {"bn_momentum": 1.0}, "--bn-momentum"),
])
def test_bad_options_are_refused_in_one_line_naming_the_option(options_class, overrides, flag):
    with pytest.raises(BoneTumorError) as info:
        options_class(**BASE, **overrides)
    assert flag in str(info.value) and "\n" not in str(info.value)


def test_validate_checks_a_changed_option_again():
    options = ClassifierOptions(**BASE)
    options.accumulate_steps = 3  # does not divide the batch of 32
    with pytest.raises(BoneTumorError, match="--accumulate-steps"):
        options.validate()


def test_both_trainers_share_the_base_fields():
    base = [f.name for f in dataclasses.fields(TrainingOptions)]
    for options_class in (ClassifierOptions, SegmentationOptions):
        names = [f.name for f in dataclasses.fields(options_class)]
        assert names[:len(base)] == base
    assert set(SHARED_FIELDS) == set(base) - {"crop", "verbose"}  # no shared flag for these


def test_encoders_and_dice_choices_agree_with_the_model_modules():
    from bone_tumor_tf.models.losses import BCEDiceLoss
    from bone_tumor_tf.models.unet import ENCODERS as UNET_ENCODERS

    assert ENCODERS == UNET_ENCODERS
    assert DICE_ON == BCEDiceLoss.DICE_ON


def test_dice_on_flag_reaches_the_compiled_loss(tmp_path):
    from bone_tumor_tf.training.segmentation import build_model

    args = segment_cli.build_parser().parse_args(
        ["--data", "d", "--out", "o", "--dice-on", "tumor", "--image-size", "32",
         "--depth", "2"])
    options = segment_cli.options_from_args(args)
    assert options.dice_on == "tumor"
    assert build_model(options).loss.dice_on == "tumor"
    with pytest.raises(BoneTumorError, match="--dice-on"):
        SegmentationOptions(data="d", out="o", dice_on="normal").validate()


@pytest.mark.parametrize("cli, options_class", [(train_cli, ClassifierOptions),
                                                (segment_cli, SegmentationOptions)])
def test_cli_defaults_are_the_options_defaults_and_every_flag_sets_its_field(cli,
                                                                             options_class):
    parser = cli.build_parser()
    args = parser.parse_args(["--data", "d", "--out", "o"])
    assert cli.options_from_args(args) == options_class(data="d", out="o")
    fields = {f.name for f in dataclasses.fields(options_class)}
    dests = {a.dest for a in parser._actions} - {"help", "compare"}
    assert dests <= fields and set(SHARED_FIELDS) <= dests
    changed = parser.parse_args(["--data", "d", "--out", "o", "--seed", "7", "--epochs", "0",
                                 "--split-by", "image", "--deterministic", "--lr", "0.5"])
    options = cli.options_from_args(changed)
    assert (options.seed, options.epochs, options.split_by, options.deterministic,
            options.lr) == (7, 0, "image", True, 0.5)


def test_segment_cli_refuses_bad_options_with_exit_status_2(tmp_path, capsys):
    code = segment_cli.main(["--data", "demo", "--out", str(tmp_path / "r"),
                             "--image-size", "36"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--image-size" in err
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- datasets


def test_both_dataset_kinds_satisfy_the_dataset_protocol(synthetic_btxrd, tmp_path):
    from bone_tumor_tf.data import load_dataset
    from bone_tumor_tf.data.dataset import Dataset, load_run_data, resolve_data_dir
    from bone_tumor_tf.data.synthetic import generate_folders

    folders = generate_folders(tmp_path / "folders", n=8, size=(64, 80))
    masks = tmp_path / "masks_set"
    for sub in ("images", "masks"):
        (masks / sub).mkdir(parents=True)
    tumor = np.zeros((40, 48), np.uint8)
    tumor[10:20, 12:30] = 255
    for stem, mask in (("a", tumor), ("b", np.zeros_like(tumor))):
        cv2.imwrite(str(masks / "images" / f"{stem}.png"), np.full_like(tumor, 90))
        cv2.imwrite(str(masks / "masks" / f"{stem}.png"), mask)
    btxrd, per_class = load_dataset(synthetic_btxrd), load_dataset(folders)
    mask_set = load_dataset(masks)
    assert all(isinstance(d, Dataset) for d in (btxrd, per_class, mask_set))
    assert btxrd.annotated and mask_set.annotated and not per_class.annotated
    assert resolve_data_dir(str(synthetic_btxrd)) == (synthetic_btxrd, True)
    options = ClassifierOptions(data=str(folders), out=str(tmp_path / "run"), crop="gt-box")
    with pytest.raises(DataError, match="class-per-folder set: use --crop none"):
        load_run_data(options, tmp_path / "run", resuming=False)



def test_a_filtered_run_keeps_each_image_on_the_side_of_the_whole_dataset_split(
        synthetic_btxrd, tmp_path):
    """A U-Net on tumor images and a classifier on all images (same seed and split kind)
    put every shared image on the same side: the chain's test images are new to both."""
    from bone_tumor_tf.data.dataset import load_run_data
    from bone_tumor_tf.training.segmentation import wants_record

    sides = {}
    for name, keep in (("all", None), ("tumor", lambda r: wants_record(r, False))):
        options = SegmentationOptions(data=str(synthetic_btxrd), out=str(tmp_path / name),
                                      image_size=32)
        _, splits, prepared, _, _ = load_run_data(options, tmp_path / name, resuming=False,
                                                  records_filter=keep)
        assert list(splits["image_id"]) == [r.image_id for r in prepared.records]
        sides[name] = dict(zip(splits["image_id"], splits["split"], strict=True))
    tumor_ids = {i for i, label in zip(*_labels(synthetic_btxrd), strict=True)
                 if label != "normal"}
    assert set(sides["tumor"]) == tumor_ids
    assert all(sides["tumor"][i] == sides["all"][i] for i in tumor_ids)
    assert {sides["tumor"][i] for i in tumor_ids} == {"train", "val", "test"}
    # the run's splits.csv holds the filtered rows, so a resumed run reads the same sides
    from bone_tumor_tf.data.splits import load_splits

    saved = load_splits(tmp_path / "tumor" / "splits.csv")
    assert dict(zip(saved["image_id"], saved["split"], strict=True)) == sides["tumor"]


def _labels(root):
    from bone_tumor_tf.data import load_dataset

    records = load_dataset(root).records
    return [r.image_id for r in records], [r.label for r in records]
