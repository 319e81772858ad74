"""BTXRD reader: exact column spelling, labels, patients; folder sets; synthetic round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bone_tumor_tf.data import FolderDataset, load_dataset, schema
from bone_tumor_tf.data.btxrd import BTXRDDataset, assign_patient_groups, derive_labels
from bone_tumor_tf.data.labelme import parse_labelme
from bone_tumor_tf.errors import DataError


def sheet_rows(rows):
    """A sheet with the 37 real columns; ``rows`` give overrides on an all-zero row."""
    base = {c: 0 for c in schema.SHEET_COLUMNS}
    base.update({"center": 1, "age": 30, "gender": "M", "femur": 1, "lower limb": 1,
                 "frontal": 1})
    return pd.DataFrame([{**base, **r} for r in rows], columns=list(schema.SHEET_COLUMNS))


def test_sheet_has_the_real_37_columns_spelled_exactly():
    assert len(schema.SHEET_COLUMNS) == 37
    for name in ("hip bone", "ankle-joint", "multiple osteochondromas", "other bt",
                 "other mt", "upper limb", "giant cell tumor"):
        assert name in schema.SHEET_COLUMNS


def test_label_derivation_malignant_over_benign_over_normal():
    sheet = sheet_rows([
        {"image_id": "a.jpeg"},
        {"image_id": "b.jpeg", "tumor": 1, "benign": 1, "osteochondroma": 1},
        {"image_id": "c.jpeg", "tumor": 1, "malignant": 1, "osteosarcoma": 1},
        {"image_id": "d.jpeg", "tumor": 1, "benign": 1, "malignant": 1},
    ])
    assert list(derive_labels(sheet)) == ["normal", "benign", "malignant", "malignant"]


def test_patients_are_consecutive_rows_that_agree_on_the_key_columns():
    sheet = sheet_rows([
        {"image_id": "IMG000001.jpeg", "age": 40},
        {"image_id": "IMG000002.jpeg", "age": 40, "frontal": 0, "lateral": 1},  # same patient
        {"image_id": "IMG000003.jpeg", "age": 41},                               # new: age
        {"image_id": "IMG000004.jpeg", "age": 41, "center": 2},                  # new: center
        {"image_id": "IMG000005.jpeg", "age": 40},                 # same as 1 but not adjacent
    ])
    groups = list(assign_patient_groups(sheet))
    assert groups[0] == groups[1] == "P-IMG000001"
    assert len({groups[1], groups[2], groups[3], groups[4]}) == 4


def test_reader_on_synthetic_dataset_round_trip(synthetic_btxrd):
    dataset = load_dataset(synthetic_btxrd)
    assert isinstance(dataset, BTXRDDataset)
    assert len(dataset.records) == 60
    assert dataset.class_names == ("normal", "benign", "malignant")
    sheet = pd.read_excel(synthetic_btxrd / "dataset.xlsx")
    assert list(sheet.columns) == list(schema.SHEET_COLUMNS)
    suffixes = {r.path.suffix for r in dataset.records}
    assert suffixes == {".jpeg", ".jpg"}  # the real mix of extensions
    for record, (_, row) in zip(dataset.records, sheet.iterrows(), strict=True):
        assert record.path.is_file()
        expected = ("malignant" if row["malignant"] == 1 else
                    "benign" if row["benign"] == 1 else "normal")
        assert record.label == expected
        assert (record.annotation is not None) == (expected != "normal")
        if record.annotation is not None:
            annotation = parse_labelme(record.annotation)
            assert annotation.polygons and annotation.boxes
    # Multi-view patients of the generator are found as groups of consecutive rows.
    assert len({r.group for r in dataset.records}) < len(dataset.records)


def test_csv_sheet_is_read_like_xlsx(synthetic_btxrd, tmp_path):
    import shutil

    root = tmp_path / "csvcopy"
    shutil.copytree(synthetic_btxrd, root)
    pd.read_excel(root / "dataset.xlsx").to_csv(root / "dataset.csv", index=False)
    (root / "dataset.xlsx").unlink()
    from_csv = BTXRDDataset.load(root)
    from_xlsx = BTXRDDataset.load(synthetic_btxrd)
    assert [(r.image_id, r.label, r.group) for r in from_csv.records] == \
           [(r.image_id, r.label, r.group) for r in from_xlsx.records]


def test_misspelled_and_missing_columns_are_named(tmp_path):
    root = tmp_path / "B"
    (root / "images").mkdir(parents=True)
    sheet = sheet_rows([{"image_id": "a.jpeg"}]).rename(columns={"hip bone": "hip_bone"})
    sheet = sheet.drop(columns=["oblique"])
    sheet.to_csv(root / "dataset.csv", index=False)
    with pytest.raises(DataError) as info:
        BTXRDDataset.load(root)
    message = str(info.value)
    assert "'hip_bone' is misspelled: expected 'hip bone'" in message
    assert "missing column 'oblique'" in message
    assert "dataset.csv" in message and "\n" not in message


def test_class_per_folder_sets_with_and_without_split_folders(tmp_path):
    import cv2

    image = np.full((20, 20), 128, np.uint8)
    for cls in ("normal", "cancer"):
        (tmp_path / "flat" / cls).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / "flat" / cls / f"{i}.png"), image)
        for split in ("train", "test"):
            (tmp_path / "split" / split / cls).mkdir(parents=True)
            cv2.imwrite(str(tmp_path / "split" / split / cls / "x.jpg"), image)
    flat = load_dataset(tmp_path / "flat")
    assert isinstance(flat, FolderDataset)
    assert flat.class_names == ("normal", "cancer")  # normal first: index 1 is positive
    assert len(flat.records) == 6 and all(r.split is None for r in flat.records)
    assert len({r.group for r in flat.records}) == 6
    split = load_dataset(tmp_path / "split")
    assert sorted({r.split for r in split.records}) == ["test", "train"]


def test_labelme_of_synthetic_data_is_real_labelme_json(synthetic_btxrd):
    path = next((synthetic_btxrd / "Annotations").glob("*.json"))
    content = json.loads(path.read_text())
    assert {"version", "shapes", "imagePath", "imageHeight", "imageWidth"} <= set(content)
    kinds = {s["shape_type"] for s in content["shapes"]}
    assert kinds == {"rectangle", "polygon"}
