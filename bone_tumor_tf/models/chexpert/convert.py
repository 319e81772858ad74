"""Conversion of torchxrayvision's CheXpert DenseNet121 PyTorch checkpoint to Keras weights.

Only this module needs PyTorch, and it imports it inside :func:`load_torch_state_dict`.
See :mod:`bone_tumor_tf.models.chexpert` for the accepted checkpoints, the layer mapping and
the output file format.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np

from bone_tumor_tf.errors import (
    BoneTumorError,
    ModelConfigError,
    ModelFileError,
    WeightsNotFoundError,
)
from bone_tumor_tf.models.chexpert.backbone import (
    KERAS_BN_EPSILON,
    adapt_first_kernel,
    assign_densenet121_weights,
    densenet121_layer_map,
)
from bone_tumor_tf.models.weights import save_layer_weights

__all__ = [
    "TORCH_BN_EPSILON",
    "convert_checkpoint",
    "convert_state_dict",
    "load_torch_state_dict",
]

#: BatchNorm epsilon of PyTorch / torchxrayvision.
TORCH_BN_EPSILON = 1e-5

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")


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
                kernel = adapt_first_kernel(kernel, channels)
            out[keras_name] = [kernel.astype(np.float32)]
        else:
            gamma, beta, mean, var = (
                arrays[f"{prefix}.{s}"].astype(np.float64) for s in _BN_SUFFIXES
            )
            var = var + TORCH_BN_EPSILON - KERAS_BN_EPSILON
            out[keras_name] = [a.astype(np.float32) for a in (gamma, beta, mean, var)]
    return out


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
        import torch  # lazy: heavy and optional, only converting a checkpoint needs it
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

    assign_densenet121_weights(_reference_densenet121(channels), weights, source=str(src),
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
    return keras.applications.DenseNet121(
        include_top=False, weights=None, input_shape=(32, 32, channels)
    )
