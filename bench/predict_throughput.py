"""Target 4: ``predict`` over a folder keeps up with the model (>= 0.9 of raw predict).

Arms, interleaved A, B, A, B after one warm-up call of each:

* ``folder``: :func:`bone_tumor_tf.inference.predict.predict_classifier` over the radiograph files
  (JPEG decode, aspect-preserving resize and pad to the model's input, inference, results);
* ``tensors``: ``model.predict`` on the same images already prepared as a float32 array;
* ``tensors_per_batch``: ``model.predict_on_batch`` on each batch of that array (no
  per-call iterator; on the benchmark machine this is faster than ``model.predict`` over
  a few batches, so it is the stricter baseline).

The ratio is images/s of ``folder`` over images/s of ``tensors`` (the median over
repetitions of each repetition's adjacent pair of calls); the ratio over
``tensors_per_batch`` is reported beside it. ``predict_classifier`` decodes the next
batch in a thread pool while the model runs on the current one and calls
``predict_on_batch``; before that change (decode, then ``model.predict`` per batch) it
reached 0.80-0.90 of ``tensors`` on 2 cores, after it 1.14 (same probabilities).
"""

from __future__ import annotations

import statistics

import numpy as np

from bench.common import BenchData, build_model, interleaved, result

TARGET = 0.9


def run(data: BenchData, arch: str = "densenet121", batch_size: int = 16, reps: int = 5,
        model=None) -> dict:
    """Benchmark entry; ``model`` reuses an already built classifier of ``data``'s size."""
    from bone_tumor_tf.inference.predict import predict_classifier

    model = model if model is not None else build_model(arch, data.images.shape[1])
    files = list(data.files)
    tensors = data.images[..., None].astype(np.float32)

    def folder():
        rows = list(predict_classifier(model, files, batch_size, progress=False))
        assert len(rows) == len(files) and not any("error" in r for r in rows)

    def raw():
        model.predict(tensors, batch_size=batch_size, verbose=0)

    def raw_per_batch():
        for start in range(0, len(tensors), batch_size):
            np.asarray(model.predict_on_batch(tensors[start:start + batch_size]))

    arms = {"folder": folder, "tensors": raw, "tensors_per_batch": raw_per_batch}
    for arm in arms.values():
        arm()  # warm-up: traces, oneDNN primitives for every batch shape
    times = interleaved(arms, reps)
    n = len(files)
    rate = {name: n / t["median_s"] for name, t in times.items()}
    # Median over repetitions of each repetition's adjacent pair (robust to other jobs).
    paired = [t / f for f, t in zip(times["folder"]["times_s"], times["tensors"]["times_s"])]
    paired_per_batch = [t / f for f, t in zip(times["folder"]["times_s"],
                                               times["tensors_per_batch"]["times_s"])]
    ratio = statistics.median(paired)
    figures = {"arch": arch, "image_size": int(data.images.shape[1]), "batch_size": batch_size,
               "images": n, "source_megapixels_mean": data.megapixels,
               "folder_images_per_s": rate["folder"], "tensors_images_per_s": rate["tensors"],
               "tensors_per_batch_images_per_s": rate["tensors_per_batch"],
               "folder_vs_tensors_per_repetition": paired,
               "folder_vs_tensors_per_batch": statistics.median(paired_per_batch),
               "times": times}
    return result("predict", figures, "predict_classifier / model.predict images/s", ratio,
                  f">= {TARGET}", ratio >= TARGET,
                  notes=f"{rate['folder']:.1f} vs {rate['tensors']:.1f} img/s; vs "
                        f"predict_on_batch per batch: {figures['folder_vs_tensors_per_batch']:.2f}")
