"""Custom Keras layers of the toolkit: currently none, on purpose.

Every model in :mod:`bone_tumor_tf.models` is built from standard Keras layers, so a saved
``.keras`` file loads with ``keras.models.load_model(path, safe_mode=True)`` without any
custom code to import or trust. In particular the Attention U-Net's additive attention gate
(Oktay et al., 2018, arXiv:1804.03999) is :func:`bone_tumor_tf.models.unet.apply_attention_gate`,
a composition of ``Conv2D`` / ``Add`` / ``Activation`` / ``UpSampling2D`` / ``Multiply``.

If a layer ever has to be custom, define it here as a
``@keras.saving.register_keras_serializable(package="bone_tumor_tf")`` class with a complete
``get_config`` (and import this module before loading a model that uses it).
"""

__all__: list[str] = []
