"""Segmentation training, evaluation at original resolution, mask prediction, resume.

Tiny models only (32 px, base_filters 4, depth 3, 1-2 epochs) on the shared 60-image
synthetic BTXRD fixture.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd
import pytest
from helpers import traced_tf_functions

from bone_tumor_tf.cli.evaluate import main as evaluate_main
from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.prepare import prepare_images
from bone_tumor_tf.errors import BoneTumorError, DataError, ModelFileError
from bone_tumor_tf.evaluation.reports.segmentation import (
    OVERLAY_CASES,
    select_cases,
    write_comparison_report,
)
from bone_tumor_tf.evaluation.segmentation import empty_prediction_baseline
from bone_tumor_tf.explain.overlay import overlay_masks
from bone_tumor_tf.inference.segmentation import (
    predict_masks,
    predictions_at_original_resolution,
)
from bone_tumor_tf.models import load_model, read_contract
from bone_tumor_tf.training.segmentation import (
    SegmentationOptions,
    build_model,
    train_segmentation,
)

TINY = dict(image_size=32, base_filters=4, depth=3, batch_size=8, patience=3, verbose=0)
REPO = Path(__file__).resolve().parents[2]


def _options(data, out, **overrides) -> SegmentationOptions:
    return SegmentationOptions(data=str(data), out=str(out), **{**TINY, **overrides})


@pytest.fixture(scope="module")
def attention_run(synthetic_btxrd, tmp_path_factory):
    """A finished 2-epoch Attention U-Net run with normal images (shared by the tests).

    Trained with traced tf.functions, as users train: the suite's one in-process training
    that is not eager (tests/conftest.py)."""
    out = tmp_path_factory.mktemp("seg") / "attention"
    options = _options(synthetic_btxrd, out, epochs=2, include_normals=True)
    with traced_tf_functions():
        return train_segmentation(options), options


def _load_cli():
    spec = importlib.util.spec_from_file_location("train_segmentation_cli",
                                                  REPO / "train_segmentation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- run folder


def test_run_folder_contents_and_metrics(attention_run, synthetic_btxrd):
    run_dir, options = attention_run
    for name in ("model.keras", "config.json", "splits.csv", "history.csv",
                 "metrics.json", "report.md", "training_curves.png",
                 *(f"overlay_{case}.png" for case in OVERLAY_CASES)):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "logs" / "train").rglob("*tfevents*"))
    assert not list(run_dir.glob("*.partial*")) and not list(run_dir.glob(".*tmp*"))

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("dice_mean", "dice_median", "iou_mean", "iou_median", "dice_pooled",
                "iou_pooled", "pixel_auc", "normal_fp_image_rate", "empty_prediction",
                "dice_gain_over_empty", "per_image", "split_scores_input_resolution", "warnings",
                "run"):
        assert key in metrics, key
    assert metrics["task"] == "segmentation" and metrics["resolution"] == "original"
    assert metrics["n_normal"] > 0 and metrics["n_tumor"] > 0
    # The empty prediction scores 1 on every normal image and 0 on every tumor image.
    base = metrics["empty_prediction"]
    assert base["dice_mean"] == pytest.approx(metrics["n_normal"] / metrics["n_images"])
    assert base["dice_pooled"] == 0.0 and base["normal_fp_image_rate"] == 0.0

    # Per-image sizes are the ORIGINAL image sizes, not the 32 px model input.
    item = metrics["per_image"][0]
    original = cv2.imread(str(synthetic_btxrd / "images" / item["image_id"]),
                          cv2.IMREAD_GRAYSCALE)
    assert (item["height"], item["width"]) == original.shape
    assert max(original.shape) > options.image_size

    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == [1, 2] and "val_dice" in history
    # the contract travels inside model.keras (no model.json beside it any more)
    contract = read_contract(run_dir / "model.keras")
    assert contract.task == "segmentation" and contract.image_size == 32
    assert contract.crop_mode == "none" and contract.arch == "attention-unet"
    chosen = metrics["threshold_choice"]["chosen"]
    assert contract.threshold == chosen == metrics["threshold"]
    assert contract.details["depth"] == 3
    assert contract.details["synthetic_data"] is True and not (run_dir / "model.json").exists()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["options"]["include_normals"] is True


def _numpy_dice_iou(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two boolean masks (1.0 when both are empty)."""
    both = np.logical_and(predicted, truth).sum()
    either = np.logical_or(predicted, truth).sum()
    total = predicted.sum() + truth.sum()
    return (1.0 if total == 0 else 2 * both / total), (1.0 if either == 0 else both / either)


