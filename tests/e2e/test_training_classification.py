"""Classification training end to end on a tiny synthetic run, and its CLIs."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest

from bone_tumor_tf.errors import BoneTumorError
from bone_tumor_tf.training.classification import ClassifierOptions, train_classifier


def tiny_options(data, out, **overrides):
    options = dict(data=str(data), out=str(out), arch="resnet50", task="binary",
                   weights="none", crop="none", epochs=1, phase2_epochs=1, batch_size=16,
                   image_size=32, n_bootstrap=50, verbose=0, patience=2)
    options.update(overrides)
    return ClassifierOptions(**options)


@pytest.fixture(scope="module")
def finished_run(synthetic_btxrd, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "resnet"
    # two micro-batches per update: the end-to-end run covers --accumulate-steps too
    train_classifier(tiny_options(synthetic_btxrd, out, accumulate_steps=2))
    return out


def test_run_folder_has_every_artifact(finished_run):
    for name in ("model.keras", "config.json", "splits.csv", "history.csv", "metrics.json",
                 "report.md", "training_curves.png", "roc_curves.png", "reliability.png",
                 "confusion_matrix.png"):
        assert (finished_run / name).is_file(), name
    config = json.loads((finished_run / "config.json").read_text())
    assert config["options"]["arch"] == "resnet50" and "tensorflow" in config["versions"]
    assert config["options"]["accumulate_steps"] == 2
    history = pd.read_csv(finished_run / "history.csv")
    assert list(history["epoch"]) == [1, 2] and list(history["phase"]) == ["phase1", "phase2"]
    splits = pd.read_csv(finished_run / "splits.csv")
    assert set(splits["split"]) == {"train", "val", "test"}
    assert splits.groupby("group")["split"].nunique().max() == 1
    report = (finished_run / "report.md").read_text()
    assert "synthetic" in report.lower() and "none" in report


def test_saved_model_loads_safely_and_reproduces_the_reported_test_accuracy(finished_run,
                                                                            synthetic_btxrd):
    from bone_tumor_tf.data import load_dataset
    from bone_tumor_tf.data.prepare import encode_labels, prepare_images
    from bone_tumor_tf.inference import predict_probabilities
    from bone_tumor_tf.models import load_model, read_contract

    model = load_model(finished_run / "model.keras")  # safe_mode=True inside
    contract = read_contract(model)
    assert contract.crop_mode == "none" and contract.class_names == ("normal", "tumor")
    dataset = load_dataset(synthetic_btxrd)
    splits = pd.read_csv(finished_run / "splits.csv")
    test_ids = set(splits.loc[splits["split"] == "test", "image_id"])
    records = [r for r in dataset.records if r.image_id in test_ids]
    records.sort(key=lambda r: list(splits["image_id"]).index(r.image_id))
    prepared = prepare_images(records, 32, crop_mode="none")
    probs = predict_probabilities(model, prepared.images)
    targets = encode_labels([r.label for r in records], dataset.class_names, "binary")
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["n"] == len(records)
    assert np.mean(np.argmax(probs, 1) == targets) == pytest.approx(metrics["accuracy"])


def test_a_finished_run_is_not_overwritten_without_overwrite(finished_run, synthetic_btxrd):
    with pytest.raises(BoneTumorError, match="finished run"):
        train_classifier(tiny_options(synthetic_btxrd, finished_run))


def test_an_interrupted_run_resumes_without_repeating_finished_phases(finished_run,
                                                                      synthetic_btxrd, tmp_path,
                                                                      caplog):
    # A copy of the run stopped after phase 1: phase 2 and the final files are gone.
    run = tmp_path / "interrupted"
    shutil.copytree(finished_run, run)
    for name in ("model.keras", "metrics.json", "history_phase2.csv"):
        (run / name).unlink()
    (run / "state" / "phase2_done.weights.h5").unlink()
    splits_before = (run / "splits.csv").read_text()
    with caplog.at_level(logging.INFO, logger="bone_tumor_tf"):
        train_classifier(tiny_options(synthetic_btxrd, run))
    assert "resuming" in caplog.text and "phase1: already finished" in caplog.text
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2]  # no duplicated or missing epochs
    assert (run / "splits.csv").read_text() == splits_before  # the same split is reused


def test_class_weighted_loss_equals_numpy_formula():
    """Keras' class_weight with our weights gives L = mean_n(-sum_i w_i y_i log p_i)."""
    import keras

    from bone_tumor_tf.data.prepare import class_weights

    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5)).astype("float32")
    labels = np.array([0] * 7 + [1] * 3 + [2] * 2)
    y = np.eye(3, dtype="float32")[labels]
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="categorical_crossentropy")
    weights = class_weights(labels, 3)
    history = model.fit(x, y, batch_size=12, epochs=1, class_weight=weights, verbose=0,
                        shuffle=False)
    p = model.predict(x, verbose=0)
    w = np.array([weights[c] for c in range(3)])
    expected = np.mean(-(w[None, :] * y * np.log(p)).sum(axis=1))
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)


