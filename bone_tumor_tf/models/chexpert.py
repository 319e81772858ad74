"""torchxrayvision's CheXpert DenseNet121 as a Keras backbone: checkpoint conversion and loading.

The thesis' best bone-tumour classifier starts from torchxrayvision's
``densenet121-res224-chex`` model (Cohen et al., 2022, "TorchXRayVision: A library of chest
X-ray datasets and models", MIDL, https://arxiv.org/abs/2111.00595): a DenseNet121
(Huang et al., 2017, "Densely Connected Convolutional Networks", CVPR,
https://arxiv.org/abs/1608.06993) with ONE input channel, trained on CheXpert
(Irvin et al., 2019, AAAI). Its inputs are radiographs rescaled from [0, 255] to
[-1024, 1024] (``xrv.datasets.normalize(img, 255)`` = ``img / 255 * 2048 - 1024``).

Conversion (needs PyTorch, nothing else in this module does)::

    python -m bone_tumor_tf.models.chexpert convert SRC DST.weights.h5 [--channels 1|3]

``SRC`` is either a ``state_dict`` saved with ``torch.save`` (keys ``features.conv0.weight``,
``features.norm0.*``, ``features.denseblock1.denselayer1.norm1.*`` ... ``features.norm5.*``;
``classifier.*``, ``op_threshs`` and ``num_batches_tracked`` are ignored; a ``module.``
prefix or a missing ``features.`` prefix is accepted) or torchxrayvision's own checkpoint,
a whole pickled model (``~/.torchxrayvision/models_data/chex-densenet121-d121-tw-lr001-
rot45-tr15-sc15-seed0-best.pt``), whose unpickling needs ``torchxrayvision`` installed.
Unpickling a whole model can execute code: only convert files from a source you trust.

Mapping onto ``keras.applications.DenseNet121`` layer names:

=================================================  ===================================
torchxrayvision (``features.`` + ...)              Keras layer
=================================================  ===================================
``conv0``, ``norm0``                               ``conv1_conv``, ``conv1_bn``
``denseblock{b}.denselayer{l}.norm1``              ``conv{b+1}_block{l}_0_bn``
``denseblock{b}.denselayer{l}.conv1``/``norm2``    ``conv{b+1}_block{l}_1_conv``/``_1_bn``
``denseblock{b}.denselayer{l}.conv2``              ``conv{b+1}_block{l}_2_conv``
``transition{t}.norm`` / ``transition{t}.conv``    ``pool{t+1}_bn`` / ``pool{t+1}_conv``
``norm5``                                          ``bn``
=================================================  ===================================

Convolution kernels go from PyTorch OIHW to Keras HWIO. BatchNorm ``weight, bias,
running_mean, running_var`` become ``gamma, beta, moving_mean, moving_variance``; PyTorch
normalises with ``eps=1e-5`` and Keras' DenseNet with ``epsilon=1.001e-5``, so the stored
variance is ``running_var + 1e-5 - 1.001e-5`` (the file records ``bn_epsilon``; the loader
re-adjusts if a model's BN epsilon differs), which makes ``var + eps`` identical. Zero
padding before Keras' max pooling equals PyTorch's ``-inf`` padding because it follows a
ReLU. ``channels=3`` stores the first kernel divided by 3 and replicated over 3 input
channels, so a grey image stored as 3 equal channels gives the same features.

The output file is the layer-weights HDF5 format of :mod:`.weights` (one group per Keras
layer, datasets ``"0"``, ``"1"``, ... in ``get_weights()`` order; root attributes
``format``, ``format_version``, ``source``, ``channels``, ``arch``, ``bn_epsilon``). It is
loaded BY LAYER NAME with :func:`load_densenet121_weights`, so it works on a standalone
backbone (:func:`chexpert_densenet121`) and on the flat classifier graph alike.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bone_tumor_tf.errors import BoneTumorError, ModelFileError, WeightsNotFoundError
from bone_tumor_tf.models.weights import (
    DEFAULT_CHEXPERT_WEIGHTS,
    ModelConfigError,
    chexpert_missing_message,
    chexpert_weights_path,
    read_layer_weights,
    save_layer_weights,
)

__all__ = [
    "DEFAULT_CHEXPERT_WEIGHTS",
    "DENSENET121_BLOCKS",
    "XRV_OFFSET",
    "XRV_SCALE",
    "chexpert_densenet121",
    "chexpert_weights_path",
    "convert_checkpoint",
    "convert_state_dict",
    "densenet121_layer_map",
    "densenet121_weighted_layers",
    "load_densenet121_weights",
    "load_torch_state_dict",
    "main",
    "xrv_normalization",
]

#: Dense layers per block of DenseNet121.
DENSENET121_BLOCKS = (6, 12, 24, 16)
_GROWTH_RATE = 32
_BOTTLENECK = 4 * _GROWTH_RATE
_INIT_FEATURES = 64
#: BatchNorm epsilon of PyTorch / torchxrayvision.
TORCH_BN_EPSILON = 1e-5
#: BatchNorm epsilon of ``keras.applications.DenseNet121``.
KERAS_BN_EPSILON = 1.001e-5
#: torchxrayvision's input normalisation ``x / 255 * 2048 - 1024`` as ``x * scale + offset``.
XRV_SCALE = 2048.0 / 255.0
XRV_OFFSET = -1024.0

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")


# --------------------------------------------------------------------------- name mapping


def densenet121_layer_map() -> list[tuple[str, str, str, tuple[int, ...]]]:
    """Every weighted DenseNet121 backbone layer, in network order.

    Returns:
        ``(torch_prefix, keras_layer, kind, torch_shape)`` tuples: ``kind`` is ``"conv"``
        (tensor ``torch_prefix + ".weight"`` of shape ``torch_shape`` = OIHW) or ``"bn"``
        (tensors ``.weight, .bias, .running_mean, .running_var`` of shape ``torch_shape``
        = ``(C,)``). The first convolution's input-channel count is ``0`` (1 or 3 accepted).
    """
    entries = [
        ("features.conv0", "conv1_conv", "conv", (_INIT_FEATURES, 0, 7, 7)),
        ("features.norm0", "conv1_bn", "bn", (_INIT_FEATURES,)),
    ]
    channels = _INIT_FEATURES
    for b, n_layers in enumerate(DENSENET121_BLOCKS, start=1):
        for i in range(1, n_layers + 1):
            t = f"features.denseblock{b}.denselayer{i}"
            k = f"conv{b + 1}_block{i}"
            entries += [
                (f"{t}.norm1", f"{k}_0_bn", "bn", (channels,)),
                (f"{t}.conv1", f"{k}_1_conv", "conv", (_BOTTLENECK, channels, 1, 1)),
                (f"{t}.norm2", f"{k}_1_bn", "bn", (_BOTTLENECK,)),
                (f"{t}.conv2", f"{k}_2_conv", "conv", (_GROWTH_RATE, _BOTTLENECK, 3, 3)),
            ]
            channels += _GROWTH_RATE
        if b < len(DENSENET121_BLOCKS):
            entries += [
                (f"features.transition{b}.norm", f"pool{b + 1}_bn", "bn", (channels,)),
                (f"features.transition{b}.conv", f"pool{b + 1}_conv", "conv",
                 (channels // 2, channels, 1, 1)),
            ]
            channels //= 2
    entries.append(("features.norm5", "bn", "bn", (channels,)))
    return entries


def densenet121_weighted_layers() -> list[str]:
    """Names of the 241 weighted layers of ``keras.applications.DenseNet121`` (no top)."""
    return [keras_name for _, keras_name, _, _ in densenet121_layer_map()]


# --------------------------------------------------------------------------- conversion


def _normalise_keys(state_dict: Mapping[str, object]) -> dict[str, object]:
    out = {}
    for key, value in state_dict.items():
        key = str(key)
        if key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    if not any(k.startswith("features.") for k in out) and "conv0.weight" in out:
        out = {
            (k if k.startswith(("classifier.", "op_threshs")) else f"features.{k}"): v
            for k, v in out.items()
        }
    return out


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray], channels: int = 1, source: str = "state_dict"
) -> dict[str, list[np.ndarray]]:
    """Map a torchxrayvision DenseNet121 ``state_dict`` (NumPy arrays) onto Keras layers.

    Args:
        state_dict: ``key -> array`` in torchvision / torchxrayvision layout.
        channels: input channels of the Keras backbone, 1 (as torchxrayvision) or 3 (first
            kernel divided by 3 and replicated; a 3-channel source is summed for 1).
        source: file name used in error messages.

    Returns:
        ``keras layer name -> arrays`` in ``layer.get_weights()`` order, float32, BN
        variances adjusted to Keras' epsilon ``1.001e-5``.

    Raises:
        ModelFileError: a backbone tensor is missing, mis-shaped or unexpected (the message
            names the key(s), expected vs found shape).
    """
    if channels not in (1, 3):
        raise ModelConfigError(f"channels={channels}: must be 1 or 3")
    sd = _normalise_keys(state_dict)
    entries = densenet121_layer_map()

    expected: dict[str, tuple[int, ...]] = {}
    for prefix, _, kind, shape in entries:
        if kind == "conv":
            expected[f"{prefix}.weight"] = shape
        else:
            for suffix in _BN_SUFFIXES:
                expected[f"{prefix}.{suffix}"] = shape

    missing = [k for k in expected if k not in sd]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise ModelFileError(
            f"{source}: not a DenseNet121 backbone checkpoint: missing tensor(s) "
            f"{', '.join(missing[:3])}{more}"
        )
    unexpected = sorted(
        k for k in sd
        if k.startswith("features.") and k not in expected
        and not k.endswith(".num_batches_tracked")
    )
    if unexpected:
        more = f" (and {len(unexpected) - 3} more)" if len(unexpected) > 3 else ""
        raise ModelFileError(
            f"{source}: not a DenseNet121 backbone checkpoint: unexpected tensor(s) "
            f"{', '.join(unexpected[:3])}{more}"
        )
    arrays = {k: np.asarray(sd[k]) for k in expected}
    for key, shape in expected.items():
        found = tuple(arrays[key].shape)
        ok = len(found) == len(shape) and all(
            e == f or (e == 0 and f in (1, 3)) for e, f in zip(shape, found)
        )
        if not ok:
            want = "(" + ", ".join("1|3" if e == 0 else str(e) for e in shape)
            want += ",)" if len(shape) == 1 else ")"
            raise ModelFileError(f"{source}: tensor {key} has shape {found}, expected {want}")

    out: dict[str, list[np.ndarray]] = {}
    for prefix, keras_name, kind, _ in entries:
        if kind == "conv":
            kernel = arrays[f"{prefix}.weight"].astype(np.float64).transpose(2, 3, 1, 0)
            if keras_name == "conv1_conv":
                kernel = _adapt_first_kernel(kernel, channels)
            out[keras_name] = [kernel.astype(np.float32)]
        else:
            gamma, beta, mean, var = (
                arrays[f"{prefix}.{s}"].astype(np.float64) for s in _BN_SUFFIXES
            )
            var = var + TORCH_BN_EPSILON - KERAS_BN_EPSILON
            out[keras_name] = [a.astype(np.float32) for a in (gamma, beta, mean, var)]
    return out


def _adapt_first_kernel(kernel: np.ndarray, channels: int) -> np.ndarray:
    """HWIO first kernel with ``I`` in {1, 3} -> ``channels`` input channels (same output
    for a grey image replicated over the channels)."""
    have = kernel.shape[2]
    if have == channels:
        return kernel
    if have == 1 and channels == 3:
        return np.repeat(kernel / 3.0, 3, axis=2)
    if have == 3 and channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    raise ModelFileError(f"first convolution has {have} input channels, cannot make {channels}")


def load_torch_state_dict(src: Path | str) -> dict[str, np.ndarray]:
    """Read a PyTorch checkpoint into ``key -> float NumPy array`` (imports torch here).

    Accepts a ``state_dict`` (read with ``weights_only=True``), a dict holding one under
    ``"state_dict"``, or a whole pickled model with a ``state_dict()`` method (read with
    ``weights_only=False``, which needs the model's package, e.g. torchxrayvision).

    Raises:
        BoneTumorError: PyTorch is not installed.
        WeightsNotFoundError: ``src`` does not exist.
        ModelFileError: the file cannot be read as a checkpoint.
    """
    src = Path(src)
    if not src.is_file():
        raise WeightsNotFoundError(f"{src}: checkpoint file not found")
    try:
        import torch
    except ImportError as exc:
        raise BoneTumorError(
            "converting a PyTorch checkpoint needs torch: pip install -r requirements-dev.txt "
            "(torch==2.13.0, CPU build)"
        ) from exc

    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception:  # not a plain state_dict: a whole pickled model (or not a checkpoint)
        try:
            obj = torch.load(src, map_location="cpu", weights_only=False)
        except ModuleNotFoundError as exc:
            raise ModelFileError(
                f"{src}: this checkpoint is a whole pickled model that needs the missing "
                f"package {exc.name!r} to unpickle: pip install torchxrayvision, or save "
                "model.state_dict() with torch.save on a machine that has it"
            ) from exc
        except Exception as exc:
            detail = " ".join(str(exc).split())[:200]
            raise ModelFileError(
                f"{src}: not a PyTorch checkpoint ({type(exc).__name__}: {detail})"
            ) from exc

    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        # Old torchxrayvision pickles predate this attribute (pytorch/pytorch#42242).
        for module in getattr(obj, "modules", lambda: [])():
            if not hasattr(module, "_non_persistent_buffers_set"):
                module._non_persistent_buffers_set = set()
        obj = obj.state_dict()
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ModelFileError(
            f"{src}: holds a {type(obj).__name__}, not a state_dict or a model with state_dict()"
        )
    out = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            out[str(key)] = value.detach().cpu().to(torch.float64).numpy()
    return out


def convert_checkpoint(src: Path | str, dst: Path | str, channels: int = 1) -> Path:
    """Convert a torchxrayvision DenseNet121 checkpoint into a Keras layer-weights file.

    The arrays are checked against a freshly built ``keras.applications.DenseNet121(
    include_top=False, weights=None)``: every weighted Keras layer is filled and every
    backbone tensor used.

    Args:
        src: PyTorch checkpoint (``state_dict`` or whole torchxrayvision model).
        dst: output file, conventionally ``densenet121-res224-chex.weights.h5``.
        channels: 1 (torchxrayvision's layout) or 3 (see :func:`convert_state_dict`).

    Returns:
        ``dst`` as a :class:`~pathlib.Path`.
    """
    src, dst = Path(src), Path(dst)
    state_dict = load_torch_state_dict(src)
    weights = convert_state_dict(state_dict, channels=channels, source=str(src))

    _assign(_reference_densenet121(channels), weights, source=str(src),
            file_epsilon=KERAS_BN_EPSILON)
    return save_layer_weights(
        dst,
        weights,
        source=src.name,
        arch="densenet121",
        channels=channels,
        bn_epsilon=KERAS_BN_EPSILON,
        normalization="x / 255 * 2048 - 1024 (torchxrayvision)",
    )


@functools.lru_cache(maxsize=2)
def _reference_densenet121(channels: int):
    """A small standalone Keras DenseNet121 that converted arrays are checked against."""
    import keras

    return keras.applications.DenseNet121(
        include_top=False, weights=None, input_shape=(32, 32, channels)
    )


# --------------------------------------------------------------------------- loading


def load_densenet121_weights(model, path: Path | str) -> list[str]:
    """Load a converted DenseNet121 layer-weights file into ``model`` BY LAYER NAME.

    ``model`` is any graph containing the 241 weighted ``keras.applications.DenseNet121``
    layers under their usual names (standalone backbone or flat classifier). If the
    model's first convolution takes 3 channels and the file holds 1 (or vice versa), the
    kernel is adapted as in :func:`convert_state_dict`. BatchNorm variances are re-adjusted
    if a layer's epsilon differs from the file's ``bn_epsilon``.

    Returns:
        The names of the layers that received weights.

    Raises:
        WeightsNotFoundError: the file is missing.
        ModelFileError: the file is not a layer-weights file, lacks a layer, or a shape
            differs (one line naming the layer, expected vs found shape).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(chexpert_missing_message(path))
    weights, attrs = read_layer_weights(path)
    file_epsilon = float(attrs.get("bn_epsilon", KERAS_BN_EPSILON))
    return _assign(model, weights, source=str(path), file_epsilon=file_epsilon)


def _assign(model, weights: Mapping[str, list[np.ndarray]], source: str, file_epsilon: float):
    import keras

    names = densenet121_weighted_layers()
    in_model = {layer.name: layer for layer in model.layers}
    missing_file = [n for n in names if n not in weights]
    if missing_file:
        raise ModelFileError(
            f"{source}: no weights for DenseNet121 layer(s) {', '.join(missing_file[:3])}"
            + (f" (and {len(missing_file) - 3} more)" if len(missing_file) > 3 else "")
        )
    missing_model = [n for n in names if n not in in_model]
    if missing_model:
        raise ModelFileError(
            f"{source}: model {model.name!r} is not a DenseNet121 graph (no layer "
            f"{missing_model[0]!r})"
        )
    pending = []
    for name in names:
        layer = in_model[name]
        values = [np.asarray(v, dtype=np.float32) for v in weights[name]]
        expected = [tuple(w.shape) for w in layer.weights]
        if name == "conv1_conv" and len(values) == 1 and len(expected) == 1:
            want = expected[0][2]
            if values[0].ndim == 4 and values[0].shape[2] != want and want in (1, 3):
                values = [_adapt_first_kernel(values[0], want).astype(np.float32)]
        found = [tuple(v.shape) for v in values]
        if found != expected:
            raise ModelFileError(
                f"{source}: layer {name} has weight shapes {found}, model expects {expected}"
            )
        if isinstance(layer, keras.layers.BatchNormalization):
            delta = file_epsilon - float(layer.epsilon)
            if delta:
                values[3] = (values[3].astype(np.float64) + delta).astype(np.float32)
        pending.append((layer, values))
    for layer, values in pending:
        layer.set_weights(values)
    return names


# --------------------------------------------------------------------------- Keras model


def xrv_normalization(name: str = "preprocess_xrv"):
    """``keras.layers.Rescaling`` mapping [0, 255] to torchxrayvision's [-1024, 1024]."""
    import keras

    return keras.layers.Rescaling(XRV_SCALE, offset=XRV_OFFSET, name=name, dtype="float32")


def chexpert_densenet121(
    weights_path: Path | str | None = None,
    pooling: str | None = "avg",
    channels: int = 1,
    input_shape: int | tuple[int, int] = (224, 224),
    name: str = "chexpert_densenet121",
):
    """torchxrayvision's CheXpert DenseNet121 feature extractor as a Keras model.

    Reference: Cohen et al., 2022, "TorchXRayVision: A library of chest X-ray datasets and
    models" (https://arxiv.org/abs/2111.00595); Huang et al., 2017, DenseNet.

    Args:
        weights_path: converted file; default :func:`chexpert_weights_path`
            (``$BONE_TUMOR_WEIGHTS_DIR`` or ``~/.keras/models``, file
            ``densenet121-res224-chex.weights.h5``).
        pooling: ``"avg"`` -> 1,024 features (torchxrayvision's ``model.features2(x)``:
            adaptive average pool of ``relu(features(x))``); ``"max"`` -> global max pool;
            ``None`` -> the ``(H/32, W/32, 1024)`` map after the final BN and ReLU (layer
            ``"relu"``).
        channels: 1 (torchxrayvision's layout) or 3 (grey stored as 3 equal channels).
        input_shape: ``(H, W)`` (or one int), each at least 32.
        name: model name.

    Inputs: float tensor ``(batch, H, W, channels)`` with radiograph values in [0, 255];
    the model applies ``x / 255 * 2048 - 1024`` itself (layer ``"preprocess_xrv"``).

    Returns:
        A flat ``keras.Model`` (all DenseNet layers in ``model.layers`` under their usual
        names).

    Raises:
        WeightsNotFoundError: the weights file is missing (message says how to make it).
    """
    import keras

    if channels not in (1, 3):
        raise ModelConfigError(f"channels={channels}: must be 1 or 3")
    if pooling not in ("avg", "max", None):
        raise ModelConfigError(f"pooling={pooling!r}: must be 'avg', 'max' or None")
    height, width = (input_shape, input_shape) if isinstance(input_shape, int) else input_shape
    path = Path(weights_path) if weights_path is not None else chexpert_weights_path()
    if not path.is_file():
        raise WeightsNotFoundError(chexpert_missing_message(path))

    inputs = keras.Input((height, width, channels), name="image")
    x = xrv_normalization()(inputs)
    backbone = keras.applications.DenseNet121(
        include_top=False, weights=None, input_tensor=x,
        input_shape=(height, width, channels), pooling=pooling,
    )
    model = keras.Model(inputs, backbone.output, name=name)
    load_densenet121_weights(model, path)
    return model


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bone_tumor_tf.models.chexpert convert SRC DST [--channels]``.

    Returns the exit status (0 on success, 1 with a one-line ``error:`` message on stderr).
    """
    parser = argparse.ArgumentParser(
        prog="python -m bone_tumor_tf.models.chexpert",
        description="Convert torchxrayvision's CheXpert DenseNet121 to Keras weights.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "convert", help="PyTorch checkpoint -> layer-weights HDF5 for the Keras DenseNet121"
    )
    convert.add_argument("src", help="torchxrayvision checkpoint (.pt: state_dict or model)")
    convert.add_argument("dst", help=f"output file, e.g. ~/.keras/models/{DEFAULT_CHEXPERT_WEIGHTS}")
    convert.add_argument("--channels", type=int, choices=(1, 3), default=1,
                         help="input channels of the Keras backbone (default 1, as xrv)")
    args = parser.parse_args(argv)
    try:
        dst = convert_checkpoint(args.src, Path(args.dst).expanduser(), channels=args.channels)
    except BoneTumorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {dst} ({len(densenet121_weighted_layers())} layers, channels={args.channels})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