def test_report_iou_and_dice_match_numpy_on_the_test_masks(attention_run, synthetic_btxrd):
    run_dir, options = attention_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for item in metrics["per_image"]:
        assert item["iou"] <= item["dice"] + 1e-12
    assert metrics["iou_mean"] <= metrics["dice_mean"] + 1e-12
    assert metrics["iou_median"] <= metrics["dice_median"] + 1e-12
    assert metrics["iou_pooled"] <= metrics["dice_pooled"] + 1e-12
    # The same test masks again: the saved model's predictions at original resolution
    # against the rasterised polygons, scored with NumPy set arithmetic.
    by_id = {r.image_id: r for r in load_dataset(synthetic_btxrd).records}
    records = [by_id[item["image_id"]] for item in metrics["per_image"]]
    prepared = prepare_images(records, options.image_size, crop_mode="none", with_masks=True)
    again = predictions_at_original_resolution(load_model(run_dir / "model.keras"),
                                               prepared.images, prepared.geometries, records)
    predicted = [p >= metrics["threshold"] for p in again.probabilities]
    truth = [m.astype(bool) for m in again.masks]
    scores = np.array([_numpy_dice_iou(p, t) for p, t in zip(predicted, truth)])
    np.testing.assert_allclose([i["dice"] for i in metrics["per_image"]], scores[:, 0],
                               atol=1e-12)
    np.testing.assert_allclose([i["iou"] for i in metrics["per_image"]], scores[:, 1],
                               atol=1e-12)
    assert [i["predicted_pixels"] for i in metrics["per_image"]] == [p.sum() for p in predicted]
    assert [i["true_pixels"] for i in metrics["per_image"]] == [t.sum() for t in truth]
    assert metrics["dice_mean"] == pytest.approx(scores[:, 0].mean())
    assert metrics["iou_mean"] == pytest.approx(scores[:, 1].mean())
    assert metrics["dice_median"] == pytest.approx(np.median(scores[:, 0]))
    assert metrics["iou_median"] == pytest.approx(np.median(scores[:, 1]))
    both = sum(np.logical_and(p, t).sum() for p, t in zip(predicted, truth))
    either = sum(np.logical_or(p, t).sum() for p, t in zip(predicted, truth))
    total = sum(p.sum() + t.sum() for p, t in zip(predicted, truth))
    assert metrics["dice_pooled"] == pytest.approx(2 * both / total if total else 1.0)
    assert metrics["iou_pooled"] == pytest.approx(both / either if either else 1.0)
    assert sum(t.any() for t in truth) > 0  # tumor masks among the test images
    report = (run_dir / "report.md").read_text()
    assert "| Metric | Model | Empty prediction |" in report
    assert "original resolution" in report and "WARNING: synthetic data" in report


def test_mask_threshold_is_the_best_on_the_validation_split(attention_run, synthetic_btxrd):
    """Recomputed with NumPy from the saved model and the run's own val split."""
    run_dir, options = attention_run
    choice = json.loads((run_dir / "metrics.json").read_text())["threshold_choice"]
    splits = pd.read_csv(run_dir / "splits.csv")
    val_ids = set(splits.loc[splits["split"] == "val", "image_id"])
    records = [r for r in load_dataset(synthetic_btxrd).records if r.image_id in val_ids]
    assert any(r.label == "normal" for r in records) and any(r.label != "normal" for r in records)
    prepared = prepare_images(records, options.image_size, crop_mode="none", with_masks=True)
    probs = load_model(run_dir / "model.keras").predict(
        prepared.images[..., None].astype("float32"), verbose=0)[..., 0]
    means = [np.mean([_numpy_dice_iou(p >= t, m.astype(bool))[0]
                      for p, m in zip(probs, prepared.masks)]) for t in choice["candidates"]]
    np.testing.assert_allclose(choice["dice_mean"], means, atol=1e-6)
    best = max(means)
    assert choice["chosen"] == max(t for t, m in zip(choice["candidates"], means)
                                   if m >= best - 1e-9)
    assert choice["split"] == "val" and "chosen on the validation split" in (
        run_dir / "report.md").read_text()


