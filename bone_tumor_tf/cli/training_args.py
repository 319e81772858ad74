"""The command-line flags every training command has (``train``, ``segment``).

:func:`add_training_arguments` adds them to a parser, with the defaults and choices of the
command's options class; :func:`training_fields` turns the parsed arguments into the
options' shared fields (:class:`~bone_tumor_tf.training.options.TrainingOptions`);
:class:`HelpFormatter` is their ``--help`` layout.
"""

from __future__ import annotations

import argparse

from bone_tumor_tf.training.options import ON_BAD_FILE, SPLIT_KINDS, TrainingOptions


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                    argparse.RawDescriptionHelpFormatter):
    """Option defaults in --help, and the examples (epilog) kept as written."""


#: The options fields the shared flags set (``--split-by`` sets ``split_by``, ...).
SHARED_FIELDS = ("data", "out", "arch", "epochs", "batch_size", "image_size", "lr", "dropout",
                 "patience", "augmentation", "split_by", "holdout_center", "seed",
                 "deterministic", "on_bad_file", "overwrite", "cache_dir")


def add_training_arguments(parser: argparse.ArgumentParser,
                           options_class: type[TrainingOptions], *, data_help: str,
                           arch_help: str | None = None, epochs_help: str | None = None,
                           image_size_help: str | None = None, lr_help: str | None = None,
                           dropout_help: str | None = None,
                           augmentation_help: str | None = None
                           ) -> dict:
    """Add the shared flags to ``parser``, in three groups; returns the groups.

    Defaults and the choices of ``--arch`` and ``--augmentation`` come from
    ``options_class``; the ``*_help`` texts are the command's own. The returned groups,
    ``{"data": ..., "model": ..., "training": ...}``, take the command's other flags.
    """
    o = options_class
    data = parser.add_argument_group("data and run folder")
    data.add_argument("--data", required=True, help=data_help)
    data.add_argument("--out", required=True, help="run folder to write")
    data.add_argument("--split-by", choices=SPLIT_KINDS, default=o.split_by)
    data.add_argument("--holdout-center", type=int, default=o.holdout_center)
    data.add_argument("--on-bad-file", choices=ON_BAD_FILE, default=o.on_bad_file)
    data.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    data.add_argument("--cache-dir", default=o.cache_dir,
                      help="reuse decoded, resized images across runs (folder)")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", choices=o.ARCHS, default=o.arch, help=arch_help)
    model.add_argument("--image-size", type=int, default=o.image_size, help=image_size_help)
    model.add_argument("--dropout", type=float, default=o.dropout, help=dropout_help)
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=o.epochs, help=epochs_help)
    training.add_argument("--batch-size", type=int, default=o.batch_size)
    training.add_argument("--lr", type=float, default=o.lr, help=lr_help)
    training.add_argument("--patience", type=int, default=o.patience,
                          help="EarlyStopping patience")
    training.add_argument("--augmentation", choices=o.AUGMENTATIONS, default=o.augmentation,
                          help=augmentation_help)
    training.add_argument("--seed", type=int, default=o.seed)
    training.add_argument("--deterministic", action="store_true",
                          help="enable TensorFlow op determinism (slower)")
    return {"data": data, "model": model, "training": training}


def training_fields(args: argparse.Namespace) -> dict:
    """The shared options fields (:data:`SHARED_FIELDS`) of parsed arguments."""
    return {name: getattr(args, name) for name in SHARED_FIELDS}
