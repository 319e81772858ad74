"""Target 1: the real input pipeline keeps the model fed (>= 0.95 of in-memory throughput).

Arms, each a ``model.fit`` of one epoch, interleaved A, B, A, B on ONE model (its training
step is traced once); every training step is timed (input wait included: Keras fetches
the batch inside the step) and the first step of each ``fit`` call (iterator start-up,
shuffle buffer fill) is left out, so the figure is the steady state; images/s = batch
size / median step time, and the ratio is the median over repetitions of the ratio of each
repetition's two adjacent calls (robust to other jobs starting or stopping mid-run):

* ``pipeline``: the toolkit's training pipeline over the prepared images
  (:func:`bone_tumor_tf.data.pipeline.make_classification_dataset`: shuffle, batch, cast,
  Keras augmentation layers: flip, rotation, zoom, contrast, brightness; prefetch);
* ``in_memory``: the same number of float32 batches already in memory (a cached, batched
  ``tf.data`` dataset: no per-step input work at all), the upper bound.

Also reported: the pipeline alone (iterating the dataset without a model, images/s), and
the first-epoch cost that the steady state leaves out: decoding and resizing the JPEGs
(:func:`bone_tumor_tf.data.prepare.prepare_images`, once per run, or never with
``--cache-dir``), and the first epoch's throughput including that decode.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from bench.common import BenchData, StepTimer, build_model, interleaved, one_hot, result

TARGET = 0.95


def pipeline_alone_seconds(dataset) -> float:
    """Seconds to iterate one epoch of ``dataset`` (after one warm-up epoch)."""
    for _ in dataset:
        pass
    start = time.perf_counter()
    for _ in dataset:
        pass
    return time.perf_counter() - start


def run(data: BenchData, arch: str = "densenet121", batch_size: int = 16, reps: int = 2,
        images: int | None = None) -> dict:
    """Benchmark entry; ``images`` limits the training images (default all)."""
    import keras
    import tensorflow as tf

    from bone_tumor_tf.data.pipeline import make_classification_dataset

    n = min(images or len(data.images), len(data.images))
    n = max(batch_size, n // batch_size * batch_size)
    x, labels = data.images[:n], data.labels[:n]
    image_size = x.shape[1]
    pipeline = make_classification_dataset(x, labels, 3, "multiclass", batch_size,
                                           training=True, augmentation="standard", seed=0)
    in_memory = tf.data.Dataset.from_tensor_slices(
        (x[..., None].astype(np.float32), one_hot(labels))).batch(batch_size).cache()

    model = build_model(arch, image_size)
    model.compile(keras.optimizers.Adam(1e-4), keras.losses.CategoricalCrossentropy())
    model.fit(in_memory, epochs=1, verbose=0, shuffle=False)  # trace the training step once
    timers = {"pipeline": StepTimer(), "in_memory": StepTimer()}

    def train(name, dataset):
        def fit():
            model.fit(dataset, epochs=1, verbose=0, shuffle=False, callbacks=[timers[name]])
        return fit

    arms = {"pipeline": train("pipeline", pipeline), "in_memory": train("in_memory", in_memory),
            "pipeline_alone": lambda: pipeline_alone_seconds(pipeline)}
    times = interleaved(arms, reps)
    steps = {name: [s for call in timer.calls for s in call[1:]]
             for name, timer in timers.items()}
    rate = {name: batch_size / statistics.median(s) for name, s in steps.items()}
    rate["pipeline_alone"] = n / times["pipeline_alone"]["median_s"]
    # Ratio of each repetition's adjacent pair of fit calls, then the median: other jobs
    # on the machine come and go on a scale of minutes and slow both arms of a pair alike.
    paired = [statistics.median(m[1:]) / statistics.median(p[1:])
              for p, m in zip(timers["pipeline"].calls, timers["in_memory"].calls)]
    ratio = statistics.median(paired)
    decode_per_image = data.prepare_seconds / len(data.images)
    first_epoch_rate = n / (n / rate["pipeline"] + decode_per_image * n)
    figures = {
        "arch": arch, "image_size": image_size, "batch_size": batch_size, "train_images": n,
        "source_megapixels_mean": data.megapixels,
        "pipeline_train_images_per_s": rate["pipeline"],
        "in_memory_train_images_per_s": rate["in_memory"],
        "pipeline_alone_images_per_s": rate["pipeline_alone"],
        "decode_resize_images_per_s": 1 / decode_per_image,
        "decode_resize_seconds_per_image": decode_per_image,
        "first_epoch_with_decode_images_per_s": first_epoch_rate,
        "first_epoch_with_decode_vs_in_memory": first_epoch_rate / rate["in_memory"],
        "pipeline_vs_in_memory_per_repetition": paired,
        "pipeline_vs_in_memory_of_pooled_medians": rate["pipeline"] / rate["in_memory"],
        "step_seconds": steps, "times": times,
    }
    return result("input_pipeline", figures, "pipeline / in-memory training images/s",
                  ratio, f">= {TARGET}", ratio >= TARGET,
                  notes=f"steady state; first epoch incl. decode: "
                        f"{figures['first_epoch_with_decode_vs_in_memory']:.2f} of in-memory")
