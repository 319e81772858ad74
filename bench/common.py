"""What every benchmark shares: the machine description, timing, the BTXRD-like inputs.

Timing rule of the suite: every reported figure is a RATIO of two things measured side by
side in the same process (or, where a setting is only read at start-up, in consecutive
subprocesses), with the repetitions interleaved A, B, A, B, ... and the median of each
side taken (:func:`interleaved`). The 2 cores of the benchmark machine are shared with
other jobs, so single timings are noisy; ratios of interleaved medians are much less so.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Where generated inputs and scratch files go (gitignored).
OUT_DIR = Path(__file__).resolve().parent / "out"


# --------------------------------------------------------------------------- machine
def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """CPU cores this process may run on (affinity), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def memory_bytes() -> int | None:
    """Physical memory of the machine (bytes), or None where unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def accelerators() -> list[dict]:
    """TensorFlow's GPUs: name and compute capability (empty on a CPU-only build)."""
    import tensorflow as tf

    out = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        out.append({"device": device.name, "name": details.get("device_name"),
                    "compute_capability": details.get("compute_capability")})
    return out


def machine_info() -> dict:
    """CPU model, usable cores, memory, accelerators, oneDNN setting and library versions."""
    from bone_tumor_tf.training.runs import library_versions

    memory = memory_bytes()
    return {"cpu": cpu_model(), "cores": usable_cores(), "host_cpus": os.cpu_count(),
            "memory_gib": round(memory / 2**30, 1) if memory else None,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "accelerators": accelerators(),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(default: on)"),
            "versions": library_versions()}


# --------------------------------------------------------------------------- timing
def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(arms: dict[str, Callable[[], float | None]], reps: int) -> dict[str, dict]:
    """Run ``arms`` in turn ``reps`` times (A, B, A, B, ...); median of each arm's times.

    Each arm returns the seconds it measured itself as a number (so that it can leave
    warm-up out of the timing); any other return value means: time the whole call.

    Returns:
        ``{arm: {"median_s", "times_s"}}``.
    """
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(reps):
        for name, fn in arms.items():
            start = time.perf_counter()
            measured = fn()
            elapsed = time.perf_counter() - start
            times[name].append(float(measured) if isinstance(measured, (int, float))
                               and not isinstance(measured, bool) else elapsed)
    return {name: {"median_s": statistics.median(t), "times_s": t} for name, t in times.items()}


