"""Floating-point operations of a Keras model, counted analytically from its layer shapes.

Counted: the multiply-accumulates of ``Conv2D`` (grouped or not), ``DepthwiseConv2D`` and
``Dense`` layers, 2 FLOPs each (one multiply, one add): for a convolution
``2 * H_out * W_out * C_out * k_h * k_w * C_in / groups`` per image, for a dense layer
``2 * units_in * units_out``. Not counted: biases, BatchNorm, activations, pooling,
concatenations and additions, which are element-wise and together well under 2 % of the
convolutions' work in ResNet50 and DenseNet121 (and are memory-bound, not what a matrix
unit's peak measures). Reference values at 224 px, 3 channels: ResNet50 about 7.7 GFLOPs
(the often-quoted 3.9-4.1 G "FLOPs" are multiply-accumulates), DenseNet121 about 5.7 GFLOPs.

A training step costs about 3x the forward pass: the backward pass computes the gradient
with respect to both the inputs and the weights of every layer, each as much work as the
forward product (:data:`TRAIN_STEP_FACTOR`). The first convolution needs no input
gradient, and layers frozen in a phase need no weight gradient; both are ignored here
(the benchmarks train every layer).

The counts use only the Keras layer API (``layer.output.shape``, ``kernel_size``,
``groups``), so they are the same on the TensorFlow and the JAX backend.
"""

from __future__ import annotations

#: FLOPs of one training step over those of one forward pass (forward + 2x backward).
TRAIN_STEP_FACTOR = 3


def layer_forward_flops(layer) -> int:
    """Forward FLOPs per image of one layer (0 for layers that are not counted)."""
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        _, h, w, c_out = layer.output.shape
        kh, kw = layer.kernel_size
        return 2 * h * w * c_out * kh * kw
    if isinstance(layer, keras.layers.Conv2D):
        _, h, w, c_out = layer.output.shape
        kh, kw = layer.kernel_size
        c_in = int(layer.input.shape[-1]) // int(getattr(layer, "groups", 1) or 1)
        return 2 * h * w * c_out * kh * kw * c_in
    if isinstance(layer, keras.layers.Dense):
        return 2 * int(layer.input.shape[-1]) * int(layer.units)
    return 0


def forward_flops(model) -> int:
    """Forward FLOPs per image of ``model`` (see the module docstring for what counts)."""
    total = 0
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers and not isinstance(layer, type(model)):
            total += forward_flops(layer)
        else:
            total += layer_forward_flops(layer)
    return int(total)


def train_step_flops(model) -> int:
    """FLOPs per image of one training step: :data:`TRAIN_STEP_FACTOR` x forward."""
    return TRAIN_STEP_FACTOR * forward_flops(model)


def profiler_forward_flops(model, image_size: int) -> int:
    """Forward FLOPs per image as TensorFlow's profiler counts them (cross-check).

    The model's forward pass on one ``(1, S, S, 1)`` image is traced to a concrete
    function, its variables frozen to constants and the graph's ``float_ops`` statistic
    summed by ``tf.compat.v1.profiler`` (it counts Conv2D, MatMul and element-wise ops
    from their shapes). TensorFlow backend only.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec([1, image_size, image_size, 1], tf.float32)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(function).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)
