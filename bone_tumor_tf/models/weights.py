"""Where pretrained backbone weights come from, and how they reach a flat classifier graph.

Weights sources (the ``weights=`` argument of :func:`~bone_tumor_tf.models.build_classifier`):

* ``"none"`` (or ``None``): random initialisation.
* ``"imagenet"``: the Keras Applications "notop" file already present in the Keras cache,
  ``$KERAS_HOME/models/`` (default ``~/.keras/models/``; Keras falls back to
  ``/tmp/.keras/models/`` when the home folder is read-only, so that is searched too when
  ``KERAS_HOME`` is unset). ``"imagenet:PATH"`` names the file explicitly. Nothing is ever
  downloaded: a missing file raises :class:`~bone_tumor_tf.errors.WeightsNotFoundError`
  with the URL to fetch it from on a machine with internet.
* ``"chexpert"``: the torchxrayvision ``densenet121-res224-chex`` backbone converted by
  ``python -m bone_tumor_tf.models.chexpert convert`` (see :mod:`.chexpert`), looked up as
  ``$BONE_TUMOR_WEIGHTS_DIR/densenet121-res224-chex.weights.h5`` (default folder: the
  Keras cache above). ``"chexpert:PATH"`` names the converted file explicitly.
* any other string: a path to backbone weights. A file written by the CheXpert converter
  (recognised by its root attribute ``format``) is treated like ``"chexpert:PATH"``; any
  other ``.h5`` / ``.weights.h5`` file must be loadable by ``keras.applications.<Arch>(
  include_top=False, weights=PATH)`` (the legacy HDF5 layout of the Keras Applications
  files, or a Keras 3 ``backbone.save_weights("x.weights.h5")`` file) and is used with the
  ImageNet input normalisation.
* a path to a ``.keras`` classifier saved by this toolkit (a finished run's
  ``model.keras``) of the same architecture: its backbone (every layer but the input,
  preprocessing and head) initialises the new model, with that model's input
  normalisation; the head starts fresh, so the task, classes, crop mode and image size
  may all differ. This is transfer from an earlier run, e.g. from a classifier trained
  on tumor-box crops to one that reads whole radiographs. A U-Net of this toolkit whose
  encoder is that architecture (``segment --encoder densenet121``) is accepted the same
  way: its encoder layers carry the backbone's names, so a classifier can start from a
  backbone trained on the tumor masks (mask pretraining).

The flat classifier cannot load those files with ``model.load_weights`` (Keras matches
legacy files by layer order and Keras 3 files by model structure), so
:func:`load_keras_backbone_weights` loads the file into a standalone backbone exactly as
Keras Applications does and copies the arrays into the classifier by layer name.

The module also defines the small HDF5 "layer weights" format written by the CheXpert
converter: one group per Keras layer name holding datasets ``"0"``, ``"1"``, ... in
``layer.get_weights()`` order, plus root attributes (``format``, ``format_version`` and
whatever the writer adds). It is read by layer name, so it fits any graph whose layers
carry the expected names.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np

from bone_tumor_tf.errors import ModelConfigError, ModelFileError, WeightsNotFoundError
from bone_tumor_tf.models.contract import read_contract

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_CHEXPERT_WEIGHTS",
    "IMAGENET_NOTOP_FILES",
    "LAYER_WEIGHTS_FORMAT",
    "WeightsSource",
    "chexpert_weights_path",
    "copy_weights_by_name",
    "imagenet_weights_path",
    "is_layer_weights_file",
    "keras_models_dirs",
    "load_keras_backbone_weights",
    "read_layer_weights",
    "resolve_weights",
    "save_layer_weights",
    "weighted_layer_names",
]

#: Backbones the toolkit builds.
ARCHITECTURES = ("densenet121", "resnet50")

_KERAS_APPS_URL = "https://storage.googleapis.com/tensorflow/keras-applications"
#: ``arch -> (file name in the Keras cache, URL Keras downloads it from)``.
IMAGENET_NOTOP_FILES = {
    "resnet50": (
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        f"{_KERAS_APPS_URL}/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "densenet121": (
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        f"{_KERAS_APPS_URL}/densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
}

#: File name of the converted torchxrayvision CheXpert DenseNet121 backbone.
DEFAULT_CHEXPERT_WEIGHTS = "densenet121-res224-chex.weights.h5"
#: Environment variable naming the folder that holds :data:`DEFAULT_CHEXPERT_WEIGHTS`.
WEIGHTS_DIR_ENV = "BONE_TUMOR_WEIGHTS_DIR"

#: Value of the root attribute ``format`` of a layer-weights file.
LAYER_WEIGHTS_FORMAT = "bone_tumor_tf.layer_weights"
LAYER_WEIGHTS_FORMAT_VERSION = 1


# --------------------------------------------------------------------------- locations


def keras_models_dirs() -> list[Path]:
    """Folders searched for Keras Applications weight files, most preferred first.

    ``$KERAS_HOME/models`` when ``KERAS_HOME`` is set (read at call time, unlike Keras which
    reads it at import), otherwise ``~/.keras/models`` and ``/tmp/.keras/models`` (where
    Keras caches downloads when the home folder is not writable).
    """
    keras_home = os.environ.get("KERAS_HOME")
    if keras_home:
        return [Path(keras_home).expanduser() / "models"]
    return [Path("~/.keras/models").expanduser(), Path("/tmp/.keras/models")]


def imagenet_weights_path(arch: str) -> Path:
    """Path of the cached ImageNet "notop" weights of ``arch``; never downloads.

    Raises:
        WeightsNotFoundError: the file is in none of :func:`keras_models_dirs`; the message
            gives the URL to fetch it from.
    """
    arch = _check_arch(arch)
    filename, url = IMAGENET_NOTOP_FILES[arch]
    dirs = keras_models_dirs()
    for folder in dirs:
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(d / filename) for d in dirs)
    raise WeightsNotFoundError(
        f"ImageNet weights for {arch} not found (looked in {looked}); this toolkit never "
        f"downloads: on a machine with internet fetch {url} and copy it into {dirs[0]}"
    )


def chexpert_weights_path() -> Path:
    """Default location of the converted CheXpert backbone (the file need not exist).

    ``$BONE_TUMOR_WEIGHTS_DIR/densenet121-res224-chex.weights.h5``; without that variable,
    the first folder of :func:`keras_models_dirs` (``$KERAS_HOME/models`` or
    ``~/.keras/models``).
    """
    folder = os.environ.get(WEIGHTS_DIR_ENV)
    base = Path(folder).expanduser() if folder else keras_models_dirs()[0]
    return base / DEFAULT_CHEXPERT_WEIGHTS


def chexpert_missing_message(path: Path | str) -> str:
    """One-line explanation of how to obtain the converted CheXpert weights."""
    return (
        f"CheXpert DenseNet121 weights not found at {path}; on a machine with internet run "
        "`pip install torchxrayvision` and `python -c \"import torchxrayvision as xrv; "
        "xrv.models.DenseNet(weights='densenet121-res224-chex')\"`, which downloads "
        "~/.torchxrayvision/models_data/chex-densenet121-d121-tw-lr001-rot45-tr15-sc15-"
        "seed0-best.pt, then run `python -m bone_tumor_tf.models.chexpert convert "
        f"<that .pt> {path}` (or set ${WEIGHTS_DIR_ENV} to the folder holding "
        f"{DEFAULT_CHEXPERT_WEIGHTS})"
    )


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class WeightsSource:
    """A resolved ``weights=`` argument.

    Attributes:
        kind: ``"none"``, ``"imagenet"``, ``"chexpert"``, ``"file"`` (Keras-format
            backbone weights used with the ImageNet input normalisation) or ``"model"`` (a
            ``.keras`` classifier saved by this toolkit).
        path: the weights file (``None`` for ``"none"``); it exists.
        normalization: for ``"model"``, the saved model's input normalisation
            (``"caffe"``, ``"torch"`` or ``"xrv"``), which the new model must reuse.
    """

    kind: str
    path: Path | None = None
    normalization: str | None = None

    @property
    def backbone_channels(self) -> int:
        """Input channels of the backbone: 1 for CheXpert (and a saved classifier that
        started from it), 3 otherwise (ImageNet layout)."""
        return 1 if self.kind == "chexpert" or self.normalization == "xrv" else 3

    def describe(self) -> str:
        """Short, machine-independent description for model metadata, e.g. ``"imagenet"``."""
        if self.kind == "none" or self.path is None:
            return "none"
        return f"{self.kind}:{self.path.name}"


def resolve_weights(weights: str | os.PathLike | None, arch: str) -> WeightsSource:
    """Turn a ``weights=`` argument into a :class:`WeightsSource` whose file exists.

    Args:
        weights: ``None``/``"none"``, ``"imagenet"``, ``"imagenet:PATH"``, ``"chexpert"``,
            ``"chexpert:PATH"`` or a path (see the module docstring).
        arch: ``"densenet121"`` or ``"resnet50"``.

    Raises:
        ModelConfigError: unknown architecture, or CheXpert weights for a non-DenseNet121.
        WeightsNotFoundError: the weights file is missing.
    """
    arch = _check_arch(arch)
    if weights is None or (isinstance(weights, str) and weights.strip().lower() in ("", "none")):
        return WeightsSource("none")
    text = os.fspath(weights)
    lowered = text.lower()
    if lowered == "imagenet":
        return WeightsSource("imagenet", imagenet_weights_path(arch))
    if lowered.startswith("imagenet:"):
        path = _existing_file(text.split(":", 1)[1], f"ImageNet weights for {arch}")
        return WeightsSource("imagenet", path)
    if lowered == "chexpert" or lowered.startswith("chexpert:"):
        _check_chexpert_arch(arch)
        if lowered == "chexpert":
            path = chexpert_weights_path()
            if not path.is_file():
                raise WeightsNotFoundError(chexpert_missing_message(path))
        else:
            path = Path(text.split(":", 1)[1]).expanduser()
            if not path.is_file():
                raise WeightsNotFoundError(chexpert_missing_message(path))
        return WeightsSource("chexpert", path)
    path = _existing_file(text, "backbone weights")
    if path.suffix == ".keras":
        return _saved_classifier_source(path, arch)
    if is_layer_weights_file(path):
        _check_chexpert_arch(arch)
        return WeightsSource("chexpert", path)
    return WeightsSource("file", path)


def _saved_classifier_source(path: Path, arch: str) -> WeightsSource:
    """A ``.keras`` classifier, or U-Net with a backbone encoder, of this toolkit as a
    backbone source (read, not built)."""
    contract = read_contract(path)
    if contract is not None and contract.task == "segmentation":
        encoder = contract.details.get("encoder", "none")
        if encoder != arch:
            hint = (f"; train the U-Net with --encoder {arch}" if encoder == "none" else "")
            raise ModelConfigError(f"{path}: a U-Net with encoder {encoder} cannot initialise "
                                   f"a {arch} backbone{hint}")
        return WeightsSource("model", path, normalization=contract.normalization)
    if contract is None or contract.task not in ("binary", "multiclass"):
        raise ModelConfigError(f"{path}: not a classifier or encoder U-Net saved by "
                               "bone_tumor_tf (no contract), so its backbone cannot be "
                               "located")
    if contract.arch != arch:
        raise ModelConfigError(f"{path}: a {contract.arch} classifier cannot initialise "
                               f"a {arch} backbone")
    return WeightsSource("model", path, normalization=contract.normalization)


def _check_arch(arch: str) -> str:
    key = str(arch).lower()
    if key not in ARCHITECTURES:
        raise ModelConfigError(
            f"arch={arch!r}: unknown architecture, expected one of {', '.join(ARCHITECTURES)}"
        )
    return key


def _check_chexpert_arch(arch: str) -> None:
    if arch != "densenet121":
        raise ModelConfigError(
            f"weights='chexpert' with arch={arch!r}: CheXpert weights exist only for "
            "densenet121"
        )


def _existing_file(text: str, what: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{path}: {what} file not found (weights= takes 'none', 'imagenet', "
            "'imagenet:PATH', 'chexpert', 'chexpert:PATH', a .h5/.weights.h5 file, or a .keras "
            "classifier or encoder U-Net)"
        )
    return path


# --------------------------------------------------------------------------- copying


def weighted_layer_names(model) -> list[str]:
    """Names of the layers of ``model`` that own weights, in ``model.layers`` order."""
    return [layer.name for layer in model.layers if layer.weights]


def copy_weights_by_name(source, target, names: Iterable[str] | None = None) -> list[str]:
    """Copy the weights of same-named layers from ``source`` to ``target``.

    Args:
        source: a model whose layers hold the weights.
        target: a model with layers of the same names (e.g. the flat classifier).
        names: layers to copy; default every weighted layer of ``source``.

    Returns:
        The copied layer names.

    Raises:
        ModelFileError: a layer is missing from ``target`` or its weight shapes differ.
    """
    names = list(names) if names is not None else weighted_layer_names(source)
    target_names = {layer.name for layer in target.layers}
    for name in names:
        if name not in target_names:
            raise ModelFileError(f"{target.name}: no layer named {name!r} to receive weights")
        values = source.get_layer(name).get_weights()
        layer = target.get_layer(name)
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(v.shape) for v in values]
        if expected != found:
            raise ModelFileError(
                f"{target.name}: layer {name!r} expects weight shapes {expected}, "
                f"found {found}"
            )
        layer.set_weights(values)
    return names


def load_keras_backbone_weights(model, path: Path | str, arch: str, image_size: int) -> list[str]:
    """Load Keras-format backbone weights into the backbone layers of a flat model.

    The file is first loaded into a standalone ``keras.applications.<Arch>(
    include_top=False, weights=path, input_shape=(image_size, image_size, 3))``, which is
    exactly how Keras Applications reads its own ImageNet files (legacy HDF5, by layer
    order; or Keras 3 ``.weights.h5``, by structure), then copied by layer name.

    Returns:
        The names of the layers that received weights.

    Raises:
        ModelFileError: the file does not fit the architecture.
    """
    arch = _check_arch(arch)
    builder = {"resnet50": keras.applications.ResNet50,
               "densenet121": keras.applications.DenseNet121}[arch]
    try:
        backbone = builder(
            include_top=False, weights=str(path), input_shape=(image_size, image_size, 3)
        )
    except (ValueError, KeyError, OSError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ModelFileError(f"{path}: not {arch} backbone weights Keras can load ({detail})") \
            from exc
    return copy_weights_by_name(backbone, model)


# --------------------------------------------------------------------------- layer-weights file


def save_layer_weights(
    path: Path | str, weights: Mapping[str, list[np.ndarray]], **attrs
) -> Path:
    """Write a layer-weights HDF5 file (written to a temporary name, then renamed).

    Args:
        path: destination, conventionally ``*.weights.h5``.
        weights: ``layer name -> arrays`` in ``layer.get_weights()`` order.
        **attrs: extra root attributes (strings or numbers), e.g. ``source``, ``channels``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = LAYER_WEIGHTS_FORMAT
        f.attrs["format_version"] = LAYER_WEIGHTS_FORMAT_VERSION
        for key, value in attrs.items():
            f.attrs[key] = value
        for name, arrays in weights.items():
            group = f.create_group(name)
            for i, array in enumerate(arrays):
                group.create_dataset(str(i), data=np.asarray(array))
    os.replace(tmp, path)
    return path


