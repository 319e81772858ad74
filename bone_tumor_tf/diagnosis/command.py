"""What ``bone-tumor diagnose`` does, as one library call: load, select images, run, score."""

from __future__ import annotations

import logging
from pathlib import Path

from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.prepare import tumor_relative_sizes
from bone_tumor_tf.data.splits import load_splits, select_split
from bone_tumor_tf.diagnosis.evaluate import evaluate_chain
from bone_tumor_tf.diagnosis.models import load_chain_models, segmenter_paths
from bone_tumor_tf.diagnosis.run import diagnose_files
from bone_tumor_tf.errors import BoneTumorError, DataError
from bone_tumor_tf.inference import expand_inputs

logger = logging.getLogger(__name__)


def split_records(data, split: str, splits_csv: Path | None, segmenter,
                  dataset_records=None):
    """The records of ``split`` of ``data`` (of ``dataset_records`` when given: every record
    of ``data``, already loaded); warns when a segmenter (a path, or several) trained on any
    of them."""
    if dataset_records is None:
        dataset_records = load_dataset(data).records
    chosen = select_split(dataset_records, split, splits_csv, data)
    if split == "all":
        return chosen
    wanted = {r.image_id for r in chosen}
    for path in segmenter_paths(segmenter):
        seg_splits = path.parent / "splits.csv"
        if seg_splits.is_file():
            seg = load_splits(seg_splits)
            trained = set(seg.loc[seg["split"] == "train", "image_id"]) & wanted
            if trained:
                logger.warning("%s: the segmenter trained on %d of the %d %s images; its "
                               "figures here are optimistic", seg_splits, len(trained),
                               len(chosen), split)
    return chosen


def diagnose_command(args) -> dict:
    """Run ``diagnose`` for parsed arguments; returns ``{"message", "failed"}``."""
    if bool(args.inputs) == bool(args.data):
        raise BoneTumorError("give either images/folders to diagnose or --data DIR to "
                             "evaluate the chain, not both (nor neither)")
    if args.box_threshold is not None and not 0.0 < args.box_threshold <= 1.0:
        raise BoneTumorError(f"--box-threshold must be in (0, 1], got {args.box_threshold}")
    if args.tumor_threshold is not None and not 0.0 < args.tumor_threshold < 1.0:
        raise BoneTumorError(f"--tumor-threshold must be in (0, 1), got {args.tumor_threshold}")
    models = load_chain_models(args.segmenter, args.classifier, args.whole_image,
                               args.threshold, tta=args.tta)
    options = {"min_area": args.min_area, "merge_overlap": args.merge_overlap,
               "box_threshold": args.box_threshold,
               "whole_image_weight": args.whole_image_weight, "cam_method": args.cam,
               "cam_layer": args.layer, "tumor_threshold": args.tumor_threshold}
    out = Path(args.out)
    if args.data:
        splits_csv = Path(args.splits) if args.splits else Path(args.classifier).parent / \
            "splits.csv"
        every = load_dataset(args.data).records
        records = split_records(args.data, args.split, splits_csv, args.segmenter, every)
        # the oracle's normal crops drawn as the classifier's run drew them: from every record
        metrics = evaluate_chain(models, records, out, seed=args.seed,
                                 n_bootstrap=args.n_bootstrap,
                                 normal_crop_sizes=tumor_relative_sizes(every), **options)
        chain = metrics["image_level"]["chain"]
        return {"message": f"{metrics['n_images']} images: mAP50 "
                           f"{metrics['detection']['map'] or 0:.3f}, chain balanced accuracy "
                           f"{chain['balanced_accuracy']:.3f}; report: "
                           f"{out / 'diagnosis_report.md'}; review: {out / 'index.html'}",
                "failed": metrics["n_failed"]}
    files = expand_inputs(args.inputs)
    if not files:
        raise DataError(" ".join(args.inputs), "no image files found")
    rows = diagnose_files(models, files, out, **options)
    failed = sum("error" in row for row in rows)
    return {"message": f"{len(rows) - failed} of {len(rows)} images diagnosed; review: "
                       f"{out / 'index.html'}", "failed": failed}
