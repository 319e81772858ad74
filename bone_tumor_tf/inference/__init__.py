"""Saved models on new images: loading, input preparation, prediction, export for serving.

``inputs`` brings images to a model's input (shared by predict, evaluate and Grad-CAM;
models load with :func:`bone_tumor_tf.models.loading.load_model`, re-exported here); ``predict`` runs classifiers batch by batch; ``export`` writes a TensorFlow
SavedModel with the model's contract beside it.
"""

from bone_tumor_tf.inference.inputs import (
    PreparedInput,
    expand_inputs,
    load_input,
    predict_probabilities,
)

__all__ = ["PreparedInput", "expand_inputs", "load_input", "predict_probabilities"]


def __getattr__(name):
    # load_model lives in bone_tumor_tf.models.loading; re-exported lazily because it
    # imports Keras (seconds), which reading and checking images here does not need.
    if name == "load_model":
        from bone_tumor_tf.models.loading import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
