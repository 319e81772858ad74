"""How a training run uses its hardware: tf.distribute strategy, mixed precision and XLA.

Strategies (``--strategy``):

* ``none``: TensorFlow's default strategy (one device: the first GPU if there is one,
  else the CPU).
* ``mirrored``: ``tf.distribute.MirroredStrategy`` over every GPU of this machine (with
  no GPU: over every logical CPU device, which is one unless configured otherwise).
  Synchronous data parallelism: every replica holds a copy of the variables, computes the
  gradients of its share of each batch, and the gradients are summed (all-reduce) before
  one identical update on every replica.
* ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy``: the same across
  machines. Every worker runs the same command with its own ``TF_CONFIG`` environment
  variable, e.g. worker 0 of two:
  ``TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
  "task": {"type": "worker", "index": 0}}'``. Each worker reads and prepares the whole
  dataset and takes its share of every batch (tf.data ``AutoShardPolicy.DATA``); worker 0
  writes the run folder (the others should be given a scratch ``--out``).
* ``auto`` (default): ``multiworker`` when ``TF_CONFIG`` names more than one worker, else
  ``mirrored`` when there is more than one GPU, else ``none``.

Batch size and learning rate: ``--batch-size`` is the GLOBAL batch, split evenly across
the replicas (per-replica batch = global batch / replicas, so it should divide evenly).
Keras reduces the loss over the global batch, so one step on N replicas computes the same
gradient, and makes the same update, as one step on one device with the same global batch
(tested in ``tests/test_distribute.py``; BatchNorm layers in training mode are the
exception: each replica normalises with the statistics of its own share, unless they are
synchronised, and this toolkit's backbone BatchNorm layers run in inference mode anyway).
The learning rate is used as given, for the global batch. To keep the per-replica batch
of a one-device recipe on N devices, multiply ``--batch-size`` by N and scale the learning
rate: ``--lr-scaling linear`` multiplies ``--lr`` and ``--phase2-lr`` by
``global batch / 32`` (Goyal et al., 2017, "Accurate, Large Minibatch SGD", the linear
scaling rule; 32 is the default batch size, :data:`REFERENCE_BATCH_SIZE`), ``sqrt`` by its
square root (often better for Adam-type optimizers), ``none`` (default) leaves them.

Mixed precision (``--mixed-precision``): Keras' ``mixed_float16`` policy on a GPU (with
loss scaling, which ``Model.compile`` adds), ``mixed_bfloat16`` on a CPU that has bfloat16
instructions (AVX512_BF16 or AMX_BF16; elsewhere it would only be slower than float32 and
is refused). Variables stay float32; layers compute in 16 bits; the classifier's
``predictions`` layer and the preprocessing layers are float32 whatever the policy, so
probabilities are float32.

XLA (``--jit-compile``): ``auto`` is Keras' choice (XLA on a GPU when every layer supports
it, not on a CPU), ``on`` and ``off`` force it. On the 2-core CPU of the benchmarks
(``python -m bench.run --only hardware_peak --compare-settings``, 224 px, batch 16) XLA
trained at 0.50x (ResNet50) and 0.60x (DenseNet121) the images/s of the default and its
first epoch took twice as long (compilation), hence ``auto``; mixed bfloat16 trained at
1.25x / 1.22x (an opt-in: it changes the numerics).
"""

# TensorFlow / Keras are imported inside the functions: options.py and the CLI read this
# module's constants, and `bone-tumor train --help` must not wait seconds for TensorFlow.

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from bone_tumor_tf.errors import BoneTumorError

logger = logging.getLogger(__name__)

STRATEGIES = ("auto", "none", "mirrored", "multiworker")
LR_SCALINGS = ("none", "linear", "sqrt")
JIT_COMPILE = ("auto", "on", "off")
#: Global batch size that the learning rates given on the command line are meant for.
REFERENCE_BATCH_SIZE = 32
#: CPU flags (Linux ``/proc/cpuinfo``) that make bfloat16 arithmetic fast.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


