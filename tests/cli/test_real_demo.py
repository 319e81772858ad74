"""``bone-tumor demo --data``: the choices made on the validation split and ``summary.md``.

The steps themselves are the toolkit's commands, tested on their own; here every step's
output already exists, so the demo resumes past it without training.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from bone_tumor_tf import real_demo


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def _cam_metrics(layer, hits):
    return {"layer": layer, "metrics": {
        method: {"pointing_game": {"estimate": hit, "low": hit - 0.1, "high": hit + 0.1},
                 "chance_level": {"estimate": 0.02},
                 "energy_inside": {"estimate": 0.1, "low": 0.05, "high": 0.15}}
        for method, hit in hits.items()}}


def test_cam_method_and_layer_are_the_best_validation_pointing_game(tmp_path):
    demo = real_demo.RealDemo(tmp_path, tmp_path / "out")
    _write(demo.out / "gradcam-val-last-conv" / "cam_metrics.json",
           _cam_metrics("relu", {"gradcam": 0.10, "gradcam++": 0.12}))
    _write(demo.out / "gradcam-val-pool3_relu" / "cam_metrics.json",
           _cam_metrics("pool3_relu", {"gradcam": 0.31, "gradcam++": 0.25}))
    choice = real_demo.choose_cam(demo, tmp_path / "whole")
    assert (choice["method"], choice["layer"]) == ("gradcam", "pool3_relu")
    assert len(choice["candidates"]) == 4
    # the steps were skipped (their outputs exist) and are still listed as commands
    assert "--split val" in demo.commands["gradcam-val-pool3_relu"]
    assert demo.timings == {}


def test_step_time_adds_up_over_an_interrupted_attempt(tmp_path, monkeypatch):
    """An attempt that dies half-way still counts; the resumed attempt adds to it."""

    class Command:
        def __init__(self, fail):
            self.fail = fail

        def build_parser(self):
            import argparse

            parser = argparse.ArgumentParser()
            parser.add_argument("--sleep", type=float)
            return parser

        def run(self, args):
            time.sleep(args.sleep)
            if self.fail:
                raise KeyboardInterrupt

    failing, working = Command(fail=True), Command(fail=False)
    for command in (failing, working):
        monkeypatch.setitem(real_demo.COMMANDS, command, "train")
    demo = real_demo.RealDemo(tmp_path, tmp_path / "out")
    done = tmp_path / "done"
    with pytest.raises(KeyboardInterrupt):
        demo.step("train", failing, ["--sleep", "0.2"], done)
    first = json.loads(demo.timings_path.read_text())["train"]
    assert first >= 0.2
    again = real_demo.RealDemo(tmp_path, tmp_path / "out")  # a rerun reads timings.json
    again.step("train", working, ["--sleep", "0.3"], done)
    assert again.timings["train"] >= first + 0.3
    done.touch()
    total = again.timings["train"]
    again.step("train", working, ["--sleep", "5"], done)  # skipped: done exists
    assert again.timings["train"] == total == json.loads(again.timings_path.read_text())["train"]


def test_segmentation_rows_bootstrap_the_per_image_dice_and_the_normal_flag_rate():
    dice = [0.2, 0.9, 0.5, 0.0]
    per_image = [{"label": "benign", "dice": d, "predicted_pixels": 5} for d in dice]
    per_image += [{"label": "normal", "dice": 0.0, "predicted_pixels": p}
                  for p in (0, 0, 12, 0, 3)]
    rows = dict(real_demo._segmentation_rows({"per_image": per_image}))
    mean = rows["test Dice, mean per tumor image"]
    assert mean.startswith(f"{np.mean(dice):.3f} [")
    low, high = (float(v) for v in mean.split("[")[1].rstrip("]").split(","))
    assert 0.0 <= low < np.mean(dice) < high <= 0.9
    assert rows["test Dice, median per tumor image"] == f"{np.median(dice):.3f}"
    assert rows["normal test radiographs given a tumor mask"].startswith("0.400 [")
    assert not any("tumor size" in name for name in rows)  # no sizes in these rows

    sized = [{"label": "benign", "dice": d, "predicted_pixels": 5, "true_pixels": t,
              "height": 10, "width": 10} for d, t in zip(dice, (30, 2, 9, 1), strict=True)]
    rows = dict(real_demo._segmentation_rows({"per_image": sized}))
    # areas 0.01 (0.0), 0.02 (0.9) | 0.09 (0.5) | 0.30 (0.2)
    assert rows["test Dice by tumor size, smallest / middle / largest third (missed)"] == (
        "0.450 (0.500) / 0.500 (0.000) / 0.200 (0.000)")


def test_segmentation_rows_resample_patients_when_the_rows_name_them():
    from bone_tumor_tf.evaluation.reports.markdown import format_ci
    from bone_tumor_tf.evaluation.stats import bootstrap_ci

    dice = [0.2, 0.9, 0.5, 0.0, 0.7, 0.1]
    patients = ["a", "a", "b", "c", "c", "c"]
    per_image = [{"label": "benign", "dice": d, "predicted_pixels": 5, "group": g}
                 for d, g in zip(dice, patients, strict=True)]
    per_image += [{"label": "normal", "dice": 0.0, "predicted_pixels": p, "group": g}
                  for p, g in zip((0, 4, 12, 0), ("d", "d", "e", "f"), strict=True)]
    rows = dict(real_demo._segmentation_rows({"per_image": per_image}))
    assert rows["test Dice, mean per tumor image"] == format_ci(
        bootstrap_ci(np.mean, np.array(dice), seed=0, groups=patients))
    assert rows["test Dice, mean per tumor image"] != format_ci(
        bootstrap_ci(np.mean, np.array(dice), seed=0))
    assert rows["normal test radiographs given a tumor mask"] == format_ci(
        bootstrap_ci(np.mean, np.array([0.0, 1, 1, 0]), seed=0, groups=["d", "d", "e", "f"]))


def test_summary_lists_each_command_once_and_points_rows_at_it(tmp_path):
    demo = real_demo.RealDemo(tmp_path, tmp_path / "out")
    crops = demo.out / "crops"
    demo.commands = {"densenet121-3class-gt-box": "bone-tumor train --crop gt-box"}
    demo.timings = {"densenet121-3class-gt-box": 1234.4}
    boot = {"estimate": 0.6, "low": 0.5, "high": 0.7}
    _write(crops / "metrics.json", {
        "class_names": ["normal", "benign", "malignant"],
        "bootstrap": {"accuracy": boot, "macro_f1": boot,
                      "recall": {"malignant": {"estimate": 0.3, "low": 0.1, "high": 0.5}}},
        "per_class": {"normal": {"roc_auc": 0.9}, "benign": {"roc_auc": 0.8},
                      "malignant": {"roc_auc": 0.7, "f1": 0.25}},
        "sensitivity_at_specificity": {"0.90": {"sensitivity": 0.2}},
        "tumor_vs_normal": {"roc_auc": 0.85}})
    missing = demo.out / "missing"
    choices = {"whole_image_weight": 0.25, "cam": {
        "method": "gradcam", "resolved_layer": "pool3_relu", "val_pointing_game": 0.3,
        "val_chance": 0.02, "candidates": []}}
    lines = real_demo.write_real_summary(demo, crops, missing, missing, missing, missing,
                                         missing, choices).read_text().splitlines()
    rows = [line for line in lines if line.startswith("| DenseNet121 3-class |")]
    assert ("| DenseNet121 3-class | test accuracy | 0.600 [0.500, 0.700] | "
            "patient-grouped test | gt-box | 64 | 1234 | [1] |") in rows
    assert any("| macro ROC AUC (one vs rest) | 0.800 |" in row for row in rows)
    assert any("| malignant F1 | 0.250 |" in row for row in rows)
    assert "1. `bone-tumor train --crop gt-box`" in lines
    assert any("Random initialisation" in line for line in lines)
    assert any("whole-image weight 0.25, tumor threshold None" in line for line in lines)


def test_demo_with_a_missing_data_folder_is_one_line_error(tmp_path, capsys):
    from bone_tumor_tf.cli import main

    missing = tmp_path / "nowhere"
    assert main(["demo", "--data", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(missing) in err and "no such folder" in err


@pytest.mark.parametrize("quick", [False, True])
def test_classifier_steps_use_the_cached_feature_phase_1(tmp_path, quick):
    demo = real_demo.RealDemo(tmp_path, tmp_path / "out", quick=quick)
    _write(demo.out / "run" / "metrics.json", {})
    demo.classifier("run", "densenet121", "multiclass", "gt-box", 64, ["--lr", "3e-3"])
    command = demo.commands["run"]
    assert "--cache-features" in command and "--lr 3e-3" in command
    assert ("--epochs 1 --phase2-epochs 1" in command) == quick


def test_an_interrupted_demo_still_writes_its_summary(synthetic_btxrd, tmp_path, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(real_demo.train_cli, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        real_demo.run_real_demo(synthetic_btxrd, tmp_path / "out")
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "SYNTHETIC" in summary and "- nothing yet" in summary
    assert "1. `bone-tumor train --data" in summary  # the step that was running
    assert json.loads((tmp_path / "out" / "choices.json").read_text()) == {}


def test_the_chain_uses_the_unet_trained_on_with_normals(tmp_path, monkeypatch):
    """The second U-Net starts from the tumor-only one and is the chain's segmenter."""
    demo = real_demo.RealDemo(tmp_path, tmp_path / "out")
    names = ("densenet121-3class-gt-box", "attention-unet", "attention-unet-normals",
             "attention-unet-normals-budget", "densenet121-3class-whole-image",
             "gradcam-test", "diagnosis-test",
             "resnet50-tumor-vs-normal-whole-image")
    runs = {name: demo.out / name for name in names}
    for name in names:  # every step done: the demo resumes past all of them
        for done in ("metrics.json", "cam_metrics.json", "diagnosis_metrics.json"):
            _write(runs[name] / done, {})
    segmenters = []
    monkeypatch.setattr(real_demo, "choose_cam", lambda demo, whole: {
        "method": "gradcam", "layer": None})
    monkeypatch.setattr(real_demo, "choose_point", lambda demo, unet, crops, whole: (
        segmenters.append(unet) or {"mask_threshold": 0.8, "whole_image_weight": 0.5,
                                    "tumor_threshold": None}))
    real_demo._run_steps(demo, runs, {})
    tuned = demo.commands["attention-unet-normals"]
    assert f"--init-from {runs['attention-unet']}" in tuned
    assert "--include-normals --dice-on tumor" in tuned
    assert segmenters == [runs["attention-unet-normals"]]
    segmenter = runs["attention-unet-normals"] / "model.keras"
    assert f"--segmenter {segmenter}" in demo.commands["diagnosis-test"]
    # at the operating point chosen on validation
    assert "--whole-image-weight 0.5 --threshold 0.8 --data" in demo.commands["diagnosis-test"]
    # the same weights, scored at the threshold chosen under the 15% budget
    assert (f"--init-from {runs['attention-unet-normals']} --image-size 128 --epochs 0 "
            "--max-normal-marked 0.15") in demo.commands["attention-unet-normals-budget"]
    _write(runs["attention-unet-normals-budget"] / "metrics.json", {"threshold_choice": {
        "chosen": 0.97, "max_normal_marked": 0.15, "budget_met": True,
        "candidates": [0.9, 0.97], "tumor_dice_mean": [0.2, 0.1], "normal_marked": [0.3, 0.12]},
        "per_image": [{"label": "benign", "dice": 0.4, "predicted_pixels": 5},
                      {"label": "normal", "dice": 1.0, "predicted_pixels": 0}]})
    summary = real_demo.write_real_summary(
        demo, *(runs[n] for n in ("densenet121-3class-gt-box", "attention-unet",
                                  "densenet121-3class-whole-image",
                                  "resnet50-tumor-vs-normal-whole-image", "gradcam-test",
                                  "diagnosis-test")), {}, unet_normals=runs[
            "attention-unet-normals"], unet_budget=runs["attention-unet-normals-budget"]
    ).read_text()
    assert f"`{tuned}`" in summary
    assert ("- U-Net mask threshold under the normal-image budget: 0.97 (validation tumor "
            "Dice 0.100 with 12.0% of normal radiographs marked)") in summary
    assert ("| same U-Net, mask threshold 0.97 (at most 15% of normal val images marked) | "
            "normal test radiographs given a tumor mask | 0.000") in summary
    selection = {"n_resamples": 200, "n_groups": 240, "n_settings": 120, "same_choice": 0.31,
                 "apparent": {"balanced_accuracy": 0.558, "false_tumor_rate": 0.135},
                 "corrected": {"balanced_accuracy": 0.52, "false_tumor_rate": 0.171}}
    choices = {"mask_threshold": 0.8, "whole_image_weight": 0.5, "tumor_threshold": 0.6,
               "chain_selection": selection}
    summary = real_demo.write_real_summary(
        demo, *(runs[n] for n in ("densenet121-3class-gt-box", "attention-unet",
                                  "densenet121-3class-whole-image",
                                  "resnet50-tumor-vs-normal-whole-image", "gradcam-test",
                                  "diagnosis-test")), choices).read_text()
    assert ("- that choice on validation: balanced accuracy 0.558 with 13.5% of normal "
            "radiographs flagged, the best under the cap among 120 candidates (mask "
            "thresholds x weights x tumor thresholds). Optimism-corrected estimate (bootstrap "
            "over the 240 validation patients, 200 resamples; Harrell, Lee & Mark 1996): "
            "0.520 with 17.1% flagged, above the 15% budget; the same setting won on 31% of "
            "the resamples. The test rows above are the measurement on new patients"
            ) in summary
    selection["corrected"]["false_tumor_rate"] = 0.149
    assert "flagged, above" not in real_demo._selection_line(selection)


