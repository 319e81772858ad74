"""The one run lifecycle (training/lifecycle.py), driven by a tiny stand-in trainer."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from bone_tumor_tf.errors import BoneTumorError, DataError
from bone_tumor_tf.training.lifecycle import Phase, RunData, Trainer, run_training
from bone_tumor_tf.training.options import TrainingOptions


class _UserCallback(keras.callbacks.Callback):
    pass


class TinyTrainer(Trainer):
    """Two phases of a tiny image model on 24 random 8 x 8 images; records what ran."""

    monitor, monitor_mode = "val_loss", "min"
    empty_split_message = "no {split} images"

    def __init__(self, options, empty_split=None):
        super().__init__(options)
        self.events, self.empty_split = [], empty_split
        self.callbacks_seen = {}

    def load_data(self, run_dir: Path, resuming: bool) -> RunData:
        self.events.append(("load", resuming))
        rng = np.random.default_rng(0)
        x = rng.normal(size=(24, 8, 8, 1)).astype("float32")
        y = (x[:, :4, :4, 0].mean(axis=(1, 2))[:, None] > 0).astype("float32")
        splits = {"train": (x[:16], y[:16]), "val": (x[16:20], y[16:20]),
                  "test": (x[20:], y[20:])}
        sizes = {name: 0 if name == self.empty_split else len(part[0])
                 for name, part in splits.items()}
        self.splits = splits
        return RunData({name: range(n) for name, n in sizes.items()}, Path("nowhere"), True,
                       config={"sizes": sizes})

    def build_model(self, data: RunData):
        # An image model (8 x 8 gray -> tumor probability): what the saved contract describes.
        inputs = keras.Input((8, 8, 1))
        features = keras.layers.GlobalAveragePooling2D()(
            keras.layers.Conv2D(3, 3, activation="relu")(inputs))
        outputs = keras.layers.Dense(1, activation="sigmoid")(features)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
        return model

    def phases(self, model, data: RunData) -> list[Phase]:
        def phase(name: str, epochs: int) -> Phase:
            def fit(callbacks: list) -> None:
                self.events.append(("fit", name))
                self.callbacks_seen[name] = [type(c).__name__ for c in callbacks]
                model.fit(*self.splits["train"], validation_data=self.splits["val"],
                          epochs=epochs, callbacks=callbacks, verbose=0)

            return Phase(name, epochs, fit,
                         prepare=lambda: self.events.append(("prepare", name)),
                         start=lambda: self.events.append(("start", name)))

        return [phase("first", 2), phase("second", 1)]

    def evaluate(self, model, run_dir: Path, data: RunData) -> None:
        self.events.append(("evaluate", (run_dir / "model.keras").exists()))
        (run_dir / "metrics.json").write_text("{}")


def _options(tmp_path, **overrides) -> TrainingOptions:
    return TrainingOptions(**{"data": "nowhere", "out": str(tmp_path / "run"), "patience": 3,
                              "verbose": 0, **overrides})


def test_a_run_goes_through_every_step_and_writes_model_keras_last(tmp_path):
    trainer = TinyTrainer(_options(tmp_path))
    run_dir = run_training(trainer, callbacks=[_UserCallback()])
    assert trainer.events == [("load", False),
                              ("prepare", "first"), ("start", "first"), ("fit", "first"),
                              ("prepare", "second"), ("start", "second"), ("fit", "second"),
                              ("evaluate", False)]  # model.keras did not exist yet
    assert (run_dir / "model.keras").is_file() and (run_dir / "metrics.json").is_file()
    assert not list(run_dir.glob("*partial*"))
    seen = trainer.callbacks_seen["first"]
    assert seen[-2:] == ["AtomicBackupAndRestore", "_UserCallback"]  # the user's run last
    assert {"ModelCheckpoint", "CSVLogger", "ResumableEarlyStopping"} <= set(seen)
    config = json.loads((run_dir / "config.json").read_text())["options"]
    assert config == {**_options(tmp_path).to_dict(), "data_dir": "nowhere",
                      "synthetic_data": True, "sizes": {"train": 16, "val": 4, "test": 4}}
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert list(history["phase"]) == ["first", "first", "second"]
    with pytest.raises(BoneTumorError, match="finished run"):
        run_training(TinyTrainer(_options(tmp_path)))


def test_a_second_run_into_a_folder_in_use_is_refused_before_it_touches_it(tmp_path):
    """While a run holds its folder, another (even with overwrite) neither deletes nor
    resumes it; after, the same command runs, and overwrite keeps the lock file."""
    from helpers import folder_locked_by_another_process

    from bone_tumor_tf.io import LOCK_NAME

    out = tmp_path / "run"
    (out / "state").mkdir(parents=True)
    (out / "state" / "first_done.weights.h5").write_bytes(b"a running run's state")
    trainer = TinyTrainer(_options(tmp_path, overwrite=True))
    with folder_locked_by_another_process(out):
        with pytest.raises(BoneTumorError, match="another run is writing this folder") as info:
            run_training(trainer)
    assert str(out) in str(info.value) and trainer.events == []
    assert (out / "state" / "first_done.weights.h5").read_bytes() == b"a running run's state"
    run_dir = run_training(trainer)
    assert (run_dir / "model.keras").is_file() and (run_dir / LOCK_NAME).is_file()
    assert not (run_dir / "state" / "first_done.weights.h5").read_bytes().startswith(b"a run")


def test_a_run_stopped_after_its_first_phase_resumes_with_the_second(tmp_path):
    run_dir = run_training(TinyTrainer(_options(tmp_path)))
    for name in ("model.keras", "metrics.json", "history_second.csv"):
        (run_dir / name).unlink()
    (run_dir / "state" / "second_done.weights.h5").unlink()

    trainer = TinyTrainer(_options(tmp_path))
    run_training(trainer)
    # The finished phase is only prepared (its weights loaded), the second one trains.
    assert trainer.events == [("load", True), ("prepare", "first"),
                              ("prepare", "second"), ("start", "second"), ("fit", "second"),
                              ("evaluate", False)]
    assert list(pd.read_csv(run_dir / "history.csv")["epoch"]) == [1, 2, 3]


def test_an_empty_split_is_refused_before_config_and_training(tmp_path):
    trainer = TinyTrainer(_options(tmp_path), empty_split="val")
    with pytest.raises(DataError, match="no val images"):
        run_training(trainer)
    assert trainer.events == [("load", False)]
    assert not (tmp_path / "run" / "config.json").exists()


def test_options_are_validated_again_before_any_work(tmp_path):
    options = _options(tmp_path)
    options.batch_size = 0  # changed after construction
    with pytest.raises(BoneTumorError, match="--batch-size"):
        run_training(TinyTrainer(options))
    assert not (tmp_path / "run").exists()
