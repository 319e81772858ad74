"""U-Net and Attention U-Net for bone-tumor segmentation on radiographs.

References:
    - Ronneberger, Fischer, Brox. "U-Net: Convolutional Networks for Biomedical Image
      Segmentation." MICCAI 2015. arXiv:1505.04597.
    - Oktay et al. "Attention U-Net: Learning Where to Look for the Pancreas." MIDL 2018.
      arXiv:1804.03999.
    - He et al. "Deep Residual Learning for Image Recognition." CVPR 2016 (ResNet50 encoder).
    - Huang et al. "Densely Connected Convolutional Networks." CVPR 2017 (DenseNet121 encoder).

Input contract (all builders): one grayscale radiograph per sample, shape ``(S, S, 1)``,
float values in ``[0, 255]``. The model rescales internally (``Rescaling(1/255)``, layer
``"rescale"``), so a saved ``.keras`` file is self-contained: feed it raw pixel values.

Output: layer ``"mask"`` (:data:`OUTPUT_NAME`), shape ``(N, S, S, 1)``, float32 tumor
probabilities in ``[0, 1]`` (sigmoid), whatever the global dtype policy.

Every model is built from standard Keras layers only (no ``Lambda``, no custom layer), so
``keras.saving.load_model(path)`` loads it with nothing registered; its contract
(:mod:`bone_tumor_tf.models.contract`) is attached by :func:`build_unet`. The
encoder variants put the ``keras.applications`` backbone's layers directly into the graph
(built with ``input_tensor=``), so the saved graph is flat (no nested ``Model``).

Layer names (``"enc{i}"`` / ``"dec{i}"`` work at stride ``2**(i-1)``, i.e. ``dec1`` is
full resolution):

- plain encoder: ``enc{i}_{1,2}_{conv,bn,relu}``, ``enc{i}_pool``; ``bottleneck_*``;
  ``bottleneck_dropout`` when ``dropout > 0``.
- decoder: ``dec{i}_upconv`` (2x2 transposed conv), ``dec{i}_concat``,
  ``dec{i}_{1,2}_{conv,bn,relu}``; with ``attention=True`` the gate on that level's skip
  is ``dec{i}_att_*``: ``dec{i}_att_alpha`` is the sigmoid attention map at the gating
  (coarse) resolution, ``dec{i}_att_alpha_up`` the same map at the skip's resolution.
- ``"mask"``: the 1x1 sigmoid output conv.
"""

from __future__ import annotations

import keras
from keras import layers

from bone_tumor_tf.errors import ModelConfigError
from bone_tumor_tf.models.contract import SEGMENTATION_CLASS_NAMES, ModelContract, attach_contract
from bone_tumor_tf.models.weights import IMAGENET_NOTOP_FILES, WeightsSource, resolve_weights

INPUT_NAME = "image"
OUTPUT_NAME = "mask"

ENCODERS = ("none", "resnet50", "densenet121")

#: Intermediate ``keras.applications`` layers used as skips, for strides 2, 4, 8, 16
#: (in that order), and the bottleneck at stride 32. Spatial sizes checked on a 64 px input:
#: 32, 16, 8, 4 and 2.
ENCODER_LAYERS = {
    "resnet50": {
        "skips": ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out"),
        "bottleneck": "conv5_block3_out",
    },
    "densenet121": {
        "skips": ("conv1_relu", "pool2_relu", "pool3_relu", "pool4_relu"),
        "bottleneck": "relu",
    },
}

#: ImageNet normalisation of each backbone, expressed on the ``[0, 1]`` scale (after
#: ``Rescaling(1/255)``): ``x_norm = (x - mean) / std`` per channel. ResNet50 uses Caffe
#: preprocessing (BGR mean subtraction on the 0-255 scale, no scaling): the gray image is
#: replicated to 3 identical channels, so the RGB->BGR flip is a no-op and only the BGR
#: means matter. DenseNet121 uses "torch" preprocessing (ImageNet mean / std on [0, 1]).
ENCODER_NORMALISATION = {
    "resnet50": {
        "mean": (103.939 / 255.0, 116.779 / 255.0, 123.68 / 255.0),
        "std": (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0),
    },
    "densenet121": {
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    },
}

