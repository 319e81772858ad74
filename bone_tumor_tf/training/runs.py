"""Run folders shared by classification and segmentation training.

A run folder holds everything one training run produced::

    RUN/
      config.json        every option and the library versions
      splits.csv         the split this run used (re-used when the run resumes)
      history.csv        per-epoch metrics of all phases, epochs continuing across phases
      model.keras        the best model (written atomically, last)
      metrics.json, report.md, *.png      evaluation
      logs/              TensorBoard
      checkpoints/       ModelCheckpoint's best model per phase
      state/             what an interrupted run needs to resume: BackupAndRestore
                         folders per phase, and a marker + weights per finished phase
      bad_files.txt      bad files found while loading the data (see data.dataset)

A folder holding a finished run (``model.keras`` and ``metrics.json``) is refused unless
``overwrite``; a folder holding an interrupted run is resumed by the same command. The
steps of a run are :func:`bone_tumor_tf.training.lifecycle.run_training`; this module holds
the helpers it uses.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import random
import shutil
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd
import sklearn
import tensorflow as tf

from bone_tumor_tf.errors import BoneTumorError
from bone_tumor_tf.io import LOCK_NAME, atomic_write_json, atomic_write_text
from bone_tumor_tf.models.contract import library_versions as model_versions

FINISHED_MARKERS = ("model.keras", "metrics.json")


def library_versions() -> dict:
    """Versions of Python and the libraries a result depends on: those a saved model
    records (:func:`bone_tumor_tf.models.contract.library_versions`) and the data ones."""
    versions = {**model_versions(), "pandas": pd.__version__,
                "scikit-learn": sklearn.__version__, "opencv": cv2.__version__,
                "platform": platform.platform()}
    try:  # the installed version, without importing keras-cv (that takes seconds)
        versions["keras-cv"] = importlib.metadata.version("keras-cv")
    except importlib.metadata.PackageNotFoundError:  # keras-cv is optional at run time
        pass
    return versions


def prepare_run_dir(out: str | Path, overwrite: bool = False) -> tuple[Path, bool]:
    """Create or reuse a run folder; returns ``(path, resuming)``.

    Raises:
        BoneTumorError: the folder holds a finished run and ``overwrite`` is False.
    """
    out = Path(out).expanduser()
    finished = all((out / name).is_file() for name in FINISHED_MARKERS)
    if finished and not overwrite:
        raise BoneTumorError(f"{out}: holds a finished run (model.keras, metrics.json); "
                             "pass --overwrite to replace it or choose another --out")
    if overwrite and out.exists():
        for child in out.iterdir():  # the lock file stays: a running holder keeps its lock
            if child.name == LOCK_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    resuming = (out / "state").is_dir() and any((out / "state").iterdir())
    for sub in ("", "logs", "checkpoints", "state"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    return out, resuming


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; optionally enable op determinism."""

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def write_config(run_dir: Path, config: dict) -> Path:
    """``config.json``: the options of this run plus library versions."""
    return atomic_write_json(run_dir / "config.json",
                             {"options": config, "versions": library_versions()})


def _resumable(base):
    """A Keras callback class whose counters survive a restart (saved after every epoch).

    ``BackupAndRestore`` restores the model, the optimizer and the epoch, but not the
    counters of ``EarlyStopping`` / ``ReduceLROnPlateau`` (best value, epochs waited, best
    weights). Without them a resumed run would judge "best" over the epochs after the
    restart only, and end with other weights than an uninterrupted run.
    """

    class Resumable(base):
        _saved = ("wait", "best", "best_epoch", "cooldown_counter", "stopped_epoch")

        def __init__(self, state_path, **kwargs):
            super().__init__(**kwargs)
            self.state_path = Path(state_path)

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if not self.state_path.is_file():
                return

            state = json.loads(self.state_path.read_text())
            for name, value in state.items():
                if name in self._saved and hasattr(self, name):
                    setattr(self, name, float(value) if name == "best" else int(value))
            weights = self.state_path.with_suffix(".npz")
            if getattr(self, "restore_best_weights", False) and weights.is_file():
                with np.load(weights) as data:
                    self.best_weights = [data[f"w{i}"] for i in range(len(data.files))]

        def on_epoch_end(self, epoch, logs=None):
            previous_best = getattr(self, "best", None)
            super().on_epoch_end(epoch, logs)
            state = {n: getattr(self, n) for n in self._saved if hasattr(self, n)}
            state = {k: (float(v) if k == "best" else int(v)) for k, v in state.items()
                     if v is not None}
            if getattr(self, "restore_best_weights", False) and self.best_weights is not None \
                    and self.best != previous_best:
                tmp = self.state_path.with_name(self.state_path.stem + ".tmp.npz")
                np.savez(tmp, **{f"w{i}": w for i, w in enumerate(self.best_weights)})
                os.replace(tmp, self.state_path.with_suffix(".npz"))
            atomic_write_json(self.state_path, state)

    Resumable.__name__ = f"Resumable{base.__name__}"
    return Resumable


