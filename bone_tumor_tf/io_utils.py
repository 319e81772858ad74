"""Crash-safe file writing shared by every module that writes results.

A reader (a person, a dashboard, the next pipeline stage) must never see a half-written
``metrics.json`` or ``report.md``. Both writers below write the whole content to a
temporary file in the destination folder, flush it to disk, then ``os.replace`` it over
the destination: on POSIX and Windows that rename is atomic within one file system, so the
destination holds either the old content or the new content, never a mixture.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write_json", "atomic_write_text", "to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """Return ``obj`` converted to plain JSON types, recursively.

    - ``numpy`` scalars become Python ``int`` / ``float`` / ``bool``; arrays become lists;
    - tuples and sets become lists; mapping keys become ``str``; ``pathlib`` paths become ``str``;
    - non-finite floats (NaN, +-inf) become ``None``: strict JSON has no NaN, and a metric
      that is undefined should read as ``null``, not as an invalid token.

    Anything else that ``json`` cannot encode is left as is, so ``json.dumps`` raises on it.
    """
    if isinstance(obj, Mapping):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if isinstance(obj, np.ndarray):
        return [to_jsonable(value) for value in obj.tolist()]
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(value) for value in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return ``path`` as a ``Path``.

    The parent folder is created if missing. The text goes to a hidden temporary file in
    the same folder (``.<name>.<random>.tmp``), is flushed and fsync'ed, then renamed over
    ``path`` with ``os.replace``. On any error the temporary file is removed and the old
    content of ``path`` (if any) is left untouched. The new file keeps the permission bits
    of the file it replaces, or gets ``0o644`` if there was none.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    handle = tempfile.NamedTemporaryFile(
        "w", encoding=encoding, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
        delete=False, newline="",
    )
    temp_path = Path(handle.name)
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_path, mode)
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON (``indent`` spaces, trailing newline) to ``path`` atomically.

    ``obj`` is first passed through :func:`to_jsonable` (numpy values, tuples, paths; NaN and
    infinities become ``null``), then encoded with ``allow_nan=False`` so the file is valid
    JSON for any parser. Returns ``path`` as a ``Path``.
    """
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")
