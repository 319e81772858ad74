"""Writing synthetic sets to disk: images, LabelMe annotations, the sheet, the marker.

Layouts: BTXRD (:func:`generate_btxrd`) and class-per-folder (:func:`generate_folders`);
both write ``SYNTHETIC.txt`` and refuse a non-empty folder without it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from bone_tumor_tf.data import schema
from bone_tumor_tf.data.synthetic.rendering import render_radiograph
from bone_tumor_tf.data.synthetic.sampling import check_count_and_seed, sample_metadata
from bone_tumor_tf.errors import DataError

__all__ = [
    "ANNOTATIONS_DIR_NAME",
    "IMAGES_DIR_NAME",
    "MARKER_FILE_NAME",
    "SHEET_FILE_NAME",
    "generate_btxrd",
    "generate_folders",
    "is_synthetic_dataset",
]

MARKER_FILE_NAME = "SYNTHETIC.txt"
SHEET_FILE_NAME = "dataset.xlsx"
IMAGES_DIR_NAME = "images"
ANNOTATIONS_DIR_NAME = "Annotations"
LABELME_VERSION = "5.2.1"
_JPEG_QUALITY = 90

_OWNED_BTXRD_IMAGE = re.compile(r"^IMG\d{6}\.(jpeg|jpg)$")
_OWNED_BTXRD_ANNOTATION = re.compile(r"^IMG\d{6}\.json$")
_OWNED_FOLDER_IMAGE = re.compile(r"^[\w-]+_\d{4,}\.(png|jpg)$")
_MIN_SIDE_LIMIT = 32


def is_synthetic_dataset(path) -> bool:
    """True if ``path`` is a directory that carries the ``SYNTHETIC.txt`` marker."""
    return (Path(path) / MARKER_FILE_NAME).is_file()


def _check_sides(min_side, max_side) -> None:
    if min_side < _MIN_SIDE_LIMIT or max_side < min_side:
        raise ValueError(
            f"need {_MIN_SIDE_LIMIT} <= min_side <= max_side, got min_side={min_side}, "
            f"max_side={max_side}"
        )


def _prepare_output_dir(out_dir: Path) -> None:
    """Create ``out_dir``; clear the files an earlier synthetic run wrote there.

    A non-empty directory without the marker is refused, so real data is never mixed
    with, or overwritten by, synthetic files. In a marked directory only files named as
    this module names them are deleted; anything else is left alone.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(out_dir, "exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not is_synthetic_dataset(out_dir):
            raise DataError(
                out_dir,
                f"is not empty and has no {MARKER_FILE_NAME} marker; refusing to write "
                "synthetic data into it (use an empty or new directory)",
            )
        for owned in (out_dir / MARKER_FILE_NAME, out_dir / SHEET_FILE_NAME):
            owned.unlink(missing_ok=True)
        for folder in out_dir.iterdir():
            if not folder.is_dir():
                continue
            for file in folder.iterdir():
                if file.is_file() and (
                    _OWNED_BTXRD_IMAGE.match(file.name)
                    or _OWNED_BTXRD_ANNOTATION.match(file.name)
                    or _OWNED_FOLDER_IMAGE.match(file.name)
                ):
                    file.unlink()
            if not any(folder.iterdir()):
                folder.rmdir()
    out_dir.mkdir(parents=True, exist_ok=True)


def _write_marker(out_dir: Path, kind: str, n: int, seed: int, sides: tuple[int, int]) -> None:
    (out_dir / MARKER_FILE_NAME).write_text(
        "SYNTHETIC DATA - NOT REAL PATIENTS.\n"
        "Every image and record here was drawn by bone_tumor_tf.data.synthetic from random\n"
        "numbers. No patient data was used; do not present it as real or use it clinically.\n"
        f"kind: {kind}\nn: {n}\nseed: {seed}\nmin_side: {sides[0]}\nmax_side: {sides[1]}\n",
        encoding="utf-8",
    )


def _sample_size(rng: np.random.Generator, min_side: int, max_side: int) -> tuple[int, int]:
    height, width = rng.integers(min_side, max_side + 1, size=2)
    return int(height), int(width)


def _write_image(path: Path, image: np.ndarray, as_three_channels: bool) -> None:
    if as_three_channels:  # some real JPEGs store gray pixels as RGB
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if path.suffix != ".png" else []
    if not cv2.imwrite(str(path), image, params):
        raise DataError(path, "could not be written")


def _rectangle_points(rng, outline, height, width) -> list[list[float]]:
    """Bounding box of ``outline`` (+0-3 px), as two corners in a random order."""
    pad = rng.uniform(0.0, 3.0)
    x0 = round(max(0.0, float(outline[:, 0].min()) - pad), 2)
    y0 = round(max(0.0, float(outline[:, 1].min()) - pad), 2)
    x1 = round(min(width - 1.0, float(outline[:, 0].max()) + pad), 2)
    y1 = round(min(height - 1.0, float(outline[:, 1].max()) + pad), 2)
    orders = (
        [[x0, y0], [x1, y1]], [[x1, y1], [x0, y0]], [[x1, y0], [x0, y1]], [[x0, y1], [x1, y0]]
    )
    return orders[int(rng.choice(4, p=(0.55, 0.25, 0.1, 0.1)))]


def _labelme_shape(label: str, points, shape_type: str) -> dict:
    return {
        "label": label, "points": points, "group_id": None, "description": "",
        "shape_type": shape_type, "flags": {}, "mask": None,
    }


def _labelme_document(rng, file_name, label, outlines, height, width) -> dict:
    rectangles = [
        _labelme_shape(label, _rectangle_points(rng, outline, height, width), "rectangle")
        for outline in outlines
    ]
    polygons = [_labelme_shape(label, outline.tolist(), "polygon") for outline in outlines]
    if rng.random() < 0.75:  # usually rectangle then polygon per lesion ...
        shapes = [shape for pair in zip(rectangles, polygons) for shape in pair]
    else:  # ... sometimes all rectangles first
        shapes = rectangles + polygons
    return {
        "version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": file_name,
        "imageData": None, "imageHeight": height, "imageWidth": width,
    }


def generate_btxrd(
    out_dir, n: int = 120, seed: int = 0, min_side: int = 320, max_side: int = 640
) -> Path:
    """Write a synthetic dataset in the exact on-disk format of BTXRD.

    Args:
        out_dir: Target directory. Created if missing. A non-empty directory is refused
            (``DataError``) unless it holds ``SYNTHETIC.txt`` from an earlier run; then the
            files this module owns there (images, annotations, sheet, marker) are deleted
            and rewritten, and other files are left alone.
        n: Number of images (sheet rows), >= 1.
        seed: Seed; the dataset is a pure function of ``(n, seed, min_side, max_side)``.
        min_side, max_side: Range of image heights and widths, drawn independently.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    check_count_and_seed(n, seed)
    _check_sides(min_side, max_side)
    out_dir = Path(out_dir)
    _prepare_output_dir(out_dir)
    _write_marker(out_dir, "btxrd", n, seed, (min_side, max_side))
    images_dir = out_dir / IMAGES_DIR_NAME
    annotations_dir = out_dir / ANNOTATIONS_DIR_NAME
    images_dir.mkdir(exist_ok=True)
    annotations_dir.mkdir(exist_ok=True)

    sheet = sample_metadata(n, seed)
    subtype_values = sheet[list(schema.SUBTYPE_COLUMNS)].to_numpy()
    for index, row in enumerate(sheet.itertuples(index=False)):
        rng = np.random.default_rng([seed, 1, index])
        file_name = row[0]
        height, width = _sample_size(rng, min_side, max_side)
        lesion, subtype = "normal", None
        if row[schema.SHEET_COLUMNS.index("tumor")]:
            lesion = "malignant" if row[schema.SHEET_COLUMNS.index("malignant")] else "benign"
            subtype = schema.SUBTYPE_COLUMNS[int(np.argmax(subtype_values[index]))]
        n_lesions = int(rng.integers(2, 4)) if subtype == "multiple osteochondromas" else 1
        image, outlines = render_radiograph(rng, height, width, lesion, subtype, n_lesions)
        _write_image(images_dir / file_name, image, as_three_channels=rng.random() < 0.05)
        if outlines:
            document = _labelme_document(rng, file_name, subtype, outlines, height, width)
            annotation_path = annotations_dir / (Path(file_name).stem + ".json")
            annotation_path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    sheet.to_excel(out_dir / SHEET_FILE_NAME, index=False, engine="openpyxl")
    return out_dir


def generate_folders(
    out_dir,
    n: int = 80,
    seed: int = 0,
    classes: Sequence[str] = ("normal", "cancer"),
    size: int | tuple[int, int] = (192, 320),
) -> Path:
    """Write a synthetic class-per-folder image set: ``out_dir/<class>/<class>_0001.png``.

    The first class has no lesion; every other class gets one lesion per image, drawn
    benign-style if its name contains "benign" and malignant-style otherwise. Images are
    split as evenly as possible over the classes; within a class, even-numbered files are
    PNG and odd-numbered ones JPEG (``.jpg``).

    Args:
        out_dir: Target directory; same refusal/overwrite rules as ``generate_btxrd``.
        n: Total number of images, >= 1.
        seed: Seed; the set is a pure function of its arguments.
        classes: Folder names, at least two, distinct, made of letters, digits, ``_``, ``-``.
        size: ``side`` for square images, or ``(min_side, max_side)`` for varied ones.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    check_count_and_seed(n, seed)
    classes = tuple(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(
        re.fullmatch(r"[\w-]+", name) for name in classes
    ):
        raise ValueError(f"classes must be >= 2 distinct simple names, got {classes!r}")
    min_side, max_side = (size, size) if isinstance(size, int | np.integer) else size
    _check_sides(min_side, max_side)
    out_dir = Path(out_dir)
    _prepare_output_dir(out_dir)
    _write_marker(out_dir, "folders", n, seed, (min_side, max_side))

    per_class = [n // len(classes) + (k < n % len(classes)) for k in range(len(classes))]
    index = 0
    for class_index, (name, count) in enumerate(zip(classes, per_class)):
        class_dir = out_dir / name
        class_dir.mkdir(exist_ok=True)
        lesion = "normal" if class_index == 0 else (
            "benign" if "benign" in name.lower() else "malignant"
        )
        for number in range(1, count + 1):
            rng = np.random.default_rng([seed, 2, index])
            index += 1
            height, width = _sample_size(rng, min_side, max_side)
            image, _ = render_radiograph(rng, height, width, lesion)
            extension = "png" if number % 2 == 0 else "jpg"
            _write_image(
                class_dir / f"{name}_{number:04d}.{extension}", image,
                as_three_channels=rng.random() < 0.05,
            )
    return out_dir
