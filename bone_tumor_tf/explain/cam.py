"""Class activation maps (Grad-CAM, Grad-CAM++, Score-CAM) of the toolkit's classifiers.

The maps are computed by tf-keras-vis 0.8.7 (``Gradcam``, ``GradcamPlusPlus``,
``Scorecam``); this module chooses the target layer and the score, batches the images and
brings the maps to the model's input grid.

Shapes and values:

* input ``images``: ``(N, S, S)`` or ``(N, S, S, 1)``, uint8 or float, grey values in
  [0, 255] (what the model takes; normalisation happens inside the model);
* output: ``(N, S, S)`` float32 heatmaps in [0, 1], one per image, min-max normalised per
  image (see :func:`normalize_heatmaps`).

Target of a map: the predicted class by default, else ``target_classes`` (class indices in
the model's ``class_names`` order). For a sigmoid model (one output unit, P(tumor)) index
1 is the tumor score (``BinaryScore(True)``: score ``+z``) and index 0 its complement
(``BinaryScore(False)``: score ``-z``), ``z`` being the logit. For a softmax model the
score is the class logit (``CategoricalScore``). Before any map the output activation is
replaced by the identity (``ReplaceToLinear``), so gradients are those of the logit and do
not vanish when the softmax / sigmoid saturates (Selvaraju et al.).

Target layer: :func:`bone_tumor_tf.models.classifiers.last_conv_layer_name`
(``conv5_block3_out`` for ResNet50, ``relu`` for DenseNet121): the feature map that the
head pools. It is used as given (``seek_penultimate_conv_layer=False``): tf-keras-vis
would otherwise walk back from these activation layers to the previous ``Conv2D``
(``conv5_block3_3_conv`` before BN, residual add and ReLU; DenseNet's 32-channel
``conv5_block16_2_conv``), which is not the map the classifier looks at.

tf-keras-vis 0.8.7 on Keras 3.15 / TensorFlow 2.21 (``tf.keras`` is Keras 3 here) -
what was checked and what is worked around:

* Works unchanged: ``clone_model`` + ``set_weights`` of the flat functional classifiers
  (including models loaded from ``.keras``),
  ``ReplaceToLinear`` (``model.output_names`` exists in Keras 3), the gradient tape of
  ``Gradcam`` / ``GradcamPlusPlus``, ``CategoricalScore`` with a list of per-image
  indices, ``BinaryScore`` with a list of per-image booleans.
* ``ReplaceToLinear`` edits the layer in place: tf-keras-vis clones the model first when
  ``clone=True`` (its default) and a modifier is given, so the caller's model keeps its
  softmax / sigmoid (checked in the tests). One linearised clone per :class:`CamExplainer`
  is shared by every method (a ResNet50 clone costs about 1-3 s).
* Maps are taken at the feature-map resolution (``expand_cam=False``,
  ``normalize_cam=False``) and enlarged here with ``cv2.resize`` (bilinear, pixel centres
  aligned). tf-keras-vis enlarges with ``scipy.ndimage.zoom``, which aligns the CORNER
  pixels: the centre of feature cell ``i`` would land at ``i * (S - 1) / (h - 1)`` instead
  of its receptive-field centre ``(i + 0.5) * S / h``, shifting peaks by up to half a cell
  (16 px at stride 32), which matters for the pointing game. Its normalisation
  ``(x - min) / (max - min + 1e-7)`` also turns maps with a tiny range into values well
  below 1; :func:`normalize_heatmaps` does not.
* ``Scorecam`` scores the masked inputs with ``softmax(model output)``: it assumes logits.
  Hence ``ReplaceToLinear`` is used for Score-CAM too (the score is then the post-softmax
  probability of the Score-CAM paper, not a softmax of probabilities). On a ONE-unit
  sigmoid output that softmax is constantly 1, every channel gets the same weight and the
  map ignores the class (tf-keras-vis issue #78); for sigmoid models the logit ``z`` is
  therefore presented as two logits ``[0, z]``, whose softmax is exactly ``[1 - p, p]``
  (:class:`SigmoidToTwoClassLogits`).
* ``Scorecam`` runs ``model.predict`` with Keras' progress bar, and the model call with a
  one-element input list makes Keras 3 warn about the input structure; both are silenced
  for the duration of a call.
* Score-CAM materialises ``channels x N`` masked copies of its input batch (DenseNet121 at
  224 px: about 200 MB per image), and Faster Score-CAM (``max_N``) chooses its channels
  from the whole batch; so Score-CAM is run one image per tf-keras-vis call (its own
  ``batch_size`` batches the masked copies). Grad-CAM and Grad-CAM++ take one
  tf-keras-vis call per batch of images.

References: Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV (https://arxiv.org/abs/1610.02391); Chattopadhyay et
al., 2018, "Grad-CAM++", WACV (https://arxiv.org/abs/1710.11063); Wang et al., 2020,
"Score-CAM", CVPR Workshops (https://arxiv.org/abs/1910.01279); tf-keras-vis
(https://github.com/keisen/tf-keras-vis).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Sequence

import cv2
import keras
import numpy as np

from bone_tumor_tf.errors import ModelFileError
from bone_tumor_tf.models.classifiers import backbone_layer_names, last_conv_layer_name

with warnings.catch_warnings():
    # tf-keras-vis 0.8.7 imports zoom from the deprecated scipy.ndimage.interpolation.
    warnings.simplefilter("ignore", DeprecationWarning)
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ModelModifier, ReplaceToLinear
    from tf_keras_vis.utils.scores import BinaryScore, CategoricalScore

__all__ = [
    "METHODS",
    "CamExplainer",
    "SigmoidToTwoClassLogits",
    "benchmark_batched_vs_single",
    "compute_cams",
    "conv_like_layer_names",
    "normalize_heatmaps",
    "resolve_cam_layer",
]

#: CAM methods, as named on the command line and in output files.
METHODS = ("gradcam", "gradcam++", "scorecam")
_VISUALIZERS = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "scorecam": Scorecam}


# --------------------------------------------------------------------------- target layer


def conv_like_layer_names(model) -> list[str]:
    """Backbone layers with a 4-D output ``(batch, h, w, channels)``, in model order.

    These are the layers a CAM can be taken at (convolutions, BN, activations, adds,
    pools); the input, preprocessing and head layers are left out.
    """
    names = set(backbone_layer_names(model))
    out = []
    for layer in model.layers:
        if layer.name not in names:
            continue
        shape = getattr(layer.output, "shape", None)
        if shape is not None and len(shape) == 4:
            out.append(layer.name)
    return out


def resolve_cam_layer(model, layer_name: str | None = None) -> str:
    """The layer whose feature map is explained: ``layer_name`` or the model's last one.

    Raises:
        ModelFileError: ``layer_name`` is not a 4-D feature-map layer of ``model`` (the
            message names the last such layers), or the model has none.
    """
    if layer_name is None:
        return last_conv_layer_name(model)
    candidates = conv_like_layer_names(model)
    if layer_name in candidates:
        return layer_name
    shown = ", ".join(candidates[-8:]) if candidates else "none"
    more = f" ({len(candidates)} in all)" if len(candidates) > 8 else ""
    raise ModelFileError(
        f"layer {layer_name!r}: not a 4-D feature-map layer of model {model.name!r}; "
        f"the last ones are {shown}{more}"
    )


# --------------------------------------------------------------------------- helpers


class SigmoidToTwoClassLogits(ModelModifier):
    """tf-keras-vis model modifier: one logit ``z`` -> two logits ``[0, z]``.

    ``softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]``, so a score computed on the softmax
    of the new output (what ``Scorecam`` does) sees the sigmoid model's class
    probabilities. Apply after ``ReplaceToLinear`` (the output layer must already be
    linear). Returns a new model sharing every layer; nothing is modified in place.
    """

    def __call__(self, model):
        logit = model.outputs[0]
        two = keras.layers.Concatenate(name="two_class_logits")(
            [keras.ops.zeros_like(logit), logit]
        )
        return keras.Model(model.inputs, two, name=f"{model.name}_two_class_logits")


@contextlib.contextmanager
def _quiet_keras():
    """Silence Keras' predict progress bar and its input-structure warning."""
    was_interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*structure of `inputs`.*")
            yield
    finally:
        if was_interactive:
            keras.config.enable_interactive_logging()


