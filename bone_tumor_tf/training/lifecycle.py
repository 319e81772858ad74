"""The one lifecycle of a training run; each trainer supplies its model, data and evaluation.

:func:`run_training` walks every run through the same steps:

1. validate the options (:meth:`Trainer.validate`);
2. lock the run folder (a second run into it while this one runs is refused at once;
   :func:`bone_tumor_tf.io.folder_lock`), then create it, or resume the interrupted run in
   it (a finished run is refused unless ``overwrite``; see
   :mod:`bone_tumor_tf.training.runs`);
3. :meth:`Trainer.setup` (e.g. the tf.distribute strategy), then seed Python, NumPy,
   TensorFlow and Keras (``deterministic``: op determinism too);
4. load the data (:meth:`Trainer.load_data`) and refuse an empty split;
5. write ``config.json``: the options, the data folder and :attr:`RunData.config`;
6. build the model (:meth:`Trainer.build_model`) and run its phases
   (:meth:`Trainer.phases`), in order. A phase whose ``state/<phase>_done.weights.h5``
   marker exists is skipped (its weights are loaded); otherwise it trains with the
   callbacks of :func:`~bone_tumor_tf.training.runs.phase_callbacks` (checkpoint,
   resumable early stopping and learning-rate schedule, CSV log, TensorBoard,
   ``BackupAndRestore``) and is marked done;
7. finalise: ``history.csv`` (the phases' epochs continuing), the model saved, then
   :meth:`Trainer.evaluate` (``metrics.json``, plots, ``report.md``), and ``model.keras``
   renamed into place last, so that its presence marks a finished run.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras

from bone_tumor_tf.errors import DataError
from bone_tumor_tf.io import folder_lock
from bone_tumor_tf.models.contract import save_with_contract
from bone_tumor_tf.training import runs
from bone_tumor_tf.training.options import TrainingOptions

logger = logging.getLogger(__name__)


@dataclass
class RunData:
    """What a trainer's :meth:`Trainer.load_data` hands to the lifecycle.

    Attributes:
        splits: ``{"train": ..., "val": ..., "test": ...}``, each with ``len()`` (images).
        data_dir: the dataset folder.
        synthetic: whether the dataset is synthetic.
        config: entries added to ``config.json`` after the options, ``data_dir`` and
            ``synthetic_data``.
    """

    splits: dict
    data_dir: Path
    synthetic: bool
    config: dict = field(default_factory=dict)


@dataclass
class Phase:
    """One training phase of a run.

    Attributes:
        name: the phase's name in the run folder (``history_<name>.csv``, checkpoints,
            ``state/``).
        epochs: epochs at most; with 0 the phase only marks itself done.
        fit: trains the model for the phase, given the phase's callbacks.
        prepare: runs whether or not the phase already finished, before its weights are
            loaded (e.g. a change of the model's configuration the saved model must keep).
        start: runs before training when the phase has not finished (e.g. trainable
            layers and compilation).
        first_callbacks: callbacks placed before the lifecycle's own (e.g. epoch seeding).
    """

    name: str
    epochs: int
    fit: Callable[[list], None]
    prepare: Callable[[], None] | None = None
    start: Callable[[], None] | None = None
    first_callbacks: list = field(default_factory=list)


class Trainer(ABC):
    """What one kind of training supplies to :func:`run_training`.

    Subclasses set :attr:`monitor`, :attr:`monitor_mode` and :attr:`empty_split_message`
    and implement :meth:`load_data`, :meth:`build_model`, :meth:`phases` and
    :meth:`evaluate`; the other hooks are optional.
    """

    #: The validation metric of checkpoints, early stopping and the learning-rate schedule.
    monitor: str = "val_loss"
    monitor_mode: str = "min"
    #: The error for an empty split; ``{split}`` is replaced by its name.
    empty_split_message: str = "the {split} split is empty; the dataset is too small"

    def __init__(self, options: TrainingOptions):
        self.options = options

    def validate(self) -> None:
        """Refuse bad options, or options this machine cannot run, before any work."""
        self.options.validate()

    def setup(self) -> None:  # noqa: B027
        """Once the run folder exists, before seeding (e.g. a tf.distribute strategy)."""

    @abstractmethod
    def load_data(self, run_dir: Path, resuming: bool) -> RunData:
        """Read, check, split and prepare the run's data (``splits.csv`` in ``run_dir``)."""

    @abstractmethod
    def build_model(self, data: RunData):
        """The untrained Keras model."""

    @abstractmethod
    def phases(self, model, data: RunData) -> Sequence[Phase]:
        """The training phases, in order (input pipelines are built here, after the model)."""

    def finish_contract(self, model, data: RunData) -> None:  # noqa: B027
        """Complete the model's contract (e.g. the mask threshold) before the final save."""

    @abstractmethod
    def evaluate(self, model, run_dir: Path, data: RunData) -> None:
        """Write ``metrics.json``, the plots and ``report.md`` of the trained model."""


def run_training(trainer: Trainer, callbacks: list | None = None) -> Path:
    """Run ``trainer``'s training, evaluation and report (see the module docstring).

    Args:
        trainer: the kind of training, holding the run's options.
        callbacks: extra Keras callbacks, placed after the run's own in every phase.

    Returns:
        The run folder.

    Raises:
        BoneTumorError: bad options, another run writing ``options.out`` now, a
            finished run in ``options.out`` without ``overwrite``, bad data (see the
            trainer's ``load_data``), an empty split.
    """
    options = trainer.options
    trainer.validate()
    # one run per folder at a time: two would train into the same checkpoints
    with folder_lock(Path(options.out).expanduser()):
        return _run_locked(trainer, callbacks)


def _run_locked(trainer: Trainer, callbacks: list | None) -> Path:
    """Steps 2-7 of the module docstring, with the run folder's lock held."""
    options = trainer.options
    run_dir, resuming = runs.prepare_run_dir(options.out, options.overwrite)
    if resuming:
        logger.info("resuming the interrupted run in %s", run_dir)
    trainer.setup()
    runs.seed_everything(options.seed, options.deterministic)
    data = trainer.load_data(run_dir, resuming)
    for name, part in data.splits.items():
        if len(part) == 0:
            raise DataError(data.data_dir, trainer.empty_split_message.format(split=name))
    runs.write_config(run_dir, {**options.to_dict(), "data_dir": str(data.data_dir),
                                "synthetic_data": data.synthetic, **data.config})

    model = trainer.build_model(data)
    phases = list(trainer.phases(model, data))
    for phase in phases:
        run_phase(trainer, model, run_dir, phase, callbacks)
    runs.merge_histories(run_dir, [phase.name for phase in phases])
    model.trainable = True  # the saved model is ready for fine-tuning
    trainer.finish_contract(model, data)
    # the inference file: the contract inside, no optimizer state (that stays in state/)
    model_path = save_with_contract(model, run_dir / "model.keras.partial.keras")
    trainer.evaluate(model, run_dir, data)
    # model.keras appears last: its presence (with metrics.json) marks a finished run.
    model_path.replace(run_dir / "model.keras")
    keras.backend.clear_session()
    return run_dir


def run_phase(trainer: Trainer, model, run_dir: Path, phase: Phase,
              callbacks: list | None = None) -> None:
    """Train one phase, or load its weights when it finished in an earlier attempt."""
    if phase.prepare is not None:
        phase.prepare()
    done = runs.phase_done(run_dir, phase.name)
    if done is not None:
        model.load_weights(str(done))
        logger.info("%s: already finished, weights loaded", phase.name)
        return
    if phase.start is not None:
        phase.start()
    if phase.epochs > 0:
        phase.fit(runs.phase_callbacks(run_dir, phase.name, trainer.monitor,
                                       trainer.monitor_mode, trainer.options.patience,
                                       extra=phase.first_callbacks)
                  + list(callbacks or []))
    runs.mark_phase_done(run_dir, phase.name, model)
