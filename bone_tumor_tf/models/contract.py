"""The model contract: what a user of a saved model must know to feed it and read it.

Every model the toolkit saves carries one :class:`ModelContract` (task, class names, input
size, channels and value range, crop mode, in-graph normalisation, decision threshold,
weights source, library versions, plus model-specific details). It travels INSIDE the
``.keras`` file, so it survives copying that single file: :func:`save_with_contract`
adds the key ``"bone_tumor_tf_contract"`` to the archive's ``metadata.json``, a member
Keras writes (``keras_version``, ``date_saved``) and never reads when loading. A separate
archive member would also be ignored, but Keras 3 extracts the WHOLE archive (weights
included) to a temporary folder whenever an archive holds more than its three members.

The inference file is written uncompiled (no optimizer, loss or metric objects; the
optimizer state lives with the training checkpoints) and from standard Keras layers only,
so ``keras.saving.load_model(path)`` opens it in an environment without ``bone_tumor_tf``.

Reading: :func:`read_contract` takes a ``.keras`` path (the contract, a contract of the
previous versions -- a ``ModelMetadata`` layer in ``config.json`` or a ``model.json``
sidecar -- or ``None``) or an in-memory model (the contract attached by the builders or
:func:`bone_tumor_tf.models.loading.load_model`, else one inferred from the model's
input and output shapes).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bone_tumor_tf import __version__ as TOOLKIT_VERSION
from bone_tumor_tf.data.preprocess import CROP_MODES
from bone_tumor_tf.data.schema import BINARY_CLASS_NAMES
from bone_tumor_tf.errors import ModelConfigError, ModelFileError
from bone_tumor_tf.models.legacy import (
    legacy_layer_metadata,
    legacy_sidecar,
    without_legacy_layers,
)

__all__ = [
    "CONTRACT_KEY",
    "NORMALIZATIONS",
    "SEGMENTATION_CLASS_NAMES",
    "TASKS",
    "ModelContract",
    "attach_contract",
    "infer_contract",
    "is_segmentation_model",
    "read_contract",
    "save_with_contract",
    "update_contract",
]

logger = logging.getLogger(__name__)

#: Key of the contract in the ``metadata.json`` member of a ``.keras`` archive.
CONTRACT_KEY = "bone_tumor_tf_contract"
CONTRACT_FORMAT_VERSION = 1
#: Tasks: ``binary`` (one sigmoid unit, probability of class index 1), ``multiclass``
#: (softmax), ``segmentation`` (one sigmoid map ``(S, S, 1)``, probability of class 1).
TASKS = ("binary", "multiclass", "segmentation")
#: In-graph input normalisation: ``caffe`` (x - ImageNet BGR means, Keras ResNet50),
#: ``torch`` (x / 255 then ImageNet mean / std, Keras DenseNet121), ``xrv`` (x / 255 *
#: 2048 - 1024, torchxrayvision), ``unit`` (x / 255), ``none``, ``unknown`` (foreign model).
NORMALIZATIONS = ("caffe", "torch", "xrv", "unit", "none", "unknown")
#: Class names of a segmentation map, in index order (the map is P(class 1)).
SEGMENTATION_CLASS_NAMES = ("background", "tumor")
#: Where :func:`attach_contract` keeps the contract on an in-memory model.
_ATTRIBUTE = "_bone_tumor_tf_contract"


@dataclass(frozen=True)
class ModelContract:
    """What a saved model expects as input and what its output means.

    Attributes:
        task: one of :data:`TASKS`.
        class_names: names in output-index order; 2 for ``binary`` (negative, positive)
            and ``segmentation`` (background, tumor), at least 2 for ``multiclass``.
        image_size: side S of the square input ``(N, S, S, channels)``.
        channels: input channels (1 for grey radiographs, 3 for RGB).
        input_range: ``(low, high)`` pixel values the model expects, ``(0, 255)`` here.
        crop_mode: how a radiograph becomes the input (``none``: whole image, aspect kept,
            zero-padded to square; ``gt-box``: cropped to the ground-truth tumor box).
        normalization: what the graph does to the input first, one of
            :data:`NORMALIZATIONS` (the caller never normalises).
        threshold: decision threshold on the positive probability (``binary``) or the
            per-pixel mask threshold (``segmentation``), in (0, 1); ``None`` for
            ``multiclass`` (argmax). Defaults to 0.5 where one is needed.
        weights_source: where the initial weights came from, e.g. ``"imagenet:<file>"``.
        arch: architecture, e.g. ``densenet121``, ``resnet50``, ``unet``.
        versions: library versions of the environment that saved the model.
        details: other JSON values (e.g. ``gradcam_layer``, ``backbone_channels``,
            ``encoder``, ``depth``, ``data_source``, ``synthetic_data``).
    """

    task: str
    class_names: tuple[str, ...]
    image_size: int
    channels: int = 1
    input_range: tuple[float, float] = (0.0, 255.0)
    crop_mode: str = "none"
    normalization: str = "unknown"
    threshold: float | None = None
    weights_source: str = "unknown"
    arch: str = "unknown"
    versions: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise the values once, here
        if self.task not in TASKS:
            raise ModelConfigError(f"model contract: task={self.task!r}: expected one of "
                                   f"{', '.join(TASKS)}")
        names = tuple(str(n) for n in (self.class_names or ()))
        wanted = "at least 2" if self.task == "multiclass" else "exactly 2"
        if len(names) < 2 or (self.task != "multiclass" and len(names) != 2) \
                or len(set(names)) != len(names) or not all(names):
            raise ModelConfigError(f"model contract: class_names={list(names)}: task "
                                   f"{self.task!r} needs {wanted} distinct non-empty names")
        set_(self, "class_names", names)
        for name, minimum in (("image_size", 1), ("channels", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) \
                    or value < minimum:
                raise ModelConfigError(f"model contract: {name}={value!r}: must be an "
                                       f"integer >= {minimum}")
            set_(self, name, int(value))
        low, high = _pair(self.input_range)
        set_(self, "input_range", (low, high))
        if self.crop_mode not in CROP_MODES:
            raise ModelConfigError(f"model contract: crop_mode={self.crop_mode!r}: expected "
                                   f"one of {', '.join(CROP_MODES)}")
        if self.normalization not in NORMALIZATIONS:
            raise ModelConfigError(f"model contract: normalization={self.normalization!r}: "
                                   f"expected one of {', '.join(NORMALIZATIONS)}")
        threshold = self.threshold
        if threshold is None and self.task != "multiclass":
            threshold = 0.5
        if threshold is not None:
            if not 0.0 < float(threshold) < 1.0:
                raise ModelConfigError(f"model contract: threshold={threshold!r}: must be "
                                       "in (0, 1)")
            threshold = float(threshold)
        set_(self, "threshold", threshold)
        set_(self, "weights_source", str(self.weights_source))
        set_(self, "arch", str(self.arch))
        set_(self, "versions", {str(k): str(v) for k, v in dict(self.versions).items()})
        set_(self, "details", _json_values(self.details, "details"))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(S, S, channels)``, the model input without the batch axis."""
        return (self.image_size, self.image_size, self.channels)

    def to_dict(self) -> dict:
        """Plain JSON types, with ``format_version``; inverse of :meth:`from_dict`."""
        data = dataclasses.asdict(self)
        data["class_names"] = list(self.class_names)
        data["input_range"] = list(self.input_range)
        return {"format_version": CONTRACT_FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: Mapping) -> ModelContract:
        """A contract from :meth:`to_dict` output, or from the dicts of the previous
        version (``ModelMetadata`` metadata, ``model.json``): keys that are not fields go
        to ``details``; a missing ``class_names`` of a binary / segmentation model gets
        the default names.

        Raises:
            ModelConfigError: a missing or invalid value (one line).
        """
        if not isinstance(data, Mapping):
            raise ModelConfigError(f"model contract: expected a JSON object, got "
                                   f"{type(data).__name__}")
        data = dict(data)
        version = int(data.pop("format_version", CONTRACT_FORMAT_VERSION))
        if version > CONTRACT_FORMAT_VERSION:
            raise ModelConfigError(f"model contract: format version {version} is newer than "
                                   f"this toolkit reads ({CONTRACT_FORMAT_VERSION})")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [key for key in ("task", "image_size") if data.get(key) is None]
        if missing:
            raise ModelConfigError(f"model contract: missing {', '.join(missing)}")
        if data.get("class_names") is None:
            data["class_names"] = {"binary": BINARY_CLASS_NAMES,
                                   "segmentation": SEGMENTATION_CLASS_NAMES}.get(data["task"])
        if data.get("crop_mode") is None:
            data["crop_mode"] = "none"
        details = dict(data.pop("details", None) or {})
        details.update({key: data.pop(key) for key in list(data) if key not in names})
        values = {key: value for key, value in data.items() if value is not None}
        return cls(**values, details=details)

    def replace(self, **changes) -> ModelContract:
        """A copy with ``changes``; keys that are not fields are merged into ``details``."""
        names = {f.name for f in dataclasses.fields(self)}
        extra = {key: changes.pop(key) for key in list(changes) if key not in names}
        if extra:
            changes["details"] = {**dict(changes.get("details", self.details)), **extra}
        return dataclasses.replace(self, **changes)


