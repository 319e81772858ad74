"""data/preview.py: the contact sheet of training images shows the model inputs, per class."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.prepare import prepare_images
from bone_tumor_tf.data.preview import contact_sheet, preview_dataset, tile_box
from bone_tumor_tf.data.splits import make_splits

SIZE = 32


def read_gray(path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.ndim == 2 and image.dtype == np.uint8
    return image


def test_contact_sheet_holds_each_image_unchanged_under_its_title(tmp_path):
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 256, (3, 20, 20), dtype=np.uint8),
            rng.integers(0, 256, (1, 20, 20), dtype=np.uint8)]
    sheet = read_gray(contact_sheet(rows, ["first", "second"], tmp_path / "a" / "sheet.png",
                                    title="title"))
    for i, images in enumerate(rows):
        for j, image in enumerate(images):
            x0, y0, x1, y1 = tile_box(i, j, 20, titled=True)
            np.testing.assert_array_equal(sheet[y0:y1, x0:x1], image)
    # The row of one image leaves the other two places white; titles are drawn in black.
    x0, y0, x1, y1 = tile_box(1, 2, 20, titled=True)
    assert (sheet[y0:y1, x0:x1] == 255).all()
    title_band = sheet[:tile_box(0, 0, 20, titled=True)[1]]
    assert title_band.min() < 100
    assert sheet.shape == (tile_box(1, 0, 20, True)[3] + 4, tile_box(0, 2, 20, True)[2] + 4)


def test_preview_shows_the_prepared_training_images_of_every_class(synthetic_btxrd, tmp_path):
    out = preview_dataset(synthetic_btxrd, tmp_path / "preview.png", crop_mode="none",
                          image_size=SIZE, per_class=2, augmentation="none", seed=3)
    sheet = read_gray(out)
    dataset = load_dataset(synthetic_btxrd)
    splits = make_splits(dataset.records, seed=3)
    train = [r for r, s in zip(dataset.records, splits["split"]) if s == "train"]
    assert len(dataset.class_names) == 3
    expected_shape = (tile_box(len(dataset.class_names) - 1, 0, SIZE, True)[3] + 4,
                      tile_box(0, 1, SIZE, True)[2] + 4)
    assert sheet.shape == expected_shape  # one row per class, two tiles per row
    for row, name in enumerate(dataset.class_names):
        members = [r for r in train if r.label == name]
        # Every tile is the model input of a training image of its row's class.
        prepared = prepare_images(members, SIZE, crop_mode="none").images
        for column in range(2):
            x0, y0, x1, y1 = tile_box(row, column, SIZE, titled=True)
            tile = sheet[y0:y1, x0:x1]
            matches = [k for k, image in enumerate(prepared) if np.array_equal(tile, image)]
            assert matches, f"tile ({row}, {column}) is no prepared {name} training image"


def test_preview_augmentation_changes_the_tiles(synthetic_btxrd, tmp_path):
    kwargs = dict(crop_mode="none", image_size=SIZE, per_class=1, seed=3)
    plain = read_gray(preview_dataset(synthetic_btxrd, tmp_path / "plain.png",
                                      augmentation="none", **kwargs))
    augmented = read_gray(preview_dataset(synthetic_btxrd, tmp_path / "augmented.png",
                                          augmentation="standard", **kwargs))
    assert plain.shape == augmented.shape
    x0, y0, x1, y1 = tile_box(0, 0, SIZE, titled=True)
    assert not np.array_equal(plain[y0:y1, x0:x1], augmented[y0:y1, x0:x1])


def test_contact_sheet_refuses_mismatched_titles(tmp_path):
    with pytest.raises(ValueError, match="2 rows but 1 row titles"):
        contact_sheet([np.zeros((1, 8, 8), np.uint8)] * 2, ["only"], tmp_path / "x.png")
