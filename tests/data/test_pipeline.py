"""Decoding, preparation and tf.data pipelines: shapes, dtypes, value ranges, weights."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.images import read_image
from bone_tumor_tf.data.pipeline import make_classification_dataset, make_segmentation_dataset
from bone_tumor_tf.data.prepare import (
    class_weights,
    encode_labels,
    prepare_images,
    task_class_names,
)


def test_decoding_handles_8_and_16_bit_png_and_gray_and_rgb_jpeg(tmp_path):
    gradient = np.tile(np.arange(0, 256, dtype=np.uint8), (10, 1))
    cv2.imwrite(str(tmp_path / "g8.png"), gradient)
    cv2.imwrite(str(tmp_path / "g16.png"), gradient.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "rgb.jpg"), np.dstack([gradient] * 3), [cv2.IMWRITE_JPEG_QUALITY, 100])
    for name in ("g8.png", "g16.png", "rgb.jpg"):
        image = read_image(tmp_path / name)
        assert image.dtype == np.uint8 and image.shape == (10, 256), name
        assert np.abs(image.astype(int) - gradient).max() <= 2, name


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    tall = np.zeros((40, 20), np.uint8)
    tall[:5] = 255  # bright top rows
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    Image.fromarray(tall).save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=100)
    image = read_image(tmp_path / "rot.jpg")
    assert image.shape == (20, 40)
    assert image[:, -5:].mean() > 200  # the bright top is now on the right


@pytest.fixture(scope="module")
def dataset(synthetic_btxrd):
    return load_dataset(synthetic_btxrd)


@pytest.mark.parametrize("crop_mode", ["gt-box", "none"])
def test_prepare_images_shapes_dtypes_and_masks(dataset, crop_mode):
    prepared = prepare_images(dataset.records, 64, crop_mode=crop_mode, with_masks=True)
    assert prepared.failures == []
    assert prepared.images.shape == (60, 64, 64) and prepared.images.dtype == np.uint8
    assert prepared.masks.shape == (60, 64, 64) and set(np.unique(prepared.masks)) <= {0, 1}
    tumor = np.array([r.label != "normal" for r in dataset.records])
    assert prepared.masks[~tumor].sum() == 0
    assert (prepared.masks[tumor].reshape(tumor.sum(), -1).sum(1) > 0).all()
    if crop_mode == "gt-box":
        # Cropped to the tumor box: the lesion spans the un-padded region, up to the few
        # pixels of margin the annotators' (here: the generator's) rectangles leave.
        for mask, geometry in zip(prepared.masks[tumor],
                                  np.array(prepared.geometries, object)[tumor], strict=True):
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            top, left = geometry.pad_top, geometry.pad_left
            bottom = top + geometry.resized_hw[0] - 1
            right = left + geometry.resized_hw[1] - 1
            assert 0 <= rows[0] - top <= 4 and 0 <= cols[0] - left <= 4
            assert 0 <= bottom - rows[-1] <= 4 and 0 <= right - cols[-1] <= 4


def test_prepare_collects_every_bad_file_and_uses_the_cache(btxrd_copy, tmp_path):
    dataset = load_dataset(btxrd_copy)
    dataset.records[0].path.write_bytes(b"")
    dataset.records[1].path.write_text("not an image")
    prepared = prepare_images(dataset.records, 32, cache_dir=tmp_path / "cache")
    assert sorted(e.file for e in prepared.failures) == sorted(
        str(r.path) for r in dataset.records[:2])
    assert prepared.ok().sum() == 58
    assert not list((tmp_path / "cache").glob("*.npz"))  # failed runs are not cached
    good = dataset.records[2:]
    first = prepare_images(good, 32, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    second = prepare_images(good, 32, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.images, second.images)
    assert first.geometries == second.geometries


def test_labels_for_both_tasks():
    names = ("normal", "benign", "malignant")
    labels = ["normal", "benign", "malignant", "benign"]
    assert list(encode_labels(labels, names, "multiclass")) == [0, 1, 2, 1]
    assert task_class_names(names, "binary") == ("normal", "tumor")
    assert list(encode_labels(labels, names, "binary")) == [0, 1, 1, 1]
    assert list(encode_labels(["normal", "cancer"], ("normal", "cancer"), "binary")) == [0, 1]


def test_class_weights_are_inverse_frequency():
    targets = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = class_weights(targets, 3)
    # w_c = N / (K n_c): 10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)
    assert weights == pytest.approx({0: 10 / 18, 1: 10 / 9, 2: 10 / 3})


def test_classification_dataset_shapes_ranges_and_augmentation_only_in_training():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 32, 32), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    evaluation = make_classification_dataset(images, labels, 3, batch_size=4)
    x, y = next(iter(evaluation))
    assert x.shape == (4, 32, 32, 1) and x.dtype.name == "float32"
    assert y.shape == (4, 3)
    np.testing.assert_array_equal(x.numpy()[..., 0], images[:4])  # untouched, in order
    training = make_classification_dataset(images, labels, 3, batch_size=10, training=True,
                                           seed=1)
    x, y = next(iter(training))
    assert float(x.numpy().min()) >= 0 and float(x.numpy().max()) <= 255
    order = [int(np.argmax(t)) for t in y.numpy()]
    assert sorted(order) == sorted(labels.tolist())
    assert not np.array_equal(np.sort(x.numpy().ravel()), np.sort(images.ravel().astype(float)))
    binary = make_classification_dataset(images, labels > 0, 2, task="binary", batch_size=5)
    assert next(iter(binary))[1].shape == (5, 1)


def test_class_balanced_sampling_draws_classes_equally():
    images = np.zeros((100, 8, 8), np.uint8)
    labels = np.array([0] * 90 + [1] * 10)
    dataset = make_classification_dataset(images, labels, 2, batch_size=100, training=True,
                                          augmentation="none", class_balanced=True, seed=0)
    drawn = np.concatenate([np.argmax(y, 1) for _, y in dataset.take(10)])
    assert abs(drawn.mean() - 0.5) < 0.05


def test_segmentation_augmentation_moves_image_and_mask_together():
    images = np.zeros((8, 48, 48), np.uint8)
    masks = np.zeros((8, 48, 48), np.uint8)
    for i in range(8):
        masks[i, 10 + i:25 + i, 5 + 2 * i:20 + 2 * i] = 1
    images[masks == 1] = 200
    dataset = make_segmentation_dataset(images, masks, batch_size=8, training=True, seed=3)
    x, m = next(iter(dataset))
    x, m = x.numpy()[..., 0], m.numpy()[..., 0]
    assert set(np.unique(m)) <= {0.0, 1.0}
    bright = x > 60
    iou = (bright & (m > 0)).sum() / (bright | (m > 0)).sum()
    assert iou > 0.8
    assert not np.array_equal(m, masks.astype(np.float32))  # something moved


def test_huge_image_decoded_reduced_keeps_its_annotation_aligned(tmp_path):
    """A 6000 x 5000 radiograph is decoded at 1/2 size; box and mask still fit the lesion."""
    import json

    from bone_tumor_tf.data.images import MAX_DECODE_SIDE
    from bone_tumor_tf.data.prepare import prepare_record
    from bone_tumor_tf.data.records import ImageRecord

    height, width = 5000, 6000
    image = np.zeros((height, width), np.uint8)
    polygon = [[2000, 1500], [4400, 1500], [4400, 3500], [2000, 3500]]
    cv2.fillPoly(image, [np.array(polygon, np.int32)], 220)
    cv2.imwrite(str(tmp_path / "big.jpeg"), image)
    (tmp_path / "big.json").write_text(json.dumps({
        "shapes": [{"label": "osteosarcoma", "shape_type": "rectangle",
                    "points": [[2000, 1500], [4400, 3500]]},
                   {"label": "osteosarcoma", "shape_type": "polygon", "points": polygon}],
        "imageHeight": height, "imageWidth": width}))
    record = ImageRecord("big.jpeg", tmp_path / "big.jpeg", "malignant", "g",
                         annotation=tmp_path / "big.json")
    prepared, geometry, mask = prepare_record(record, 64, crop_mode="gt-box", with_mask=True)
    assert max(geometry.original_hw) <= MAX_DECODE_SIDE
    assert mask.sum() > 0.9 * geometry.resized_hw[0] * geometry.resized_hw[1]
    assert prepared[mask == 1].mean() > 180  # the crop shows the bright lesion
    whole, _, whole_mask = prepare_record(record, 64, crop_mode="none", with_mask=True)
    overlap = (whole > 110) & (whole_mask == 1)
    assert overlap.sum() >= 0.8 * whole_mask.sum()


def test_epoch_keyed_pipeline_gives_epoch_e_the_same_batches_after_a_restart():
    """Deterministic runs: epoch e depends on (seed, e) only, not on earlier epochs."""
    from bone_tumor_tf.data.pipeline import EpochSeeds

    images = np.random.default_rng(0).integers(0, 256, (10, 16, 16), dtype=np.uint8)
    labels = np.arange(10) % 3

    def batches_of_epoch(epoch, run_earlier_epochs):
        seeds = EpochSeeds(5)
        dataset = make_classification_dataset(images, labels, 3, batch_size=4, training=True,
                                              epoch_seeds=seeds)
        for e in (range(epoch + 1) if run_earlier_epochs else [epoch]):
            seeds.start_epoch(e)
            batches = [(x.numpy(), y.numpy()) for x, y in dataset]
        return batches

    resumed = batches_of_epoch(2, run_earlier_epochs=False)
    continuous = batches_of_epoch(2, run_earlier_epochs=True)
    for (x1, y1), (x2, y2) in zip(resumed, continuous, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    other = batches_of_epoch(1, run_earlier_epochs=False)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(resumed, other, strict=True))
    # Every image appears once per epoch.
    seen = np.concatenate([y for _, y in resumed]).argmax(1)
    assert sorted(seen.tolist()) == sorted(labels.tolist())
