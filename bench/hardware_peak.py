"""Target 2: training-step FLOP/s of ResNet50 and DenseNet121 as a fraction of peak.

Peak: the FLOP/s of a large float32 matrix product (``tf.linalg.matmul``, n x n by n x n,
``2 n^3`` FLOPs) on the same device, measured in the same process, interleaved with the
training steps. Model FLOP/s: images per second of steady-state training steps (a cached,
pre-batched float32 dataset, so no input work; batch size / median step time, the first
step of each ``fit`` call left out) times the analytic FLOPs of one training
step per image (:mod:`bench.flops`: 3 x forward; cross-checked against TensorFlow's
profiler).

Settings that are only read at start-up (``TF_ENABLE_ONEDNN_OPTS``) or change the compiled
step (XLA ``jit_compile``, mixed precision) are compared by :func:`compare_settings`: one
subprocess per setting (``python -m bench.hardware_peak --json``), run in turn and
repeated A, B, C, A, B, C, each reporting its own fraction of peak; the images/s of each
setting are divided by those of the default setting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import StepTimer, build_model, interleaved, one_hot, result
from bench.flops import forward_flops, profiler_forward_flops, train_step_flops

ARCHS = ("resnet50", "densenet121")
#: Settings compared by :func:`compare_settings`: environment and command-line flags.
SETTINGS = {
    "default": ({}, []),
    "onednn-off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, []),
    "xla": ({}, ["--jit-compile", "on"]),
    "mixed-precision": ({}, ["--mixed-precision"]),  # bfloat16 on CPU, float16 on GPU
}


def matmul_seconds(n: int, dtype: str = "float32") -> float:
    """Seconds of one ``n x n @ n x n`` product (result synced to the host)."""
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)
    if dtype != "float32":
        a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    tf.reduce_sum(tf.linalg.matmul(a, b)).numpy()  # warm-up
    start = time.perf_counter()
    tf.reduce_sum(tf.linalg.matmul(a, b)).numpy()
    return time.perf_counter() - start


def default_matmul_size() -> int:
    import tensorflow as tf

    return 8192 if tf.config.list_physical_devices("GPU") else 3072


def measure(archs=ARCHS, image_size: int = 224, batch_size: int = 16, steps: int = 3,
            reps: int = 2, jit_compile="auto", mixed_precision: bool = False,
            matmul_n: int | None = None, profiler_check: bool = True) -> dict:
    """Fraction of matmul peak of each model's training step, in this process."""
    import keras
    import tensorflow as tf

    from bone_tumor_tf.training.distribute import resolve_jit_compile, set_precision

    policy = set_precision(mixed_precision)
    matmul_n = matmul_n or default_matmul_size()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size * steps, image_size, image_size, 1)).astype(np.float32)
    y = one_hot(rng.integers(0, 3, batch_size * steps))
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache()
    models, flops, timers = {}, {}, {}
    for arch in archs:
        model = build_model(arch, image_size)
        model.compile(keras.optimizers.Adam(1e-4), keras.losses.CategoricalCrossentropy(),
                      jit_compile=resolve_jit_compile(jit_compile))
        start = time.perf_counter()
        model.fit(data, epochs=1, verbose=0, shuffle=False)  # trace (XLA: compile) the step
        flops[arch] = {"forward_gflops_per_image": forward_flops(model) / 1e9,
                       "train_step_gflops_per_image": train_step_flops(model) / 1e9,
                       "first_epoch_s": time.perf_counter() - start}
        if profiler_check and not mixed_precision:
            flops[arch]["profiler_forward_gflops_per_image"] = profiler_forward_flops(
                model, image_size) / 1e9
        models[arch], timers[arch] = model, StepTimer()

    def train(arch):
        def run():
            models[arch].fit(data, epochs=1, verbose=0, shuffle=False,
                             callbacks=[timers[arch]])
        return run

    arms = {"matmul": lambda: matmul_seconds(matmul_n)}
    arms.update({arch: train(arch) for arch in archs})
    times = interleaved(arms, reps)
    peak = 2 * matmul_n ** 3 / times["matmul"]["median_s"]
    step_seconds = {arch: [s for call in timers[arch].calls for s in call[1:]]
                    for arch in archs}
    out = {"policy": policy, "jit_compile": str(jit_compile), "matmul_n": matmul_n,
           "matmul_gflops_per_s": peak / 1e9, "batch_size": batch_size,
           "image_size": image_size, "times": times, "models": {}}
    for arch in archs:
        images_per_s = batch_size / statistics.median(step_seconds[arch])
        achieved = images_per_s * flops[arch]["train_step_gflops_per_image"] * 1e9
        out["models"][arch] = {**flops[arch], "train_images_per_s": images_per_s,
                               "step_seconds": step_seconds[arch],
                               "train_gflops_per_s": achieved / 1e9,
                               "fraction_of_matmul_peak": achieved / peak}
    return out


