"""Run folders (training/runs.py): refusal and resume, histories, phase markers, atomic files."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from bone_tumor_tf.errors import BoneTumorError
from bone_tumor_tf.training import runs


def _tiny_model(seed: int = 0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(1, activation="sigmoid", name="out")(
        keras.layers.Dense(3, activation="relu", name="hidden")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    return model


def _tiny_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    return x, (x[:, :1] > 0).astype("float32")


# --------------------------------------------------------------------------- run folder


def test_prepare_run_dir_creates_refuses_overwrites_and_resumes(tmp_path):
    out = tmp_path / "run"
    path, resuming = runs.prepare_run_dir(out)
    assert path == out and not resuming
    assert all((out / sub).is_dir() for sub in ("logs", "checkpoints", "state"))

    (out / "state" / "phase1_done.weights.h5").write_bytes(b"w")  # an interrupted run
    (out / "splits.csv").write_text("kept")
    assert runs.prepare_run_dir(out) == (out, True)
    assert (out / "splits.csv").read_text() == "kept"

    for name in runs.FINISHED_MARKERS:  # a finished run
        (out / name).write_text("x")
    with pytest.raises(BoneTumorError, match="finished run") as info:
        runs.prepare_run_dir(out)
    assert "\n" not in str(info.value) and "--overwrite" in str(info.value)
    assert (out / "model.keras").is_file()  # refused: nothing removed

    assert runs.prepare_run_dir(out, overwrite=True) == (out, False)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "logs", "state"]


def test_write_config_round_trip(tmp_path):
    options = {"data": "demo", "epochs": 3, "lr": 1e-3, "holdout_center": None,
               "split_counts": {"train": 42, "val": 9, "test": 9}}
    path = runs.write_config(tmp_path, options)
    config = json.loads(path.read_text())
    assert config["options"] == options
    assert {"python", "tensorflow", "keras", "numpy"} <= set(config["versions"])
    assert config["versions"]["keras"] == keras.__version__


# --------------------------------------------------------------------------- histories


def test_read_history_drops_repeated_headers_and_epochs(tmp_path):
    path = tmp_path / "history_phase1.csv"
    # A phase killed after epoch 1 (0-based) and resumed from its backup of epoch 0:
    # CSVLogger appended a second header and epoch 1 again.
    path.write_text("epoch,loss,val_auc\n0,0.9,0.5\n1,0.8,0.6\n"
                    "epoch,loss,val_auc\n1,0.7,0.65\n2,0.6,0.7\n")
    frame = runs.read_history(path)
    assert list(frame["epoch"]) == [0, 1, 2]
    assert frame["loss"].astype(float).tolist() == [0.9, 0.7, 0.6]  # the resumed epoch 1
    assert runs.read_history(tmp_path / "missing.csv").empty
    (tmp_path / "empty.csv").write_text("")
    assert runs.read_history(tmp_path / "empty.csv").empty


def test_merge_histories_continues_epochs_across_phases(tmp_path):
    (tmp_path / "history_phase1.csv").write_text("epoch,loss\n0,0.9\n1,0.8\n2,0.7\n")
    (tmp_path / "history_phase2.csv").write_text("epoch,loss\n0,0.6\n1,0.5\n")
    merged = runs.merge_histories(tmp_path, ["phase1", "phase0", "phase2"])  # phase0: no file
    written = pd.read_csv(tmp_path / "history.csv")
    assert list(written["epoch"]) == [1, 2, 3, 4, 5]
    assert list(written["phase"]) == ["phase1"] * 3 + ["phase2"] * 2
    assert list(written["phase_epoch"]) == [1, 2, 3, 1, 2]
    assert written["loss"].tolist() == [0.9, 0.8, 0.7, 0.6, 0.5]
    assert list(merged["epoch"]) == list(written["epoch"])
    (tmp_path / "none").mkdir()
    assert runs.merge_histories(tmp_path / "none", ["phase1"]).empty
    assert (tmp_path / "none" / "history.csv").is_file()


# --------------------------------------------------------------------------- phases


def test_phase_done_marker_holds_the_phase_weights(tmp_path):
    (tmp_path / "state").mkdir()
    model = _tiny_model(1)
    assert runs.phase_done(tmp_path, "phase1") is None
    runs.mark_phase_done(tmp_path, "phase1", model)
    marker = runs.phase_done(tmp_path, "phase1")
    assert marker == tmp_path / "state" / "phase1_done.weights.h5"
    assert runs.phase_done(tmp_path, "phase2") is None
    assert [p.name for p in (tmp_path / "state").iterdir()] == [marker.name]  # no temp file
    other = _tiny_model(2)
    other.load_weights(str(marker))
    for a, b in zip(other.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resumable_early_stopping_keeps_its_counters_across_a_restart(tmp_path):
    x, y = _tiny_data()
    state = tmp_path / "early_stopping.json"
    make = runs._resumable(keras.callbacks.EarlyStopping)
    model = _tiny_model()
    first = make(state, monitor="loss", patience=5, restore_best_weights=True)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[first])
    saved = json.loads(state.read_text())
    assert saved["best"] == pytest.approx(first.best) and saved["wait"] == first.wait
    assert state.with_suffix(".npz").is_file()  # the best weights, for restore_best_weights
    second = make(state, monitor="loss", patience=5, restore_best_weights=True)
    second.set_model(model)
    second.on_train_begin()
    assert second.best == pytest.approx(first.best) and second.wait == first.wait
    for a, b in zip(second.best_weights, first.best_weights, strict=True):
        np.testing.assert_array_equal(a, b)


class _Stop(Exception):
    pass


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise _Stop()


class _Started(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_backup_swap_cut_short_is_completed_and_the_run_resumes(tmp_path):
    x, y = _tiny_data()
    backup = tmp_path / "backup_phase1"
    with pytest.raises(_Stop):
        _tiny_model().fit(x, y, epochs=3, verbose=0,
                          callbacks=[runs.atomic_backup_and_restore(backup),
                                     _StopAfterFirstEpoch()])
    assert backup.is_dir() and not backup.with_name(backup.name + ".new").exists()
    # Killed between the two renames of the next backup: only <dir>.old (and a .new
    # being written) exist.
    backup.rename(backup.with_name(backup.name + ".old"))
    (tmp_path / "backup_phase1.new").mkdir()
    (tmp_path / "backup_phase1.new" / "partial").write_bytes(b"\0")
    started = _Started()
    _tiny_model().fit(x, y, epochs=3, verbose=0,
                      callbacks=[runs.atomic_backup_and_restore(backup), started])
    assert started.epochs == [1, 2]  # epoch 0 was restored, not trained again
    assert not any(p.name.startswith("backup_phase1") for p in tmp_path.iterdir())


# --------------------------------------------------------------------------- model files


def test_save_model_atomic_writes_the_model_or_leaves_the_old_file(tmp_path, monkeypatch):
    model = _tiny_model(3)
    path = runs.save_model_atomic(model, tmp_path / "model.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    x, _ = _tiny_data()
    np.testing.assert_array_equal(keras.saving.load_model(path).predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    before = path.read_bytes()

    def save_then_fail(filepath, *args, **kwargs):
        with open(filepath, "wb") as handle:
            handle.write(b"PK\x03\x04 half a zip")  # the write dies half-way
        raise OSError("disk full")

    other = _tiny_model(4)
    monkeypatch.setattr(other, "save", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        runs.save_model_atomic(other, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_library_versions_name_keras_cv_without_importing_it():
    import importlib.metadata
    import subprocess
    import sys

    import tensorflow as tf

    # a fresh interpreter: in this one another test may have imported keras-cv already
    code = ("import sys; from bone_tumor_tf.training.runs import library_versions; "
            "v = library_versions(); print(v['keras-cv'], v['tensorflow'], "
            "'keras_cv' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [importlib.metadata.version("keras-cv"),
                   tf.__version__, "False"]
