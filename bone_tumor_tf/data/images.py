"""Reading radiographs from disk into grayscale ``uint8`` arrays.

Radiographs are grayscale; RGB-stored JPEGs (three equal channels) are converted with
OpenCV's luma weights. 16-bit PNGs are scaled linearly from their own [min, max] to
[0, 255], because the stored bit depth (12, 14 or 16 bits) is not recorded in the file.
EXIF orientation is applied (OpenCV does so when decoding to grayscale).

Every failure raises :class:`~bone_tumor_tf.errors.DataError` with a one-line message that
names the file: zero-byte file, content that is no image, truncated JPEG/PNG, or data that
OpenCV cannot decode.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from bone_tumor_tf.errors import DataError

#: File extensions read as images (lower case).
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff")

_JPEG_MAGIC = b"\xff\xd8"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_image_file(path: str | Path) -> bool:
    """True when ``path`` has an image extension this module reads."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def check_image_bytes(data: bytes, path: str | Path) -> None:
    """Raise :class:`DataError` when ``data`` is empty, not an image, or truncated.

    OpenCV decodes a truncated JPEG without an error (the missing rows come out grey), so
    completeness is checked on the bytes: a JPEG must end with its end-of-image marker
    ``FF D9`` (trailing zero padding allowed), a PNG must contain its ``IEND`` chunk.
    """
    if len(data) == 0:
        raise DataError(path, "zero-byte file")
    if data.startswith(_JPEG_MAGIC):
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise DataError(path, "truncated JPEG (no end-of-image marker)")
    elif data.startswith(_PNG_MAGIC):
        if b"IEND" not in data[-64:]:
            raise DataError(path, "truncated PNG (no IEND chunk)")
    elif not (data.startswith(b"BM") or data[:4] in (b"II*\x00", b"MM\x00*")):
        head = data[:16].decode("latin-1").encode("unicode_escape").decode()
        raise DataError(path, f"not an image file (starts with {head[:24]!r})")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale a grayscale array of any integer or float depth to ``uint8``.

    ``uint8`` passes through unchanged; anything else is mapped linearly from its own
    [min, max] to [0, 255] (a constant image becomes zeros).
    """
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, np.uint8)
    return np.round((image - low) * (255.0 / (high - low))).astype(np.uint8)


def decode_image(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to a 2-D grayscale ``uint8`` array (H, W)."""
    check_image_bytes(data, path)
    buffer = np.frombuffer(data, np.uint8)
    # GRAYSCALE applies EXIF orientation; ANYDEPTH keeps 16-bit PNG precision until to_uint8.
    image = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise DataError(path, "unreadable image (OpenCV could not decode it)")
    if image.ndim == 3:  # pragma: no cover - defensive, GRAYSCALE returns 2-D
        image = image[..., 0]
    return to_uint8(image)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as a 2-D grayscale ``uint8`` array (H, W), values in [0, 255].

    DICOM files (``.dcm``) are delegated to :mod:`bone_tumor_tf.data.dicom` when present.
    """
    path = Path(path)
    if path.suffix.lower() == ".dcm":
        from bone_tumor_tf.data.dicom import read_dicom  # optional: needs pydicom

        return read_dicom(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "missing image file") from None
    except OSError as error:
        raise DataError(path, f"cannot read file ({error.strerror})") from None
    return decode_image(data, path)