def test_predict_cli_prints_a_table_and_json_lines(finished_run, synthetic_btxrd, capsys):
    from bone_tumor_tf.cli.predict import main as predict_main

    images = sorted((synthetic_btxrd / "images").iterdir())[:3]
    assert predict_main(["--model", str(finished_run / "model.keras"),
                         *map(str, images), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line, image in zip(lines, images, strict=True):
        row = json.loads(line)
        assert row["file"] == str(image) and row["predicted"] in ("normal", "tumor")
        assert set(row["probabilities"]) == {"normal", "tumor"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["probability"] == max(row["probabilities"].values())
    assert predict_main(["--model", str(finished_run / "model.keras"),
                         str(synthetic_btxrd / "images")]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].split("\t") == ["file", "predicted", "p(normal)", "p(tumor)"]
    assert len(table) == 61


def test_predict_reports_a_bad_file_by_name_and_goes_on(finished_run, synthetic_btxrd,
                                                        tmp_path, capsys):
    from bone_tumor_tf.cli.predict import main as predict_main

    bad = tmp_path / "broken.jpeg"
    bad.write_text("not an image")
    good = next((synthetic_btxrd / "images").iterdir())
    code = predict_main(["--model", str(finished_run / "model.keras"), str(bad), str(good),
                         "--json"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"{bad}: not an image file" in captured.err
    assert len(captured.out.strip().splitlines()) == 1


def test_evaluate_cli_reproduces_the_run_metrics(finished_run, synthetic_btxrd, tmp_path):
    from bone_tumor_tf.cli.evaluate import main as evaluate_main

    out = tmp_path / "eval"
    assert evaluate_main(["--model", str(finished_run / "model.keras"), "--data",
                          str(synthetic_btxrd), "--out", str(out), "--n-bootstrap", "50"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    original = json.loads((finished_run / "metrics.json").read_text())
    assert again["accuracy"] == pytest.approx(original["accuracy"])
    assert again["confusion_matrix"] == original["confusion_matrix"]
    # both intervals resample the test split's patients, so they are the same intervals
    splits = pd.read_csv(finished_run / "splits.csv")
    n_patients = splits.loc[splits["split"] == "test", "group"].nunique()
    for metrics in (original, again):
        boot = metrics["bootstrap"]
        assert (boot["resampled"], boot["n_resampled"]) == ("patients", n_patients)
    assert again["bootstrap"]["accuracy"] == pytest.approx(original["bootstrap"]["accuracy"])
    # The same evaluation as the run's: all six plots (training curves from the run folder).
    plots = sorted(p.name for p in out.glob("*.png"))
    assert plots == sorted(p.name for p in finished_run.glob("*.png")) and len(plots) == 6
    report = (out / "report.md").read_text()
    assert all(f"]({name})" in report for name in plots)
    assert f"over the {n_patients} patients" in report


def test_evaluate_reproduces_a_gt_box_run_on_its_test_split(synthetic_btxrd, tmp_path):
    """A normal radiograph's gt-box crop draws its size from the dataset's tumor boxes: the
    re-evaluation of one split draws from the whole dataset, as the run did, so it sees the
    run's own crops and reproduces its test figures exactly."""
    from bone_tumor_tf.cli.evaluate import main as evaluate_main
    from bone_tumor_tf.data import load_dataset
    from bone_tumor_tf.data.prepare import prepare_images, tumor_relative_sizes

    run = tmp_path / "gtbox"
    train_classifier(tiny_options(synthetic_btxrd, run, task="multiclass", crop="gt-box",
                                  phase2_epochs=0))
    out = tmp_path / "eval"
    assert evaluate_main(["--model", str(run / "model.keras"), "--data", str(synthetic_btxrd),
                          "--out", str(out), "--n-bootstrap", "50"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    original = json.loads((run / "metrics.json").read_text())
    assert again["confusion_matrix"] == original["confusion_matrix"]
    for name, figures in original["per_class"].items():
        assert again["per_class"][name] == pytest.approx(figures)
    # the crops of the test split's normals depend on the size pool they draw from
    records = load_dataset(synthetic_btxrd).records
    splits = pd.read_csv(run / "splits.csv")
    test_ids = set(splits.loc[splits["split"] == "test", "image_id"])
    test = [r for r in records if r.image_id in test_ids]
    normal = np.array([r.label == "normal" for r in test])
    assert normal.any()
    whole = prepare_images(test, 32, "gt-box", normal_crop_sizes=tumor_relative_sizes(records))
    alone = prepare_images(test, 32, "gt-box")
    assert [g.crop_box for g in np.array(whole.geometries, object)[normal]] != [
        g.crop_box for g in np.array(alone.geometries, object)[normal]]


def test_train_model_cli_refuses_bad_options_in_one_line(synthetic_btxrd, tmp_path, capsys):
    import train_model

    code = train_model.main(["--data", str(synthetic_btxrd), "--out", str(tmp_path / "r"),
                             "--arch", "resnet50", "--weights", "chexpert"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "densenet121 only" in err
    code = train_model.main(["--data", str(tmp_path / "missing"), "--out",
                             str(tmp_path / "r2"), "--crop", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "missing" in err and "does not exist" in err
