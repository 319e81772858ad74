"""``bone-tumor train`` (and ``train_model.py``): train, evaluate and report a classifier.

Argument parsing and one call into :func:`bone_tumor_tf.training.classification.train_classifier`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bone_tumor_tf.cli._runner import EXIT_OK, run_command
from bone_tumor_tf.cli.training_args import HelpFormatter, add_training_arguments, training_fields
from bone_tumor_tf.training.distribute import JIT_COMPILE, LR_SCALINGS, STRATEGIES
from bone_tumor_tf.training.options import CROP_MODES, TASKS, UNFREEZE, ClassifierOptions

EXAMPLES = """examples:
  bone-tumor train --data /data/BTXRD --arch densenet121 --task multiclass \\
      --weights imagenet --crop gt-box --epochs 20 --image-size 224 --out runs/densenet
  bone-tumor train --data demo --arch resnet50 --task binary --image-size 64 \\
      --epochs 3 --out runs/demo-resnet
  python train_model.py --data demo --arch densenet121 --image-size 64 --out runs/demo"""


def build_parser(prog: str = "bone-tumor train") -> argparse.ArgumentParser:
    defaults = ClassifierOptions
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train ResNet50 / DenseNet121 classifiers on BTXRD-format or "
                    "class-per-folder data in two phases (frozen backbone, then last block), "
                    "evaluate on the held-out test split and write a run folder (model.keras, "
                    "config.json, splits.csv, history.csv, metrics.json, report.md, plots).",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    groups = add_training_arguments(
        p, ClassifierOptions,
        data_help="dataset folder (BTXRD layout or DIR/<class>/...), or 'demo' for the "
                  "embedded synthetic BTXRD-format set",
        epochs_help="phase-1 epochs (at most)", lr_help="phase-1 learning rate (Adam)")
    model, training = groups["model"], groups["training"]
    model.add_argument("--task", choices=TASKS, default=defaults.task,
                       help="multiclass: normal/benign/malignant; binary: tumor vs normal")
    model.add_argument("--weights", default=defaults.weights,
                       help="none | imagenet | imagenet:PATH | chexpert | chexpert:PATH | PATH "
                            "(.h5 backbone weights, or a .keras classifier of an earlier run: "
                            "its backbone initialises this one)")
    model.add_argument("--crop", choices=CROP_MODES, default=defaults.crop,
                       help="gt-box: crop tumor images to the ground-truth box (thesis); none: "
                            "whole image padded to square")
    training.add_argument("--phase2-epochs", type=int, default=defaults.phase2_epochs,
                          help="phase-2 epochs (default: --epochs)")
    training.add_argument("--phase2-lr", type=float, default=defaults.phase2_lr,
                          help="phase-2 learning rate (AdamW)")
    training.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    training.add_argument("--head-l2", type=float, default=defaults.head_l2, help="phase-2 head L2")
    training.add_argument("--unfreeze", choices=UNFREEZE, default=defaults.unfreeze,
                          help="phase-2 layers: last block; all (auto: all when --weights none)")
    training.add_argument("--class-balanced", action="store_true",
                          help="sample classes equally instead of class-weighting the loss")
    evaluation = p.add_argument_group("evaluation")
    evaluation.add_argument("--n-bootstrap", type=int, default=defaults.n_bootstrap)
    perf = p.add_argument_group("performance and scale")
    perf.add_argument("--cache-features", action="store_true",
                      help="phase 1: run the frozen backbone once per image (and view) and "
                           "train the head on the stored features; same model, much faster")
    perf.add_argument("--feature-views", type=int, default=defaults.feature_views,
                      help="with --cache-features: views per training image (view 0 plain, "
                           "the others augmented); each epoch uses one view per image")
    perf.add_argument("--strategy", choices=STRATEGIES, default=defaults.strategy,
                      help="tf.distribute strategy (auto: multiworker with a multi-worker "
                           "TF_CONFIG, mirrored with several GPUs, else none); --batch-size "
                           "is the global batch")
    perf.add_argument("--lr-scaling", choices=LR_SCALINGS, default=defaults.lr_scaling,
                      help="scale --lr and --phase2-lr by (global batch / 32) or its square "
                           "root")
    perf.add_argument("--mixed-precision", action="store_true",
                      help="mixed_float16 on a GPU, mixed_bfloat16 on a CPU with bfloat16 "
                           "instructions; the output layer stays float32")
    perf.add_argument("--accumulate-steps", type=int, default=defaults.accumulate_steps,
                      help="split each --batch-size batch into this many micro-batches and "
                           "apply their summed gradients once: same update batch, activation "
                           "memory of batch / N (BatchNorm sees the micro-batches)")
    perf.add_argument("--jit-compile", choices=JIT_COMPILE, default=defaults.jit_compile,
                      help="XLA (auto: on with a GPU, off on a CPU)")
    return p


def options_from_args(args: argparse.Namespace) -> ClassifierOptions:
    """The validated options of parsed arguments (raises BoneTumorError)."""
    return ClassifierOptions(
        **training_fields(args), task=args.task, weights=args.weights, crop=args.crop,
        phase2_epochs=args.phase2_epochs, phase2_lr=args.phase2_lr,
        weight_decay=args.weight_decay, head_l2=args.head_l2, unfreeze=args.unfreeze,
        class_balanced=args.class_balanced, n_bootstrap=args.n_bootstrap,
        cache_features=args.cache_features, feature_views=args.feature_views,
        strategy=args.strategy, lr_scaling=args.lr_scaling,
        mixed_precision=args.mixed_precision, jit_compile=args.jit_compile,
        accumulate_steps=args.accumulate_steps)


def run(args: argparse.Namespace) -> int:
    # Lazy: the trainer imports TensorFlow; --help and option errors should not wait for it.
    from bone_tumor_tf.training.classification import train_classifier

    run_dir = train_classifier(options_from_args(args))
    print(f"run folder: {run_dir}\nreport: {run_dir / 'report.md'}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
