"""Markdown building blocks shared by every report: numbers, intervals, tables, links.

A number has 3 decimals (``0.812``), a bootstrap interval reads ``0.812 [0.771, 0.850]``,
an undefined value reads ``n/a``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["MISSING", "SYNTHETIC_WARNING", "format_ci", "format_number", "markdown_table",
           "relative_link"]

#: How an undefined value (None, NaN) reads.
MISSING = "n/a"
SYNTHETIC_WARNING = (
    "> **WARNING: synthetic data.** These numbers were computed on synthetic phantom images, "
    "not on clinical radiographs. They exercise the pipeline only and say nothing about "
    "clinical performance."
)


def format_number(value, digits: int = 3, signed: bool = False) -> str:
    """``value`` with ``digits`` decimals (a leading ``+`` when ``signed``), or ``n/a`` for
    ``None``/NaN."""
    if value is None:
        return MISSING
    value = float(value)
    if value != value:  # NaN
        return MISSING
    return f"{value:{'+' if signed else ''}.{digits}f}"


def format_ci(interval: Mapping | None, digits: int = 3, signed: bool = False) -> str:
    """``{"estimate", "low", "high"}`` as ``0.812 [0.771, 0.850]`` (just the estimate when the
    interval is undefined; ``n/a`` when the estimate is). ``signed``: ``+0.10 [-0.02, +0.21]``
    for differences."""
    if not interval or interval.get("estimate") is None:
        return MISSING
    text = format_number(interval["estimate"], digits, signed)
    if interval.get("low") is not None and interval.get("high") is not None:
        low = format_number(interval["low"], digits, signed)
        high = format_number(interval["high"], digits, signed)
        text += f" [{low}, {high}]"
    return text


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence, rows: Sequence[Sequence], numeric: bool = True) -> list[str]:
    """A Markdown table as lines, ending with an empty line; the first column is
    left-aligned, the others right-aligned if ``numeric``. ``|`` and newlines in cells are
    escaped."""
    value_align = "---:" if numeric else "---"
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join(["---"] + [value_align] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def relative_link(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """``path`` as a link from a file in folder ``base`` (POSIX separators).

    ``path`` may be absolute, relative to the working directory, or already relative to
    ``base``; a link holding a space is wrapped in angle brackets (CommonMark).
    """
    path, base = Path(path), Path(base)
    if not path.is_absolute() and (base / path).exists():
        relative = path
    else:
        relative = Path(os.path.relpath(path.resolve(), base.resolve()))
    link = relative.as_posix()
    return f"<{link}>" if " " in link else link