def _pair(value) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ModelConfigError(f"model contract: input_range={value!r}: expected two "
                               "numbers (low, high)") from None
    if not low < high:
        raise ModelConfigError(f"model contract: input_range={value!r}: low must be < high")
    return low, high


def _json_values(values, what: str) -> dict:
    try:
        return json.loads(json.dumps(dict(values or {})))
    except (TypeError, ValueError) as error:
        raise ModelConfigError(f"model contract: {what} must be JSON values ({error})") \
            from None


# --------------------------------------------------------------------------- in memory


def attach_contract(model, contract: ModelContract):
    """Keep ``contract`` on the in-memory ``model`` (read back by :func:`read_contract`)."""
    if not isinstance(contract, ModelContract):
        raise TypeError(f"expected a ModelContract, got {type(contract).__name__}")
    setattr(model, _ATTRIBUTE, contract)
    return model


def update_contract(model, **changes) -> ModelContract:
    """Change fields of the contract of ``model`` (keys that are not fields go to
    ``details``), attach the result and return it.

    Raises:
        ModelConfigError: an invalid value.
    """
    contract = read_contract(model).replace(**changes)
    attach_contract(model, contract)
    return contract


def infer_contract(model) -> ModelContract:
    """The contract of a model built elsewhere, from its input and output shapes.

    ``(N, S, S, C) -> (N, S, S, 1)``: segmentation; ``-> (N, 1)``: binary;
    ``-> (N, K)``: multiclass with names ``class_0`` ...; crop mode ``none``.

    Raises:
        ModelFileError: more than one input or output, a non-square or unknown input size,
            or another output shape.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelFileError(f"model {model.name!r}: expected one input and one output, "
                             f"found {len(model.inputs)} and {len(model.outputs)}")
    in_shape = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    if len(in_shape) != 4 or in_shape[1] is None or in_shape[1] != in_shape[2]:
        raise ModelFileError(f"model {model.name!r}: input shape {in_shape} is not a "
                             "square image batch (N, S, S, C)")
    task = _task_from_shapes(in_shape, out_shape)
    if task is None:
        raise ModelFileError(f"model {model.name!r}: output shape {out_shape} is neither "
                             "class probabilities (N, K) nor a mask (N, S, S, 1)")
    if task == "multiclass":
        names = tuple(f"class_{i}" for i in range(int(out_shape[-1])))
    else:
        names = None  # the defaults of the task
    return ModelContract.from_dict({"task": task, "class_names": names,
                                    "image_size": int(in_shape[1]),
                                    "channels": int(in_shape[-1])})


def _task_from_shapes(in_shape, out_shape) -> str | None:
    if len(out_shape) == 4 and out_shape[-1] == 1 and out_shape[1:3] == in_shape[1:3]:
        return "segmentation"
    if len(out_shape) == 2 and out_shape[-1] is not None:
        return "binary" if out_shape[-1] == 1 else "multiclass"
    return None


def is_segmentation_model(model) -> bool:
    """Whether ``model`` outputs a tumor map: its contract's task, or for a model without
    one, an output ``(N, S, S, 1)`` the size of its one ``(N, S, S, C)`` input."""
    contract = getattr(model, _ATTRIBUTE, None)
    if contract is not None:
        return contract.task == "segmentation"
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return False
    return _task_from_shapes(tuple(model.inputs[0].shape),
                             tuple(model.outputs[0].shape)) == "segmentation"


# --------------------------------------------------------------------------- reading


def read_contract(path_or_model) -> ModelContract | None:
    """The contract of a ``.keras`` file or of an in-memory model.

    Args:
        path_or_model: a ``.keras`` path (read from the archive without building the
            model), or a ``keras.Model``.

    Returns:
        For a path: the contract in the archive, else the contract of the previous
        version (a ``ModelMetadata`` layer, or a ``model.json`` beside the file), else
        ``None`` (a ``.keras`` file from elsewhere). For a model: the attached contract,
        else one inferred from its shapes (:func:`infer_contract`).

    Raises:
        ModelFileError: a missing or unreadable archive, or an invalid contract in it.
    """
    if not isinstance(path_or_model, str | os.PathLike):
        contract = getattr(path_or_model, _ATTRIBUTE, None)
        return contract if contract is not None else infer_contract(path_or_model)
    path = Path(path_or_model)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = json.loads(archive.read("metadata.json"))
            data = metadata.get(CONTRACT_KEY) if isinstance(metadata, dict) else None
            if data is None:
                data = legacy_layer_metadata(json.loads(archive.read("config.json")))
                if data is not None:
                    logger.info("%s: contract read from its metadata layer (previous "
                                "version)", path)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise ModelFileError(f"{path}: not a .keras model archive ({error})") from None
    if data is None:
        data = legacy_sidecar(path)
        if data is None:
            return None
        logger.info("%s: contract read from the model.json beside it (previous version)", path)
    try:
        return ModelContract.from_dict(data)
    except ModelConfigError as error:
        raise ModelFileError(f"{path}: invalid {error}") from None


# --------------------------------------------------------------------------- writing


def save_with_contract(model, path: str | os.PathLike,
                       contract: ModelContract | None = None) -> Path:
    """Save the inference file of ``model``: uncompiled, contract inside, atomically.

    The file is what ``keras.saving.load_model(path)`` opens without this toolkit: the
    model's graph and weights (a fresh uncompiled ``keras.Model`` over the same layers,
    so no optimizer state, loss or metric objects), with a ``ModelMetadata`` layer of
    the previous version replaced by a standard ``Identity``. The contract (``contract``,
    else the model's own, see :func:`read_contract`), with the current library versions,
    goes into the archive's ``metadata.json``. Written to a temporary file in the same
    folder, then renamed over ``path``.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ModelConfigError: ``contract`` does not match the model's input.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelConfigError(f"{path}: a model file must end in .keras")
    contract = (contract if contract is not None else read_contract(model)).replace(
        versions=library_versions())
    shape = tuple(model.inputs[0].shape[1:])
    if shape != contract.input_shape:
        raise ModelConfigError(f"{path}: the contract's input {contract.input_shape} does "
                               f"not match the model's {shape}")
    graph = without_legacy_layers(model)
    # .input / .output keep the model's structure (one tensor, not a list of one), so
    # model(x) and the serving signature of model.export take the array itself
    inference = keras.Model(graph.input, graph.output, name=model.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = path.with_name(f".{path.stem}.saving.keras")
    final = path.with_name(f".{path.stem}.tmp.keras")
    try:
        inference.save(saved)
        _copy_with_contract(saved, final, contract)
        os.replace(final, path)
    finally:
        for leftover in (saved, final):
            leftover.unlink(missing_ok=True)
    return path


def _copy_with_contract(source: Path, target: Path, contract: ModelContract) -> None:
    """Copy the archive ``source`` to ``target`` with the contract in ``metadata.json``."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            # a fresh ZipInfo: writing fills in offsets and sizes of the one it is given
            copy = zipfile.ZipInfo(info.filename, info.date_time)
            copy.compress_type, copy.external_attr = info.compress_type, info.external_attr
            if info.filename == "metadata.json":
                metadata = json.loads(zin.read(info))
                metadata[CONTRACT_KEY] = contract.to_dict()
                zout.writestr(copy, json.dumps(metadata, indent=1))
                continue
            large = info.file_size > 1 << 31
            with zin.open(info) as src, zout.open(copy, "w", force_zip64=large) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a saved model depends on."""
    versions = {"python": platform.python_version(), "bone_tumor_tf": TOOLKIT_VERSION,
                "keras": keras.__version__, "keras_backend": keras.backend.backend(),
                "numpy": np.__version__}
    backend = sys.modules.get(keras.backend.backend())  # imported by Keras already
    if backend is not None and hasattr(backend, "__version__"):
        versions[keras.backend.backend()] = str(backend.__version__)
    return versions
