"""One writer per output folder: a second run is refused at once, a killed one frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from bone_tumor_tf.errors import BoneTumorError
from bone_tumor_tf.io import folder_lock

HOLD = ("import sys, time\n"
        "from bone_tumor_tf.io import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n")


def _holder(folder):
    """Another process that holds the folder's lock until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_writer_is_refused_and_a_killed_holder_frees_the_folder(tmp_path):
    folder = tmp_path / "out"
    holder = _holder(folder)
    try:
        with pytest.raises(BoneTumorError, match="another run is writing this folder") as error:
            with folder_lock(folder):
                pass
        assert str(folder) in str(error.value) and "\n" not in str(error.value)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # no clean exit: the OS must release the lock
        holder.wait()
    with folder_lock(folder) as locked:
        assert locked == folder


def test_the_lock_is_released_after_the_block_even_on_error(tmp_path):
    with pytest.raises(ValueError):
        with folder_lock(tmp_path / "out"):
            raise ValueError("inside")
    with folder_lock(tmp_path / "out"):
        pass
