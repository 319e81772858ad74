"""The shared command wrapper: exit codes, one-line errors, -q / -v logging."""

from __future__ import annotations

import logging
import types

import pytest

from bone_tumor_tf import cli
from bone_tumor_tf.cli import _runner
from bone_tumor_tf.errors import DataError


def _parser():
    return _runner.command_parser("probe", "a test command", "examples:\n  probe --x 1")


def test_user_error_is_exit_2_with_exactly_one_stderr_line(capsys):
    def command(args):
        # A message spread over lines still comes out as one line.
        raise DataError("scan.png", "not an image file\n(first bytes 00 00)")

    assert _runner.run_command(_parser(), command, []) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: scan.png: not an image file (first bytes 00 00)\n"
    assert captured.out == ""


def test_no_answer_is_exit_1_and_done_is_0(capsys):
    assert _runner.run_command(_parser(), lambda args: _runner.EXIT_NO, []) == 1
    assert _runner.run_command(_parser(), lambda args: None, []) == 0
    assert capsys.readouterr().err == ""


def test_interrupt_is_exit_130_with_one_line(capsys):
    def command(args):
        raise KeyboardInterrupt

    assert _runner.run_command(_parser(), command, []) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_a_bug_is_not_hidden_as_a_user_error():
    def command(args):
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        _runner.run_command(_parser(), command, [])


def test_bad_option_is_argparse_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _runner.run_command(_parser(), lambda args: 0, ["--nope"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


@pytest.fixture()
def probe_command(monkeypatch):
    """A command 'probe' in the dispatcher that logs one message per level, as a library
    module does, and answers "no"."""
    def main(argv=None):
        def command(args):
            log = logging.getLogger("bone_tumor_tf.some.module")
            log.debug("debug detail")
            log.info("progress note")
            log.warning("something odd")
            return _runner.EXIT_NO

        return _runner.run_command(_parser(), command, argv)

    module = types.ModuleType("probe_command")
    module.main = main
    monkeypatch.setitem(__import__("sys").modules, "probe_command", module)
    monkeypatch.setitem(cli.COMMANDS, "probe", ("probe_command", "test command"))
    yield
    _runner.configure_logging(0)


def test_logging_levels_of_the_dispatcher_flags(probe_command, capsys):
    assert cli.main(["probe"]) == 1
    assert capsys.readouterr().err.splitlines() == ["progress note", "warning: something odd"]
    assert cli.main(["-q", "probe"]) == 1
    assert capsys.readouterr().err.splitlines() == ["warning: something odd"]
    assert cli.main(["-v", "probe"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "debug: bone_tumor_tf.some.module: debug detail", "progress note",
        "warning: something odd"]
    # A command run directly (old entry points, shims) logs at the default level again.
    assert _runner.run_command(_parser(), lambda args: logging.getLogger(
        "bone_tumor_tf.x").info("again"), []) == 0
    assert capsys.readouterr().err == "again\n"
    with pytest.raises(SystemExit):
        cli.main(["-q", "-v", "probe"])  # mutually exclusive
