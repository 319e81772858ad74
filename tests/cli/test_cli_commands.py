"""The commands as a user meets them: help with examples, old spellings, exit codes."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from bone_tumor_tf import cli

REPO = Path(__file__).resolve().parents[2]


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    expected = ("train", "segment", "gradcam", "predict", "evaluate", "data",
                "convert-chexpert", "export", "diagnose", "demo")
    assert tuple(cli.COMMANDS) == expected
    listing = out.split("commands:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in listing] == list(expected)


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_each_command_help_exits_0_and_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    examples = out.split("examples:\n")[1]
    assert f"bone-tumor {command} " in examples


@pytest.mark.parametrize("subcommand", ["inspect", "split", "preview", "synthetic"])
def test_each_data_subcommand_help_shows_its_example(subcommand, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["data", subcommand, "--help"])
    assert exit_info.value.code == 0
    assert f"bone-tumor data {subcommand} " in capsys.readouterr().out.split("examples:\n")[1]


# runpy warns that the module was imported before (by its package); harmless here.
@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module, argv", [
    ("bone_tumor_tf.data", ["inspect", "--help"]),
    ("bone_tumor_tf.data.synthetic", ["--help"]),
    ("bone_tumor_tf.predict", ["--help"]),
    ("bone_tumor_tf.evaluate", ["--help"]),
    ("bone_tumor_tf.evaluation.segmentation", ["--help"]),
    ("bone_tumor_tf.models.chexpert", ["convert", "--help"]),
    ("bone_tumor_tf.demo", ["--help"]),
])
def test_old_module_entry_points_run_the_new_commands(module, argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [module, *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert exit_info.value.code == 0
    assert "usage: bone-tumor " in capsys.readouterr().out


def test_old_spelling_in_a_subprocess_and_inspect_exit_codes(synthetic_btxrd, btxrd_copy,
                                                             tmp_path, capsys):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "bone_tumor_tf.data", "inspect",
                           str(synthetic_btxrd), "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["usable"] is True

    next((btxrd_copy / "images").iterdir()).write_bytes(b"")  # breaks training
    assert cli.main(["data", "inspect", str(btxrd_copy)]) == 1
    assert "zero-byte" in capsys.readouterr().out

    assert cli.main(["data", "inspect", str(tmp_path / "missing")]) == 1
    assert "dataset folder does not exist" in capsys.readouterr().out
    # Commands that need the data to go on refuse it in one line instead.
    assert cli.main(["data", "split", str(tmp_path / "missing"), "--out", "s.csv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "missing" in err


def test_gradcam_shim_keeps_its_options(capsys):
    done = subprocess.run([sys.executable, str(REPO / "gradcam.py"), "--model", "m.keras",
                           "--images", "x.png", "--out", "o", "--alpha", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: --alpha 2.0: must be in [0, 1]"