def test_a_false_alarm_budget_chooses_the_best_tumor_dice_within_it(attention_run,
                                                                    synthetic_btxrd, tmp_path):
    """--max-normal-marked, recomputed with NumPy from the saved model and its val split."""
    source_dir, _ = attention_run
    budget = 0.2
    options = _options(synthetic_btxrd, tmp_path / "budget", epochs=0, include_normals=True,
                       init_from=str(source_dir), max_normal_marked=budget)
    run_dir = train_segmentation(options)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    choice = metrics["threshold_choice"]
    assert choice["candidates"][-1] == 0.99 and choice["max_normal_marked"] == budget
    splits = pd.read_csv(run_dir / "splits.csv")
    val_ids = set(splits.loc[splits["split"] == "val", "image_id"])
    records = [r for r in load_dataset(synthetic_btxrd).records if r.image_id in val_ids]
    normal = np.array([r.label == "normal" for r in records])
    prepared = prepare_images(records, options.image_size, crop_mode="none", with_masks=True)
    probs = load_model(run_dir / "model.keras").predict(
        prepared.images[..., None].astype("float32"), verbose=0)[..., 0]
    tumor, marked = [], []
    for t in choice["candidates"]:
        tumor.append(np.mean([_numpy_dice_iou(p >= t, m.astype(bool))[0]
                              for p, m, n in zip(probs, prepared.masks, normal) if not n]))
        marked.append(np.mean([(p >= t).any() for p, n in zip(probs, normal) if n]))
    np.testing.assert_allclose(choice["tumor_dice_mean"], tumor, atol=1e-6)
    np.testing.assert_allclose(choice["normal_marked"], marked, atol=1e-9)
    within = [(d, t) for d, t, m in zip(tumor, choice["candidates"], marked) if m <= budget]
    if within:
        best = max(d for d, _ in within)
        assert choice["budget_met"] is True
        assert choice["chosen"] == max(t for d, t in within if d >= best - 1e-9)
    else:  # the tiny model marks too much: the fewest-marking threshold, and a warning
        assert choice["budget_met"] is False and metrics["warnings"]
        assert marked[choice["candidates"].index(choice["chosen"])] == min(marked)
    assert read_contract(run_dir / "model.keras").threshold == choice["chosen"]
    assert "normal images marked" in (run_dir / "report.md").read_text()


def test_fixed_threshold_when_not_chosen(synthetic_btxrd, tmp_path):
    options = _options(synthetic_btxrd, tmp_path / "fixed", epochs=1, threshold=0.3,
                       choose_threshold=False)
    run_dir = train_segmentation(options)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["threshold_choice"] is None and metrics["threshold"] == 0.3
    assert read_contract(run_dir / "model.keras").threshold == 0.3


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_saved_model_reloads_identically(attention_run):
    run_dir, options = attention_run
    loaded = load_model(run_dir / "model.keras")  # safe_mode=True
    also = keras.models.load_model(run_dir / "model.keras", safe_mode=True, compile=False)
    rebuilt = build_model(options)
    rebuilt.load_weights(str(run_dir / "state" / "train_done.weights.h5"))
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 1)).astype("float32")
    expected = rebuilt.predict(x, verbose=0)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    np.testing.assert_array_equal(also.predict(x, verbose=0), expected)


