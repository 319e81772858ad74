"""Target 5: batched class activation maps are >= 3x faster than one image at a time.

Uses :func:`bone_tumor_tf.explain.cam.benchmark_batched_vs_single`, which times, after a
warm-up call on one image, the maps of all images in batches of ``batch_size`` and then the
same maps one image per call, and checks that both give the same maps. Before it, one
untimed batched call per method warms up the batch-shaped kernels too (TensorFlow's
oneDNN builds its primitives per input shape on first use). Repetitions alternate
batched and single inside each call; the median speed-up over ``reps`` calls is reported
per method.
"""

from __future__ import annotations

import statistics

from bench.common import BenchData, build_model, result

TARGET = 3.0


def run(data: BenchData, arch: str = "densenet121", batch_size: int = 16,
        methods=("gradcam", "gradcam++"), reps: int = 1, model=None) -> dict:
    """Benchmark entry; ``model`` reuses an already built classifier of ``data``'s size."""
    try:
        from bone_tumor_tf.explain.cam import benchmark_batched_vs_single, compute_cams
    except ImportError as error:
        return result("gradcam", {"error": str(error)}, "batched / single images/s", None,
                      f">= {TARGET}x at batch {batch_size}", None,
                      notes="bone_tumor_tf.explain.cam is not available")
    model = model if model is not None else build_model(arch, data.images.shape[1])
    images = data.images[:batch_size]
    per_method = {}
    for method in methods:
        # benchmark_batched_vs_single warms up on ONE image; the first batch-shaped call
        # would pay for oneDNN primitives of the batch's shapes inside the batched timing.
        compute_cams(model, images, method, batch_size=batch_size)
        calls = [benchmark_batched_vs_single(model, images, method, batch_size=batch_size)
                 for _ in range(reps)]
        per_method[method] = {
            "speedup": statistics.median(c["speedup"] for c in calls),
            "batched_images_per_s": statistics.median(c["batched_images_per_s"] for c in calls),
            "single_images_per_s": statistics.median(c["single_images_per_s"] for c in calls),
            "max_abs_difference": max(c["max_abs_difference"] for c in calls),
            "layer": calls[0]["layer"], "calls": calls}
    worst = min(m["speedup"] for m in per_method.values())
    figures = {"arch": arch, "image_size": int(images.shape[1]), "batch_size": batch_size,
               "images": len(images), "methods": per_method}
    return result("gradcam", figures, "batched / single images/s (worst method)", worst,
                  f">= {TARGET} at batch {batch_size}", worst >= TARGET,
                  notes="; ".join(f"{m}: {v['speedup']:.1f}x ({v['batched_images_per_s']:.1f} "
                                  f"vs {v['single_images_per_s']:.1f} img/s)"
                                  for m, v in per_method.items()))
