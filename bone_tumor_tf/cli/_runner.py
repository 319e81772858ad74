"""The one wrapper every command runs through: logging set-up, one-line errors, exit codes.

Exit status of every command:

* 0: done;
* 1: the command ran and the answer is no (``data inspect`` on data that would break
  training, ``predict`` with an unreadable file among its inputs);
* 2: a user error (bad option, unreadable file, missing weights): one line
  ``error: ...`` on stderr, never a traceback (argparse also exits 2 on a bad option);
* 130: interrupted (Ctrl-C), one line ``interrupted`` on stderr.

Library modules log through ``logging.getLogger(__name__)``; :func:`configure_logging`
sends the ``bone_tumor_tf`` loggers to stderr: INFO and above by default, WARNING and above
with ``-q``, DEBUG with ``-v``. Warnings read ``warning: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence

# Before any TensorFlow import: no C++ info lines between a command's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bone_tumor_tf.errors import BoneTumorError, one_line  # noqa: E402

EXIT_OK = 0
EXIT_NO = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

#: Parent of every library logger (``logging.getLogger(__name__)`` in bone_tumor_tf.*).
LOGGER_NAME = "bone_tumor_tf"
#: Verbosity -> level: -1 quiet (-q), 0 default, 1 verbose (-v).
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}

# Set by the dispatcher (-v / -q) for the command it runs; 0 when a command runs directly.
_verbosity = 0


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is at the time of the message.

    Redirections (and pytest's capsys) replace ``sys.stderr``; a plain StreamHandler would
    keep writing to the stream it saw when it was made.
    """

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _Formatter(logging.Formatter):
    """``message`` for INFO, ``warning: message`` / ``error: ...``, ``debug: logger: ...``."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        if record.levelno < logging.INFO:
            return f"debug: {record.name}: {message}"
        return message


def configure_logging(verbosity: int = 0) -> None:
    """Send the toolkit's log messages to stderr at the level of ``verbosity`` (-1, 0, 1).

    Replaces the handler of an earlier call, so that a process running several commands
    (tests, the demo) gets exactly one line per message.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if isinstance(handler, _StderrHandler):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(LEVELS[max(-1, min(1, verbosity))])


def progress_enabled() -> bool:
    """False with ``-q``: commands then leave out progress bars."""
    return logging.getLogger(LOGGER_NAME).isEnabledFor(logging.INFO)


@contextlib.contextmanager
def verbosity(level: int) -> Iterator[None]:
    """The verbosity of the commands run inside this block (the dispatcher's -v / -q)."""
    global _verbosity
    previous, _verbosity = _verbosity, level
    try:
        yield
    finally:
        _verbosity = previous


def guarded(command: Callable[..., int | None], *args) -> int:
    """Run ``command(*args)`` and turn its outcome into an exit status (see the module)."""
    try:
        status = command(*args)
    except BoneTumorError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if status is None else int(status)


def run_command(parser: argparse.ArgumentParser, command: Callable[[argparse.Namespace], int | None],
                argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` with ``parser``, set up logging, and run ``command(args)`` guarded.

    ``--help`` and argparse's own errors leave through ``SystemExit`` (status 0 / 2), as
    argparse does everywhere.
    """
    args = parser.parse_args(argv)
    configure_logging(_verbosity)
    return guarded(command, args)


def command_parser(prog: str, description: str, examples: str) -> argparse.ArgumentParser:
    """An argparse parser whose ``--help`` ends with ``examples`` (kept as written)."""
    return argparse.ArgumentParser(prog=prog, description=description, epilog=examples,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
