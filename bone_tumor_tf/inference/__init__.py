"""Saved models on new images: loading, input preparation, prediction, export for serving.

``inputs`` loads a model and brings images to its input (shared by predict, evaluate and
Grad-CAM); ``predict`` runs classifiers batch by batch; ``export`` writes a TensorFlow
SavedModel with the model's contract beside it.
"""

from bone_tumor_tf.inference.inputs import (
    PreparedInput,
    expand_inputs,
    load_input,
    load_model,
    model_contract,
    predict_probabilities,
)

__all__ = [
    "PreparedInput",
    "expand_inputs",
    "load_input",
    "load_model",
    "model_contract",
    "predict_probabilities",
]
