"""One writer per output folder: a second run is refused at once, a killed one frees it."""

from __future__ import annotations

import pytest
from helpers import folder_locked_by_another_process

from bone_tumor_tf.errors import BoneTumorError
from bone_tumor_tf.io import folder_lock


def test_a_second_writer_is_refused_and_a_killed_holder_frees_the_folder(tmp_path):
    folder = tmp_path / "out"
    with folder_locked_by_another_process(folder):
        with pytest.raises(BoneTumorError, match="another run is writing this folder") as error:
            with folder_lock(folder):
                pass
        assert str(folder) in str(error.value) and "\n" not in str(error.value)
    # the holder was SIGKILLed: the operating system released its lock
    with folder_lock(folder) as locked:
        assert locked == folder


def test_the_lock_nests_within_a_process_and_is_released_even_on_error(tmp_path):
    folder = tmp_path / "out"
    with pytest.raises(ValueError):
        with folder_lock(folder):
            with folder_lock(folder):  # a command that calls a locking function inside
                pass
            raise ValueError("inside")
    with folder_locked_by_another_process(folder):  # released: another process can take it
        pass
