"""Train a radiograph classifier (thin CLI over bone_tumor_tf.training.classification).

Example:
    python train_model.py --data /data/BTXRD --arch densenet121 --task multiclass \
        --weights imagenet --crop gt-box --epochs 20 --image-size 224 --out runs/densenet
    python train_model.py --data demo --arch resnet50 --task binary --image-size 64 \
        --epochs 3 --out runs/demo-resnet
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


EXAMPLES = """examples:
  bone-tumor train --data /data/BTXRD --arch densenet121 --task multiclass \\
      --weights imagenet --crop gt-box --epochs 20 --image-size 224 --out runs/densenet
  bone-tumor train --data demo --arch resnet50 --task binary --image-size 64 \\
      --epochs 3 --out runs/demo-resnet
  python train_model.py --data demo --arch densenet121 --image-size 64 --out runs/demo"""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                    argparse.RawDescriptionHelpFormatter):
    """Option defaults in --help, and the examples kept as written."""


def build_parser() -> argparse.ArgumentParser:
    from bone_tumor_tf.training.classification import ClassifierOptions as O

    p = argparse.ArgumentParser(
        description="Train ResNet50 / DenseNet121 classifiers on BTXRD-format or "
                    "class-per-folder data in two phases (frozen backbone, then last block), "
                    "evaluate on the held-out test split and write a run folder (model.keras, "
                    "config.json, splits.csv, history.csv, metrics.json, report.md, plots).",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter)
    p.add_argument("--data", required=True,
                   help="dataset folder (BTXRD layout or DIR/<class>/...), or 'demo' for the "
                        "embedded synthetic BTXRD-format set")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--arch", choices=("densenet121", "resnet50"), default=O.arch)
    p.add_argument("--task", choices=("multiclass", "binary"), default=O.task,
                   help="multiclass: normal/benign/malignant; binary: tumor vs normal")
    p.add_argument("--weights", default=O.weights,
                   help="none | imagenet | imagenet:PATH | chexpert | chexpert:PATH | PATH (.h5 "
                        "backbone weights, or a .keras classifier of an earlier run: its "
                        "backbone initialises this one)")
    p.add_argument("--crop", choices=("gt-box", "none"), default=O.crop,
                   help="gt-box: crop tumor images to the ground-truth box (thesis); none: "
                        "whole image padded to square")
    p.add_argument("--epochs", type=int, default=O.epochs, help="phase-1 epochs (at most)")
    p.add_argument("--phase2-epochs", type=int, default=None,
                   help="phase-2 epochs (default: --epochs)")
    p.add_argument("--batch-size", type=int, default=O.batch_size)
    p.add_argument("--image-size", type=int, default=O.image_size)
    p.add_argument("--lr", type=float, default=O.lr, help="phase-1 learning rate (Adam)")
    p.add_argument("--phase2-lr", type=float, default=O.phase2_lr,
                   help="phase-2 learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=O.weight_decay)
    p.add_argument("--head-l2", type=float, default=O.head_l2, help="phase-2 head L2")
    p.add_argument("--dropout", type=float, default=O.dropout)
    p.add_argument("--patience", type=int, default=O.patience, help="EarlyStopping patience")
    p.add_argument("--unfreeze", choices=("auto", "last-block", "all"), default=O.unfreeze,
                   help="phase-2 layers: last block; all (auto: all when --weights none)")
    p.add_argument("--split-by", choices=("patient", "image", "center"), default=O.split_by)
    p.add_argument("--holdout-center", type=int, default=None)
    p.add_argument("--augmentation", choices=("standard", "randaugment", "none"),
                   default=O.augmentation)
    p.add_argument("--class-balanced", action="store_true",
                   help="sample classes equally instead of class-weighting the loss")
    p.add_argument("--seed", type=int, default=O.seed)
    p.add_argument("--deterministic", action="store_true",
                   help="enable TensorFlow op determinism (slower)")
    p.add_argument("--on-bad-file", choices=("stop", "skip"), default=O.on_bad_file)
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --out")
    p.add_argument("--cache-dir", default=None,
                   help="reuse decoded, resized images across runs (folder)")
    p.add_argument("--n-bootstrap", type=int, default=O.n_bootstrap)
    perf = p.add_argument_group("performance and scale")
    perf.add_argument("--cache-features", action="store_true",
                      help="phase 1: run the frozen backbone once per image (and view) and "
                           "train the head on the stored features; same model, much faster")
    perf.add_argument("--feature-views", type=int, default=O.feature_views,
                      help="with --cache-features: views per training image (view 0 plain, "
                           "the others augmented); each epoch uses one view per image")
    perf.add_argument("--strategy", choices=("auto", "none", "mirrored", "multiworker"),
                      default=O.strategy,
                      help="tf.distribute strategy (auto: multiworker with a multi-worker "
                           "TF_CONFIG, mirrored with several GPUs, else none); --batch-size "
                           "is the global batch")
    perf.add_argument("--lr-scaling", choices=("none", "linear", "sqrt"), default=O.lr_scaling,
                      help="scale --lr and --phase2-lr by (global batch / 32) or its square "
                           "root")
    perf.add_argument("--mixed-precision", action="store_true",
                      help="mixed_float16 on a GPU, mixed_bfloat16 on a CPU with bfloat16 "
                           "instructions; the output layer stays float32")
    perf.add_argument("--accumulate-steps", type=int, default=O.accumulate_steps,
                      help="split each --batch-size batch into this many micro-batches and "
                           "apply their summed gradients once: same update batch, activation "
                           "memory of batch / N (BatchNorm sees the micro-batches)")
    perf.add_argument("--jit-compile", choices=("auto", "on", "off"), default=O.jit_compile,
                      help="XLA (auto: on with a GPU, off on a CPU)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from bone_tumor_tf.errors import BoneTumorError
    from bone_tumor_tf.training.classification import (
        ClassifierOptions,
        check_options,
        train_classifier,
    )

    options = ClassifierOptions(**vars(args))
    try:
        check_options(options)
        run_dir = train_classifier(options)
    except BoneTumorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"run folder: {run_dir}\nreport: {run_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
