"""Every problem `inspect` must find, each named with its file, and the CLI contract."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bone_tumor_tf.cli.data import main as data_main
from bone_tumor_tf.data.inspection import inspect_dataset


def first(root, label):
    sheet = pd.read_excel(root / "dataset.xlsx")
    labels = sheet.apply(lambda r: "malignant" if r["malignant"] == 1 else
                         "benign" if r["benign"] == 1 else "normal", axis=1)
    return sheet, sheet.index[labels == label][0]


def rewrite_sheet(root, sheet):
    sheet.to_excel(root / "dataset.xlsx", index=False)


def problems_of(root):
    report = inspect_dataset(root, workers=2)
    return report, [(p.file, p.problem, p.severity) for p in report.problems]


def test_clean_synthetic_dataset_has_no_problems(synthetic_btxrd, capsys):
    report = inspect_dataset(synthetic_btxrd)
    assert report.usable and report.problems == []
    assert report.images == 60
    assert sum(report.classes.values()) == 60
    assert report.annotated == report.classes["benign"] + report.classes["malignant"]
    assert data_main(["inspect", str(synthetic_btxrd), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"images", "classes", "centers", "annotated", "problems"} <= set(out)
    assert set(out["classes"]) == {"normal", "benign", "malignant"}


def damage(root, kind):
    """Apply one kind of damage; return (file name fragment, problem fragment, severity)."""
    sheet, normal = first(root, "normal")
    _, tumor = first(root, "benign")
    normal_id, tumor_id = sheet.loc[normal, "image_id"], sheet.loc[tumor, "image_id"]
    stem = tumor_id.rsplit(".", 1)[0]
    annotation = root / "Annotations" / f"{stem}.json"
    if kind == "missing image":
        (root / "images" / normal_id).unlink()
        return normal_id, "missing image file", "error"
    if kind == "zero-byte":
        (root / "images" / normal_id).write_bytes(b"")
        return normal_id, "zero-byte file", "error"
    if kind == "truncated":
        data = (root / "images" / normal_id).read_bytes()
        (root / "images" / normal_id).write_bytes(data[: len(data) // 2])
        return normal_id, "truncated JPEG", "error"
    if kind == "not an image":
        (root / "images" / normal_id).write_text("this is a text file, not a radiograph")
        return normal_id, "not an image file", "error"
    if kind == "tumor without annotation":
        annotation.unlink()
        return tumor_id, "tumor image has no annotation", "error"
    if kind == "annotation without row":
        (root / "Annotations" / "IMG999999.json").write_text(annotation.read_text())
        return "IMG999999.json", "annotation without a sheet row", "warning"
    if kind == "benign and malignant":
        sheet.loc[tumor, "malignant"] = 1
        rewrite_sheet(root, sheet)
        return tumor_id, "benign and malignant are both 1", "error"
    if kind == "tumor with neither":
        sheet.loc[normal, "tumor"] = 1
        rewrite_sheet(root, sheet)
        return normal_id, "tumor=1 but neither", "error"
    if kind in ("short polygon", "outside image", "size mismatch"):
        content = json.loads(annotation.read_text())
        if kind == "short polygon":
            polygon = next(s for s in content["shapes"] if s["shape_type"] == "polygon")
            polygon["points"] = polygon["points"][:2]
            expected = ("has 2 points", "error")
        elif kind == "outside image":
            rect = next(s for s in content["shapes"] if s["shape_type"] == "rectangle")
            rect["points"][0] = [content["imageWidth"] + 40, content["imageHeight"] + 40]
            expected = ("outside", "warning")
        else:
            content["imageWidth"] += 7
            expected = ("disagrees with the image", "error")
        annotation.write_text(json.dumps(content))
        return (f"{stem}.json", *expected)
    if kind == "duplicate id":
        sheet.loc[normal, "image_id"] = tumor_id
        rewrite_sheet(root, sheet)
        return tumor_id, "duplicate image_id", "error"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", [
    "missing image", "zero-byte", "truncated", "not an image", "tumor without annotation",
    "annotation without row", "benign and malignant", "tumor with neither", "short polygon",
    "outside image", "size mismatch", "duplicate id",
])
def test_each_problem_is_found_and_names_its_file(btxrd_copy, kind):
    file_part, problem_part, severity = damage(btxrd_copy, kind)
    report, problems = problems_of(btxrd_copy)
    matches = [p for p in problems if file_part in p[0] and problem_part in p[1]]
    assert matches, f"{kind}: not found in {problems}"
    assert matches[0][2] == severity
    assert report.usable == (severity == "warning")


def test_missing_columns_make_inspect_exit_1_with_the_column_named(btxrd_copy, capsys):
    sheet = pd.read_excel(btxrd_copy / "dataset.xlsx").rename(columns={"ankle-joint": "ankle joint"})
    rewrite_sheet(btxrd_copy, sheet)
    assert data_main(["inspect", str(btxrd_copy)]) == 1
    out = capsys.readouterr().out
    assert "'ankle joint' is misspelled: expected 'ankle-joint'" in out


def test_inspect_exit_code_is_1_for_a_breaking_problem(btxrd_copy, capsys):
    damage(btxrd_copy, "zero-byte")
    assert data_main(["inspect", str(btxrd_copy), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["problems"] and {"file", "problem"} <= set(out["problems"][0])


# ------------------------------------------------------------------ resized copies
def test_resized_copy_is_clean_apart_from_two_notes(resized_btxrd, capsys):
    report, problems = problems_of(resized_btxrd)
    tumors = report.classes["benign"] + report.classes["malignant"]
    assert problems == [] and report.usable and report.annotated == tumors
    assert report.notes == [
        "60 images found under another extension (.png for .jpeg, .png for .jpg)",
        f"{tumors} annotations scaled from their original sizes (resized copy: every "
        "image 256x256)"]
    assert data_main(["inspect", str(resized_btxrd)]) == 0
    out = capsys.readouterr().out
    assert out.count("note: ") == 2 and "problems: 0 errors, 0 warnings" in out


def test_one_image_resized_differently_from_the_rest_is_flagged(synthetic_btxrd, tmp_path):
    from conftest import write_resized_copy

    sheet, tumor = first(synthetic_btxrd, "malignant")
    image_id = sheet.loc[tumor, "image_id"]
    root = write_resized_copy(synthetic_btxrd, tmp_path / "copy",
                              sizes={image_id: (180, 200)})
    report, problems = problems_of(root)
    stem = image_id.rsplit(".", 1)[0]
    assert [p[2] for p in problems] == ["error"] and not report.usable
    assert f"{stem}.json" in problems[0][0]
    assert "disagrees with the image (200x180), unlike the rest of this resized copy " \
           "(every image 256x256)" in problems[0][1]
    tumors = report.classes["benign"] + report.classes["malignant"]
    assert f"{tumors - 1} annotations scaled from their original sizes" in report.notes[1]
