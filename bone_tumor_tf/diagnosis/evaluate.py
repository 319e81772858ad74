"""Evaluate the diagnosis chain on annotated radiographs, like a detector and image by image.

On the images of one split (records with labels and tumor shapes):

* **Detection** (:mod:`bone_tumor_tf.evaluation.detection`): every region the chain
  proposes is a detection of its class (the more probable of benign and malignant) with
  score ``s * q_class``; ground truth is the LabelMe rectangles of each tumor image
  (labelled with the image's class), none for normal images. Per class precision, recall,
  AP50 and their mean (mAP50), as the BTXRD paper reports its YOLOv8 baselines.
* **Image level** (:mod:`bone_tumor_tf.evaluation.diagnosis`): the chain, the ``gt-box``
  oracle (the same crop classifier on the ground-truth crops that ``gt-box`` training and
  evaluation use: what the thesis reports) and, when given, the whole-image model, on the
  same images, with paired bootstrap intervals of their differences. Every interval
  resamples patients (the records' ``group``), not radiographs.
* **Normal images:** the share on which the chain reports a tumor.

The chain's decisions follow its operating point (``tumor_threshold``, see
:func:`bone_tumor_tf.evaluation.diagnosis.decide`);
:mod:`bone_tumor_tf.diagnosis.operating_point` chooses the whole-image weight and that
threshold on a validation split.

Writes ``diagnosis_metrics.json`` and ``diagnosis_report.md`` beside the chain's outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bone_tumor_tf.data.annotations import read_record_annotation
from bone_tumor_tf.data.prepare import prepare_images
from bone_tumor_tf.diagnosis.chain import (
    CLASSES,
    DEFAULT_WHOLE_IMAGE_WEIGHT,
    TUMOR_CLASSES,
    combine_with_whole_image,
)
from bone_tumor_tf.diagnosis.operating_point import probability_row
from bone_tumor_tf.diagnosis.regions import effective_box_threshold
from bone_tumor_tf.diagnosis.run import diagnose_files
from bone_tumor_tf.errors import DataError
from bone_tumor_tf.evaluation.detection import Detection, detection_metrics
from bone_tumor_tf.evaluation.diagnosis import (
    decide,
    false_tumor_rate,
    image_metrics,
    oracle_advantage_recovered,
    paired_bootstrap,
)
from bone_tumor_tf.evaluation.reports.markdown import format_ci, format_number, markdown_table
from bone_tumor_tf.io import atomic_write_json, atomic_write_text, folder_lock


def ground_truth_boxes(record) -> list[tuple[str, tuple]]:
    """``[(label, box)]`` of a record's tumor rectangles, in its file's pixels."""
    if record.label == "normal":
        return []
    annotation = read_record_annotation(record)
    boxes = list(getattr(annotation, "boxes", []) or [])
    if not boxes and annotation is not None:
        box = annotation.union_box()
        boxes = [] if box is None else [box]
    return [(record.label, tuple(box)) for box in boxes]


def evaluate_chain(models, records: Sequence, out_dir: str | Path, *, seed: int = 0,
                   n_bootstrap: int = 2000, normal_crop_sizes=None, **diagnose_options) -> dict:
    """Run the chain on ``records`` (resumable) and score it; returns the metrics dict.

    ``normal_crop_sizes``: the whole dataset's tumor box sizes
    (``tumor_relative_sizes(dataset.records)``), so that the oracle reads each normal
    radiograph through the crop its classifier's training run drew for it (default: the
    sizes of ``records``, see :func:`~bone_tumor_tf.data.prepare.prepare_images`).
    """
    out_dir = Path(out_dir)
    with folder_lock(out_dir):  # the rows and the metrics written from them, by one run
        return _evaluate_locked(models, records, out_dir, seed, n_bootstrap, normal_crop_sizes,
                                diagnose_options)


def _evaluate_locked(models, records, out_dir: Path, seed: int, n_bootstrap: int,
                     normal_crop_sizes, diagnose_options: dict) -> dict:
    tumor_threshold = diagnose_options.get("tumor_threshold")
    weight = diagnose_options.get("whole_image_weight", DEFAULT_WHOLE_IMAGE_WEIGHT)
    records = [r for r in records if r.label in CLASSES]
    if not records:
        raise DataError(out_dir, "no normal / benign / malignant image to evaluate")
    rows = diagnose_files(models, [r.path for r in records], out_dir, **diagnose_options)
    by_file = {row["file"]: row for row in rows}
    oracle = prepare_images(records, models.classifier_size, crop_mode="gt-box", seed=seed,
                            normal_crop_sizes=normal_crop_sizes)
    oracle_ok = oracle.ok()
    oracle_probs = np.zeros((len(records), len(CLASSES)))
    if oracle_ok.any():
        raw = models.classify(oracle.images[oracle_ok])
        index = [models.class_names.index(c) for c in CLASSES]
        oracle_probs[oracle_ok] = np.asarray(raw)[:, index]

    truth, detections, labels, findings, groups = {}, [], [], [], []
    chain, whole, oracle_rows, failed = [], [], [], []
    for k, record in enumerate(records):
        row = by_file.get(str(record.path))
        if row is None or "error" in row or not oracle_ok[k]:
            failed.append(row["error"] if row and "error" in row else str(record.path))
            continue
        truth[record.image_id] = ground_truth_boxes(record)
        for region in row["regions"]:
            label = region["label"]
            detections.append(Detection(record.image_id, label, tuple(region["box"]),
                                        region["score"] * region["probabilities"][label]))
        labels.append(record.label)
        groups.append(record.group)
        # From the two models' probabilities, not the stored ones and finding: a resumed
        # folder may hold rows written at another weight or operating point.
        probabilities = row["probabilities"]
        if "whole_image_probabilities" in row:
            probabilities = combine_with_whole_image(
                row["chain_probabilities"], row["whole_image_probabilities"], weight)
        chain.append(probability_row(probabilities))
        findings.append(CLASSES[int(decide(chain[-1], tumor_threshold)[0])])
        oracle_rows.append(oracle_probs[k])
        if "whole_image_probabilities" in row:
            whole.append(probability_row(row["whole_image_probabilities"]))
    if not labels:
        raise DataError(out_dir, "every image failed; see diagnoses.jsonl")
    y = np.array([CLASSES.index(label) for label in labels])
    systems = {"chain": np.array(chain), "oracle": np.array(oracle_rows)}
    pairs = [("chain", "oracle")]
    if len(whole) == len(labels):
        systems["whole_image"] = np.array(whole)
        pairs += [("whole_image", "oracle"), ("chain", "whole_image")]
    rules = {"chain": tumor_threshold}  # the oracle and the whole-image model: most probable
    image_level = {name: image_metrics(y, probs, rules.get(name))
                   for name, probs in systems.items()}
    metrics = {
        "n_images": len(labels), "n_failed": len(failed), "failed": failed[:50],
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(CLASSES)},
        "detection": detection_metrics(detections, truth, TUMOR_CLASSES),
        "image_level": image_level,
        # intervals resample patients: one patient's radiographs are not independent
        "bootstrap": {"resampled": "patient groups", "n_patients": len(set(groups)),
                      "n_images": len(labels), "replicates": int(n_bootstrap)},
        "differences": paired_bootstrap(y, systems, pairs, n_bootstrap=n_bootstrap, seed=seed,
                                        tumor_thresholds=rules, groups=groups),
        "oracle_advantage_recovered": oracle_advantage_recovered(
            image_level["chain"]["balanced_accuracy"],
            image_level["oracle"]["balanced_accuracy"]),
        "normal_false_tumor_rate": false_tumor_rate(findings, labels, n_bootstrap, seed,
                                                    groups=groups),
        "models": models.paths,
        "segmenter": {"mask_threshold": float(models.threshold), "tta": models.tta,
                      "n_segmenters": len(models.segmenters)},
        "options": {**diagnose_options, "box_threshold": effective_box_threshold(
            diagnose_options.get("box_threshold"), models.threshold)},
    }
    atomic_write_json(out_dir / "diagnosis_metrics.json", metrics)
    atomic_write_text(out_dir / "diagnosis_report.md", render_report(metrics))
    return metrics


def render_report(metrics: dict) -> str:
    """``diagnosis_report.md``: detection table, image-level table, differences, normals."""
    counts = ", ".join(f"{c} {n}" for c, n in metrics["class_counts"].items())
    lines = ["# Diagnosis chain evaluation", "",
             f"{metrics['n_images']} images ({counts}); {metrics['n_failed']} could not be "
             "read.", ""]
    segmenter = metrics.get("segmenter")
    if segmenter:
        n = segmenter.get("n_segmenters", 1)
        source = (f"the mean map of {n} segmenters" if n > 1 else "the segmenter's mask")
        box = (metrics.get("options") or {}).get("box_threshold")
        extent = "" if box is None else f", each box spanning the region's extent at {box:g}"
        lines += [f"Regions: {source} at {segmenter['mask_threshold']:g}{extent}, "
                  f"test-time augmentation {segmenter['tta']}.", ""]
    lines += ["## Detection (IoU 0.5, all-point interpolated AP)", ""]
    lines += markdown_table(
        ["class", "ground-truth boxes", "predictions", "precision", "recall", "AP50"],
        [[cls, m["n_ground_truth"], m["n_predictions"], format_number(m["precision"]),
          format_number(m["recall"]), format_number(m["ap"])]
         for cls, m in metrics["detection"]["per_class"].items()])
    lines += [f"mAP50: {format_number(metrics['detection']['map'])}", "",
              "## Image level (normal / benign / malignant)", ""]
    threshold = (metrics.get("options") or {}).get("tumor_threshold")
    rule = ("the most probable class" if threshold is None else
            f"a tumor when P(benign) + P(malignant) >= {threshold:g}, else normal")
    lines += [f"The chain's decision: {rule}; the other systems: the most probable class.",
              ""]
    lines += markdown_table(
        ["system", "accuracy", "balanced accuracy", "macro AUC", "recall normal",
         "recall benign", "recall malignant"],
        [[name] + [format_number(m[k]) for k in ("accuracy", "balanced_accuracy", "macro_auc")]
         + [format_number(m["recall"][c]) for c in CLASSES]
         for name, m in metrics["image_level"].items()])
    boot = metrics.get("bootstrap")
    resampled = (f" (each replicate resamples the {boot['n_patients']} patients, each with all "
                 "its radiographs)" if boot else "")
    lines += [f"Differences with paired bootstrap 95% intervals{resampled}:", ""]
    lines += markdown_table(
        ["difference", "accuracy", "balanced accuracy", "macro AUC"],
        [[pair] + [format_ci(e, signed=True) for e in entry.values()]
         for pair, entry in metrics["differences"].items()])
    rate = dict(metrics["normal_false_tumor_rate"])
    rate["estimate"] = rate.pop("rate")
    lines += [f"Share of the oracle's advantage over chance (balanced accuracy 1/3) that the "
              f"chain recovers: {format_number(metrics['oracle_advantage_recovered'])}.", "",
              f"Normal radiographs on which the chain reports a tumor: {format_ci(rate)} "
              f"(of {rate['n_normal']}).", ""]
    return "\n".join(lines)
