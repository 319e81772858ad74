"""GPU training throughput of the toolkit's classifiers with Keras 3 on the JAX backend.

NOT TensorFlow: the GPU machine available to the project has JAX with CUDA but no
TensorFlow, and Keras 3 runs the same model definitions (``build_classifier``) on JAX.
The figures say how fast these architectures train on that GPU; TensorFlow's own GPU
speed may differ (``make bench`` measures it where TensorFlow sees a GPU).

For each policy (``float32``, ``mixed_bfloat16``, ``mixed_float16``) and architecture:
``build_classifier(arch, "multiclass", image_size, weights="none")``, Adam, categorical
cross-entropy, ``model.fit`` on random float32 images in [0, 255] held in host memory
(one host-to-device copy per batch, as a real input pipeline would do), ``epochs`` epochs
of ``steps`` steps; the first epoch (XLA compilation) is left out and the median of the
others taken. TFLOP/s = images/s x analytic training-step FLOPs (:mod:`bench.flops`);
matrix-product peaks (float32 at JAX's default precision, which lets XLA use TF32 tensor
cores, and bfloat16) are measured in the same process.

    KERAS_BACKEND=jax python -m bench.gpu_jax --out results-gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")


def matmul_tflops(n: int, dtype: str, reps: int = 10) -> float:
    """TFLOP/s of a jitted n x n @ n x n product (median of ``reps``, after warm-up)."""
    import jax
    import jax.numpy as jnp

    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(key_b, (n, n), jnp.float32).astype(dtype)
    product = jax.jit(lambda a, b: a @ b)
    product(a, b).block_until_ready()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        product(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times) / 1e12


def train_images_per_s(arch: str, policy: str, image_size: int, batch_size: int, steps: int,
                       epochs: int) -> dict:
    """Steady-state training images/s of one classifier under one dtype policy."""
    import keras
    import numpy as np

    from bench.flops import forward_flops
    from bone_tumor_tf.models.classifiers import build_classifier

    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = build_classifier(arch, "multiclass", image_size=image_size, weights="none")
        model.compile(keras.optimizers.Adam(1e-4), keras.losses.CategoricalCrossentropy(),
                      jit_compile=True)
        rng = np.random.default_rng(0)
        n = batch_size * steps
        x = rng.uniform(0, 255, (n, image_size, image_size, 1)).astype(np.float32)
        y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
        epoch_seconds = []

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                epoch_seconds.append(time.perf_counter() - self.start)

        model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=False,
                  callbacks=[Timer()])
        steady = statistics.median(epoch_seconds[1:])
        forward = forward_flops(model)
        images_per_s = n / steady
        return {"arch": arch, "policy": policy, "image_size": image_size,
                "batch_size": batch_size, "steps_per_epoch": steps,
                "first_epoch_s": epoch_seconds[0], "steady_epoch_s": steady,
                "epoch_seconds": epoch_seconds, "train_images_per_s": images_per_s,
                "forward_gflops_per_image": forward / 1e9,
                "train_tflops_per_s": images_per_s * 3 * forward / 1e12,
                "output_dtype": str(model.outputs[0].dtype)}
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet50", "densenet121"])
    parser.add_argument("--policies", nargs="+",
                        default=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="epochs; the first is not timed")
    parser.add_argument("--budget-s", type=float, default=420,
                        help="skip the remaining configurations after this many seconds")
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args(argv)

    import jax
    import keras

    started = time.perf_counter()
    document = {"backend": keras.backend.backend(), "keras": keras.__version__,
                "jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
                "device_kind": jax.devices()[0].device_kind,
                "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
                "matmul_tflops": {}, "runs": [], "skipped": []}
    for dtype in ("float32", "bfloat16"):
        document["matmul_tflops"][dtype] = matmul_tflops(8192, dtype)
    print(json.dumps(document["matmul_tflops"]), flush=True)
    for policy in args.policies:
        for arch in args.archs:
            if time.perf_counter() - started > args.budget_s:
                document["skipped"].append(f"{arch} {policy}")
                continue
            try:
                entry = train_images_per_s(arch, policy, args.image_size, args.batch_size,
                                           args.steps, args.epochs)
            except Exception as error:  # report and go on with the next configuration
                entry = {"arch": arch, "policy": policy,
                         "error": f"{type(error).__name__}: {error}"[:500]}
            document["runs"].append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k != "epoch_seconds"}),
                  flush=True)
            document["seconds"] = time.perf_counter() - started
            if args.out:  # after every configuration: a run cut short keeps its figures
                with open(args.out, "w") as handle:
                    json.dump(document, handle, indent=2)
    for entry in document["runs"]:
        if "error" in entry:
            print(f"{entry['arch']:12s} {entry['policy']:15s} ERROR {entry['error'][:200]}")
            continue
        print(f"{entry['arch']:12s} {entry['policy']:15s} {entry['train_images_per_s']:8.1f} img/s"
              f"  {entry['train_tflops_per_s']:6.1f} TFLOP/s  compile+first epoch "
              f"{entry['first_epoch_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
