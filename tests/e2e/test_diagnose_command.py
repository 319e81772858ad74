"""``bone-tumor diagnose`` end to end with small saved models: outputs, refusals, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from helpers import save_bright_segmenter, save_chain_classifier  # noqa: E402

from bone_tumor_tf.cli import main  # noqa: E402

NAMES = ("normal", "benign", "malignant")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"seg": save_bright_segmenter(root / "seg.keras"),
            "cls": save_chain_classifier(root / "cls.keras"),
            "whole": save_chain_classifier(root / "whole.keras", crop_mode="none", seed=1),
            "binary": save_chain_classifier(root / "binary.keras", classes=("normal", "tumor"))}


def test_diagnose_writes_one_line_panel_and_page_per_image(models, synthetic_btxrd, tmp_path,
                                                           capsys):
    images = sorted((synthetic_btxrd / "images").iterdir())[:4]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    argv = ["diagnose", "--segmenter", str(models["seg"]), "--classifier", str(models["cls"]),
            "--whole-image", str(models["whole"]), "--out", str(out), "--min-area", "4",
            *map(str, images[:2]), str(bad), *map(str, images[2:])]
    assert main(argv) == 1  # ran; one file could not be read
    err = capsys.readouterr().err
    assert "broken.png" in err
    rows = [json.loads(line) for line in (out / "diagnoses.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rows] == [str(p) for p in images[:2]] + [str(bad)] + \
        [str(p) for p in images[2:]]
    assert "error" in rows[2] and "broken.png" in rows[2]["error"]
    for row in rows[:2] + rows[3:]:
        assert row["finding"] in NAMES
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert set(row["whole_image_probabilities"]) == set(NAMES)
        for region in row["regions"]:
            x0, y0, x1, y1 = region["box"]
            assert 0 <= x0 <= x1 < row["size"][1] and 0 <= y0 <= y1 < row["size"][0]
        assert (out / row["panel"]).is_file() and (out / row["thumbnail"]).is_file()
    page = (out / "index.html").read_text()
    assert all(p.name in page for p in images) and "broken.png" in page
    # a rerun resumes: nothing is diagnosed twice
    assert main(argv) == 1
    assert len((out / "diagnoses.jsonl").read_text().splitlines()) == len(rows)


@pytest.mark.parametrize("role, model, message", [
    ("--classifier", "seg", "is a segmentation model"),
    ("--segmenter", "cls", "is not a segmentation model"),
    ("--classifier", "whole", "pass it as --whole-image"),
    ("--classifier", "binary", "needs a three-class"),
    ("--whole-image", "cls", "pass it as --classifier"),
])
def test_models_in_the_wrong_role_are_refused_in_one_line(models, synthetic_btxrd, tmp_path,
                                                          capsys, role, model, message):
    chosen = {"--segmenter": models["seg"], "--classifier": models["cls"]}
    chosen[role] = models[model]
    argv = ["diagnose", "--out", str(tmp_path / "o"), str(synthetic_btxrd / "images")]
    for key, value in chosen.items():
        argv += [key, str(value)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(models[model]) in err[0]


def test_chain_evaluation_on_an_annotated_split(models, synthetic_btxrd, tmp_path):
    out = tmp_path / "eval"
    argv = ["diagnose", "--segmenter", str(models["seg"]), "--classifier", str(models["cls"]),
            "--whole-image", str(models["whole"]), "--data", str(synthetic_btxrd),
            "--split", "all", "--out", str(out), "--n-bootstrap", "50", "--cam", "none"]
    assert main(argv) == 0
    metrics = json.loads((out / "diagnosis_metrics.json").read_text())
    assert metrics["n_images"] == 60 and metrics["n_failed"] == 0
    assert set(metrics["image_level"]) == {"chain", "oracle", "whole_image"}
    assert set(metrics["differences"]) == {"chain - oracle", "whole_image - oracle",
                                           "chain - whole_image"}
    assert set(metrics["detection"]["per_class"]) == {"benign", "malignant"}
    rate = metrics["normal_false_tumor_rate"]
    assert rate["n_normal"] == metrics["class_counts"]["normal"]
    # the false-tumor rate, recomputed from the JSON lines and the sheet's labels
    from bone_tumor_tf.data import load_dataset

    records = load_dataset(synthetic_btxrd).records
    labels = {str(r.path): r.label for r in records}
    rows = [json.loads(line) for line in (out / "diagnoses.jsonl").read_text().splitlines()]
    flags = [r["finding"] != "normal" for r in rows if labels[r["file"]] == "normal"]
    assert rate["rate"] == pytest.approx(np.mean(flags))
    # intervals resample the sheet's patients, not the radiographs
    n_patients = len({r.group for r in records})
    assert n_patients < 60
    assert metrics["bootstrap"] == {"resampled": "patient groups", "n_patients": n_patients,
                                    "n_images": 60, "replicates": 50}
    report = (out / "diagnosis_report.md").read_text()
    assert "mAP50" in report and "chain - oracle" in report
    assert f"resamples the {n_patients} patients" in report
    # the segmenter's own threshold and the default test-time augmentation, on record
    assert metrics["segmenter"] == {"mask_threshold": 0.5, "tta": "flip", "n_segmenters": 1}
    assert "mask at 0.5, test-time augmentation flip" in report

    # An operating point on the same folder: the rows are reused (nothing is diagnosed
    # again) and the decisions recomputed from their probabilities at the new threshold.
    from sklearn.metrics import balanced_accuracy_score

    assert main([*argv, "--tumor-threshold", "0.6"]) == 0
    again = json.loads((out / "diagnosis_metrics.json").read_text())
    assert len((out / "diagnoses.jsonl").read_text().splitlines()) == len(rows)
    tumor = {r["file"]: r["probabilities"]["benign"] + r["probabilities"]["malignant"]
             for r in rows}
    flags = [tumor[f] >= 0.6 for f in tumor if labels[f] == "normal"]
    assert again["normal_false_tumor_rate"]["rate"] == pytest.approx(np.mean(flags))
    truth = [NAMES.index(labels[r["file"]]) for r in rows]
    decided = [0 if tumor[r["file"]] < 0.6 else
               (2 if r["probabilities"]["malignant"] > r["probabilities"]["benign"] else 1)
               for r in rows]
    # the threshold changes some decisions here, so a rule that ignored it would fail
    assert any(d != NAMES.index(r["finding"]) for d, r in zip(decided, rows, strict=True))
    assert again["image_level"]["chain"]["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(truth, decided))
    assert again["image_level"]["oracle"] == metrics["image_level"]["oracle"]
    assert ">= 0.6" in (out / "diagnosis_report.md").read_text()
    assert main([*argv, "--tumor-threshold", "1.5"]) == 2
    # ... and at another whole-image weight: with weight 1 the chain is the whole-image model
    assert main([*argv, "--whole-image-weight", "1.0"]) == 0
    whole_only = json.loads((out / "diagnosis_metrics.json").read_text())
    chain, whole = (whole_only["image_level"][k] for k in ("chain", "whole_image"))
    for key in ("accuracy", "balanced_accuracy", "macro_auc"):
        assert chain[key] == pytest.approx(whole[key])
    assert chain["recall"] == pytest.approx(whole["recall"])
    assert chain["macro_auc"] != pytest.approx(again["image_level"]["chain"]["macro_auc"])


def test_a_rerun_with_other_chain_settings_is_refused_in_one_line(models, synthetic_btxrd,
                                                                   tmp_path, capsys):
    """Rows of two chains never mix in one folder: a rerun that would segment differently
    is refused; one that only changes the decision rule reuses the rows."""
    images = sorted((synthetic_btxrd / "images").iterdir())[:2]
    out = tmp_path / "out"
    argv = ["diagnose", "--segmenter", str(models["seg"]), "--classifier", str(models["cls"]),
            "--out", str(out), "--cam", "none", *map(str, images)]
    assert main([*argv, "--tta", "none"]) == 0
    capsys.readouterr()
    for extra, changed in ((["--tta", "flip"], "segmenter_tta: none there, flip now"),
                           (["--tta", "none", "--min-area", "7"], "min_area: 64 there, 7 now"),
                           (["--tta", "none", "--threshold", "0.7"], "mask_threshold: 0.5"),
                           (["--tta", "none", "--box-threshold", "0.3"],
                            "box_threshold: None there, 0.3 now")):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(out) in err[0] and changed in err[0]
    # a box level at or above the mask threshold (0.5 here) acts as none: the same rows
    assert main([*argv, "--tta", "none", "--box-threshold", "0.9"]) == 0
    capsys.readouterr()
    assert main([*argv, "--tta", "none", "--box-threshold", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --box-threshold must be in (0, 1], got 0.0"]
    assert main([*argv, "--tta", "none", "--tumor-threshold", "0.6"]) == 0
    assert len((out / "diagnoses.jsonl").read_text().splitlines()) == len(images)


def test_a_second_run_into_a_folder_being_written_is_refused_in_one_line(models, synthetic_btxrd,
                                                                        tmp_path, capsys):
    from helpers import folder_locked_by_another_process

    images = sorted((synthetic_btxrd / "images").iterdir())[:1]
    out = tmp_path / "out"
    argv = ["diagnose", "--segmenter", str(models["seg"]), "--classifier", str(models["cls"]),
            "--out", str(out), "--cam", "none", *map(str, images)]
    for extra in ([], ["--data", str(synthetic_btxrd), "--split", "all"]):
        with folder_locked_by_another_process(out):  # a run still writing the folder
            assert main([*(argv if not extra else argv[:-1]), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(out) in err[0] and "another run is writing" in err[0]
        assert not (out / "diagnoses.jsonl").exists()
    assert main(argv) == 0  # once it is free, the same command runs
    assert len((out / "diagnoses.jsonl").read_text().splitlines()) == 1


def test_a_box_threshold_below_the_mask_threshold_widens_the_boxes(models, synthetic_btxrd,
                                                                   tmp_path):
    """Regions found at 0.9; with --box-threshold 0.3 each box spans the 0.3 extent, so it
    contains a box of the plain run on the same image, and the level is recorded."""
    images = sorted((synthetic_btxrd / "images").iterdir())
    argv = ["diagnose", "--segmenter", str(models["seg"]), "--classifier", str(models["cls"]),
            "--cam", "none", "--threshold", "0.9", *map(str, images)]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    assert main([*argv, "--out", str(tmp_path / "wide"), "--box-threshold", "0.3"]) == 0
    settings = json.loads((tmp_path / "wide" / "chain_settings.json").read_text())
    assert settings["box_threshold"] == 0.3 and settings["mask_threshold"] == 0.9

    def boxes(run):
        rows = (tmp_path / run / "diagnoses.jsonl").read_text().splitlines()
        return {r["file"]: [b["box"] for b in r["regions"]] for r in map(json.loads, rows)}

    plain, wide = boxes("plain"), boxes("wide")
    assert sum(map(len, plain.values())) > 0
    wider = 0
    for file, regions in plain.items():
        assert bool(regions) == bool(wide[file])  # the same images have regions
        for x0, y0, x1, y1 in regions:
            holders = [b for b in wide[file]
                       if b[0] <= x0 and b[1] <= y0 and b[2] >= x1 and b[3] >= y1]
            assert holders
            wider += all(b != [x0, y0, x1, y1] for b in holders)
    assert wider > 0  # the synthetic U-Net's 0.3 extent reaches past its 0.9 core


def test_chunked_run_gives_the_rows_and_panels_of_one_image_at_a_time(models, synthetic_btxrd,
                                                                      tmp_path):
    """Radiographs go through the models in chunks; a chunk of 1 is the per-image chain.
    The rows (probabilities, regions) and the panels (heatmaps included) must not depend on
    the chunk size, and a bad file inside a chunk stays its own error row."""
    import cv2

    from bone_tumor_tf.diagnosis.models import load_chain_models
    from bone_tumor_tf.diagnosis.run import diagnose_files

    chain = load_chain_models(models["seg"], models["cls"], models["whole"])
    images = sorted((synthetic_btxrd / "images").iterdir())[:7]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    files = images[:3] + [bad] + images[3:]
    runs = {size: diagnose_files(chain, files, tmp_path / f"chunk{size}", min_area=4,
                                 cam_method="gradcam++", chunk_size=size)
            for size in (1, 3, 16)}
    one = runs[1]
    assert any(row.get("regions") for row in one)  # the comparison covers explained regions
    for size in (3, 16):
        assert [r["file"] for r in runs[size]] == [str(p) for p in files]
        for a, b in zip(one, runs[size], strict=True):
            assert ("error" in a) == ("error" in b)
            if "error" in a:
                continue
            assert a["finding"] == b["finding"]
            assert [r["box"] for r in a["regions"]] == [r["box"] for r in b["regions"]]
            for key in ("probabilities", "whole_image_probabilities"):
                assert a[key] == pytest.approx(b[key], abs=1e-5)
            panel_a = cv2.imread(str(tmp_path / "chunk1" / a["panel"])).astype(int)
            panel_b = cv2.imread(str(tmp_path / f"chunk{size}" / b["panel"])).astype(int)
            assert np.abs(panel_a - panel_b).max() <= 2
    with pytest.raises(ValueError, match="chunk_size"):
        diagnose_files(chain, files, tmp_path / "zero", chunk_size=0)


def test_predict_probabilities_equals_model_predict(models):
    """The batched ``predict_on_batch`` path against Keras' own ``predict``; a sigmoid
    output becomes [1 - p, p]."""
    from bone_tumor_tf.inference import predict_probabilities
    from bone_tumor_tf.models.loading import load_model

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (37, 32, 32), dtype=np.uint8)
    for name in ("cls", "binary"):
        model = load_model(models[name])
        reference = model.predict(images[..., None].astype(np.float32), verbose=0)
        if reference.shape[-1] == 1:
            reference = np.concatenate([1 - reference, reference], axis=-1)
        got = predict_probabilities(model, images, batch_size=8)
        assert got.shape == reference.shape
        np.testing.assert_allclose(got, reference, atol=1e-6)
    assert predict_probabilities(model, images[:0]).shape == (0, 2)


def test_an_ensemble_of_one_segmenter_twice_gives_that_segmenters_chain(models, synthetic_btxrd,
                                                                        tmp_path, capsys):
    """``--segmenter`` repeated averages the maps; the mean of a map with itself is the map,
    so the rows and figures equal the single segmenter's, and the outputs name both files."""
    import shutil

    twin = shutil.copy(models["seg"], tmp_path / "seg-twin.keras")
    common = ["--classifier", str(models["cls"]), "--data", str(synthetic_btxrd), "--split",
              "all", "--n-bootstrap", "20", "--cam", "none", "--min-area", "4"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["diagnose", "--segmenter", str(models["seg"]), "--out", str(one), *common]) == 0
    assert main(["diagnose", "--segmenter", str(models["seg"]), "--segmenter", str(twin),
                 "--out", str(two), *common]) == 0

    def rows(out):
        lines = (out / "diagnoses.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k in ("file", "regions",
                                                                    "probabilities")}
                for line in lines]

    assert rows(two) == rows(one) and any(r["regions"] for r in rows(one))
    single, ensemble = (json.loads((d / "diagnosis_metrics.json").read_text()) for d in (one, two))
    assert ensemble["image_level"] == single["image_level"]
    assert ensemble["models"]["segmenter_2"] == str(twin)
    assert ensemble["segmenter"]["n_segmenters"] == 2
    assert "the mean map of 2 segmenters" in (two / "diagnosis_report.md").read_text()
    # a classifier among the segmenters is refused in one line naming it
    capsys.readouterr()
    assert main(["diagnose", "--segmenter", str(models["seg"]), "--segmenter",
                 str(models["cls"]), "--out", str(tmp_path / "bad"), *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(models["cls"]) in err[0] and "not a segmentation" in err[0]


def test_the_oracle_reads_a_split_through_the_crops_of_the_whole_dataset(models, synthetic_btxrd,
                                                                         tmp_path):
    """A normal radiograph's gt-box crop draws its size from the dataset's tumor boxes. The
    oracle of one split must read the crops a training run on the whole dataset drew (the
    classifier's own test figures), not crops drawn from the split's tumors alone."""
    from bone_tumor_tf.data import load_dataset
    from bone_tumor_tf.data.prepare import prepare_images
    from bone_tumor_tf.data.splits import make_splits, save_splits
    from bone_tumor_tf.diagnosis.models import load_chain_models
    from bone_tumor_tf.evaluation.diagnosis import image_metrics

    records = load_dataset(synthetic_btxrd).records
    splits = make_splits(records, seed=0)
    splits_csv = save_splits(splits, tmp_path / "splits.csv")
    out = tmp_path / "eval"
    assert main(["diagnose", "--segmenter", str(models["seg"]), "--classifier",
                 str(models["cls"]), "--data", str(synthetic_btxrd), "--split", "test",
                 "--splits", str(splits_csv), "--out", str(out), "--n-bootstrap", "20",
                 "--cam", "none"]) == 0
    oracle = json.loads((out / "diagnosis_metrics.json").read_text())["image_level"]["oracle"]
    chain = load_chain_models(models["seg"], models["cls"])
    test_ids = set(splits.loc[splits["split"] == "test", "image_id"])
    test = np.array([r.image_id in test_ids for r in records])
    labels = np.array([NAMES.index(r.label) for r in records])[test]

    def oracle_of(prepared):
        index = [chain.class_names.index(c) for c in NAMES]
        return image_metrics(labels, np.asarray(chain.classify(prepared.images))[:, index])

    as_trained = oracle_of(prepare_images(records, chain.classifier_size, "gt-box")
                           .subset(np.flatnonzero(test)))
    assert oracle["macro_auc"] == pytest.approx(as_trained["macro_auc"])
    assert oracle["recall"] == pytest.approx(as_trained["recall"])
    split_alone = oracle_of(prepare_images([r for r, t in zip(records, test) if t],
                                           chain.classifier_size, "gt-box"))
    assert split_alone["macro_auc"] != pytest.approx(as_trained["macro_auc"])
