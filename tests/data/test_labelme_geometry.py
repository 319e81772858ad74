"""LabelMe parsing, mask rasterisation and crop/pad geometry."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from bone_tumor_tf.data.labelme import parse_labelme, polygons_to_mask
from bone_tumor_tf.data.preprocess import (
    apply_geometry,
    map_to_original,
    plan_geometry,
    random_normal_crop_box,
)
from bone_tumor_tf.errors import DataError


def write_labelme(path, shapes, width=100, height=80):
    path.write_text(json.dumps({
        "version": "5.2.1", "flags": {}, "shapes": [
            {"label": label, "points": points, "group_id": None, "shape_type": kind,
             "flags": {}} for label, kind, points in shapes],
        "imagePath": "IMG.jpeg", "imageData": None, "imageHeight": height, "imageWidth": width,
    }))
    return path


def test_rectangle_corners_in_any_order_become_min_max(tmp_path):
    path = write_labelme(tmp_path / "a.json", [
        ("osteosarcoma", "rectangle", [[60, 50], [20, 10]]),  # bottom-right first
        ("osteosarcoma", "polygon", [[25, 15], [55, 15], [40, 45]]),
    ])
    annotation = parse_labelme(path)
    assert annotation.boxes == [(20, 10, 60, 50)]
    assert annotation.labels == ["osteosarcoma", "osteosarcoma"]
    assert annotation.union_box() == (20, 10, 60, 50)


def test_several_shapes_give_union_box_and_union_mask(tmp_path):
    path = write_labelme(tmp_path / "m.json", [
        ("multiple osteochondromas", "rectangle", [[2, 2], [6, 5]]),
        ("multiple osteochondromas", "polygon", [[2, 2], [6, 2], [6, 5], [2, 5]]),
        ("multiple osteochondromas", "rectangle", [[30, 40], [33, 41]]),
        ("multiple osteochondromas", "polygon", [[30, 40], [33, 40], [33, 41], [30, 41]]),
    ])
    annotation = parse_labelme(path)
    assert len(annotation.boxes) == 2 and len(annotation.polygons) == 2
    assert annotation.union_box() == (2, 2, 33, 41)
    mask = annotation.mask()
    assert mask.shape == (80, 100) and mask.dtype == np.uint8
    # Hand count: fillPoly includes the boundary: 5 x 4 = 20 and 4 x 2 = 8 pixels.
    assert mask.sum() == 20 + 8
    assert mask[2:6, 2:7].all() and mask[40:42, 30:34].all()


def test_polygon_mask_area_of_a_triangle_matches_hand_count():
    mask = polygons_to_mask([np.array([[0, 0], [4, 0], [0, 4]], float)], 10, 10)
    # Rows y=0..4 hold 5, 4, 3, 2, 1 pixels (boundary included).
    assert mask.sum() == 15
    assert set(np.unique(mask)) == {0, 1}


@pytest.mark.parametrize("shapes, message", [
    ([("x", "polygon", [[1, 1], [5, 5]])], r"polygon \(shape 0\) has 2 points"),
    ([("x", "circle", [[1, 1], [5, 5]])], "unknown shape_type 'circle'"),
    ([("x", "rectangle", [[1, 1], [5, 5], [7, 7]])], r"rectangle \(shape 0\) has 3 points"),
    ([], "no shapes"),
])
def test_bad_shapes_are_refused_naming_the_file(tmp_path, shapes, message):
    path = write_labelme(tmp_path / "bad.json", shapes)
    with pytest.raises(DataError, match=message) as info:
        parse_labelme(path)
    assert str(path) in str(info.value)


def test_invalid_json_is_refused(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"shapes": [')
    with pytest.raises(DataError, match="invalid JSON"):
        parse_labelme(path)


def test_shapes_outside_the_image_are_clipped_with_a_warning(tmp_path):
    path = write_labelme(tmp_path / "out.json", [
        ("x", "rectangle", [[90, 70], [130, 95]]),
        ("x", "polygon", [[90, 70], [130, 70], [130, 95]]),
    ])
    annotation = parse_labelme(path)
    assert annotation.boxes == [(90, 70, 99, 79)]
    assert annotation.polygons[0][:, 0].max() == 99
    assert len(annotation.warnings) == 2 and "outside" in annotation.warnings[0]


def test_size_mismatch_with_the_image_is_refused(tmp_path):
    path = write_labelme(tmp_path / "s.json", [("x", "rectangle", [[1, 1], [5, 5]])])
    with pytest.raises(DataError, match="disagrees with the image"):
        parse_labelme(path, image_size=(81, 100))


# ----------------------------------------------------------------------------- geometry
def test_gt_box_crop_smaller_than_size_is_padded_symmetrically_without_scaling():
    image = np.arange(200 * 300, dtype=np.uint32).reshape(200, 300) % 251
    image = image.astype(np.uint8)
    geometry = plan_geometry((200, 300), 64, crop_box=(100, 50, 139, 69), upscale=False)
    assert geometry.crop_box == (100, 50, 140, 70)  # inclusive corners -> 40 x 20
    assert geometry.scale == 1.0 and geometry.resized_hw == (20, 40)
    assert (geometry.pad_top, geometry.pad_left) == (22, 12)
    out = apply_geometry(image, geometry)
    assert out.shape == (64, 64)
    np.testing.assert_array_equal(out[22:42, 12:52], image[50:70, 100:140])
    assert out[:22].sum() == 0 and out[42:].sum() == 0 and out[:, :12].sum() == 0


def test_gt_box_crop_larger_than_size_is_downscaled_preserving_aspect():
    geometry = plan_geometry((400, 400), 64, crop_box=(0, 0, 255, 127), upscale=False)
    assert geometry.scale == pytest.approx(0.25)
    assert geometry.resized_hw == (32, 64) and geometry.pad_top == 16


def test_mode_none_fits_whole_image_and_pads_to_square():
    geometry = plan_geometry((100, 50), 64)
    assert geometry.crop_box == (0, 0, 50, 100)
    assert geometry.resized_hw == (64, 32) and geometry.pad_left == 16
    image = np.full((100, 50), 200, np.uint8)
    out = apply_geometry(image, geometry)
    assert out[:, 16:48].min() == 200 and out[:, :16].max() == 0 and out[:, 48:].max() == 0


def test_map_to_original_puts_a_peak_back_on_the_right_pixel():
    original_hw = (300, 500)
    geometry = plan_geometry(original_hw, 64, crop_box=(200, 100, 359, 219), upscale=False)
    marker = np.zeros(original_hw, np.float32)
    marker[150, 280] = 1.0
    marker = cv2.GaussianBlur(marker, (0, 0), 6)
    model_space = apply_geometry(marker, geometry)
    back = map_to_original(model_space, geometry)
    assert back.shape == original_hw
    y, x = np.unravel_index(np.argmax(back), back.shape)
    assert abs(y - 150) <= 3 and abs(x - 280) <= 3
    assert back[:100].max() == 0 and back[:, :200].max() == 0  # outside the crop: zero


def test_random_normal_crop_box_follows_relative_sizes_and_is_reproducible():
    sizes = np.array([[0.2, 0.25]])
    box = random_normal_crop_box((400, 500), sizes, "IMG000001.jpeg", seed=3)
    assert box == random_normal_crop_box((400, 500), sizes, "IMG000001.jpeg", seed=3)
    assert box != random_normal_crop_box((400, 500), sizes, "IMG000002.jpeg", seed=3)
    x0, y0, x1, y1 = box
    assert (x1 - x0 + 1, y1 - y0 + 1) == (100, 100)
    assert 0 <= x0 and x1 < 500 and 0 <= y0 and y1 < 400
