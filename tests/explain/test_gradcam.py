"""Grad-CAM / Grad-CAM++ / Score-CAM: maps, mapping back, overlays, localisation, CLI.

Models are tiny (image_size 64, weights "none"). One ResNet50 (binary) is trained for a
few epochs on the synthetic BTXRD set and shared by the sanity check, the sigmoid-score
tests and the CLI; an untrained ResNet50 with 3 classes covers the softmax path, and an
untrained DenseNet121 its own target layer (its eager Grad-CAM calls are slower, so it
gets only one).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from bone_tumor_tf.data.preprocess import apply_geometry, map_to_original, plan_geometry  # noqa: E402
from bone_tumor_tf.errors import ModelFileError  # noqa: E402
from bone_tumor_tf.explain.cam import (  # noqa: E402
    CamExplainer,
    SigmoidToTwoClassLogits,
    benchmark_batched_vs_single,
    compute_cams,
    normalize_heatmaps,
    resolve_cam_layer,
)
from bone_tumor_tf.explain.localization import (  # noqa: E402
    energy_inside,
    mask_fraction,
    pointing_game_hit,
    summarize_localization,
    top_fraction_iou,
)
from bone_tumor_tf.explain.overlay import annotate, overlay_heatmap, side_by_side_panel  # noqa: E402
from bone_tumor_tf.models import (  # noqa: E402
    build_classifier,
    last_conv_layer_name,
    save_with_contract,
    update_contract,
)

SIZE = 64


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def synthetic_set(synthetic_btxrd):
    """Records and prepared 64 px inputs (crop mode none) of the shared synthetic set."""
    from bone_tumor_tf.data import load_dataset
    from bone_tumor_tf.data.prepare import prepare_images

    dataset = load_dataset(synthetic_btxrd)
    prepared = prepare_images(dataset.records, SIZE, crop_mode="none")
    assert not prepared.failures
    labels = np.array([r.label != "normal" for r in dataset.records], np.float32)
    return dataset, prepared.images, labels


@pytest.fixture(scope="module")
def trained_resnet(synthetic_set):
    """ResNet50 (binary, from scratch) trained for 4 epochs on the 60 synthetic images.

    Cheap on purpose (about 15 s of CPU): the stem and stages conv2-conv3 stay at their
    random initialisation (frozen), stages conv4-conv5 and the head are trained, eagerly
    (tracing the ResNet50 train step alone costs about 20 s of CPU, more than 12 eager
    steps). BN momentum is lowered to 0.5 so that the moving statistics used at inference
    catch up within the 12 steps (Keras' 0.99 would still mostly hold the initial mean 0 /
    variance 1). Returns ``(model, accuracy on its training images at inference)``.
    """
    _, images, labels = synthetic_set
    keras.utils.set_random_seed(0)
    model = build_classifier("resnet50", "binary", image_size=SIZE, weights="none",
                             dropout=0.0)
    update_contract(model, crop_mode="none")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
        if layer.name.startswith(("conv1_", "conv2_", "conv3_")):
            layer.trainable = False
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", run_eagerly=True)
    x = images[..., None].astype(np.float32)
    model.fit(x, labels, batch_size=20, epochs=4, shuffle=True, verbose=0)
    predicted = keras.ops.convert_to_numpy(model(x, training=False))[:, 0] > 0.5
    return model, float(np.mean(predicted == labels.astype(bool)))


@pytest.fixture(scope="module")
def resnet_explainer(trained_resnet):
    return CamExplainer(trained_resnet[0], scorecam_max_n=4)


@pytest.fixture(scope="module")
def densenet():
    keras.utils.set_random_seed(1)
    return build_classifier("densenet121", "multiclass", image_size=SIZE, weights="none")


@pytest.fixture(scope="module")
def softmax_model():
    keras.utils.set_random_seed(2)
    return build_classifier("resnet50", "multiclass", image_size=SIZE, weights="none")


@pytest.fixture(scope="module")
def softmax_explainer(softmax_model):
    return CamExplainer(softmax_model, scorecam_max_n=4)


@pytest.fixture(scope="module")
def saved_model(trained_resnet, tmp_path_factory):
    return save_with_contract(trained_resnet[0],
                              tmp_path_factory.mktemp("gradcam_model") / "m.keras")


# --------------------------------------------------------------------------- target layer


def test_last_conv_layer_discovery(trained_resnet, densenet, saved_model):
    from bone_tumor_tf.inference import load_model

    assert last_conv_layer_name(trained_resnet[0]) == "conv5_block3_out"
    assert last_conv_layer_name(densenet) == "relu"
    loaded = load_model(saved_model)
    assert last_conv_layer_name(loaded) == "conv5_block3_out"
    assert resolve_cam_layer(loaded) == "conv5_block3_out"
    assert resolve_cam_layer(densenet, "conv4_block24_concat") == "conv4_block24_concat"
    with pytest.raises(ModelFileError, match=r"'nope'.*relu"):
        resolve_cam_layer(densenet, "nope")
    with pytest.raises(ModelFileError, match="head_gap"):
        resolve_cam_layer(densenet, "head_gap")  # 2-D, not a feature map


# --------------------------------------------------------------------------- heatmaps


def _check_heatmaps(heatmaps, n):
    assert heatmaps.shape == (n, SIZE, SIZE)
    assert heatmaps.dtype == np.float32
    assert np.isfinite(heatmaps).all()
    assert heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0
    for h in heatmaps:  # normalised per image: a non-empty map reaches 1
        assert h.max() == 0.0 or np.isclose(h.max(), 1.0)


def test_heatmap_shape_and_range_every_method(softmax_explainer, resnet_explainer, densenet,
                                              synthetic_set):
    _, images, _ = synthetic_set
    for method in ("gradcam", "gradcam++", "scorecam"):  # softmax: CategoricalScore
        _check_heatmaps(softmax_explainer(images[:2], method), 2)
    for method in ("gradcam", "gradcam++"):  # sigmoid: BinaryScore (Score-CAM: below)
        _check_heatmaps(resnet_explainer(images[:2], method), 2)
    # DenseNet121: Grad-CAM at its "relu" layer (after the final BN) works on Keras 3.
    dense = CamExplainer(densenet)
    assert dense.layer_name == "relu"
    heatmaps = dense(images[:2], "gradcam", target_classes=[0, 2])
    _check_heatmaps(heatmaps, 2)
    assert heatmaps.max() > 0


def test_normalize_heatmaps_all_zero_and_constant_maps():
    cams = np.stack([np.zeros((3, 3)), np.full((3, 3), 2.5), np.arange(9.0).reshape(3, 3)])
    cams[2, 0, 0] = np.nan
    out = normalize_heatmaps(cams)
    assert np.isfinite(out).all()
    assert (out[0] == 0).all() and (out[1] == 0).all()
    assert out[2].max() == 1.0 and out[2, 0, 0] == 0.0 and np.isclose(out[2, 0, 1], 1 / 8)


def test_batched_equals_one_at_a_time(softmax_explainer, resnet_explainer, synthetic_set):
    _, images, _ = synthetic_set
    x = images[:3]
    # Softmax model, per-image targets in one call (CategoricalScore with a list).
    batched = softmax_explainer(x, "gradcam", target_classes=[0, 1, 2], batch_size=3)
    for i in range(3):
        single = softmax_explainer(x[i:i + 1], "gradcam", target_classes=i, batch_size=1)
        np.testing.assert_allclose(batched[i], single[0], atol=1e-4)
    # Sigmoid model, predicted classes, batches of 2 + 1 versus one at a time.
    batched = resnet_explainer(x, "gradcam", batch_size=2)
    single = np.concatenate([resnet_explainer(x[i:i + 1], "gradcam", batch_size=1)
                             for i in range(3)])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_caller_model_is_not_modified(softmax_model, softmax_explainer, synthetic_set):
    _, images, _ = synthetic_set
    softmax_explainer(images[:1], "gradcam")
    assert softmax_model.get_layer("predictions").activation is keras.activations.softmax
    linear = softmax_explainer.linear_model()
    assert linear is not softmax_model
    assert linear.get_layer("predictions").activation is keras.activations.linear
    probs = keras.ops.convert_to_numpy(softmax_model(images[:2, ..., None].astype(np.float32)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def _reference_gradcam(model, layer_name, images, sign):
    """Grad-CAM by hand (Selvaraju et al.): ReLU(sum_c mean_ij(d score / d A) * A_c)."""
    features = keras.Model(model.inputs, [model.get_layer(layer_name).output,
                                          model.get_layer("predictions").input])
    kernel, bias = model.get_layer("predictions").get_weights()
    x = tf.constant(images[..., None].astype(np.float32))
    with tf.GradientTape() as tape:
        activations, penultimate = features(x, training=False)
        score = sign * (tf.matmul(penultimate, kernel) + bias)[:, 0]  # +-logit
    grads = tape.gradient(score, activations).numpy()
    cams = np.maximum((activations.numpy() * grads.mean(axis=(1, 2), keepdims=True)).sum(-1), 0)
    up = np.stack([cv2.resize(c, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) for c in cams])
    return normalize_heatmaps(up)


def test_gradcam_matches_hand_computed_reference(trained_resnet, resnet_explainer,
                                                 synthetic_set):
    model = trained_resnet[0]
    _, images, _ = synthetic_set
    x = images[[1, 2, 5]]
    for target, sign in ((1, 1.0), (0, -1.0)):  # tumor score, its complement
        ours = resnet_explainer(x, "gradcam", target_classes=target)
        reference = _reference_gradcam(model, "conv5_block3_out", x, sign)
        np.testing.assert_allclose(ours, reference, atol=2e-3)


def test_sigmoid_to_two_class_logits_gives_class_probabilities(resnet_explainer, trained_resnet,
                                                               synthetic_set):
    _, images, _ = synthetic_set
    x = images[:4, ..., None].astype(np.float32)
    two = SigmoidToTwoClassLogits()(resnet_explainer.linear_model())
    p = keras.ops.convert_to_numpy(trained_resnet[0](x))[:, 0]
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(two([x])))
    np.testing.assert_allclose(probs, np.stack([1 - p, p], axis=1), atol=1e-5)
    # Score-CAM of the complement class is a real map (not the all-zero map of a constant
    # softmax of one sigmoid unit) and differs from the tumor map.
    tumor = resnet_explainer(images[1:2], "scorecam", target_classes=1)
    other = resnet_explainer(images[1:2], "scorecam", target_classes=0)
    _check_heatmaps(tumor, 1)
    _check_heatmaps(other, 1)
    assert other.max() > 0 and not np.allclose(tumor, other)


def test_compute_cams_function_and_benchmark(trained_resnet, synthetic_set):
    model = trained_resnet[0]
    _, images, _ = synthetic_set
    heatmaps = compute_cams(model, images[:2, ..., None], "gradcam++", target_classes=1,
                            layer_name="conv4_block6_out")
    _check_heatmaps(heatmaps, 2)
    with pytest.raises(ValueError, match="shape"):
        compute_cams(model, images[:2, :32, :32], "gradcam")
    result = benchmark_batched_vs_single(model, images[:2], "gradcam", batch_size=2)
    assert result["n_images"] == 2 and result["batched_images_per_s"] > 0
    assert result["single_images_per_s"] > 0 and result["max_abs_difference"] < 1e-4


# --------------------------------------------------------------------------- sanity check


def test_sanity_check_trained_vs_randomized_weights(trained_resnet, resnet_explainer,
                                                    synthetic_set):
    """Model-parameter randomisation test (Adebayo et al., 2018, "Sanity Checks for Saliency
    Maps", NeurIPS, https://arxiv.org/abs/1810.03292): a map that does not change when the
    learned weights are replaced by random ones explains the input, not the model.

    Measured on ``conv4_block6_out`` (4 x 4 cells at 64 px): the default layer's map has
    only 2 x 2 cells at this input size, and there the trained and random maps are
    strongly rank-correlated or anti-correlated depending on the random seed (|rho| 0.5 to
    0.9: four cells ordered mostly by image content), so it cannot tell the weights apart.
    The absolute Spearman correlation is used (a sign-flipped map is not "different").
    """
    from scipy.stats import spearmanr

    model, accuracy = trained_resnet
    # Only meaningful for a model that learned something: it fits its 60 training images
    # (memorises them; far too few to generalise).
    assert accuracy >= 0.8, f"trained model too weak for the sanity check ({accuracy:.2f})"
    _, images, labels = synthetic_set
    x = images[np.flatnonzero(labels == 1)[:12]]
    layer = "conv4_block6_out"
    trained_maps = resnet_explainer(x, "gradcam", target_classes=1, layer_name=layer)
    rhos = []
    for seed in (123, 789):
        keras.utils.set_random_seed(seed)
        randomized = build_classifier("resnet50", "binary", image_size=SIZE, weights="none",
                                      dropout=0.0)
        random_maps = CamExplainer(randomized, layer)(x, "gradcam", target_classes=1)
        rhos += [abs(spearmanr(a.ravel(), b.ravel())[0])
                 for a, b in zip(trained_maps, random_maps) if a.std() > 0 and b.std() > 0]
    assert len(rhos) >= 16, "too many constant maps for a rank correlation"
    mean_rho = float(np.mean(rhos))
    print(f"sanity check: mean |Spearman rho| trained vs random ({layer}) = {mean_rho:.3f} "
          f"over {len(rhos)} maps; training accuracy {accuracy:.2f}")
    assert mean_rho < 0.5
    # The trained map itself is reproducible (same model, same input -> same map).
    np.testing.assert_allclose(
        trained_maps[:2], resnet_explainer(x[:2], "gradcam", target_classes=1, layer_name=layer),
        atol=1e-5)


# --------------------------------------------------------------------------- mapping, overlay


def test_peak_maps_back_to_the_right_original_pixel():
    # gt-box: a 30 x 40 crop at (x=20, y=30) keeps its pixel size and is padded into 64.
    geometry = plan_geometry((120, 90), SIZE, crop_box=(20, 30, 49, 69), upscale=False)
    assert geometry.scale == 1.0
    peak_yx = (45, 33)  # original pixel inside the crop
    heatmap = np.zeros((SIZE, SIZE), np.float32)
    heatmap[peak_yx[0] - 30 + geometry.pad_top, peak_yx[1] - 20 + geometry.pad_left] = 1.0
    back = map_to_original(heatmap, geometry)
    assert back.shape == (120, 90)
    assert np.unravel_index(np.argmax(back), back.shape) == peak_yx
    assert back[:30].max() == 0 and back[:, :20].max() == 0  # zero outside the crop

    # none: a 48 x 32 image scaled by 4/3 and padded left/right.
    original = np.zeros((48, 32), np.float32)
    original[20, 10] = 1.0
    original = cv2.GaussianBlur(original, (0, 0), 2.0)
    geometry = plan_geometry((48, 32), SIZE)
    assert geometry.pad_left > 0 and geometry.scale > 1
    model_space = apply_geometry(original, geometry)
    back = map_to_original(model_space, geometry)
    y, x = np.unravel_index(np.argmax(back), back.shape)
    assert abs(y - 20) <= 1 and abs(x - 10) <= 1


def test_overlay_annotation_and_panel_sizes():
    rng = np.random.default_rng(0)
    for height, width in ((37, 53), (700, 500)):
        gray = rng.integers(0, 256, (height, width), dtype=np.uint8)
        geometry = plan_geometry((height, width), SIZE)
        heatmap = map_to_original(rng.random((SIZE, SIZE)).astype(np.float32), geometry)
        overlay = overlay_heatmap(gray, heatmap, alpha=0.4)
        assert overlay.shape == (height, width, 3) and overlay.dtype == np.uint8
        captioned = annotate(overlay, "malignant 0.87\nGrad-CAM: malignant")
        assert captioned.shape == overlay.shape and not np.array_equal(captioned, overlay)
        panel = side_by_side_panel(gray, heatmap, captioned)
        assert panel.shape == (height, 3 * width, 3)
    assert np.array_equal(overlay_heatmap(gray, np.zeros_like(heatmap), alpha=0.0),
                          cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    # Colour only where the model looked: outside the region the radiograph is unchanged.
    inside = overlay_heatmap(gray, np.ones_like(heatmap), alpha=0.5, region=(10, 20, 30, 40))
    base = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    assert np.array_equal(inside[:20], base[:20]) and np.array_equal(inside[:, 30:], base[:, 30:])
    assert not np.array_equal(inside[20:40, 10:30], base[20:40, 10:30])
    with pytest.raises(ValueError, match="map_to_original"):
        overlay_heatmap(gray, np.zeros((SIZE, SIZE)))


# --------------------------------------------------------------------------- localisation


def test_pointing_game_hand_worked():
    heatmap = np.array([[0, 1], [1, 0]], float)  # two maxima: the first is (0, 1)
    assert pointing_game_hit(heatmap, [[0, 1], [0, 1]]) is True  # right column
    assert pointing_game_hit(heatmap, [[0, 0], [1, 1]]) is False  # bottom row
    assert pointing_game_hit(np.zeros((2, 2)), [[1, 0], [0, 0]]) is True  # first = (0, 0)
    heatmap = np.zeros((4, 5))
    heatmap[2, 3] = 0.9
    mask = np.zeros((4, 5), np.uint8)
    mask[1:3, 2:4] = 1
    assert pointing_game_hit(heatmap, mask)
    assert not pointing_game_hit(heatmap, 1 - mask)


def test_energy_inside_hand_worked():
    heatmap = np.array([[1, 2, 0], [3, 4, 0]], float)  # total 10
    mask = np.array([[0, 1, 0], [0, 1, 1]])  # holds 2 + 4 + 0
    assert energy_inside(heatmap, mask) == pytest.approx(0.6)
    assert energy_inside(np.zeros((2, 3)), mask) is None
    with pytest.raises(ValueError):
        energy_inside(-heatmap, mask)


def test_top_fraction_iou_hand_worked():
    heatmap = np.arange(1, 21, dtype=float).reshape(4, 5)  # 20 distinct values
    # 15 % of 20 pixels = 3: the region is {18, 19, 20} = (3, 2), (3, 3), (3, 4).
    mask = np.zeros((4, 5), np.uint8)
    mask[3, 3:5] = 1  # holds 19, 20
    mask[0, 0:2] = 1  # holds 1, 2
    # intersection 2, union 3 + 4 - 2 = 5
    assert top_fraction_iou(heatmap, mask, 0.15) == pytest.approx(2 / 5)
    # Zero heat is never "hot": top 15 % of a map with 2 positive pixels is those two.
    sparse = np.zeros((4, 5))
    sparse[0, 0], sparse[0, 1] = 0.5, 1.0
    assert top_fraction_iou(sparse, mask, 0.15) == pytest.approx(2 / 4)
    # Ties at the threshold are all included: a plateau of 4 equal top values.
    plateau = np.zeros((4, 5))
    plateau[1, 1:5] = 1.0
    one = np.zeros((4, 5), np.uint8)
    one[1, 1] = 1
    assert top_fraction_iou(plateau, one, 0.15) == pytest.approx(1 / 4)
    assert top_fraction_iou(np.zeros((4, 5)), mask) is None


def test_mask_fraction_is_chance_level():
    mask = np.zeros((10, 20), np.uint8)
    mask[2:4, 5:10] = 1  # 10 pixels
    assert mask_fraction(mask) == pytest.approx(10 / 200)
    assert mask_fraction(mask, region=(5, 2, 10, 6)) == pytest.approx(10 / 20)


def test_summarize_localization_means_and_intervals():
    rows = [
        {"method": "gradcam", "pointing_game": True, "energy_inside": 0.8,
         "top_fraction_iou": 0.5, "chance_level": 0.2},
        {"method": "gradcam", "pointing_game": False, "energy_inside": 0.4,
         "top_fraction_iou": None, "chance_level": 0.1},
        {"method": "gradcam", "pointing_game": True, "energy_inside": 0.6,
         "top_fraction_iou": 0.3, "chance_level": 0.3},
        {"method": "scorecam", "pointing_game": False, "energy_inside": None,
         "top_fraction_iou": None, "chance_level": 0.25},
    ]
    summary = summarize_localization(rows, n_bootstrap=200, seed=0)
    grad = summary["gradcam"]
    assert grad["n_images"] == 3
    assert grad["pointing_game"]["estimate"] == pytest.approx(2 / 3)
    assert grad["energy_inside"]["estimate"] == pytest.approx(0.6)
    assert grad["top_fraction_iou"]["estimate"] == pytest.approx(0.4)
    assert grad["top_fraction_iou"]["n"] == 2
    assert grad["chance_level"]["estimate"] == pytest.approx(0.2)
    assert grad["pointing_game_above_chance"]["estimate"] == pytest.approx(2 / 3 - 0.2)
    for key in ("pointing_game", "energy_inside", "chance_level"):
        assert grad[key]["low"] <= grad[key]["estimate"] <= grad[key]["high"]
    assert summary["scorecam"]["energy_inside"]["estimate"] is None
    assert summary["scorecam"]["pointing_game"]["estimate"] == 0.0


def test_localization_intervals_resample_patients_when_rows_name_them():
    """Two radiographs of one patient per row pair: the patients' interval is that of one
    row per patient (the copies add nothing), and wider than resampling the images."""
    rng = np.random.default_rng(3)
    hits, chance = rng.random(30) < 0.4, rng.uniform(0.05, 0.3, 30)
    one = [{"method": "gradcam", "pointing_game": bool(h), "energy_inside": None,
            "top_fraction_iou": None, "chance_level": float(c), "group": f"p{i}"}
           for i, (h, c) in enumerate(zip(hits, chance))]
    twice = [dict(row) for row in one for _ in range(2)]
    by_patient = summarize_localization(twice, n_bootstrap=300, seed=1)["gradcam"]
    single = summarize_localization(one, n_bootstrap=300, seed=1)["gradcam"]
    for key in ("pointing_game", "pointing_game_above_chance"):
        assert (by_patient[key]["low"], by_patient[key]["high"]) == pytest.approx(
            (single[key]["low"], single[key]["high"]))
    by_image = summarize_localization([{k: v for k, v in row.items() if k != "group"}
                                       for row in twice], n_bootstrap=300, seed=1)["gradcam"]
    width = by_image["pointing_game"]["high"] - by_image["pointing_game"]["low"]
    assert width < 0.8 * (single["pointing_game"]["high"] - single["pointing_game"]["low"])


# --------------------------------------------------------------------------- CLI


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_cli_images_writes_one_png_per_input_at_original_size(saved_model, synthetic_btxrd,
                                                              tmp_path, capsys):
    from bone_tumor_tf.cli.gradcam import main

    images = sorted((synthetic_btxrd / "images").iterdir())[:2]
    out = tmp_path / "cams"
    rc = main(["--model", str(saved_model), "--images", *map(str, images), "--out", str(out),
               "--method", "gradcam", "gradcam++", "--panel", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    for image in images:
        height, width = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE).shape
        for method in ("gradcam", "gradcam++"):
            png = cv2.imread(str(out / f"{image.stem}_{method}.png"))
            assert png.shape == (height, 3 * width, 3)  # --panel: three panels
    rows = _read_csv(out / "summary.csv")
    assert len(rows) == 4
    assert {"file", "predicted_class", "probability", "target_class", "method"} <= set(rows[0])
    assert {r["predicted_class"] for r in rows} <= {"normal", "tumor"}
    assert not (out / "cam_metrics.json").exists()


def test_cli_data_scores_localization(saved_model, synthetic_btxrd, tmp_path, capsys):
    from bone_tumor_tf.cli.gradcam import main
    from bone_tumor_tf.data import load_dataset
    from bone_tumor_tf.data.splits import make_splits, save_splits

    splits = make_splits(load_dataset(synthetic_btxrd).records, seed=0)
    splits_csv = save_splits(splits, tmp_path / "splits.csv")
    out = tmp_path / "cams"
    rc = main(["--model", str(saved_model), "--data", str(synthetic_btxrd), "--split", "test",
               "--splits", str(splits_csv), "--out", str(out), "--class", "true",
               "--limit", "6", "--n-bootstrap", "100", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    test_ids = list(splits.loc[splits["split"] == "test", "image_id"])[:6]
    rows = _read_csv(out / "summary.csv")
    assert [Path(r["file"]).name for r in rows] == test_ids
    for row in rows:
        image = cv2.imread(row["file"], cv2.IMREAD_GRAYSCALE)
        assert cv2.imread(str(out / row["output"])).shape == image.shape + (3,)
        assert row["target_class"] == ("normal" if row["true_class"] == "normal" else "tumor")
    metrics = json.loads((out / "cam_metrics.json").read_text())
    for key in ("n_images", "n_scored", "n_tumor_images", "split", "metrics", "top_fraction"):
        assert key in metrics
    n_tumor = sum(r["true_class"] != "normal" for r in rows)
    assert metrics["n_images"] == 6 and metrics["n_tumor_images"] == n_tumor
    assert metrics["n_scored"] == n_tumor > 0
    gradcam = metrics["metrics"]["gradcam"]
    for key in ("pointing_game", "energy_inside", "top_fraction_iou", "chance_level",
                "pointing_game_above_chance"):
        assert {"estimate", "low", "high"} <= set(gradcam[key])
    assert 0 < gradcam["chance_level"]["estimate"] < 1
    localization = _read_csv(out / "cam_localization.csv")
    assert len(localization) == n_tumor
    patients = splits.set_index("image_id")["group"]
    assert [r["group"] for r in localization] == [
        patients[Path(r["file"]).name] for r in localization]
    assert metrics["resampled"] == "patients"
    assert metrics["n_patients"] == len({r["group"] for r in localization})
    report = (out / "cam_report.md").read_text()
    assert "Pointing game" in report and "Chance level" in report
    assert f"over the {metrics['n_patients']} patients" in report


def test_cli_errors_are_one_line_exit_2(saved_model, tmp_path, capsys):
    from bone_tumor_tf.cli.gradcam import main

    rc = main(["--model", str(tmp_path / "missing.keras"), "--images", str(tmp_path),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "missing.keras" in err
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    rc = main(["--model", str(saved_model), "--images", str(bad), "--out", str(tmp_path / "o"),
               "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "broken.png" in err
    rc = main(["--model", str(saved_model), "--images", str(bad), "--out", str(tmp_path / "o"),
               "--class", "malignant"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "normal, tumor" in err


def test_a_gt_box_model_reads_normal_radiographs_through_their_training_crops(synthetic_btxrd,
                                                                            tmp_path, capsys):
    """With --data, a gt-box model reads each normal radiograph through the random crop a
    training run on the dataset drew for it (not the whole radiograph), so the panels show
    the model's test-time reading: its probabilities equal those on prepare_images' crops."""
    from helpers import save_chain_classifier

    from bone_tumor_tf.cli.gradcam import main
    from bone_tumor_tf.data import load_dataset
    from bone_tumor_tf.data.prepare import prepare_images
    from bone_tumor_tf.inference import load_model

    model_path = save_chain_classifier(tmp_path / "cls.keras", size=32)
    out = tmp_path / "cams"
    rc = main(["--model", str(model_path), "--data", str(synthetic_btxrd), "--split", "all",
               "--out", str(out), "--class", "true", "--n-bootstrap", "20", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    records = load_dataset(synthetic_btxrd).records
    prepared = prepare_images(records, 32, "gt-box")           # as a training run crops
    probs = load_model(model_path).predict(prepared.images[..., None], verbose=0)
    index = {str(r.path): k for k, r in enumerate(records)}
    rows = _read_csv(out / "summary.csv")
    normal = [r for r in rows if r["true_class"] == "normal"]
    assert normal and len(rows) == len(records)
    for row in rows:
        k = index[row["file"]]
        assert float(row["target_probability"]) == pytest.approx(
            probs[k, ["normal", "benign", "malignant"].index(row["true_class"])], abs=1e-5)