#: File names ``keras.applications`` caches its ImageNet ``include_top=False`` weights as.
IMAGENET_WEIGHT_FILES = {arch: name for arch, (name, _) in IMAGENET_NOTOP_FILES.items()}
#: The contract's ``normalization`` of each encoder (see :data:`ENCODER_NORMALISATION`).
_CONTRACT_NORMALIZATION = {"none": "unit", "resnet50": "caffe", "densenet121": "torch"}

_BACKBONES = {
    "resnet50": keras.applications.ResNet50,
    "densenet121": keras.applications.DenseNet121,
}


# --------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------


def apply_conv_block(x, filters, name, kernel_size=3):
    """Two (conv -> BatchNorm -> ReLU) units, the U-Net level block (Ronneberger et al., 2015).

    Unlike the paper's unpadded convolutions, convs use ``padding="same"`` so the spatial
    size is kept and the output mask matches the input size; conv biases are dropped
    because BatchNorm follows.

    Args:
        x: tensor ``(N, H, W, C_in)``.
        filters: output channels ``C_out`` of both convs.
        name: prefix; layers are ``f"{name}_{k}_conv"``, ``f"{name}_{k}_bn"``,
            ``f"{name}_{k}_relu"`` for ``k`` in 1, 2.
        kernel_size: conv kernel size (3 in the paper).

    Returns:
        Tensor ``(N, H, W, filters)``, values >= 0.
    """
    for k in (1, 2):
        x = layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=f"{name}_{k}_conv",
        )(x)
        x = layers.BatchNormalization(name=f"{name}_{k}_bn")(x)
        x = layers.Activation("relu", name=f"{name}_{k}_relu")(x)
    return x


