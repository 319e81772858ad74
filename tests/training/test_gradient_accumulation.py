"""--accumulate-steps: N micro-batches, one update equal to the whole batch's update."""

import numpy as np
import pytest

from bone_tumor_tf.errors import BoneTumorError
from bone_tumor_tf.training.classification import ClassifierOptions, compile_for_phase

# The custom train steps are checked traced, as users run them (tests/conftest.py).
pytestmark = pytest.mark.graph_mode


def _tiny_model(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="tanh", name="hidden")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(hidden)
    return keras.Model(inputs, outputs)


def _train(options: ClassifierOptions, phase: int, x, y, updates: int):
    import tensorflow as tf

    model = _tiny_model(0)
    compile_for_phase(model, phase, options, "multiclass")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(options.micro_batch_size)
    steps = updates * options.accumulate_steps
    model.fit(dataset.repeat(), epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    return model.get_weights()


@pytest.mark.parametrize("phase", [1, 2])
def test_accumulated_micro_batches_give_the_whole_batch_update(phase):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
    base = dict(data="-", out="-", batch_size=8, lr=0.05, phase2_lr=0.05)
    whole = _train(ClassifierOptions(**base), phase, x, y, updates=1)
    accumulated = _train(ClassifierOptions(**base, accumulate_steps=4), phase, x, y, updates=1)
    first_half_only = _train(ClassifierOptions(**{**base, "batch_size": 2}), phase, x[:2],
                             y[:2], updates=1)
    initial = _tiny_model(0).get_weights()
    for w_whole, w_acc, w_init in zip(whole, accumulated, initial):
        assert not np.allclose(w_whole, w_init)  # the update happened
        np.testing.assert_allclose(w_acc, w_whole, rtol=1e-5, atol=1e-6)
    # ... and it is not the update of one micro-batch alone
    assert not all(np.allclose(a, b, atol=1e-6) for a, b in zip(first_half_only, whole))


def test_micro_batch_size_and_refusals():
    assert ClassifierOptions(data="-", out="-", batch_size=32, accumulate_steps=4
                             ).micro_batch_size == 8
    for steps in (0, 3):
        with pytest.raises(BoneTumorError, match="--accumulate-steps"):
            ClassifierOptions(data="-", out="-", batch_size=32, accumulate_steps=steps)
