"""CheXpert DenseNet121 conversion: PyTorch (torchxrayvision layout) -> Keras, checked against an
independent ``torch.nn.functional`` forward pass of the same random weights."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from bone_tumor_tf.cli.convert_chexpert import main as convert_main
from bone_tumor_tf.errors import ModelFileError, WeightsNotFoundError
from bone_tumor_tf.models import chexpert
from bone_tumor_tf.models.chexpert import (
    DENSENET121_BLOCKS,
    chexpert_densenet121,
    convert_state_dict,
    densenet121_layer_map,
    densenet121_weighted_layers,
    load_densenet121_weights,
)

SIZE = 64  # DenseNet121 needs >= 32; 64 keeps a 2x2 final map so pooling is exercised.
TOLERANCE = 1e-4


def random_state_dict(seed: int = 0, in_channels: int = 1) -> dict[str, np.ndarray]:
    """torchxrayvision DenseNet121 state_dict with random weights and non-trivial BN stats."""
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {}
    for prefix, _, kind, shape in densenet121_layer_map():
        if kind == "conv":
            shape = tuple(in_channels if s == 0 else s for s in shape)
            fan_in = shape[1] * shape[2] * shape[3]
            sd[f"{prefix}.weight"] = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
        else:
            (c,) = shape
            sd[f"{prefix}.weight"] = rng.uniform(0.5, 1.5, c)
            sd[f"{prefix}.bias"] = rng.normal(0.0, 0.2, c)
            sd[f"{prefix}.running_mean"] = rng.normal(0.0, 0.3, c)
            sd[f"{prefix}.running_var"] = rng.uniform(0.5, 2.0, c)
            sd[f"{prefix}.num_batches_tracked"] = np.array(1000, dtype=np.int64)
    sd["features.conv0.weight"] *= 1.0 / 1024.0  # xrv inputs span [-1024, 1024]
    sd["classifier.weight"] = rng.normal(0, 0.01, (18, 1024))
    sd["classifier.bias"] = np.zeros(18)
    sd["op_threshs"] = rng.uniform(0, 1, 18)
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in sd.items()}


def images(n: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 1)).astype(np.float32)


def features(model, x: np.ndarray) -> np.ndarray:
    """Eager forward pass (much faster than tracing ``predict`` for one small batch)."""
    return np.asarray(model(x, training=False))


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --------------------------------------------------------------------------- torch-free


def test_layer_map_covers_keras_densenet121():
    import keras

    model = keras.applications.DenseNet121(include_top=False, weights=None,
                                           input_shape=(32, 32, 1))
    weighted = [layer.name for layer in model.layers if layer.weights]
    assert sorted(weighted) == sorted(densenet121_weighted_layers())
    assert len(weighted) == 241
    assert sum(DENSENET121_BLOCKS) == 58


def test_convert_state_dict_refuses_missing_and_misshaped():
    sd = random_state_dict()
    missing = dict(sd)
    del missing["features.denseblock3.denselayer7.conv2.weight"]
    with pytest.raises(ModelFileError, match=r"denseblock3\.denselayer7\.conv2\.weight"):
        convert_state_dict(missing, source="ckpt.pt")

    bad = dict(sd)
    bad["features.transition2.norm.running_var"] = np.ones(17, np.float32)
    with pytest.raises(ModelFileError) as info:
        convert_state_dict(bad, source="ckpt.pt")
    message = str(info.value)
    assert "features.transition2.norm.running_var" in message
    assert "(17,)" in message and "(512,)" in message and "\n" not in message

    extra = dict(sd)
    extra["features.denseblock1.denselayer7.conv1.weight"] = np.zeros((128, 256, 1, 1))
    with pytest.raises(ModelFileError, match="unexpected.*denselayer7"):
        convert_state_dict(extra, source="ckpt.pt")


def test_convert_state_dict_accepts_prefixes_and_adjusts_epsilon():
    sd = random_state_dict()
    plain = convert_state_dict(sd)
    wrapped = convert_state_dict({"module." + k: v for k, v in sd.items()})
    bare = convert_state_dict({k.removeprefix("features."): v for k, v in sd.items()})
    for name in ("conv1_conv", "conv3_block5_1_bn", "bn"):
        for other in (wrapped, bare):
            for a, b in zip(plain[name], other[name]):
                np.testing.assert_array_equal(a, b)
    # var_keras + 1.001e-5 == var_torch + 1e-5 (up to float32 rounding)
    var_t = sd["features.norm5.running_var"].astype(np.float64)
    var_k = plain["bn"][3].astype(np.float64)
    np.testing.assert_allclose(var_k + 1.001e-5, var_t + 1e-5, rtol=1e-7)
    # OIHW -> HWIO
    np.testing.assert_array_equal(plain["conv1_conv"][0],
                                  sd["features.conv0.weight"].transpose(2, 3, 1, 0))


def test_missing_default_weights_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("BONE_TUMOR_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        chexpert_densenet121(input_shape=(SIZE, SIZE))
    message = str(info.value)
    assert str(tmp_path / "densenet121-res224-chex.weights.h5") in message
    assert "pip install torchxrayvision" in message and "convert" in message
    assert "\n" not in message


def test_load_refuses_foreign_file(tmp_path):
    import keras

    model = keras.applications.DenseNet121(include_top=False, weights=None,
                                           input_shape=(32, 32, 1))
    path = tmp_path / "keras_format.weights.h5"
    model.save_weights(path)
    with pytest.raises(ModelFileError, match="not a bone_tumor_tf layer-weights file"):
        load_densenet121_weights(model, path)


# --------------------------------------------------------------------------- with torch


def torch_features(sd: dict, x_nhwc: np.ndarray) -> np.ndarray:
    """Independent reference: torchxrayvision's ``features2`` with torch.nn.functional only,
    in float64, on the xrv-normalised image."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in sd.items()
         if np.asarray(v).dtype.kind == "f"}

    def bn(y, p):
        return F.batch_norm(y, t[f"{p}.running_mean"], t[f"{p}.running_var"],
                            t[f"{p}.weight"], t[f"{p}.bias"], training=False, eps=1e-5)

    x = torch.from_numpy(x_nhwc.astype(np.float64)).permute(0, 3, 1, 2)
    x = x / 255.0 * 2048.0 - 1024.0
    y = F.conv2d(x, t["features.conv0.weight"], stride=2, padding=3)
    y = F.max_pool2d(F.relu(bn(y, "features.norm0")), 3, 2, 1)
    for b, n_layers in enumerate(DENSENET121_BLOCKS, start=1):
        for i in range(1, n_layers + 1):
            p = f"features.denseblock{b}.denselayer{i}"
            h = F.conv2d(F.relu(bn(y, f"{p}.norm1")), t[f"{p}.conv1.weight"])
            h = F.conv2d(F.relu(bn(h, f"{p}.norm2")), t[f"{p}.conv2.weight"], padding=1)
            y = torch.cat([y, h], 1)
        if b < len(DENSENET121_BLOCKS):
            p = f"features.transition{b}"
            y = F.avg_pool2d(F.conv2d(F.relu(bn(y, f"{p}.norm")), t[f"{p}.conv.weight"]), 2)
    y = F.relu(bn(y, "features.norm5"))
    return F.adaptive_avg_pool2d(y, 1).flatten(1).numpy()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A random torchxrayvision-layout state_dict, saved with torch.save and converted by
    the CLI entry point, for channels 1 and 3."""
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("chex")
    sd = random_state_dict()
    src = folder / "chex_state_dict.pt"
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, src)
    paths = {}
    for channels in (1, 3):
        dst = folder / f"chex_c{channels}.weights.h5"
        assert convert_main([str(src), str(dst), "--channels", str(channels)]) == 0
        paths[channels] = dst
    return sd, src, paths


def test_converted_features_match_torch_reference(converted, capsys):
    sd, _, paths = converted
    x = images()
    reference = torch_features(sd, x)
    assert reference.shape == (3, 1024) and np.all(np.isfinite(reference))

    model = chexpert_densenet121(paths[1], input_shape=(SIZE, SIZE))
    assert model.output.shape == (None, 1024)
    assert not any(hasattr(layer, "layers") for layer in model.layers)  # flat graph
    err1 = rel_error(features(model, x), reference)

    model3 = chexpert_densenet121(paths[3], channels=3, input_shape=(SIZE, SIZE))
    x3 = np.repeat(x, 3, axis=-1)
    err3 = rel_error(features(model3, x3), reference)

    # A 1-channel file loaded into a 3-channel model adapts the first kernel the same way.
    model3b = chexpert_densenet121(paths[1], channels=3, input_shape=(SIZE, SIZE))
    err3b = rel_error(features(model3b, x3), reference)

    with capsys.disabled():
        print(f"\n[chexpert] max relative error vs torch reference: channels=1 {err1:.2e}, "
              f"channels=3 {err3:.2e}, 1->3 adapted {err3b:.2e}")
    assert err1 < TOLERANCE and err3 < TOLERANCE and err3b < TOLERANCE


def test_converted_file_layout(converted):
    import h5py

    _, _, paths = converted
    with h5py.File(paths[1], "r") as f:
        assert f.attrs["format"] == "bone_tumor_tf.layer_weights"
        assert int(f.attrs["channels"]) == 1
        assert f.attrs["source"] == "chex_state_dict.pt"
        assert sorted(f.keys()) == sorted(densenet121_weighted_layers())
        assert f["conv1_conv"]["0"].shape == (7, 7, 1, 64)
        assert [f["bn"][str(i)].shape for i in range(4)] == [(1024,)] * 4
    with h5py.File(paths[3], "r") as f:
        assert f["conv1_conv"]["0"].shape == (7, 7, 3, 64)


def test_cli_refuses_missing_and_misshaped_tensor(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    sd = {k: torch.from_numpy(v) for k, v in random_state_dict().items()}

    missing = dict(sd)
    del missing["features.norm5.running_mean"]
    src = tmp_path / "missing.pt"
    torch.save(missing, src)
    assert convert_main([str(src), str(tmp_path / "out.weights.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "features.norm5.running_mean" in err
    assert "\n" not in err and str(src) in err

    bad = dict(sd)
    bad["features.denseblock2.denselayer3.conv1.weight"] = torch.zeros(128, 100, 1, 1)
    src = tmp_path / "bad.pt"
    torch.save(bad, src)
    assert convert_main([str(src), str(tmp_path / "out.weights.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert "features.denseblock2.denselayer3.conv1.weight" in err
    assert "(128, 100, 1, 1)" in err and "(128, 192, 1, 1)" in err and "\n" not in err
    assert not (tmp_path / "out.weights.h5").exists()


def _module_tree(torch, state_dict, cls):
    """An nn.Module of class ``cls`` whose state_dict() has exactly ``state_dict``'s keys."""
    root = cls()
    for key, value in state_dict.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        if value.dtype.is_floating_point and not leaf.startswith("running_"):
            module.register_parameter(leaf, torch.nn.Parameter(value))
        else:
            module.register_buffer(leaf, value)
    return root