def test_predict_masks_at_original_size(attention_run, synthetic_btxrd, tmp_path):
    run_dir, _ = attention_run
    images = sorted((synthetic_btxrd / "images").iterdir())[:3]
    twin = tmp_path / "other" / images[0].name  # same stem as images[0]
    twin.parent.mkdir()
    twin.write_bytes(images[0].read_bytes())
    results = predict_masks(run_dir / "model.keras", [*images, twin.parent], tmp_path / "out",
                            batch_size=2)
    assert [Path(r["file"]).name for r in results] == [p.name for p in images] + [twin.name]
    assert len({r["mask"] for r in results}) == 4  # the repeated stem does not overwrite
    for result in results:
        original = cv2.imread(result["file"], cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(result["mask"], cv2.IMREAD_UNCHANGED)
        overlay = cv2.imread(result["overlay"], cv2.IMREAD_UNCHANGED)
        assert Path(result["mask"]).name.endswith("_mask.png")
        assert mask.shape == original.shape == (result["height"], result["width"])
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert overlay.shape == original.shape + (3,)
        assert result["tumor_pixels"] == int(np.count_nonzero(mask))
    # threshold 0 < t < 1 and the model's input size are enforced
    with pytest.raises(ModelFileError, match="expects 32 px"):
        predict_masks(run_dir / "model.keras", images[:1], tmp_path / "x", image_size=64)
    with pytest.raises(DataError, match="missing.png"):
        predict_masks(run_dir / "model.keras", [tmp_path / "missing.png"], tmp_path / "x")


def test_predict_cli_on_a_segmentation_batch_reports_a_bad_file_and_goes_on(
        attention_run, synthetic_btxrd, tmp_path, capsys):
    from bone_tumor_tf.cli import main

    run_dir, _ = attention_run
    images = sorted((synthetic_btxrd / "images").iterdir())[:2]
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    status = main(["predict", "--model", str(run_dir / "model.keras"), str(images[0]), str(bad),
                   str(images[1]), "--out", str(tmp_path / "masks"), "--json"])
    assert status == 1  # ran; one file could not be read
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "corrupt.png" in errors[0]
    rows = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert [Path(r["file"]).name for r in rows] == [images[0].name, images[1].name]
    assert all(Path(r["mask"]).is_file() for r in rows)


# --------------------------------------------------------------------------- resume


class _Interrupt(Exception):
    pass


class _InterruptAfterEpoch(keras.callbacks.Callback):
    """Simulates a crash right after an epoch was backed up (BackupAndRestore runs first)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Interrupt(f"killed after epoch {epoch + 1}")


class _RecordEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.started = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started.append(epoch)


@pytest.fixture(scope="module")
def resumed_unet_run(synthetic_btxrd, tmp_path_factory):
    """A U-Net run killed after epoch 1 of 2, then finished by the same call (shared)."""
    out = tmp_path_factory.mktemp("seg") / "unet"
    options = _options(synthetic_btxrd, out, arch="unet", epochs=2, include_normals=True)
    with pytest.raises(_Interrupt):
        train_segmentation(options, callbacks=[_InterruptAfterEpoch(0)])
    interrupted = {"backup": (out / "state" / "backup_train").is_dir(),
                   "model": (out / "model.keras").exists(),
                   "splits": (out / "splits.csv").read_text()}
    recorder = _RecordEpochs()
    run_dir = train_segmentation(options, callbacks=[recorder])
    return run_dir, options, interrupted, recorder.started


def test_interrupted_run_resumes_after_last_finished_epoch(resumed_unet_run):
    run_dir, options, interrupted, started = resumed_unet_run
    assert interrupted["backup"] and not interrupted["model"]
    assert started == [1]  # only epoch 2 (0-based 1) ran: epoch 1 was not trained again
    assert list(pd.read_csv(run_dir / "history_train.csv")["epoch"]) == [0, 1]
    assert list(pd.read_csv(run_dir / "history.csv")["epoch"]) == [1, 2]
    assert (run_dir / "splits.csv").read_text() == interrupted["splits"]
    assert (run_dir / "model.keras").is_file() and (run_dir / "metrics.json").is_file()
    assert not (run_dir / "state" / "backup_train").exists()
    with pytest.raises(BoneTumorError, match="finished run"):
        train_segmentation(options)


# --------------------------------------------------------------------------- comparison


def test_comparison_lists_both_architectures(attention_run, resumed_unet_run, tmp_path,
                                             capsys):
    out = tmp_path / "comparison.md"
    assert write_comparison_report([attention_run[0], resumed_unet_run[0]], out) == out
    table = out.read_text()
    assert "| Attention U-Net |" in table and "| U-Net |" in table
    assert "(empty prediction)" in table and "Same test images in every run: **yes**" in table
    assert evaluate_main(["--compare", str(attention_run[0]), str(resumed_unet_run[0]),
                          "--out", str(out)]) == 0
    assert "Attention U-Net" in capsys.readouterr().out
    assert evaluate_main(["--compare", str(attention_run[0]), str(tmp_path / "nope")]) == 2


def test_cli_trains_and_compares(attention_run, synthetic_btxrd, tmp_path, capsys):
    cli = _load_cli()
    args = ["--data", str(synthetic_btxrd), "--out", str(tmp_path / "cli"), "--arch", "unet",
            "--image-size", "32", "--base-filters", "4", "--depth", "3", "--epochs", "0",
            "--include-normals", "--compare", str(attention_run[0])]
    assert cli.main(args) == 0
    table = (tmp_path / "cli" / "comparison.md").read_text()
    assert "| Attention U-Net |" in table and "| U-Net |" in table
    assert cli.main(args) == 2  # a finished run is refused with a one-line error
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")


# --------------------------------------------------------------------------- units


def test_bad_options_are_one_line_errors(tmp_path):
    cases = [dict(image_size=36), dict(arch="segnet"), dict(crop="gt-box"),
             dict(encoder_weights="imagenet"), dict(alpha=1.5), dict(encoder="resnet50", depth=3),
             dict(max_normal_marked=0.15),  # no normal images to measure it on
             dict(max_normal_marked=1.5, include_normals=True),
             dict(max_normal_marked=0.15, include_normals=True, choose_threshold=False)]
    for overrides in cases:
        with pytest.raises(BoneTumorError) as info:
            _options("demo", tmp_path, **overrides)
        assert "\n" not in str(info.value)


def test_select_cases_prefers_tumor_images():
    dices = [1.0, 0.2, 0.9, 0.5, 1.0]
    normal = [True, False, False, False, True]
    assert select_cases(dices, normal) == {"best": 2, "median": 3, "worst": 1}
    assert select_cases([0.3, 0.1], [True, True]) == {"best": 0, "median": 0, "worst": 1}
    assert select_cases([], []) == {}


def test_empty_baseline_and_overlay_colours():
    masks = [np.zeros((4, 5), bool), np.pad(np.ones((2, 2), bool), 1)]
    base = empty_prediction_baseline(masks, [True, False])
    assert base["dice_mean"] == 0.5 and base["dice_pooled"] == 0.0
    assert base["tumor_dice_mean"] == 0.0 and base["normal_fp_image_rate"] == 0.0
    image = np.full((40, 40), 100, np.uint8)
    truth = np.zeros((40, 40), bool)
    truth[5:15, 5:15] = True
    pred = np.zeros((40, 40), bool)
    pred[20:30, 20:30] = True
    overlay = overlay_masks(image, pred, truth)
    assert tuple(overlay[5, 10]) == (0, 200, 0)  # green truth outline (BGR)
    assert tuple(overlay[20, 25]) == (0, 0, 255)  # red prediction outline
    assert tuple(overlay[35, 35]) == (100, 100, 100)


def test_class_folder_data_is_refused(tmp_path):
    from bone_tumor_tf.data.synthetic import generate_folders

    root = generate_folders(tmp_path / "folders", n=8, size=(64, 80))
    with pytest.raises(DataError, match="no tumor images with LabelMe annotations"):
        train_segmentation(_options(root, tmp_path / "run"))


# --------------------------------------------------------------------------- fine-tuning


def test_a_run_started_from_an_earlier_run_begins_with_its_weights(attention_run,
                                                                    synthetic_btxrd, tmp_path):
    """--init-from: with 0 epochs the new run's model is the earlier one, at another size."""
    source_dir, _ = attention_run
    options = _options(synthetic_btxrd, tmp_path / "tuned", epochs=0, image_size=64,
                       init_from=str(source_dir))
    run_dir = train_segmentation(options)
    source, tuned = load_model(source_dir / "model.keras"), load_model(run_dir / "model.keras")
    assert tuned.input_shape[1:3] == (64, 64)
    for layer in source.layers:
        for expected, found in zip(layer.get_weights(), tuned.get_layer(layer.name).get_weights(),
                                   strict=True):
            np.testing.assert_array_equal(found, expected)
    # fully convolutional: on a 64-px input both compute the same map
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 1)).astype("float32")
    np.testing.assert_allclose(tuned.predict(x, verbose=0),
                               _at_size(source, 64).predict(x, verbose=0), atol=1e-5)
    assert json.loads((run_dir / "metrics.json").read_text())["run"]["init_from"] == str(
        source_dir)
    assert f"| started from | {source_dir} |" in (run_dir / "report.md").read_text()