def apply_attention_gate(x_l, g, inter_channels, name):
    """Additive attention gate (Oktay et al., 2018, eqs. 1-2), standard Keras layers only.

    ``q_att = psi^T(ReLU(W_x^T x_l + W_g^T g + b_g)) + b_psi``, ``alpha = sigmoid(q_att)``,
    output ``x_l * alpha`` (alpha broadcast over the channels of ``x_l``).

    Resampling (the paper's choice): ``x_l`` is brought down to the gating grid by a
    strided ``W_x``; alpha is computed on that coarse grid and upsampled bilinearly back to
    ``x_l``'s grid. Following the authors' reference implementation
    (ozan-oktay/Attention-Gated-Networks, ``GridAttentionBlock``: ``theta`` with
    ``kernel_size = stride = sub_sample_factor``), ``W_x`` is an ``f x f`` convolution with
    stride ``f``, where ``f = size(x_l) / size(g)`` per axis (2 in a U-Net), so every skip
    pixel contributes to alpha; for ``f = 1`` it is the paper's 1x1 convolution. ``W_x``
    has no bias (the paper's single additive bias is ``b_g``, carried by ``W_g``); ``W_g``
    and ``psi`` are 1x1 convolutions with biases ``b_g`` and ``b_psi``.

    Args:
        x_l: skip features (the paper's x^l, F_l channels), ``(N, H, W, F_l)``; H, W static.
        g: gating signal from the coarser decoder level, ``(N, H/f_h, W/f_w, F_g)``,
            ``f_h``, ``f_w`` positive integers (static).
        inter_channels: ``F_int``, channels of ``W_x^T x_l`` and ``W_g^T g``.
        name: prefix. Layers: ``f"{name}_W_x"``, ``f"{name}_W_g"``, ``f"{name}_add"``,
            ``f"{name}_relu"``, ``f"{name}_psi"`` (q_att, logits), ``f"{name}_alpha"``
            (sigmoid, coarse grid, ``(N, H/f_h, W/f_w, 1)``), ``f"{name}_alpha_up"``
            (bilinear upsampling to ``(N, H, W, 1)``; only when ``f > 1``),
            ``f"{name}_out"`` (the product).

    Returns:
        The gated skip ``x_l * alpha``, shape ``(N, H, W, F_l)`` (same as ``x_l``).
        ``alpha`` lies in ``[0, 1]`` (bilinear interpolation keeps it there).

    Raises:
        ValueError: if spatial sizes are unknown or ``x_l``'s is not an integer multiple
            of ``g``'s.
    """
    factors = []
    for axis in (1, 2):
        size_x, size_g = x_l.shape[axis], g.shape[axis]
        if size_x is None or size_g is None:
            raise ValueError(
                f"apply_attention_gate {name!r}: spatial sizes must be static, "
                f"got x_l {tuple(x_l.shape)} and g {tuple(g.shape)}"
            )
        if size_g == 0 or size_x % size_g:
            raise ValueError(
                f"apply_attention_gate {name!r}: x_l size {size_x} is not an integer "
                f"multiple of g size {size_g} (x_l {tuple(x_l.shape)}, g {tuple(g.shape)})"
            )
        factors.append(size_x // size_g)
    factors = tuple(factors)

    W_x = layers.Conv2D(
        inter_channels, factors, strides=factors, padding="valid", use_bias=False, name=f"{name}_W_x"
    )
    W_g = layers.Conv2D(inter_channels, 1, use_bias=True, name=f"{name}_W_g")
    psi = layers.Conv2D(1, 1, use_bias=True, name=f"{name}_psi")

    sigma_1 = layers.Activation("relu", name=f"{name}_relu")(
        layers.Add(name=f"{name}_add")([W_x(x_l), W_g(g)])
    )
    q_att = psi(sigma_1)
    alpha = layers.Activation("sigmoid", name=f"{name}_alpha")(q_att)
    if factors != (1, 1):
        alpha = layers.UpSampling2D(
            size=factors, interpolation="bilinear", name=f"{name}_alpha_up"
        )(alpha)
    return layers.Multiply(name=f"{name}_out")([x_l, alpha])


def apply_up_block(x, skip, filters, name, attention=False, inter_channels=None):
    """U-Net decoder level: 2x2 stride-2 transposed conv, (gated) skip concat, conv block.

    Args:
        x: coarser decoder features ``(N, H, W, C)``; also the gating signal ``g``.
        skip: encoder features ``(N, 2H, 2W, C_skip)``, or ``None`` for a level without
            a skip (the last level of the encoder variants).
        filters: channels of the transposed conv and of the conv block.
        name: prefix: ``f"{name}_upconv"``, ``f"{name}_att_*"`` (gate),
            ``f"{name}_concat"``, ``f"{name}_{k}_{conv,bn,relu}"``.
        attention: gate the skip with :func:`apply_attention_gate` (``g = x``).
        inter_channels: gate's ``F_int``; default ``max(1, filters // 2)``.

    Returns:
        Tensor ``(N, 2H, 2W, filters)``, values >= 0.
    """
    up = layers.Conv2DTranspose(
        filters, 2, strides=2, padding="same", kernel_initializer="he_normal", name=f"{name}_upconv"
    )(x)
    if skip is not None:
        if attention:
            if inter_channels is None:
                inter_channels = max(1, filters // 2)
            skip = apply_attention_gate(skip, x, inter_channels, name=f"{name}_att")
        up = layers.Concatenate(name=f"{name}_concat")([up, skip])
    return apply_conv_block(up, filters, name)


# --------------------------------------------------------------------------------------
# Encoder weights
# --------------------------------------------------------------------------------------


def resolve_encoder_weights(encoder, encoder_weights):
    """Turn the ``encoder_weights`` option into a file path for ``keras.applications``, or None.

    Resolved by :func:`bone_tumor_tf.models.weights.resolve_weights`, like the classifiers'
    weights; never downloads anything.

    Args:
        encoder: ``"resnet50"`` or ``"densenet121"``.
        encoder_weights: ``"none"`` / ``None`` (random init), ``"imagenet"`` (the
            ``include_top=False`` file Keras caches in ``$KERAS_HOME/models`` or, without
            ``KERAS_HOME``, ``~/.keras/models`` then ``/tmp/.keras/models``),
            ``"imagenet:PATH"``, or a path to a weights file ``keras.applications``
            accepts via ``weights=path`` (the official ``*_notop.h5`` or a ``.weights.h5``
            saved from the same backbone).

    Returns:
        ``str`` path or ``None``.

    Raises:
        WeightsNotFoundError: the file is not there (message says where and how to get it).
        ModelConfigError: CheXpert weights or a saved classifier, which the U-Net's
            three-channel ImageNet encoder cannot use.
    """
    source = _encoder_source(encoder, encoder_weights)
    return None if source.path is None else str(source.path)


def _encoder_source(encoder, encoder_weights) -> WeightsSource:
    source = resolve_weights(encoder_weights, encoder)
    if source.kind not in ("none", "imagenet", "file"):
        raise ModelConfigError(
            f"encoder_weights={encoder_weights!r}: {source.kind} weights cannot initialise a "
            "U-Net encoder; pass 'none', 'imagenet' or a .h5 / .weights.h5 backbone file"
        )
    return source


# --------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------


def _check_int(value, what, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")


def build_unet(
    image_size=256,
    base_filters=32,
    depth=4,
    attention=False,
    encoder="none",
    encoder_weights="none",
    dropout=0.0,
    name=None,
):
    """Build a (Attention) U-Net, optionally with an ImageNet-style backbone as encoder.

    Plain (``encoder="none"``; Ronneberger et al., 2015): ``depth`` down-sampling levels
    (2x2 max-pool), each a :func:`apply_conv_block` with ``base_filters * 2**(i-1)``
    filters at level ``i``; a bottleneck block with ``base_filters * 2**depth`` filters
    (then ``Dropout(dropout)``, as at the end of the paper's contracting path, if
    ``dropout > 0``); a mirrored decoder of :func:`apply_up_block`; a 1x1 sigmoid conv.

    ``attention=True`` (Oktay et al., 2018): every skip goes through
    :func:`apply_attention_gate`, gated by the coarser decoder features, ``F_int`` =
    half of that level's decoder filters.

    ``encoder="resnet50"|"densenet121"``: the gray image is replicated to 3 channels and
    ImageNet-normalised (``"gray_to_rgb"``, ``"imagenet_norm"``), then fed as
    ``input_tensor`` to the ``keras.applications`` backbone (``include_top=False``; its
    layers keep their Keras names, see :data:`ENCODER_LAYERS`). Skips come from strides
    2, 4, 8, 16, the bottleneck is the stride-32 output; the decoder has 5 levels
    ``dec5`` .. ``dec1`` (``dec{i}`` at stride ``2**(i-1)`` with ``base_filters *
    2**(i-1)`` filters), the last one (full resolution) without a skip.

    Args:
        image_size: S, the input is ``(S, S, 1)``. Must be a positive multiple of
            ``2**depth`` (16 by default) for the plain U-Net, of 32 with an encoder.
        base_filters: filters at full resolution (doubling per level).
        depth: number of down-sampling levels of the plain U-Net (4 in the paper). With an
            encoder the backbone fixes it: only 4 (skip levels) is accepted.
        attention: add attention gates on the skips.
        encoder: ``"none"``, ``"resnet50"`` or ``"densenet121"``.
        encoder_weights: ``"none"``, ``"imagenet"`` (only from the local Keras cache) or a
            weights file path; see :func:`resolve_encoder_weights`. Never downloads.
        dropout: dropout rate in ``[0, 1)`` after the bottleneck.
        name: model name; default ``"[attention_]unet[_<encoder>]"``.

    Returns:
        ``keras.Model`` mapping ``(N, S, S, 1)`` float in ``[0, 255]`` (input ``"image"``)
        to ``(N, S, S, 1)`` float32 probabilities in ``[0, 1]`` (output ``"mask"``), with
        its contract attached (task ``segmentation``, threshold 0.5 until training sets
        its own; :func:`~bone_tumor_tf.models.contract.read_contract`).

    Raises:
        ValueError: bad option or image size (:class:`ModelConfigError` for weights that
            do not fit the encoder).
        WeightsNotFoundError: ``encoder_weights`` points to a missing file.
    """
    encoder = "none" if encoder is None else str(encoder).lower()
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
    _check_int(base_filters, "base_filters", 1)
    _check_int(depth, "depth", 1)
    _check_int(image_size, "image_size", 1)
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if encoder == "none":
        if encoder_weights is not None and str(encoder_weights).lower() != "none":
            raise ValueError(
                f"encoder_weights={encoder_weights!r} needs an encoder "
                f"('resnet50' or 'densenet121'); the plain U-Net has no pretrained weights"
            )
        multiple = 2**depth
    else:
        if depth != 4:
            raise ValueError(
                f"depth={depth} is not supported with encoder={encoder!r}: the backbone "
                f"fixes 4 skip levels (strides 2-16) and a stride-32 bottleneck; use depth=4"
            )
        multiple = 32
    if image_size % multiple:
        reason = (
            f"the {encoder} encoder downsamples by 32"
            if encoder != "none"
            else f"depth={depth} halves it {depth} times"
        )
        suggestion = max(multiple, round(image_size / multiple) * multiple)
        raise ValueError(
            f"image_size={image_size} is not supported: it must be a positive multiple of "
            f"{multiple} ({reason}), e.g. {suggestion}"
        )

    if name is None:
        name = ("attention_" if attention else "") + "unet"
        if encoder != "none":
            name += f"_{encoder}"

    inputs = keras.Input((image_size, image_size, 1), name=INPUT_NAME)
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)

    if encoder == "none":
        skips = []
        for i in range(1, depth + 1):
            x = apply_conv_block(x, base_filters * 2 ** (i - 1), name=f"enc{i}")
            skips.append(x)
            x = layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
        x = apply_conv_block(x, base_filters * 2**depth, name="bottleneck")
        n_levels = depth
    else:
        source = _encoder_source(encoder, encoder_weights)
        norm = ENCODER_NORMALISATION[encoder]
        x = layers.Concatenate(axis=-1, name="gray_to_rgb")([x, x, x])
        x = layers.Normalization(
            axis=-1,
            mean=list(norm["mean"]),
            variance=[s * s for s in norm["std"]],
            name="imagenet_norm",
        )(x)
        weights_path = None if source.path is None else str(source.path)
        backbone = _BACKBONES[encoder](include_top=False, weights=weights_path, input_tensor=x)
        # skip of dec{i} is at stride 2**(i-1); dec1 (stride 1) has none
        skips = [None] + [backbone.get_layer(n).output for n in ENCODER_LAYERS[encoder]["skips"]]
        x = backbone.get_layer(ENCODER_LAYERS[encoder]["bottleneck"]).output
        n_levels = 5

    if dropout > 0:
        x = layers.Dropout(float(dropout), name="bottleneck_dropout")(x)

    for i in range(n_levels, 0, -1):
        x = apply_up_block(
            x, skips[i - 1], base_filters * 2 ** (i - 1), name=f"dec{i}", attention=attention
        )

    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name=name)
    weights_source = "none" if encoder == "none" else source.describe()
    return attach_contract(model, ModelContract(
        task="segmentation", class_names=SEGMENTATION_CLASS_NAMES, image_size=image_size,
        channels=1, crop_mode="none", normalization=_CONTRACT_NORMALIZATION[encoder],
        weights_source=weights_source, arch="attention-unet" if attention else "unet",
        details={"encoder": encoder, "base_filters": base_filters,
                 "depth": depth if encoder == "none" else 4}))


def attention_layer_names(model, upsampled=False):
    """Names of the attention-map layers of a model built by :func:`build_unet`.

    Args:
        model: a model (e.g. loaded from ``.keras``).
        upsampled: return the ``*_att_alpha_up`` layers (alpha at the skip resolution)
            instead of ``*_att_alpha`` (gating resolution).

    Returns:
        List of layer names, finest level (``dec1``) first; empty without attention.
    """
    suffix = "_att_alpha_up" if upsampled else "_att_alpha"
    names = [layer.name for layer in model.layers if layer.name.endswith(suffix)]
    return sorted(names, key=lambda n: int(n[3 : n.index("_")]) if n.startswith("dec") else 0)