def test_chain_operating_point_includes_the_mask_threshold_chosen_on_validation(
        tmp_path, monkeypatch):
    """Each mask threshold's validation run is scored under the false-alarm budget; the best
    one is chosen, and the runs are reused (not diagnosed again) when they exist."""
    from types import SimpleNamespace

    names = ("normal", "benign", "malignant")
    records = [SimpleNamespace(path=tmp_path / f"{c}{k}.png", label=c, group=f"P-{c}{k // 2}")
               for c in names for k in range(4)]  # two radiographs per patient
    monkeypatch.setattr(real_demo, "split_records", lambda *args: records)
    demo = real_demo.RealDemo(tmp_path, tmp_path / "out")

    def one_hot(c):
        return {n: float(n == c) for n in names}

    def rows(calls):  # an uninformative whole-image model: the chain must decide
        return [{"file": str(r.path), "chain_probabilities": one_hot(call),
                 "whole_image_probabilities": dict.fromkeys(names, 1 / 3)}
                for r, call in zip(records, calls, strict=True)]

    truth = [r.label for r in records]
    shifted = [names[(names.index(c) + 1) % 3] for c in truth]  # every image wrong
    one_wrong = ["benign"] + truth[1:]  # one normal radiograph called a tumor (1 of 4)
    for folder, calls in (("diagnosis-val", shifted), ("diagnosis-val-mask0.8", truth),
                          ("diagnosis-val-mask0.7", one_wrong)):
        _write(demo.out / folder / "diagnosis_metrics.json", {})
        (demo.out / folder / "diagnoses.jsonl").write_text(
            "\n".join(json.dumps(row) for row in rows(calls)))
    point = real_demo.choose_point(demo, tmp_path / "unet", tmp_path / "crops",
                                   tmp_path / "whole")
    assert point["mask_threshold"] == 0.8 and point["balanced_accuracy"] == pytest.approx(1.0)
    assert point["whole_image_weight"] == 0.0 and point["false_tumor_rate"] == 0.0
    # the perfect run wins on every resample too, at the same setting: nothing to correct
    selection = point["selection"]
    assert selection["n_settings"] == 3 * 40 and selection["n_images"] == 12
    assert selection["n_groups"] == 6 and selection["chosen_run"] == 1
    assert selection["apparent"]["balanced_accuracy"] == pytest.approx(1.0)
    assert selection["corrected"]["balanced_accuracy"] == pytest.approx(1.0)
    assert selection["same_choice"] == 1.0
    for folder, mask in (("diagnosis-val", None), ("diagnosis-val-mask0.8", 0.8),
                         ("diagnosis-val-mask0.7", 0.7)):
        saved = json.loads((demo.out / folder / "operating_point.json").read_text())
        assert saved["mask_threshold"] == mask
        assert ("--threshold" in demo.commands[folder]) == (mask is not None)
    # the 0.7 run breaks the 15% budget at weight 0 (1 of 4 normals flagged)
    saved = json.loads((demo.out / "diagnosis-val-mask0.7" / "operating_point.json").read_text())
    assert saved["balanced_accuracy"] < 1.0
    assert demo.timings == {}
