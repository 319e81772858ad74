"""Mask-folder segmentation sets (DIR/images + DIR/masks): reading, inspection, training."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from bone_tumor_tf.data import BTXRDDataset, MaskFolderDataset, load_dataset
from bone_tumor_tf.data.annotations import read_record_annotation
from bone_tumor_tf.data.inspection import inspect_dataset
from bone_tumor_tf.data.labelme import parse_labelme
from bone_tumor_tf.data.mask_folders import PATIENTS_NOTE
from bone_tumor_tf.errors import DataError


def write_mask_folder_set(source, root):
    """The synthetic BTXRD set as images/*.png + masks/*.png (tumor polygons; normal images
    all zero). Masks alternate between 0/255 and 0/1 values."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, path in enumerate(sorted((source / "images").iterdir())):
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(root / "images" / f"{path.stem}.png"), image)
        annotation = source / "Annotations" / f"{path.stem}.json"
        mask = (parse_labelme(annotation).mask() if annotation.is_file()
                else np.zeros(image.shape, np.uint8))
        cv2.imwrite(str(root / "masks" / f"{path.stem}.png"), mask * (255 if k % 2 else 1))
    return root


@pytest.fixture(scope="module")
def mask_set(synthetic_btxrd, tmp_path_factory):
    """A clean mask-folder set (shared, do not modify)."""
    return write_mask_folder_set(synthetic_btxrd, tmp_path_factory.mktemp("masks") / "SEG")


@pytest.fixture()
def mask_copy(mask_set, tmp_path):
    return shutil.copytree(mask_set, tmp_path / "SEG")


def expected_labels(synthetic_btxrd) -> dict[str, str]:
    sheet = pd.read_excel(synthetic_btxrd / "dataset.xlsx")
    return {row["image_id"].rsplit(".", 1)[0] + ".png":
            "normal" if row["tumor"] == 0 else "tumor" for _, row in sheet.iterrows()}


def test_labels_from_masks_and_every_image_its_own_group(mask_set, synthetic_btxrd):
    dataset = load_dataset(mask_set)
    assert isinstance(dataset, MaskFolderDataset)
    assert dataset.class_names == ("normal", "tumor")
    assert {r.image_id: r.label for r in dataset.records} == expected_labels(synthetic_btxrd)
    assert len({r.group for r in dataset.records}) == len(dataset.records) == 60
    assert dataset.notes == [PATIENTS_NOTE]
    for record in dataset.records:
        mask = read_record_annotation(record).mask()
        assert set(np.unique(mask)) <= {0, 1}  # 0/1 and 0/255 files alike
        assert mask.any() == (record.label == "tumor")


def test_sheet_makes_a_folder_btxrd_even_with_masks(synthetic_btxrd, tmp_path):
    root = shutil.copytree(synthetic_btxrd, tmp_path / "both")
    (root / "masks").mkdir()
    assert isinstance(load_dataset(root), BTXRDDataset)
    assert inspect_dataset(root).kind == "btxrd"


def test_clean_mask_set_inspects_clean(mask_set, synthetic_btxrd):
    report = inspect_dataset(mask_set, workers=2)
    labels = list(expected_labels(synthetic_btxrd).values())
    assert report.kind == "masks" and report.usable and report.problems == []
    assert report.images == report.annotated == 60
    assert report.classes == {"normal": labels.count("normal"), "tumor": labels.count("tumor")}
    assert report.notes == [PATIENTS_NOTE]


def test_inspection_finds_each_mask_problem(mask_copy):
    images = sorted((mask_copy / "images").iterdir())
    masks = sorted((mask_copy / "masks").iterdir())
    tumor_mask = next(p for p in masks[2:] if cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).any())
    images[0].rename(mask_copy / "images" / "lonely.png")  # no mask; masks[0]: no image
    cv2.imwrite(str(masks[1]), np.zeros((7, 9), np.uint8))   # another size
    soft = cv2.imread(str(tumor_mask), cv2.IMREAD_GRAYSCALE)
    soft[0, 0] = 128
    cv2.imwrite(str(tumor_mask), soft)                   # three values
    report = inspect_dataset(mask_copy, workers=2)
    found = {(p.file.rsplit("/", 1)[-1], p.severity): p.problem for p in report.problems}
    assert len(found) == 4, found
    assert found[(masks[0].name, "warning")] == "mask without an image"
    assert found[("lonely.png", "warning")] == "image without a mask (left out)"
    assert found[(masks[1].name, "error")].startswith("mask size 9x7 differs from the image")
    assert found[(tumor_mask.name, "warning")].startswith("mask is not binary (3 values: 0, ")
    assert report.images == 59 and not report.usable


def test_two_files_of_one_stem_are_an_error_naming_both(mask_copy):
    first = sorted((mask_copy / "masks").iterdir())[0]
    shutil.copy(first, first.with_suffix(".bmp"))
    with pytest.raises(DataError) as info:
        MaskFolderDataset.load(mask_copy)
    assert first.name in str(info.value) and first.with_suffix(".bmp").name in str(info.value)
    report = inspect_dataset(mask_copy)
    assert not report.usable and first.with_suffix(".bmp").name in report.problems[0].problem


def test_tiny_segmentation_run_on_a_mask_folder_set(mask_set, tmp_path):
    import json

    from bone_tumor_tf.training.segmentation import SegmentationOptions, train_segmentation

    options = SegmentationOptions(data=str(mask_set), out=str(tmp_path / "run"), epochs=1,
                                  image_size=32, base_filters=4, depth=3, batch_size=8,
                                  patience=3, verbose=0, include_normals=True)
    run_dir = train_segmentation(options)
    assert (run_dir / "model.keras").is_file() and (run_dir / "report.md").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run"]["include_normals"] is True
    splits = pd.read_csv(run_dir / "splits.csv")
    assert len(splits) == 60 and set(splits["split"]) == {"train", "val", "test"}
    assert (splits["group"] == splits["image_id"]).all()  # by image: patients unknown