# --------------------------------------------------------------------------- strategy
def tf_config_workers(environ=None) -> int:
    """Number of workers named by ``TF_CONFIG`` (0 when it is unset or names none)."""
    text = (environ if environ is not None else os.environ).get("TF_CONFIG", "")
    if not text.strip():
        return 0
    try:
        cluster = json.loads(text).get("cluster", {})
    except (ValueError, AttributeError):
        raise BoneTumorError("TF_CONFIG is not valid JSON") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def make_strategy(name: str = "auto"):
    """The ``tf.distribute.Strategy`` for ``name`` (one of :data:`STRATEGIES`).

    Create it before any other TensorFlow work of the process (MultiWorkerMirroredStrategy
    must configure the runtime first), and build and compile the model inside
    ``strategy.scope()``.

    Raises:
        BoneTumorError: unknown name.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise BoneTumorError(f"--strategy {name}: expected one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if tf_config_workers() > 1:
            name = "multiworker"
        elif len(gpus) > 1:
            name = "mirrored"
        else:
            name = "none"
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)


def describe_strategy(strategy) -> str:
    """One line: the strategy's class and its number of replicas."""
    return f"{type(strategy).__name__} ({strategy.num_replicas_in_sync} replica(s))"


def check_global_batch(batch_size: int, strategy) -> int:
    """Per-replica batch size of the global ``batch_size``.

    Raises:
        BoneTumorError: ``batch_size`` is smaller than the number of replicas.
    """
    replicas = int(strategy.num_replicas_in_sync)
    if batch_size < replicas:
        raise BoneTumorError(f"--batch-size {batch_size} is the global batch and must be at "
                             f"least the number of replicas ({replicas})")
    if batch_size % replicas:
        logger.warning("global batch %d does not divide evenly across %d replicas",
                       batch_size, replicas)
    return batch_size // replicas


def shard_by_data(dataset, strategy):
    """``dataset`` with ``AutoShardPolicy.DATA`` under a multi-worker strategy.

    The training pipelines start from in-memory arrays, which cannot be sharded by file;
    each worker then keeps its share of every batch.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def scale_learning_rate(lr: float, global_batch_size: int, rule: str = "none",
                        reference_batch_size: int = REFERENCE_BATCH_SIZE) -> float:
    """``lr`` scaled from ``reference_batch_size`` to ``global_batch_size`` by ``rule``.

    ``none``: ``lr``; ``linear``: ``lr * B / B_ref``; ``sqrt``: ``lr * sqrt(B / B_ref)``.
    """
    if rule not in LR_SCALINGS:
        raise BoneTumorError(f"--lr-scaling {rule}: expected one of {', '.join(LR_SCALINGS)}")
    ratio = global_batch_size / reference_batch_size
    return float(lr * {"none": 1.0, "linear": ratio, "sqrt": ratio ** 0.5}[rule])


# --------------------------------------------------------------------------- precision
def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (Linux); empty where ``cpuinfo`` cannot be read."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def mixed_precision_policy(has_gpu: bool | None = None, flags: set[str] | None = None) -> str:
    """Keras dtype policy for ``--mixed-precision`` on this machine.

    Args:
        has_gpu: default: whether TensorFlow sees a GPU.
        flags: CPU flags; default :func:`cpu_flags`.

    Returns:
        ``"mixed_float16"`` with a GPU, ``"mixed_bfloat16"`` on a CPU with bfloat16
        instructions (:data:`BFLOAT16_CPU_FLAGS`).

    Raises:
        BoneTumorError: a CPU without bfloat16 instructions (emulated bfloat16 is slower
            than float32).
    """
    if has_gpu is None:
        import tensorflow as tf

        has_gpu = bool(tf.config.list_physical_devices("GPU"))
    if has_gpu:
        return "mixed_float16"
    flags = cpu_flags() if flags is None else flags
    if flags & set(BFLOAT16_CPU_FLAGS):
        return "mixed_bfloat16"
    raise BoneTumorError("--mixed-precision: no GPU and this CPU has no bfloat16 "
                         f"instructions ({' or '.join(BFLOAT16_CPU_FLAGS)}); mixed precision "
                         "would be slower than float32 here")


def set_precision(mixed: bool) -> str:
    """Set Keras' global dtype policy (before building the model); returns its name."""
    import keras

    name = mixed_precision_policy() if mixed else "float32"
    keras.mixed_precision.set_global_policy(name)
    return name


@contextlib.contextmanager
def precision_policy(mixed: bool):
    """Context: Keras' global dtype policy set by :func:`set_precision`, restored on exit.

    Layers take the policy when they are created, so build the model inside it.
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    try:
        yield set_precision(mixed)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def resolve_jit_compile(value: str | bool = "auto"):
    """``Model.compile``'s ``jit_compile`` for ``--jit-compile auto|on|off``."""
    if isinstance(value, bool):
        return value
    if value not in JIT_COMPILE:
        raise BoneTumorError(f"--jit-compile {value}: expected one of {', '.join(JIT_COMPILE)}")
    return {"auto": "auto", "on": True, "off": False}[value]
