"""BTXRD reader: exact column spelling, labels, patients; folder sets; synthetic round trip."""

from __future__ import annotations

import json
from pathlib import Path

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


# ------------------------------------------------------------------ redistributed copies
def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def test_images_under_another_extension_are_found_by_stem_and_said_once(resized_btxrd,
                                                                         caplog):
    with caplog.at_level("WARNING"):
        dataset = BTXRDDataset.load(resized_btxrd)
    assert {r.path.suffix for r in dataset.records} == {".png"}
    assert {Path(r.image_id).suffix for r in dataset.records} == {".jpeg", ".jpg"}
    assert all(r.path.is_file() and r.path.stem == Path(r.image_id).stem
               for r in dataset.records)
    assert "60 images found under another extension (.png for .jpeg, .png for .jpg)" in \
        dataset.notes
    assert sum("another extension" in m for m in caplog.messages) == 1


def test_two_images_of_one_stem_are_an_error_naming_both(resized_btxrd, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(resized_btxrd, root)
    png = sorted((root / "images").glob("*.png"))[0]
    shutil.copy(png, png.with_suffix(".bmp"))
    with pytest.raises(DataError) as info:
        BTXRDDataset.load(root)
    assert png.name in str(info.value) and png.with_suffix(".bmp").name in str(info.value)


def test_resized_copy_shapes_agree_with_a_directly_rasterised_reference(
        synthetic_btxrd, resized_btxrd):
    """Masks and boxes of the 256 x 256 copy, as training, gt-box crops and segmentation
    evaluation read them, against the original polygons rasterised at the original size
    and resized with nearest neighbour."""
    import cv2

    from bone_tumor_tf.data.annotations import read_record_annotation
    from bone_tumor_tf.data.prepare import prepare_record
    from bone_tumor_tf.inference.segmentation import ground_truth_mask

    side = 256
    dataset = BTXRDDataset.load(resized_btxrd)
    annotated = [r for r in dataset.records if r.annotation is not None]
    assert annotated and all(r.annotation_resized for r in annotated)
    assert f"{len(annotated)} annotations scaled from their original sizes" in \
        " ".join(dataset.notes)
    dices = []
    for record in annotated:
        original = parse_labelme(synthetic_btxrd / "Annotations" / record.annotation.name)
        reference = np.zeros((original.image_height, original.image_width), np.uint8)
        cv2.fillPoly(reference, [np.round(p).astype(np.int32) for p in original.polygons], 1)
        reference = cv2.resize(reference, (side, side), interpolation=cv2.INTER_NEAREST)
        annotation = read_record_annotation(record)
        assert (annotation.image_height, annotation.image_width) == (side, side)
        dices.append(dice(annotation.mask(), reference))
        assert np.array_equal(ground_truth_mask(record, (side, side)), annotation.mask() > 0)
        fx, fy = side / original.image_width, side / original.image_height
        for box, original_box in zip(annotation.boxes, original.boxes, strict=True):
            expected = np.array(original_box) * [fx, fy, fx, fy]
            assert np.abs(np.array(box) - expected).max() <= 1.0
        # The gt-box crop of training is the scaled union box, in the resized image.
        _, geometry, mask = prepare_record(record, 64, crop_mode="gt-box", with_mask=True)
        union = np.array(annotation.union_box())
        assert np.abs(np.array(geometry.crop_box) - union).max() <= 1.0
        assert mask.any()
    assert min(dices) >= 0.85 and np.mean(dices) >= 0.9, dices


def test_find_resized_copy_rules():
    from bone_tumor_tf.data.annotations import find_resized_copy

    originals = [(1500 + 10 * i, 2000 - 7 * i) for i in range(20)]
    # One size: every image 256 x 256 (aspect ratio not kept).
    found = find_resized_copy([((256, 256), a) for a in originals])
    assert found.rule.kind == "size" and len(found.scaled) == 20
    # Aspect kept: each image is its original times one factor (rounded).
    found = find_resized_copy([((round(h * 1024 / w), 1024), (h, w)) for h, w in originals])
    assert found.rule.kind == "aspect" and len(found.scaled) == 20
    # A consistent set with two wrong annotations is not a resized copy.
    pairs = [(a, a) for a in originals]
    pairs[3], pairs[7] = ((256, 256), originals[3]), ((100, 90), originals[7])
    assert not find_resized_copy(pairs).scaled
    # Too few disagreeing annotations to call it a copy.
    assert not find_resized_copy([((256, 256), a) for a in originals[:2]]).scaled
    # In a resized copy, the one image that disagrees differently is not scaled.
    pairs = [((256, 256), a) for a in originals]
    pairs[5] = ((300, 200), originals[5])
    found = find_resized_copy(pairs)
    assert found.rule.kind == "size" and found.scaled == frozenset(range(20)) - {5}


def test_non_resized_set_keeps_checking_each_annotation(btxrd_copy):
    from bone_tumor_tf.data.annotations import read_record_annotation

    dataset = BTXRDDataset.load(btxrd_copy)
    record = next(r for r in dataset.records if r.annotation is not None)
    content = json.loads(record.annotation.read_text())
    content["imageWidth"] += 7
    record.annotation.write_text(json.dumps(content))
    dataset = BTXRDDataset.load(btxrd_copy)
    assert dataset.notes == [] and not any(r.annotation_resized for r in dataset.records)
    record = next(r for r in dataset.records if r.annotation == record.annotation)
    with pytest.raises(DataError, match="disagrees with the image"):
        read_record_annotation(record)