def normalize_heatmaps(cams: np.ndarray) -> np.ndarray:
    """Min-max normalise each map of ``cams`` (N, H, W) to [0, 1]; float32.

    Non-finite values count as 0. A map whose values are all equal (e.g. all zero: no
    positive evidence after the ReLU) carries no spatial information and becomes all
    zeros, never NaN.
    """
    cams = np.nan_to_num(np.asarray(cams, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low = cams.min(axis=(1, 2), keepdims=True)
    span = cams.max(axis=(1, 2), keepdims=True) - low
    safe = np.where(span > 0, span, 1.0)
    out = np.where(span > 0, (cams - low) / safe, 0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _upsample(cams: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) -> (N, size, size), bilinear with pixel centres aligned (OpenCV)."""
    cams = np.asarray(cams, np.float32)
    if cams.shape[1:] == (size, size):
        return cams
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR)
                     for c in cams])


def _as_model_input(images, size: int) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or tuple(x.shape[1:]) != (size, size, 1):
        raise ValueError(
            f"images must have shape (N, {size}, {size}) or (N, {size}, {size}, 1) for this "
            f"model; got {tuple(np.shape(images))}"
        )
    return x.astype(np.float32)


# --------------------------------------------------------------------------- explainer


class CamExplainer:
    """Computes class activation maps of one classifier; reusable across batches.

    Args:
        model: a classifier from :func:`bone_tumor_tf.models.build_classifier` (or loaded
            from ``.keras``): input ``(S, S, 1)`` in [0, 255], output softmax ``(N, K)``
            or sigmoid ``(N, 1)``. It is never modified.
        layer_name: target layer; default :func:`last_conv_layer_name`.
        scorecam_batch_size: batch size of the masked-input predictions of Score-CAM.
        scorecam_max_n: ``None`` for Score-CAM over all channels of the target layer
            (DenseNet121: 1,024 forward passes per image; ResNet50: 2,048), or N for
            Faster Score-CAM over the N channels of largest spatial variance.

    Call it with ``(images, method, target_classes, batch_size)``; see
    :func:`compute_cams`.

    Raises:
        ModelFileError: the model is not a one-output classifier, or the layer is unknown.
    """

    def __init__(self, model, layer_name: str | None = None, scorecam_batch_size: int = 32,
                 scorecam_max_n: int | None = None):
        if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
            raise ModelFileError(
                f"model {model.name!r}: CAMs need a classifier with one (batch, classes) "
                f"output; got outputs {[tuple(o.shape) for o in model.outputs]}"
            )
        self.model = model
        self.layer_name = resolve_cam_layer(model, layer_name)
        units = int(model.outputs[0].shape[-1])
        self.binary = units == 1
        self.num_classes = 2 if self.binary else units
        self.image_size = int(model.inputs[0].shape[1])
        self.scorecam_batch_size = int(scorecam_batch_size)
        if scorecam_max_n is not None and int(scorecam_max_n) < 1:
            raise ValueError(f"scorecam_max_n={scorecam_max_n}: must be >= 1 or None")
        self.scorecam_max_n = None if scorecam_max_n is None else int(scorecam_max_n)
        self._visualizers: dict = {}

    def linear_model(self):
        """The clone of the model with a linear output layer, shared by every method.

        Made once, by the Grad-CAM visualizer: tf-keras-vis clones the model
        (``clone=True``, weights copied) and applies ``ReplaceToLinear`` to the clone.
        """
        if "gradcam" not in self._visualizers:
            self._visualizers["gradcam"] = Gradcam(
                self.model, model_modifier=ReplaceToLinear(), clone=True
            )
        return self._visualizers["gradcam"].model

    def _visualizer(self, method: str):
        if method not in _VISUALIZERS:
            raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")
        if method not in self._visualizers:
            linear = self.linear_model()
            if method != "gradcam":
                modifier = (SigmoidToTwoClassLogits()
                            if method == "scorecam" and self.binary else None)
                self._visualizers[method] = _VISUALIZERS[method](
                    linear, model_modifier=modifier, clone=False
                )
        return self._visualizers[method]

    def _score(self, method: str, targets: np.ndarray):
        if self.binary and method != "scorecam":
            return BinaryScore([bool(t) for t in targets])
        return CategoricalScore([int(t) for t in targets])

    def probabilities(self, images, batch_size: int = 16) -> np.ndarray:
        """Class probabilities (N, K) float64; a sigmoid output becomes ``[1 - p, p]``.

        Same values as :func:`bone_tumor_tf.inference.predict_probabilities`, but the
        model is called eagerly per batch: no ``predict`` graph to trace, which costs more
        than the few batches of a typical CAM run.
        """
        x = _as_model_input(images, self.image_size)
        chunks = [keras.ops.convert_to_numpy(self.model(x[i:i + int(batch_size)], training=False))
                  for i in range(0, len(x), int(batch_size))]
        probs = (np.concatenate(chunks).astype(np.float64) if chunks
                 else np.zeros((0, 1 if self.binary else self.num_classes)))
        return np.concatenate([1.0 - probs, probs], axis=1) if self.binary else probs

    def predicted_classes(self, images, batch_size: int = 16) -> np.ndarray:
        """Argmax class per image (sigmoid: 1 when P(tumor) > 0.5), int (N,)."""
        return np.argmax(self.probabilities(images, batch_size), axis=1)

    def resolve_targets(self, target_classes, n: int, images=None,
                        batch_size: int = 16) -> np.ndarray:
        """Class index per image: predicted when ``None``, else an int or N ints."""
        if target_classes is None:
            return self.predicted_classes(images, batch_size)
        targets = np.asarray(target_classes).reshape(-1)
        if targets.size == 1:
            targets = np.repeat(targets, n)
        if targets.size != n or not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"target_classes must be None, one int or {n} ints; "
                             f"got {target_classes!r}")
        if targets.min() < 0 or targets.max() >= self.num_classes:
            raise ValueError(f"target_classes {targets.tolist()} outside [0, {self.num_classes})")
        return targets.astype(np.int64)

    def _raw_cams(self, method: str, x: np.ndarray, targets: np.ndarray,
                  layer_name: str) -> np.ndarray:
        """tf-keras-vis maps at feature-map resolution, (n, h, w), ReLU applied."""
        visualizer = self._visualizer(method)
        common = dict(penultimate_layer=layer_name, seek_penultimate_conv_layer=False,
                      expand_cam=False, normalize_cam=False)
        with _quiet_keras():
            if method != "scorecam":
                return np.asarray(visualizer(self._score(method, targets), x, **common))
            channels = int(self.model.get_layer(layer_name).output.shape[-1])
            max_n = None if self.scorecam_max_n is None else min(self.scorecam_max_n, channels)
            return np.concatenate([
                np.asarray(visualizer(self._score(method, targets[i:i + 1]), x[i:i + 1],
                                      batch_size=self.scorecam_batch_size, max_N=max_n,
                                      **common))
                for i in range(len(x))
            ])

    def __call__(self, images, method: str = "gradcam",
                 target_classes: int | Sequence[int] | np.ndarray | None = None,
                 batch_size: int = 16, layer_name: str | None = None) -> np.ndarray:
        """Heatmaps (N, S, S) float32 in [0, 1]; see :func:`compute_cams`.

        ``layer_name`` overrides the explainer's layer for this call (no new clone).
        """
        if method not in METHODS:
            raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        layer_name = (self.layer_name if layer_name is None
                      else resolve_cam_layer(self.model, layer_name))
        x = _as_model_input(images, self.image_size)
        targets = self.resolve_targets(target_classes, len(x), x, batch_size)
        out = np.zeros((len(x), self.image_size, self.image_size), np.float32)
        for start in range(0, len(x), int(batch_size)):
            stop = start + int(batch_size)
            raw = self._raw_cams(method, x[start:stop], targets[start:stop], layer_name)
            out[start:stop] = normalize_heatmaps(_upsample(raw, self.image_size))
        return out


def compute_cams(model, images, method: str = "gradcam",
                 target_classes: int | Sequence[int] | np.ndarray | None = None,
                 layer_name: str | None = None, batch_size: int = 16,
                 scorecam_batch_size: int = 32, scorecam_max_n: int | None = None
                 ) -> np.ndarray:
    """Class activation maps of ``images`` for ``model``.

    Args:
        model: a classifier (see :class:`CamExplainer`); never modified.
        images: ``(N, S, S)`` or ``(N, S, S, 1)``, uint8 or float grey values in [0, 255].
        method: ``"gradcam"``, ``"gradcam++"`` or ``"scorecam"``.
        target_classes: ``None`` (the predicted class of each image), one class index for
            all images, or N indices. Sigmoid models: 1 = tumor, 0 = its complement.
        layer_name: target layer; default the last feature map (``last_conv_layer_name``).
        batch_size: images per tf-keras-vis call (Grad-CAM, Grad-CAM++).
        scorecam_batch_size: batch size of Score-CAM's masked-input predictions.
        scorecam_max_n: ``None`` = full Score-CAM; N = Faster Score-CAM over N channels.

    Returns:
        float32 ``(N, S, S)`` heatmaps in [0, 1] on the model's input grid, min-max
        normalised per image (an all-zero map stays zero). Map them onto the original
        image with :func:`bone_tumor_tf.data.preprocess.map_to_original`.

    Raises:
        ModelFileError: unknown ``layer_name`` or not a classifier.
        ValueError: wrong image shape, method or targets.
    """
    explainer = CamExplainer(model, layer_name=layer_name,
                             scorecam_batch_size=scorecam_batch_size,
                             scorecam_max_n=scorecam_max_n)
    return explainer(images, method=method, target_classes=target_classes,
                     batch_size=batch_size)


# --------------------------------------------------------------------------- benchmark


def benchmark_batched_vs_single(model, images, method: str = "gradcam", batch_size: int = 16,
                                layer_name: str | None = None,
                                scorecam_max_n: int | None = None) -> dict:
    """Throughput of batched CAMs versus one image per call, for the benchmark suite.

    The model is cloned and the tf-keras-vis call traced once before timing (a warm-up
    call on one image); the targets (predicted classes) are computed before timing too.

    Returns:
        ``{"method", "n_images", "batch_size", "layer", "batched_seconds",
        "single_seconds", "batched_images_per_s", "single_images_per_s", "speedup",
        "max_abs_difference"}``; ``speedup`` = batched / single throughput and
        ``max_abs_difference`` the largest difference between the two sets of maps.
    """
    explainer = CamExplainer(model, layer_name=layer_name, scorecam_max_n=scorecam_max_n)
    x = _as_model_input(images, explainer.image_size)
    targets = explainer.predicted_classes(x, batch_size)
    explainer(x[:1], method, targets[:1], 1)  # warm-up: clone, first trace

    start = time.perf_counter()
    batched = explainer(x, method, targets, batch_size)
    batched_seconds = time.perf_counter() - start

    start = time.perf_counter()
    single = np.concatenate([explainer(x[i:i + 1], method, targets[i:i + 1], 1)
                             for i in range(len(x))])
    single_seconds = time.perf_counter() - start

    n = len(x)
    batched_rate = n / batched_seconds if batched_seconds > 0 else float("inf")
    single_rate = n / single_seconds if single_seconds > 0 else float("inf")
    return {
        "method": method,
        "n_images": n,
        "batch_size": int(batch_size),
        "layer": explainer.layer_name,
        "batched_seconds": batched_seconds,
        "single_seconds": single_seconds,
        "batched_images_per_s": batched_rate,
        "single_images_per_s": single_rate,
        "speedup": batched_rate / single_rate if single_rate > 0 else None,
        "max_abs_difference": float(np.abs(batched - single).max()) if n else 0.0,
    }
