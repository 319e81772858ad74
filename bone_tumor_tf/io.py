"""Crash-safe file writing and output names, shared by every module that writes results.

A reader (a person, a dashboard, the next pipeline stage) must never see a half-written
``metrics.json``, ``report.md`` or PNG. Every writer below writes the whole content to a
temporary file in the destination folder, flushes it to disk, then ``os.replace``s it over
the destination: on POSIX and Windows that rename is atomic within one file system, so the
destination holds either the old content or the new content, never a mixture.

:func:`unique_stems` names one output per input file when several inputs share a stem.
:func:`folder_lock` keeps two runs from writing one output folder at once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bone_tumor_tf.errors import BoneTumorError

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "folder_lock",
           "to_jsonable", "unique_stems", "write_png"]

logger = logging.getLogger(__name__)

#: The lock file :func:`folder_lock` holds inside an output folder.
LOCK_NAME = ".lock"


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path`` as a ``Path``.

    The parent folder is created if missing. The bytes go to a hidden temporary file in
    the same folder (``.<name>.<random>.tmp``), are flushed and fsync'ed, then renamed over
    ``path`` with ``os.replace``. On any error the temporary file is removed and the old
    content of ``path`` (if any) is left untouched. The new file keeps the permission bits
    of the file it replaces, or gets ``0o644`` if there was none.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    handle = tempfile.NamedTemporaryFile(
        "wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False,
    )
    temp_path = Path(handle.name)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_path, mode)
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` (encoded, newlines as given) to ``path`` atomically; see
    :func:`atomic_write_bytes`. Returns ``path`` as a ``Path``."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON (``indent`` spaces, trailing newline) to ``path`` atomically.

    ``obj`` is first passed through :func:`to_jsonable` (numpy values, tuples, paths; NaN and
    infinities become ``null``), then encoded with ``allow_nan=False`` so the file is valid
    JSON for any parser. Returns ``path`` as a ``Path``.
    """
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Encode ``image`` (uint8 gray ``(H, W)`` or BGR ``(H, W, 3)``) as PNG, atomically.

    Returns ``path`` as a ``Path``; see :func:`atomic_write_bytes`.
    """
    path = Path(path)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:  # pragma: no cover - OpenCV fails only on unsupported arrays
        raise ValueError(f"{path}: cannot encode a {image.dtype} {image.shape} array as PNG")
    return atomic_write_bytes(path, encoded.tobytes())


def unique_stems(paths: Sequence[str | os.PathLike], separator: str = "__") -> list[str]:
    """One distinct output name stem per input path, in input order.

    The stem is the file's stem; a stem already taken gets ``<separator>2``,
    ``<separator>3``... (the first number whose name is still free), so
    ``a/x.png, b/x.jpg`` -> ``x, x__2`` with the default separator.
    """
    taken: set[str] = set()
    stems = []
    for path in paths:
        stem = candidate = Path(path).stem
        number = 1
        while candidate in taken:
            number += 1
            candidate = f"{stem}{separator}{number}"
        taken.add(candidate)
        stems.append(candidate)
    return stems


#: Folders this process holds, with how many nested :func:`folder_lock` blocks hold each.
_HELD: dict[Path, int] = {}


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs.

    Another process that asks for the same folder gets
    :class:`bone_tumor_tf.errors.BoneTumorError` at once, naming the folder, instead of
    writing beside the first one. Within one process the lock nests (a command that locks
    its folder may call a function that locks it again). The lock is ``flock`` on
    ``folder/.lock``: the operating system releases it when its holder exits, even when
    killed, so an interrupted run never leaves a stale lock behind. Where there is no
    ``flock`` (Windows, some network file systems) nothing is locked.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield folder
        return
    with open(folder / LOCK_NAME, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            raise BoneTumorError(f"{folder}: another run is writing this folder now; wait for "
                                 "it to finish or give another output folder") from None
        except OSError as error:  # a file system without flock: go on unlocked
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            logger.warning("%s: cannot be locked here (%s); two runs into it would mix",
                           folder, error.strerror)
            locked = False
        _HELD[key] = 1
        try:
            yield folder
        finally:
            del _HELD[key]
            if locked:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
