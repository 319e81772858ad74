"""Phase 1 on cached backbone features gives the same model as the normal classifier."""

from __future__ import annotations

import numpy as np
import pytest

from bone_tumor_tf.training import feature_cache


def _randomize_head(model, seed: int) -> None:
    """Non-trivial head weights and BatchNorm statistics (fresh ones are too regular)."""
    rng = np.random.default_rng(seed)
    for name in ("head_dense1", "head_bn", "head_dense2", "head_dense", "predictions"):
        if name in {layer.name for layer in model.layers}:
            layer = model.get_layer(name)
            layer.set_weights([np.abs(w) + rng.uniform(0.1, 0.5, w.shape).astype(w.dtype)
                               if "bn" in name else rng.normal(0, 0.2, w.shape).astype(w.dtype)
                               for w in layer.get_weights()])


@pytest.mark.parametrize("arch", ["resnet50", "densenet121"])
def test_backbone_features_then_head_equals_the_full_model(arch):
    from bone_tumor_tf.models.classifiers import build_classifier

    model = build_classifier(arch, "multiclass", image_size=32, weights="none")
    _randomize_head(model, 1)
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32), dtype=np.uint8)
    features = feature_cache.compute_features(feature_cache.build_feature_extractor(model),
                                              images, batch_size=4)
    head = feature_cache.build_head_model(model)
    assert features.shape == (6, model.get_layer("head_gap").output.shape[-1])
    assert [layer.name for layer in head.layers[1:]] == [
        layer.name for layer in model.layers if layer.name.startswith("head_")
        and layer.name != "head_gap"] + ["predictions"]
    full = np.asarray(model(images[..., None].astype(np.float32), training=False))
    np.testing.assert_allclose(np.asarray(head(features, training=False)), full, atol=1e-5)


def test_trained_head_is_copied_back_and_the_backbone_is_untouched():
    import keras

    from bone_tumor_tf.models.classifiers import (
        backbone_layer_names,
        build_classifier,
        set_trainable_for_phase,
    )

    keras.utils.set_random_seed(3)
    model = build_classifier("densenet121", "binary", image_size=32, weights="none")
    set_trainable_for_phase(model, 1, "densenet121")
    backbone_before = [w.copy() for name in backbone_layer_names(model)
                       for w in model.get_layer(name).get_weights()]
    head_before = model.get_layer("head_dense2").get_weights()[0].copy()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 32, 32), dtype=np.uint8)
    labels = np.array([0, 1] * 4)

    def compile_head(head):
        head.compile(keras.optimizers.Adam(1e-2), keras.losses.BinaryCrossentropy(),
                     metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])

    history, head, seconds = feature_cache.fit_head_on_features(
        model, images, labels, images[:4], labels[:4], num_classes=2, task="binary",
        compile_head=compile_head, epochs=1, batch_size=4, views=2, verbose=0)
    assert set(seconds) == {"features", "fit"} and "val_accuracy" in history.history
    for layer in (layer for layer in head.layers if layer.weights):
        for trained, copied in zip(layer.get_weights(),
                                   model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(trained, copied)
    assert not np.allclose(model.get_layer("head_dense2").get_weights()[0], head_before)
    backbone_after = [w for name in backbone_layer_names(model)
                      for w in model.get_layer(name).get_weights()]
    assert all(np.array_equal(a, b) for a, b in zip(backbone_before, backbone_after))
    features = feature_cache.compute_features(feature_cache.build_feature_extractor(model),
                                              images)
    np.testing.assert_allclose(
        np.asarray(head(features, training=False)),
        np.asarray(model(images[..., None].astype(np.float32), training=False)), atol=1e-5)


def test_feature_dataset_draws_one_view_per_sample_and_evaluates_on_view_zero():
    features = np.stack([np.full((10, 3), k, np.float32) for k in range(3)], axis=1)
    labels = np.arange(10) % 2
    train = feature_cache.make_feature_dataset(features, labels, 2, "multiclass", batch_size=4,
                                               training=True, seed=0)
    batches = list(train)
    drawn = np.concatenate([x.numpy()[:, 0] for x, _ in batches])
    assert len(drawn) == 10 and set(drawn) <= {0.0, 1.0, 2.0} and len(set(drawn)) > 1
    assert batches[0][1].shape == (4, 2)
    evaluation = feature_cache.make_feature_dataset(features, labels, 2, "binary",
                                                    batch_size=4)
    values = np.concatenate([x.numpy() for x, _ in evaluation])
    assert values.shape == (10, 3) and not values.any()
    with pytest.raises(ValueError, match="views"):
        feature_cache.compute_view_features(None, np.zeros((1, 8, 8), np.uint8), views=0)


def test_train_classifier_with_cache_features_writes_a_normal_run(synthetic_btxrd, tmp_path):
    import keras

    from bone_tumor_tf.inference import load_model
    from bone_tumor_tf.training.classification import ClassifierOptions, train_classifier

    class TrainedWeights(keras.callbacks.Callback):
        """Per layer, the weights of the model it trained, at the end of training."""

        def on_train_end(self, logs=None):
            self.input_width = self.model.inputs[0].shape[-1]
            self.weights = {layer.name: layer.get_weights() for layer in self.model.layers
                            if layer.weights}

    options = ClassifierOptions(data=str(synthetic_btxrd), out=str(tmp_path / "run"),
                                arch="resnet50", task="binary", weights="none", crop="none",
                                epochs=2, phase2_epochs=0, batch_size=16, image_size=32,
                                n_bootstrap=20, verbose=0, cache_features=True,
                                feature_views=2)
    # Runs after EarlyStopping restored the best epoch: the head as phase 1 leaves it.
    trained_head = TrainedWeights()
    run_dir = train_classifier(options, callbacks=[trained_head])
    model = load_model(run_dir / "model.keras")
    best = load_model(run_dir / "checkpoints" / "best_phase1.keras")
    assert [layer.name for layer in best.layers] == [layer.name for layer in model.layers]
    assert (run_dir / "history_phase1.csv").read_text().count("\n") == 3  # header + 2 epochs
    # The callback saw the head model (trained on pooled ResNet50 features), and the saved
    # classifier (phase 2 has no epochs) and the phase-1 checkpoint hold its weights.
    assert trained_head.input_width == 2048
    assert set(trained_head.weights) >= {"head_dense", "predictions"}
    for name, weights in trained_head.weights.items():
        for saved in (model, best):
            for expected, actual in zip(weights, saved.get_layer(name).get_weights(),
                                        strict=True):
                np.testing.assert_array_equal(actual, expected)
