"""tf.distribute strategies, learning-rate scaling, mixed precision and XLA options."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bone_tumor_tf.errors import BoneTumorError
from bone_tumor_tf.training import distribute

# The custom train steps are checked traced, as users run them (tests/conftest.py).
pytestmark = pytest.mark.graph_mode

ROOT = Path(__file__).resolve().parents[2]

# Two logical CPU devices must be configured before TensorFlow initialises its devices,
# hence a fresh interpreter. The model has no BatchNorm: in training mode each replica
# would normalise with its own half of the batch (unsynchronised BN), which differs from
# one device normalising the whole batch.
MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import keras
    from bone_tumor_tf.training.distribute import make_strategy

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 12, 12, 1)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]

    def build():
        keras.utils.set_random_seed(1)
        inputs = keras.Input((12, 12, 1))
        h = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        h = keras.layers.GlobalAveragePooling2D()(h)
        outputs = keras.layers.Dense(3, activation="softmax")(h)
        model = keras.Model(inputs, outputs)
        model.compile(keras.optimizers.SGD(0.5), keras.losses.CategoricalCrossentropy())
        return model

    def one_step(strategy):
        with strategy.scope():
            model = build()
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # one global batch
        model.fit(data, epochs=1, verbose=0, shuffle=False)
        return [w.tolist() for w in model.get_weights()], model

    mirrored = make_strategy("mirrored")
    after_mirrored, _ = one_step(mirrored)
    after_single, model = one_step(make_strategy("none"))
    with tf.distribute.get_strategy().scope():
        initial = [w.tolist() for w in build().get_weights()]
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "mirrored": after_mirrored,
                      "single": after_single, "initial": initial}))
""")


def test_mirrored_step_on_two_devices_equals_one_device_with_the_same_global_batch():
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], cwd=ROOT, text=True,
                            capture_output=True, timeout=120, env={
                                **__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    for mirrored, single in zip(out["mirrored"], out["single"], strict=True):
        np.testing.assert_allclose(mirrored, single, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(s, i) for s, i in zip(out["single"], out["initial"]))


def test_auto_and_none_use_one_device_here():
    strategy = distribute.make_strategy("auto")
    assert strategy.num_replicas_in_sync == 1
    assert "replica" in distribute.describe_strategy(strategy)
    assert distribute.check_global_batch(32, strategy) == 32
    with pytest.raises(BoneTumorError, match="--strategy"):
        distribute.make_strategy("parameter-server")


def test_tf_config_worker_count():
    cluster = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}
    assert distribute.tf_config_workers({"TF_CONFIG": json.dumps(cluster)}) == 2
    assert distribute.tf_config_workers({}) == 0
    with pytest.raises(BoneTumorError, match="TF_CONFIG"):
        distribute.tf_config_workers({"TF_CONFIG": "{not json"})


def test_learning_rate_scaling_rules():
    assert distribute.scale_learning_rate(1e-3, 256, "none") == pytest.approx(1e-3)
    assert distribute.scale_learning_rate(1e-3, 256, "linear") == pytest.approx(8e-3)
    assert distribute.scale_learning_rate(1e-3, 128, "sqrt") == pytest.approx(2e-3)
    with pytest.raises(BoneTumorError):
        distribute.scale_learning_rate(1e-3, 64, "cubic")


def test_mixed_precision_policy_per_device():
    assert distribute.mixed_precision_policy(has_gpu=True, flags=set()) == "mixed_float16"
    assert distribute.mixed_precision_policy(False, {"avx2", "amx_bf16"}) == "mixed_bfloat16"
    with pytest.raises(BoneTumorError, match="bfloat16"):
        distribute.mixed_precision_policy(False, {"avx2"})
    assert distribute.resolve_jit_compile("on") is True
    assert distribute.resolve_jit_compile("auto") == "auto"


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_classifier_outputs_float32(policy):
    import keras

    from bone_tumor_tf.models.classifiers import build_classifier

    previous = keras.mixed_precision.global_policy()
    try:
        keras.mixed_precision.set_global_policy(policy)
        model = build_classifier("resnet50", "multiclass", image_size=32, weights="none")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    compute = policy.split("_")[1]
    assert model.get_layer("conv1_conv").compute_dtype == compute
    assert model.get_layer("head_dense").compute_dtype == compute
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model.get_layer("conv1_conv").kernel.dtype == "float32"  # variables stay float32
    assert model.outputs[0].dtype == "float32"
    probs = model.predict(np.full((2, 32, 32, 1), 100, np.float32), verbose=0)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_train_model_cli_refuses_contradictory_performance_options(synthetic_btxrd, tmp_path,
                                                                   capsys):
    import train_model

    code = train_model.main(["--data", str(synthetic_btxrd), "--out", str(tmp_path / "r"),
                             "--feature-views", "3"])
    assert code == 2 and "--cache-features" in capsys.readouterr().err