class EpochTimer:
    """Keras callback recording the wall time of every epoch (``self.epoch_seconds``)."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.epoch_seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.epoch_seconds.append(time.perf_counter() - self._start)

        return _Timer()


class StepTimer:
    """Keras callback recording the wall time of every training step (``self.step_seconds``,
    one list per ``fit`` call, in ``self.calls``).

    A step's time runs from ``on_train_batch_begin`` to ``on_train_batch_end`` and so
    includes waiting for the input pipeline (Keras fetches the batch inside the step).
    """

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            calls: list[list[float]] = []

            def on_train_begin(self, logs=None):
                self.calls.append([])

            def on_train_batch_begin(self, batch, logs=None):
                self._start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.calls[-1].append(time.perf_counter() - self._start)

        timer = _Timer()
        timer.calls = []
        return timer


# --------------------------------------------------------------------------- inputs
@dataclass
class BenchData:
    """A generated BTXRD-format folder and its images prepared for the model.

    Attributes:
        root: the dataset folder.
        files: the image files, in record order.
        images: ``uint8`` (N, S, S) prepared images (crop mode ``none`` unless asked).
        labels: integer class indices (normal 0, benign 1, malignant 2).
        class_names: the dataset's class names.
        prepare_seconds: wall time of the decode + resize (``prepare_images``, no cache).
        megapixels: mean size of the source images.
    """

    root: Path
    files: list[Path]
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    prepare_seconds: float
    megapixels: float


def ensure_dataset(n: int, min_side: int, max_side: int, seed: int = 0) -> Path:
    """A synthetic BTXRD folder of ``n`` radiograph-like JPEGs, generated once and reused."""
    from bone_tumor_tf.data.synthetic import generate_btxrd

    root = OUT_DIR / f"btxrd-n{n}-{min_side}-{max_side}-s{seed}"
    if not (root / "dataset.xlsx").is_file():
        generate_btxrd(root, n=n, seed=seed, min_side=min_side, max_side=max_side)
    return root


def load_bench_data(n: int, image_size: int, min_side: int = 1000, max_side: int = 2000,
                    seed: int = 0, crop_mode: str = "none") -> BenchData:
    """Generate (once) and prepare ``n`` BTXRD-like radiographs at ``image_size``
    (``crop_mode`` as in :func:`bone_tumor_tf.data.prepare.prepare_images`)."""
    from PIL import Image

    from bone_tumor_tf.data import load_dataset
    from bone_tumor_tf.data.prepare import encode_labels, prepare_images

    root = ensure_dataset(n, min_side, max_side, seed)
    dataset = load_dataset(root)
    records = list(dataset.records)
    start = time.perf_counter()
    prepared = prepare_images(records, image_size, crop_mode=crop_mode, seed=seed)
    prepare_seconds = time.perf_counter() - start
    if prepared.failures:
        raise RuntimeError(f"benchmark inputs failed to decode: {prepared.failures[0]}")
    sizes = []
    for record in records:
        with Image.open(record.path) as image:  # reads the header only
            sizes.append(image.size[0] * image.size[1] / 1e6)
    labels = encode_labels([r.label for r in records], dataset.class_names, "multiclass")
    return BenchData(root, [r.path for r in records], prepared.images, labels,
                     tuple(dataset.class_names), prepare_seconds, float(np.mean(sizes)))


#: ``arch`` of a small stand-in classifier for smoke tests (never for quoted figures).
TINY = "tiny"


def build_model(arch: str, image_size: int, weights: str | None = None):
    """A randomly initialised classifier of the toolkit (3 classes), seeded.

    ``weights``: a backbone source of :func:`build_classifier` instead (e.g. an earlier
    run's ``model.keras``).

    ``arch="tiny"``: a two-convolution stand-in with the classifier's layer names
    (``image`` ... ``head_gap``, ``head_dense``, ``head_dropout``, ``predictions``), so
    that every benchmark's code runs in seconds in the smoke test.
    """
    import keras

    from bone_tumor_tf.models.classifiers import build_classifier

    keras.utils.set_random_seed(0)
    if arch != TINY:
        return build_classifier(arch, "multiclass", image_size=image_size,
                                weights=weights or "none")
    layers = keras.layers
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = layers.Rescaling(1 / 255.0, name="preprocess_rescale")(inputs)
    x = layers.Conv2D(8, 3, strides=2, activation="relu", name="conv1_conv")(x)
    x = layers.Conv2D(16, 3, strides=2, activation="relu", name="conv5_block1_conv")(x)
    x = layers.GlobalAveragePooling2D(name="head_gap")(x)
    x = layers.Dense(16, activation="relu", name="head_dense")(x)
    x = layers.Dropout(0.5, name="head_dropout")(x)
    outputs = layers.Dense(3, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny_multiclass")


def freeze_backbone(model, arch: str) -> None:
    """Phase-1 freezing (:func:`set_trainable_for_phase`; by layer name for ``tiny``)."""
    from bone_tumor_tf.models.classifiers import head_layer_names, set_trainable_for_phase

    if arch != TINY:
        set_trainable_for_phase(model, 1, arch)
        return
    head = set(head_layer_names(model))
    for layer in model.layers:
        layer.trainable = layer.name in head


def one_hot(labels: np.ndarray, num_classes: int = 3) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels)]


def result(name: str, figures: dict, ratio_name: str, ratio: float | None, target: str,
           met: bool | None, notes: str = "") -> dict:
    """One benchmark's entry in ``results.json``."""
    return {"name": name, "ratio_name": ratio_name, "ratio": ratio, "target": target,
            "met": met, "figures": figures, "notes": notes}
