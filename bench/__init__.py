"""Benchmark suite of bone_tumor_tf: ``make bench`` (``python -m bench.run``).

One module per target, each with a ``run(...)`` returning one entry of
``bench/results.json``; every figure is a ratio of two arms measured side by side
(:mod:`bench.common`). Inputs are synthetic BTXRD-format radiographs at realistic sizes
(1-3 megapixel JPEGs), generated once into ``bench/out/``.

* :mod:`bench.input_pipeline`: training throughput, real pipeline vs in-memory tensors.
* :mod:`bench.hardware_peak`: training FLOP/s of ResNet50 / DenseNet121 vs matmul peak.
* :mod:`bench.frozen_phase`: phase 1 on cached features vs plain frozen training.
* :mod:`bench.predict_throughput`: predict over a folder vs model.predict on tensors.
* :mod:`bench.gradcam_batching`: batched vs one-at-a-time Grad-CAM.
* :mod:`bench.memory`: peak resident memory of a DenseNet121 run on 3,746 images.
* :mod:`bench.gpu_jax`: the same classifiers' training images/s with Keras on JAX (GPU).
"""
