"""Tests of the synthetic BTXRD-format dataset generator (``bone_tumor_tf.data.synthetic``)."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from bone_tumor_tf.cli.data import main as data_main
from bone_tumor_tf.data import schema, synthetic
from bone_tumor_tf.errors import DataError

SMALL = {"min_side": 96, "max_side": 160}
PATIENT_COLUMNS = list(
    schema.DEMOGRAPHIC_COLUMNS + schema.SITE_COLUMNS + schema.LABEL_COLUMNS
    + schema.SUBTYPE_COLUMNS + schema.REGION_COLUMNS
)
UPPER = {"hand", "ulna", "radius", "humerus", "wrist-joint", "elbow-joint", "shoulder-joint"}
LOWER = {"foot", "tibia", "fibula", "femur", "ankle-joint", "knee-joint"}
PELVIS = {"hip bone", "hip-joint"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small synthetic BTXRD set: 40 images of 96-160 px, seed 0."""
    return synthetic.generate_btxrd(tmp_path_factory.mktemp("btxrd") / "set", n=40, **SMALL)


@pytest.fixture(scope="module")
def sheet(dataset):
    return pd.read_excel(dataset / "dataset.xlsx", engine="openpyxl")


def read_gray(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def load_annotation(dataset, image_name) -> dict:
    stem = image_name.rsplit(".", 1)[0]
    return json.loads((dataset / "Annotations" / f"{stem}.json").read_text(encoding="utf-8"))


def split_shapes(document) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Rectangles and polygons; the i-th rectangle belongs to the i-th polygon."""
    def points_of(shape_type):
        return [np.array(s["points"]) for s in document["shapes"] if s["shape_type"] == shape_type]

    return points_of("rectangle"), points_of("polygon")


def lesion_contrast(image: np.ndarray, polygon: np.ndarray) -> float:
    """|mean inside the polygon - mean of a ring around it|, in gray levels."""
    inside = np.zeros(image.shape, np.uint8)
    cv2.fillPoly(inside, [np.round(polygon).astype(np.int32)], 1)
    size = max(3, int(round(0.4 * np.sqrt(inside.sum()))))
    ring = cv2.dilate(inside, np.ones((size, size), np.uint8)) - inside
    return abs(float(image[inside > 0].mean()) - float(image[ring > 0].mean()))


# --------------------------------------------------------------------------- layout


def test_layout_marker_and_file_names(dataset, sheet):
    assert sorted(p.name for p in dataset.iterdir()) == [
        "Annotations", "SYNTHETIC.txt", "dataset.xlsx", "images"
    ]
    marker = (dataset / "SYNTHETIC.txt").read_text(encoding="utf-8")
    assert "SYNTHETIC" in marker and "seed: 0" in marker
    assert synthetic.is_synthetic_dataset(dataset)

    names = sorted(p.name for p in (dataset / "images").iterdir())
    assert names == sorted(sheet["image_id"]) == [synthetic.image_id(i) for i in range(40)]
    assert all(re.fullmatch(r"IMG\d{6}\.(jpeg|jpg)", name) for name in names)
    assert [name for name in names if name.endswith(".jpg")] == ["IMG000021.jpg"]
    channels = set()
    for name in names:
        image = cv2.imread(str(dataset / "images" / name), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint8
        assert all(96 <= side <= 160 for side in image.shape[:2])
        channels.add(1 if image.ndim == 2 else image.shape[2])
    assert 1 in channels and channels <= {1, 3}


def test_image_id_jpg_rule_is_fixed_and_about_one_percent():
    assert synthetic.image_id(0) == "IMG000001.jpeg"
    assert synthetic.image_id(20) == "IMG000021.jpg"
    assert any(synthetic.image_id(i).endswith(".jpg") for i in range(40))
    share = np.mean([synthetic.image_id(i).endswith(".jpg") for i in range(10_000)])
    assert 0.005 < share < 0.02


# --------------------------------------------------------------------------- sheet


def test_sheet_columns_and_values(sheet):
    assert tuple(sheet.columns) == schema.SHEET_COLUMNS
    assert sheet["center"].isin(schema.CENTERS).all()
    assert sheet["age"].between(5, 80).all() and pd.api.types.is_integer_dtype(sheet["age"])
    assert sheet["gender"].isin(schema.GENDERS).all()
    indicators = sheet[list(schema.SHEET_COLUMNS[4:])]
    assert indicators.isin([0, 1]).all().all()
    assert (sheet[list(schema.SITE_COLUMNS)].sum(axis=1) == 1).all()
    assert (sheet[list(schema.REGION_COLUMNS)].sum(axis=1) == 1).all()
    assert (sheet[list(schema.VIEW_COLUMNS)].sum(axis=1) == 1).all()
    assert (sheet["tumor"] == sheet["benign"] + sheet["malignant"]).all()
    assert (sheet[list(schema.SUBTYPE_COLUMNS)].sum(axis=1) == sheet["tumor"]).all()
    assert (sheet[list(schema.BENIGN_SUBTYPES)].sum(axis=1) == sheet["benign"]).all()
    assert (sheet[list(schema.MALIGNANT_SUBTYPES)].sum(axis=1) == sheet["malignant"]).all()
    sites = sheet[list(schema.SITE_COLUMNS)].idxmax(axis=1)
    regions = sheet[list(schema.REGION_COLUMNS)].idxmax(axis=1)
    for site, region in zip(sites, regions):
        expected = "upper limb" if site in UPPER else "lower limb" if site in LOWER else "pelvis"
        assert site in UPPER | LOWER | PELVIS and region == expected


def test_written_sheet_equals_sample_metadata(sheet):
    sampled = synthetic.sample_metadata(40, seed=0)
    assert tuple(sampled.columns) == schema.SHEET_COLUMNS
    pd.testing.assert_frame_equal(sheet, sampled, check_dtype=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_ratios_near_btxrd(seed):
    metadata = synthetic.sample_metadata(400, seed=seed)
    normal = (metadata["tumor"] == 0).mean()
    assert abs(normal - 0.50) < 0.04
    assert abs(metadata["benign"].mean() - 0.41) < 0.04
    assert abs(metadata["malignant"].mean() - 0.09) < 0.03
    centers = metadata["center"].value_counts(normalize=True)
    assert set(centers.index) == {1, 2, 3} and centers[1] > centers[2] > centers[3]
    views = metadata[list(schema.VIEW_COLUMNS)].mean()
    assert views["frontal"] > views["oblique"] and views["lateral"] > views["oblique"] > 0


def test_patients_are_consecutive_runs_that_agree():
    metadata = synthetic.sample_metadata(400, seed=3, with_patient_id=True)
    patient_ids = metadata["patient_id"].to_numpy()
    assert patient_ids[0] == 0 and set(np.diff(patient_ids)) <= {0, 1}  # consecutive runs
    sizes = metadata.groupby("patient_id").size()
    assert sizes.max() <= 3
    assert 0.25 <= (sizes > 1).mean() <= 0.45
    for _, rows in metadata.groupby("patient_id"):
        assert (rows[PATIENT_COLUMNS].nunique() == 1).all()
        views = rows[list(schema.VIEW_COLUMNS)].idxmax(axis=1)
        assert views.is_unique
    first_rows = metadata.drop_duplicates("patient_id")[PATIENT_COLUMNS]
    same_as_previous = (first_rows.iloc[1:].to_numpy() == first_rows.iloc[:-1].to_numpy()).all(1)
    assert not same_as_previous.any()
    assert first_rows["age"].nunique() > 50


# --------------------------------------------------------------------------- annotations


def test_annotations_exist_exactly_for_tumor_rows(dataset, sheet):
    annotated = {p.stem for p in (dataset / "Annotations").iterdir()}
    tumors = {name.rsplit(".", 1)[0] for name in sheet.loc[sheet["tumor"] == 1, "image_id"]}
    assert annotated == tumors and tumors
    assert all(p.suffix == ".json" for p in (dataset / "Annotations").iterdir())


def test_labelme_fields(dataset, sheet):
    subtype_columns = list(schema.SUBTYPE_COLUMNS)
    for _, row in sheet[sheet["tumor"] == 1].iterrows():
        document = load_annotation(dataset, row["image_id"])
        assert set(document) == {
            "version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth"
        }
        assert document["version"] == "5.2.1" and document["flags"] == {}
        assert document["imagePath"] == row["image_id"] and document["imageData"] is None
        height, width = read_gray(dataset / "images" / row["image_id"]).shape
        assert (document["imageHeight"], document["imageWidth"]) == (height, width)
        subtype = row[subtype_columns].astype(int).idxmax()
        for shape in document["shapes"]:
            assert set(shape) == {
                "label", "points", "group_id", "description", "shape_type", "flags", "mask"
            }
            assert shape["label"] == subtype and shape["group_id"] is None
            assert shape["shape_type"] in ("rectangle", "polygon")
        rectangles, polygons = split_shapes(document)
        assert len(rectangles) == len(polygons) >= 1
        assert all(r.shape == (2, 2) for r in rectangles)
        assert all(p.ndim == 2 and p.shape[1] == 2 and len(p) >= 3 for p in polygons)
        if subtype == "multiple osteochondromas":
            assert 2 <= len(polygons) <= 3
        else:
            assert len(polygons) == 1


def test_polygons_inside_image_and_rectangle_and_corner_orders_vary(dataset, sheet):
    top_left_first = []
    for name in sheet.loc[sheet["tumor"] == 1, "image_id"]:
        document = load_annotation(dataset, name)
        height, width = document["imageHeight"], document["imageWidth"]
        for rectangle, polygon in zip(*split_shapes(document)):
            assert (polygon >= 0).all()
            assert (polygon[:, 0] <= width - 1).all() and (polygon[:, 1] <= height - 1).all()
            low, high = rectangle.min(axis=0), rectangle.max(axis=0)
            assert (polygon >= low - 1e-6).all() and (polygon <= high + 1e-6).all()
            assert (high - low > 1).all()
            top_left_first.append(bool((rectangle[0] == low).all()))
    assert any(top_left_first) and not all(top_left_first)


@pytest.mark.parametrize("seed", range(6))
def test_multiple_osteochondromas_are_separate_lesions(seed):
    rng = np.random.default_rng(seed)
    image, outlines = synthetic.render_radiograph(
        rng, 160, 140, "benign", "multiple osteochondromas", n_lesions=3
    )
    assert image.shape == (160, 140) and len(outlines) == 3
    masks = []
    for outline in outlines:
        mask = np.zeros(image.shape, np.uint8)
        cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 1)
        masks.append(mask)
    assert all((a & b).sum() == 0 for i, a in enumerate(masks) for b in masks[i + 1:])


# --------------------------------------------------------------------------- pixels


def test_lesions_are_visible(dataset, sheet):
    contrasts = []
    for name in sheet.loc[sheet["tumor"] == 1, "image_id"]:
        image = read_gray(dataset / "images" / name).astype(np.float32)
        polygons = split_shapes(load_annotation(dataset, name))[1]
        contrasts += [lesion_contrast(image, polygon) for polygon in polygons]
    for index in range(40):  # more lesions, straight from the renderer
        lesion = "benign" if index % 2 else "malignant"
        rng = np.random.default_rng(index)
        image, outlines = synthetic.render_radiograph(rng, 128, 112, lesion)
        contrasts.append(lesion_contrast(image.astype(np.float32), outlines[0]))
    assert np.mean(np.array(contrasts) > 12.0) >= 0.85, np.round(contrasts, 1)


def test_normal_images_have_no_lesion():
    image, outlines = synthetic.render_radiograph(np.random.default_rng(0), 120, 100, "normal")
    assert outlines == [] and image.shape == (120, 100) and image.dtype == np.uint8
    assert 40 < image.max() and image.min() < 60  # bright bone on a dark background


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_data_other_seed_different(dataset, sheet, tmp_path):
    again = synthetic.generate_btxrd(tmp_path / "again", n=40, seed=0, **SMALL)
    other = synthetic.generate_btxrd(tmp_path / "other", n=40, seed=1, **SMALL)
    pd.testing.assert_frame_equal(pd.read_excel(again / "dataset.xlsx"), sheet)
    assert not pd.read_excel(other / "dataset.xlsx").equals(sheet)
    for name in sheet["image_id"]:
        np.testing.assert_array_equal(
            read_gray(again / "images" / name), read_gray(dataset / "images" / name)
        )
    for path in (dataset / "Annotations").iterdir():
        assert (again / "Annotations" / path.name).read_bytes() == path.read_bytes()
    differing = [
        name for name in sheet["image_id"][:5]
        if read_gray(other / "images" / name).shape != read_gray(dataset / "images" / name).shape
        or (read_gray(other / "images" / name) != read_gray(dataset / "images" / name)).any()
    ]
    assert len(differing) == 5


# --------------------------------------------------------------------------- output dir


def test_refuses_foreign_non_empty_dir(tmp_path):
    (tmp_path / "real.txt").write_text("keep me")
    with pytest.raises(DataError, match="SYNTHETIC.txt"):
        synthetic.generate_btxrd(tmp_path, n=2, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real.txt"]


def test_rerun_replaces_own_files_and_keeps_others(tmp_path):
    out_dir = synthetic.generate_btxrd(tmp_path / "set", n=25, seed=0, **SMALL)
    (out_dir / "notes.md").write_text("mine")
    synthetic.generate_btxrd(out_dir, n=6, seed=0, **SMALL)
    assert len(list((out_dir / "images").iterdir())) == 6
    assert len(pd.read_excel(out_dir / "dataset.xlsx")) == 6
    assert (out_dir / "notes.md").read_text() == "mine"
    assert "n: 6" in (out_dir / "SYNTHETIC.txt").read_text()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n": 0}, r"n must be an integer >= 1, got 0"),
     ({"seed": -1}, r"seed must be an integer >= 0, got -1"),
     ({"min_side": 200, "max_side": 100}, r"min_side=200, max_side=100"),
     ({"min_side": 8}, r"need 32 <= min_side <= max_side, got min_side=8")],
)
def test_bad_arguments_raise(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic.generate_btxrd(tmp_path / "x", **{"n": 2, **SMALL, **kwargs})


# --------------------------------------------------------------------------- folders


def test_generate_folders(tmp_path):
    out_dir = synthetic.generate_folders(tmp_path / "folders", n=9, seed=0, size=(64, 96))
    assert synthetic.is_synthetic_dataset(out_dir)
    normal = sorted(p.name for p in (out_dir / "normal").iterdir())
    cancer = sorted(p.name for p in (out_dir / "cancer").iterdir())
    assert (len(normal), len(cancer)) == (5, 4)
    assert {n.rsplit(".", 1)[1] for n in normal} == {"png", "jpg"}
    assert {n.rsplit(".", 1)[1] for n in cancer} == {"png", "jpg"}
    for path in (out_dir / "cancer").iterdir():
        assert all(64 <= side <= 96 for side in read_gray(path).shape)
    square = synthetic.generate_folders(tmp_path / "square", n=2, classes=("a", "b"), size=48)
    assert read_gray(next((square / "b").iterdir())).shape == (48, 48)
    with pytest.raises(ValueError,
                       match=r"classes must be >= 2 distinct simple names, got \('only',\)"):
        synthetic.generate_folders(tmp_path / "bad", n=2, classes=("only",))


# --------------------------------------------------------------------------- CLI


def test_cli(tmp_path, capsys):
    out_dir = tmp_path / "cli"
    code = data_main(
        ["synthetic", "--out", str(out_dir), "--n", "5", "--seed", "2", "--min-side", "64", "--max-side", "80"]
    )
    assert code == 0
    summary = capsys.readouterr().out.strip()
    assert "\n" not in summary and "normal=" in summary and "malignant=" in summary
    assert len(pd.read_excel(out_dir / "dataset.xlsx")) == 5

    code = data_main(
        ["synthetic", "--out", str(tmp_path / "f"), "--kind", "folders", "--n", "4", "--max-side", "64",
         "--min-side", "48"]
    )
    assert code == 0 and "normal=2 cancer=2" in capsys.readouterr().out

    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x.txt").write_text("x")
    assert data_main(["synthetic", "--out", str(tmp_path / "foreign"), "--n", "2"]) == 2
    assert "SYNTHETIC.txt" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        data_main(["synthetic", "--help"])
    assert exit_info.value.code == 0
