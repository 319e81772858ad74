"""Runs that die, reproducibility, safe model files, bad files during training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def train_command(data, out, epochs=3):
    return [sys.executable, str(ROOT / "train_model.py"), "--data", str(data), "--out",
            str(out), "--arch", "resnet50", "--task", "binary", "--weights", "none",
            "--crop", "none", "--image-size", "32", "--batch-size", "16", "--epochs",
            str(epochs), "--phase2-epochs", "0", "--seed", "3", "--deterministic",
            "--n-bootstrap", "20", "--patience", "10"]


def run(command, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, **kwargs)


def weights_of(path):
    from bone_tumor_tf.inference import load_model

    return load_model(path).get_weights()


@pytest.fixture(scope="module")
def uninterrupted(synthetic_btxrd, tmp_path_factory):
    out = tmp_path_factory.mktemp("reliability") / "uninterrupted"
    result = run(train_command(synthetic_btxrd, out))
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_sigkill_mid_training_then_same_command_resumes_to_the_same_result(
        uninterrupted, synthetic_btxrd, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(train_command(synthetic_btxrd, out), cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = out / "history_phase1.csv"
    deadline = time.time() + 300
    # Kill as soon as the first epoch is recorded, i.e. in the middle of the second.
    while time.time() < deadline and process.poll() is None:
        if history.is_file() and len(history.read_text().strip().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "model.keras").exists()

    result = run(train_command(synthetic_btxrd, out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming" in result.stderr
    merged = pd.read_csv(out / "history.csv")
    assert list(merged["epoch"]) == [1, 2, 3]  # continuous: none duplicated or missing
    reference = pd.read_csv(uninterrupted / "history.csv")
    np.testing.assert_allclose(merged["loss"], reference["loss"], rtol=1e-4)
    for a, b in zip(weights_of(out / "model.keras"), weights_of(uninterrupted / "model.keras"),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_two_deterministic_runs_give_the_same_metrics(uninterrupted, synthetic_btxrd,
                                                      tmp_path):
    result = run(train_command(synthetic_btxrd, tmp_path / "again"))
    assert result.returncode == 0, result.stderr[-2000:]
    first = json.loads((uninterrupted / "metrics.json").read_text())
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert first == second


def test_bad_files_stop_training_with_the_list_or_are_skipped(btxrd_copy, tmp_path):
    from bone_tumor_tf.data import load_dataset

    records = load_dataset(btxrd_copy).records
    records[0].path.write_bytes(b"")
    records[1].path.write_text("not an image")
    stop = run(train_command(btxrd_copy, tmp_path / "stop", epochs=1))
    assert stop.returncode == 2
    assert stop.stderr.strip().count("\n") == 0 or "error:" in stop.stderr.splitlines()[-1]
    assert str(records[0].path) in stop.stderr and "--on-bad-file skip" in stop.stderr
    listed = (tmp_path / "stop" / "bad_files.txt").read_text().splitlines()
    assert len(listed) == 2
    skip = run(train_command(btxrd_copy, tmp_path / "skip", epochs=1) +
               ["--on-bad-file", "skip"])
    assert skip.returncode == 0, skip.stderr[-2000:]
    splits = pd.read_csv(tmp_path / "skip" / "splits.csv")
    assert len(splits) == 58 and records[0].image_id not in set(splits["image_id"])
    assert (tmp_path / "skip" / "bad_files.txt").read_text().count("\n") == 2


def test_a_lambda_layer_model_is_refused_with_a_clear_message(tmp_path):
    import keras

    from bone_tumor_tf.errors import ModelFileError
    from bone_tumor_tf.inference import load_model

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelFileError, match="Lambda") as info:
        load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_custom_object_is_refused_with_a_clear_message(tmp_path):
    import keras

    from bone_tumor_tf.errors import ModelFileError
    from bone_tumor_tf.inference import load_model

    @keras.saving.register_keras_serializable(package="somebody_else")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((4,))
    path = tmp_path / "custom.keras"
    keras.Model(inputs, Doubler()(inputs)).save(path)
    keras.saving.get_custom_objects().pop("somebody_else>Doubler")
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_damaged_model_file_is_refused(tmp_path):
    from bone_tumor_tf.errors import ModelFileError
    from bone_tumor_tf.inference import load_model

    path = tmp_path / "damaged.keras"
    path.write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(ModelFileError, match="cannot load model"):
        load_model(path)
