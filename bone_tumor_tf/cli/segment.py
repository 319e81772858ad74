"""``bone-tumor segment``: stand-in until the lifecycle branch's version of this module lands.

It runs ``main`` of the repository's top-level ``train_segmentation.py`` (same options, same exit
statuses, its parser's --help with examples).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def main(argv=None) -> int:
    path = Path(__file__).resolve().parents[2] / "train_segmentation.py"
    spec = importlib.util.spec_from_file_location("train_segmentation_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.main(argv)
