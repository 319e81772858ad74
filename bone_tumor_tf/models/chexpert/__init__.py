"""torchxrayvision's CheXpert DenseNet121 as a Keras backbone: checkpoint conversion and loading.

The thesis' best bone-tumour classifier starts from torchxrayvision's
``densenet121-res224-chex`` model (Cohen et al., 2022, "TorchXRayVision: A library of chest
X-ray datasets and models", MIDL, https://arxiv.org/abs/2111.00595): a DenseNet121
(Huang et al., 2017, "Densely Connected Convolutional Networks", CVPR,
https://arxiv.org/abs/1608.06993) with ONE input channel, trained on CheXpert
(Irvin et al., 2019, AAAI). Its inputs are radiographs rescaled from [0, 255] to
[-1024, 1024] (``xrv.datasets.normalize(img, 255)`` = ``img / 255 * 2048 - 1024``).

Modules: :mod:`.convert` (PyTorch checkpoint -> layer-weights file; the only one that needs
PyTorch) and :mod:`.backbone` (the Keras backbone, the layer mapping, weight loading).

Conversion::

    bone-tumor convert-chexpert SRC DST.weights.h5 [--channels 1|3]

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

from bone_tumor_tf.models.chexpert.backbone import (
    DENSENET121_BLOCKS,
    KERAS_BN_EPSILON,
    XRV_OFFSET,
    XRV_SCALE,
    chexpert_densenet121,
    densenet121_layer_map,
    densenet121_weighted_layers,
    load_densenet121_weights,
    xrv_normalization,
)
from bone_tumor_tf.models.chexpert.convert import (
    TORCH_BN_EPSILON,
    convert_checkpoint,
    convert_state_dict,
    load_torch_state_dict,
)
from bone_tumor_tf.models.weights import DEFAULT_CHEXPERT_WEIGHTS, chexpert_weights_path

__all__ = [
    "DEFAULT_CHEXPERT_WEIGHTS",
    "DENSENET121_BLOCKS",
    "KERAS_BN_EPSILON",
    "TORCH_BN_EPSILON",
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
    "xrv_normalization",
]