def atomic_backup_and_restore(backup_dir: Path):
    """``keras.callbacks.BackupAndRestore`` whose backup is replaced atomically.

    Keras writes the weights and then the epoch counter in place, so a kill during the
    write leaves a truncated HDF5 file (or weights and epoch that disagree) and the restart
    fails. Here each backup is written whole into ``<dir>.new`` and swapped in with renames;
    at start-up a swap that was cut short is completed first.
    """


    backup_dir = Path(backup_dir)
    new, old = backup_dir.with_name(backup_dir.name + ".new"), \
        backup_dir.with_name(backup_dir.name + ".old")

    class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
        def on_train_begin(self, logs=None):
            if not backup_dir.exists() and old.exists():
                old.rename(backup_dir)  # killed between the two renames
            shutil.rmtree(new, ignore_errors=True)  # killed while writing: discard
            shutil.rmtree(old, ignore_errors=True)
            super().on_train_begin(logs)

        def _save_model(self):

            shutil.rmtree(new, ignore_errors=True)
            new.mkdir(parents=True)
            self.model.save_weights(str(new / Path(self._weights_path).name))
            (new / Path(self._training_metadata_path).name).write_text(json.dumps(
                {"epoch": self._current_epoch, "batch": self._last_batch_seen}))
            if backup_dir.exists():
                backup_dir.rename(old)
            new.rename(backup_dir)
            shutil.rmtree(old, ignore_errors=True)

    return AtomicBackupAndRestore(str(backup_dir))


def phase_callbacks(run_dir: Path, phase: str, monitor: str, mode: str, patience: int,
                    reduce_lr: bool = True, tensorboard: bool = True,
                    extra: list | None = None) -> list:
    """Keras callbacks of one training phase.

    ``ModelCheckpoint`` (best model on ``monitor``), ``EarlyStopping`` (restoring the best
    weights), optionally ``ReduceLROnPlateau(factor=0.3)`` -- the last two resumable --,
    ``CSVLogger`` (appending: a resumed phase continues its file), ``TensorBoard``, then
    ``BackupAndRestore`` last, so that a backup is written only after everything else
    recorded the epoch. ``extra`` callbacks run first (e.g. epoch seeding).
    """

    state = run_dir / "state"
    callbacks = list(extra or [])
    callbacks += [
        keras.callbacks.ModelCheckpoint(str(run_dir / "checkpoints" / f"best_{phase}.keras"),
                                        monitor=monitor, mode=mode, save_best_only=True),
        _resumable(keras.callbacks.EarlyStopping)(
            state / f"early_stopping_{phase}.json", monitor=monitor, mode=mode,
            patience=patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(run_dir / f"history_{phase}.csv"), append=True),
    ]
    if reduce_lr:
        callbacks.append(_resumable(keras.callbacks.ReduceLROnPlateau)(
            state / f"reduce_lr_{phase}.json", monitor=monitor, mode=mode, factor=0.3,
            patience=max(1, patience // 2), min_lr=1e-7))
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "logs" / phase),
                                                     write_graph=False, profile_batch=0))
    callbacks.append(atomic_backup_and_restore(state / f"backup_{phase}"))
    return callbacks


def phase_done(run_dir: Path, phase: str) -> Path | None:
    """The saved weights of a finished phase, or None when the phase has not finished."""
    weights = run_dir / "state" / f"{phase}_done.weights.h5"
    return weights if weights.is_file() else None


def mark_phase_done(run_dir: Path, phase: str, model) -> None:
    """Save a finished phase's (best) weights atomically, so a restart skips the phase."""
    final = run_dir / "state" / f"{phase}_done.weights.h5"
    tmp = final.with_name(f".{phase}_tmp.weights.h5")
    model.save_weights(str(tmp))
    os.replace(tmp, final)


def read_history(path: Path) -> pd.DataFrame:
    """A CSVLogger file with duplicated epochs (from a resumed phase) removed."""
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    frame = pd.read_csv(path)
    if frame.empty:
        return frame
    frame = frame[frame["epoch"].astype(str) != "epoch"].copy()  # header repeated on append
    frame["epoch"] = frame["epoch"].astype(int)
    return frame.drop_duplicates("epoch", keep="last").sort_values("epoch")


def merge_histories(run_dir: Path, phases: list[str]) -> pd.DataFrame:
    """Write ``history.csv``: the phases one after another, epochs continuing (1-based)."""
    frames, offset = [], 0
    for phase in phases:
        frame = read_history(run_dir / f"history_{phase}.csv")
        if frame.empty:
            continue
        frame = frame.astype({c: float for c in frame.columns if c != "epoch"})
        frame.insert(0, "phase", phase)
        frame["phase_epoch"] = frame["epoch"] + 1
        frame["epoch"] = frame["epoch"] + 1 + offset
        offset = int(frame["epoch"].max())
        frames.append(frame)
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    atomic_write_text(run_dir / "history.csv", merged.to_csv(index=False))
    return merged


def save_model_atomic(model, path: Path) -> Path:
    """``model.save`` to a temporary ``.keras`` file, then rename over ``path``.

    For training checkpoints (compile state and optimizer included); the inference file
    ``model.keras`` goes through :func:`bone_tumor_tf.models.contract.save_with_contract`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    try:
        model.save(str(tmp))
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed save leaves neither a partial nor a temp file
        raise
    os.replace(tmp, path)
    return path