def is_layer_weights_file(path: Path | str) -> bool:
    """Whether ``path`` is an HDF5 file written by :func:`save_layer_weights`."""
    try:
        with h5py.File(path, "r") as f:
            return _attr_str(f.attrs.get("format")) == LAYER_WEIGHTS_FORMAT
    except OSError:
        return False


def read_layer_weights(path: Path | str) -> tuple[dict[str, list[np.ndarray]], dict]:
    """Read a layer-weights file.

    Returns:
        ``(weights, attrs)``: ``layer name -> arrays`` and the root attributes.

    Raises:
        WeightsNotFoundError: the file does not exist.
        ModelFileError: not HDF5, or not written by :func:`save_layer_weights`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: weights file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ModelFileError(f"{path}: not an HDF5 weights file ({exc})") from exc
    with f:
        attrs = {key: _attr_str(value) for key, value in f.attrs.items()}
        if attrs.get("format") != LAYER_WEIGHTS_FORMAT:
            raise ModelFileError(
                f"{path}: not a bone_tumor_tf layer-weights file (no root attribute "
                f"format={LAYER_WEIGHTS_FORMAT!r}); convert checkpoints with "
                "`python -m bone_tumor_tf.models.chexpert convert`"
            )
        version = int(attrs.get("format_version", 0))
        if version > LAYER_WEIGHTS_FORMAT_VERSION:
            raise ModelFileError(
                f"{path}: layer-weights format version {version} is newer than this "
                f"toolkit reads ({LAYER_WEIGHTS_FORMAT_VERSION})"
            )
        weights = {}
        for name, group in f.items():
            if not isinstance(group, h5py.Group):
                continue
            weights[name] = [np.asarray(group[str(i)][()]) for i in range(len(group))]
    return weights, attrs


def _attr_str(value):
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.generic):
        return value.item()
    return value