def _at_size(model, size):
    """``model``'s layers and weights on a ``size`` x ``size`` input."""
    rebuilt = build_model(SegmentationOptions(data="demo", out="unused", **{
        **TINY, "image_size": size}))
    for layer in model.layers:
        if layer.weights:
            rebuilt.get_layer(layer.name).set_weights(layer.get_weights())
    return rebuilt


def test_init_from_refuses_other_models_in_one_line(attention_run, resumed_unet_run,
                                                    synthetic_btxrd, tmp_path):
    attention_dir, unet_dir = attention_run[0], resumed_unet_run[0]
    classifier = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Flatten(name="f"),
                                   keras.layers.Dense(3, name="head")])
    classifier.save(tmp_path / "classifier.keras")
    cases = [(dict(init_from=str(unet_dir)), "layers differ"),  # U-Net into Attention U-Net
             (dict(init_from=str(attention_dir), base_filters=8), "expects weight shapes"),
             (dict(init_from=str(tmp_path / "classifier.keras")), "not a segmentation model")]
    for overrides, message in cases:
        with pytest.raises(BoneTumorError, match=message) as info:
            build_model(_options(synthetic_btxrd, tmp_path / "x", **overrides))
        assert "\n" not in str(info.value)
    with pytest.raises(BoneTumorError, match="not found") as info:
        _options(synthetic_btxrd, tmp_path / "x", init_from=str(tmp_path / "nothing"))
    assert "\n" not in str(info.value)
    with pytest.raises(BoneTumorError, match="give one"):
        _options(synthetic_btxrd, tmp_path / "x", init_from=str(attention_dir),
                 encoder="resnet50", encoder_weights="imagenet", depth=4)