def test_whole_pickled_model_and_missing_package(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    sd = {k: torch.from_numpy(v) for k, v in random_state_dict(seed=3).items()}

    # A whole pickled model (as torchxrayvision ships) is unpickled and its state_dict used.
    src = tmp_path / "whole.pt"
    torch.save(_module_tree(torch, sd, torch.nn.Module), src)
    loaded = chexpert.load_torch_state_dict(src)
    np.testing.assert_array_equal(loaded["features.norm5.weight"],
                                  sd["features.norm5.weight"].numpy())

    # Its class lives in a package that is not installed: one clear line.
    fake = types.ModuleType("fake_torchxrayvision")

    class DenseNet(torch.nn.Module):
        pass

    DenseNet.__module__ = fake.__name__
    DenseNet.__qualname__ = "DenseNet"
    fake.DenseNet = DenseNet
    sys.modules[fake.__name__] = fake
    try:
        src = tmp_path / "needs_package.pt"
        torch.save(_module_tree(torch, sd, DenseNet), src)
    finally:
        del sys.modules[fake.__name__]
    assert convert_main([str(src), str(tmp_path / "out.weights.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert "fake_torchxrayvision" in err and "pip install torchxrayvision" in err
    assert "\n" not in err


def test_loading_needs_no_torch(converted):
    """Training with a converted file must not import torch (only `convert` does)."""
    _, _, paths = converted
    code = (
        "import sys\n"
        "from bone_tumor_tf.models import build_classifier\n"
        f"build_classifier('densenet121', image_size=32, weights='chexpert:{paths[1]}')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=root, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
