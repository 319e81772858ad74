"""The demo's pieces that need no training: its run options and ``summary.md``."""

from __future__ import annotations

import json

import pytest

from bone_tumor_tf import demo


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content) if isinstance(content, dict) else content)
    return path


def test_summary_lists_the_headline_figures_of_finished_runs(tmp_path):
    densenet, resnet = tmp_path / "densenet", tmp_path / "resnet"
    unet, cams = tmp_path / "unet", tmp_path / "gradcam"
    _write(densenet / "metrics.json", {
        "accuracy": 0.8125, "macro_f1": 0.70001, "tumor_vs_normal": {"roc_auc": 0.9},
        "per_class": {"malignant": {"recall": 0.5}}})
    _write(densenet / "report.md", "# report")
    # The ResNet run did not finish: no rows, no link.
    _write(unet / "metrics.json", {
        "dice_mean": 0.61, "dice_median": 0.655, "iou_mean": 0.5, "pixel_auc": None,
        "empty_prediction": {"dice_mean": 0.25}})
    _write(cams / "cam_metrics.json", {"layer": "relu", "metrics": {"gradcam++": {
        "pointing_game": {"estimate": 0.7, "low": 0.5, "high": 0.85},
        "chance_level": {"estimate": 0.2}}}})
    _write(cams / "cam_report.md", "# cams")

    path = demo.write_summary(tmp_path, densenet, resnet, unet, [cams],
                              {"data": 3.2, "densenet121": 120.4})
    assert path == tmp_path / "summary.md"
    lines = path.read_text().splitlines()
    assert "| DenseNet121 3-class | test accuracy | 0.812 |" in lines  # 3 digits
    assert "| DenseNet121 3-class | test macro F1 | 0.700 |" in lines
    assert "| DenseNet121 3-class | tumor vs normal ROC AUC | 0.900 |" in lines
    assert "| DenseNet121 3-class | malignant recall | 0.500 |" in lines
    assert not any("ResNet50" in line for line in lines)
    assert ("| attention U-Net | test Dice, mean / median per image | 0.610 / 0.655 |"
            in lines)
    assert "| attention U-Net | pixel ROC AUC | n/a |" in lines  # missing value
    assert "| attention U-Net | Dice of an empty prediction | 0.250 |" in lines
    assert ("| gradcam++ (layer relu) | pointing game [95% CI] vs chance | "
            "0.700 [0.500, 0.850] vs 0.200 |") in lines
    links = [line[2:] for line in lines if line.startswith("- ")]
    assert links == [str(densenet / "report.md"), str(cams / "cam_report.md")]
    assert lines[-1] == "Wall time per step (s): data 3, densenet121 120"


def test_demo_runs_are_small_and_quick_is_smaller():
    full = demo.demo_classifier("data", "out", "resnet50", "binary", "gt-box", quick=False)
    quick = demo.demo_classifier("data", "out", "resnet50", "binary", "gt-box", quick=True)
    assert (full.epochs, full.phase2_epochs, full.n_bootstrap) == (2, 8, 1000)
    assert (quick.epochs, quick.phase2_epochs, quick.n_bootstrap) == (1, 1, 200)
    assert full.weights == "none" and full.image_size == 64 and full.crop == "gt-box"
    whole = demo.whole_image_classifier("data", "out", "runs/densenet/model.keras", quick=False)
    assert whole.crop == "none" and whole.unfreeze == "all" and whole.image_size == 128
    assert whole.weights == "runs/densenet/model.keras"


def test_demo_command_refuses_unknown_options(capsys):
    from bone_tumor_tf.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--epochs", "3"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --epochs 3" in capsys.readouterr().err


def test_summary_states_chain_against_oracle_and_links_the_review_page(tmp_path):
    diagnosis = tmp_path / "diagnosis"
    _write(diagnosis / "diagnosis_metrics.json", {
        "detection": {"map": 0.4321},
        "image_level": {"chain": {"balanced_accuracy": 0.6}, "oracle": {"balanced_accuracy": 0.8}},
        "differences": {"chain - oracle": {"balanced_accuracy": {
            "estimate": -0.2, "low": -0.3, "high": -0.1}}},
        "oracle_advantage_recovered": 0.56, "normal_false_tumor_rate": {
            "rate": 0.1, "low": 0.05, "high": 0.2, "n_normal": 30}})
    _write(diagnosis / "diagnosis_report.md", "# chain")
    _write(diagnosis / "index.html", "<html></html>")
    missing = tmp_path / "missing"
    lines = demo.write_summary(tmp_path, missing, missing, missing, [], {},
                               diagnosis_dir=diagnosis).read_text().splitlines()
    assert "| diagnosis chain | detection mAP50 | 0.432 |" in lines
    assert ("| diagnosis chain | balanced accuracy: chain / gt-box oracle | 0.600 / 0.800 |"
            in lines)
    assert ("| diagnosis chain | chain - oracle (paired 95% CI) | -0.200 [-0.300, -0.100] |"
            in lines)
    assert ("| diagnosis chain | normal radiographs given a tumor | 0.100 [0.050, 0.200] |"
            in lines)
    links = [line[2:] for line in lines if line.startswith("- ")]
    assert links == [str(diagnosis / "diagnosis_report.md"), str(diagnosis / "index.html")]