def test_evaluate_scores_a_unet_on_any_split_as_its_run_scores_test(attention_run,
                                                                      synthetic_btxrd, tmp_path):
    """bone-tumor evaluate --model UNET: the run's own test figures again, and val likewise."""
    run_dir, _ = attention_run
    run_metrics = json.loads((run_dir / "metrics.json").read_text())
    assert evaluate_main(["--model", str(run_dir / "model.keras"), "--data",
                          str(synthetic_btxrd), "--split", "test", "--out",
                          str(tmp_path / "test")]) == 0
    again = json.loads((tmp_path / "test" / "metrics.json").read_text())
    for key in ("n_images", "n_tumor", "n_normal", "threshold", "dice_mean", "tumor_dice_mean",
                "normal_fp_image_rate", "dice_pooled", "pixel_auc"):
        assert again[key] == pytest.approx(run_metrics[key]), key
    assert evaluate_main(["--model", str(run_dir / "model.keras"), "--data",
                          str(synthetic_btxrd), "--split", "val", "--out",
                          str(tmp_path / "val")]) == 0
    val = json.loads((tmp_path / "val" / "metrics.json").read_text())
    splits = pd.read_csv(run_dir / "splits.csv")
    assert val["split"] == "val" and val["n_images"] == (splits["split"] == "val").sum()
    val_rows = splits[splits["split"] == "val"]
    assert val["n_normal"] == (val_rows["label"] == "normal").sum() > 0
    report = (tmp_path / "val" / "report.md").read_text()
    assert "**Val images:**" in report and "Val-set segmentation" in report
    assert (tmp_path / "val" / "overlay_best.png").is_file()