def run(image_size: int = 224, batch_size: int = 16, steps: int = 3, reps: int = 2,
        archs=ARCHS) -> dict:
    """Benchmark entry: fraction of peak with the default settings, in this process."""
    figures = measure(archs, image_size, batch_size, steps, reps)
    fractions = {a: m["fraction_of_matmul_peak"] for a, m in figures["models"].items()}
    return result("hardware_peak", figures, "training FLOP/s / float32 matmul FLOP/s",
                  min(fractions.values()), "reported (no fixed target)", None,
                  notes="; ".join(f"{a}: {f:.1%} of peak" for a, f in fractions.items()))


def compare_settings(settings=tuple(SETTINGS), image_size: int = 224, batch_size: int = 16,
                     steps: int = 3, reps: int = 1, subprocess_reps: int = 1,
                     archs=ARCHS, timeout_s: int = 1800) -> dict:
    """Each setting in its own subprocess, in turn (A, B, C, A, B, C ...).

    Returns per setting the images/s of each model (median over the subprocess
    repetitions), its fraction of peak, and the images/s relative to ``default``.
    """
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    for _ in range(subprocess_reps):
        for name in settings:
            env_extra, flags = SETTINGS[name]
            command = [sys.executable, "-m", "bench.hardware_peak", "--json",
                       "--image-size", str(image_size), "--batch-size", str(batch_size),
                       "--steps", str(steps), "--reps", str(reps), "--archs", *archs, *flags]
            env = {**os.environ, **env_extra,
                   "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=timeout_s, cwd=Path(__file__).resolve().parents[1])
            if done.returncode != 0:
                runs[name].append({"error": done.stderr.strip().splitlines()[-1:]})
                continue
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    out = {}
    for name, found in runs.items():
        good = [r for r in found if "models" in r]
        if not good:
            out[name] = {"error": found[0].get("error") if found else "not run"}
            continue
        out[name] = {"runs": good, "matmul_gflops_per_s": statistics.median(
            r["matmul_gflops_per_s"] for r in good)}
        for arch in archs:
            out[name][arch] = {
                "train_images_per_s": statistics.median(
                    r["models"][arch]["train_images_per_s"] for r in good),
                "fraction_of_matmul_peak": statistics.median(
                    r["models"][arch]["fraction_of_matmul_peak"] for r in good),
                "first_epoch_s": statistics.median(
                    r["models"][arch]["first_epoch_s"] for r in good)}
    if "error" not in out.get("default", {"error": "not run"}):
        for name in (n for n in out if "error" not in out[n]):
            for arch in archs:
                out[name][arch]["images_per_s_vs_default"] = (
                        out[name][arch]["train_images_per_s"]
                        / out["default"][arch]["train_images_per_s"])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="training steps per fit call (the first is not timed)")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    parser.add_argument("--jit-compile", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--mixed-precision", action="store_true")
    args = parser.parse_args(argv)
    figures = measure(args.archs, args.image_size, args.batch_size, args.steps, args.reps,
                      args.jit_compile, args.mixed_precision,
                      profiler_check=False)
    print(json.dumps(figures) if args.json else json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
