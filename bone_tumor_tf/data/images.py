"""Reading radiographs from disk into grayscale ``uint8`` arrays.

Every entry point (training, inspect, predict, Grad-CAM, segmentation) reads images through
:func:`read_image` / :func:`read_image_with_scale`, so this module is where odd real-world
files are either handled or refused:

* **Colour models.** RGB, CMYK (including Adobe-inverted CMYK) JPEGs and palette or
  gray+alpha PNGs are converted to luminance by OpenCV's grayscale decode.
* **Bit depth.** 16-bit PNG/TIFF are scaled linearly from their own [min, max] to [0, 255]
  (:func:`to_uint8`), because the stored bit depth (12, 14 or 16 bits) is not recorded in
  the file.
* **Orientation.** The EXIF orientation (JPEG, PNG ``eXIf``) is read from the header with
  Pillow and applied here, so the decoded image and :func:`image_size` always agree; TIFF
  orientations 2-4 are applied by OpenCV's TIFF decoder, orientations 5-8 (which swap width
  and height) are refused because OpenCV cannot decode them.
* **Huge images.** An image whose long side exceeds :data:`MAX_DECODE_SIDE` is returned
  reduced so that its long side is at most that: a JPEG is decoded at 1/2, 1/4 or 1/8 size
  by libjpeg (``cv2.IMREAD_REDUCED_GRAYSCALE_*``, chosen from the header size, so the full
  image is never allocated); other formats are decoded in full and then shrunk with area
  interpolation. Images with more than :data:`MAX_PIXELS` pixels are refused before
  decoding. :func:`read_image_with_scale` returns the factor that maps original pixel
  coordinates (annotations) onto the returned image; :func:`image_size` gives the original
  size from the header without decoding.
* **DICOM.** ``.dcm`` files, and files of any name that carry the ``DICM`` marker at byte
  128, are read by :mod:`bone_tumor_tf.data.dicom`.

Every failure raises :class:`~bone_tumor_tf.errors.DataError` with a one-line message that
names the file: missing or zero-byte file, content that is no image, truncated JPEG/PNG,
an unreadable header, an image above :data:`MAX_PIXELS`, or data OpenCV cannot decode.
"""

from __future__ import annotations

import io
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import BmpImagePlugin, ExifTags, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from bone_tumor_tf.data.dicom import dicom_size, read_dicom_with_scale
from bone_tumor_tf.data.pixels import MAX_PIXELS, shrink_to_max_side, to_uint8
from bone_tumor_tf.errors import DataError, one_line

#: File extensions read as images (lower case). DICOM (``.dcm``) is read as well, see
#: :func:`is_dicom_file`.
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff")

#: Extension of DICOM files (lower case).
DICOM_EXTENSION = ".dcm"

#: Longest side, in pixels, of a decoded image; larger images are returned reduced. The
#: models use inputs of at most 512 px, so 4096 keeps ample detail for crops.
MAX_DECODE_SIDE = 4096

_JPEG_MAGIC = b"\xff\xd8"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_BMP_MAGIC = b"BM"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
_DICOM_MAGIC = b"DICM"
_DICOM_MAGIC_OFFSET = 128

#: libjpeg's reduced decodes, by denominator.
_JPEG_REDUCED_FLAGS = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}

#: Pillow plugin classes, used directly to read only the header. ``PIL.Image.open`` would
#: refuse images above Pillow's decompression-bomb limit (179 Mpx) before telling their
#: size; this module applies its own limit, :data:`MAX_PIXELS`.
_HEADER_READERS = {
    "JPEG": JpegImagePlugin.JpegImageFile,
    "PNG": PngImagePlugin.PngImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
}


def is_image_file(path: str | Path) -> bool:
    """True when ``path`` has an image extension this module reads (DICOM not included)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def has_dicom_marker(data: bytes) -> bool:
    """True when ``data`` (at least the first 132 bytes of a file) is DICOM Part 10.

    A DICOM file has a 128-byte preamble followed by the four bytes ``DICM``.
    """
    end = _DICOM_MAGIC_OFFSET + len(_DICOM_MAGIC)
    return data[_DICOM_MAGIC_OFFSET:end] == _DICOM_MAGIC


def is_dicom_file(path: str | Path) -> bool:
    """True when ``path`` ends in ``.dcm`` or its content starts with the DICOM marker.

    Reads at most 132 bytes; a file that cannot be opened is not DICOM.
    """
    path = Path(path)
    if path.suffix.lower() == DICOM_EXTENSION:
        return True
    try:
        with path.open("rb") as file:
            return has_dicom_marker(file.read(_DICOM_MAGIC_OFFSET + len(_DICOM_MAGIC)))
    except OSError:
        return False


def _image_format(data: bytes) -> str | None:
    """``JPEG``, ``PNG``, ``BMP`` or ``TIFF`` from the magic bytes; None otherwise."""
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    if data.startswith(_BMP_MAGIC):
        return "BMP"
    if data[:4] in _TIFF_MAGICS:
        return "TIFF"
    return None


def check_image_bytes(data: bytes, path: str | Path) -> None:
    """Raise :class:`DataError` when ``data`` is empty, not an image, or truncated.

    OpenCV decodes a truncated JPEG without an error (the missing rows come out grey), so
    completeness is checked on the bytes: a JPEG must end with its end-of-image marker
    ``FF D9`` (trailing zero padding allowed), a PNG must contain its ``IEND`` chunk.
    """
    if len(data) == 0:
        raise DataError(path, "zero-byte file")
    image_format = _image_format(data)
    if image_format == "JPEG":
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise DataError(path, "truncated JPEG (no end-of-image marker)")
    elif image_format == "PNG":
        if b"IEND" not in data[-64:]:
            raise DataError(path, "truncated PNG (no IEND chunk)")
    elif image_format is None:
        head = data[:16].decode("latin-1").encode("unicode_escape").decode()
        raise DataError(path, f"not an image file (starts with {head[:24]!r})")


@dataclass(frozen=True)
class _Header:
    """What the header of an encoded image says, read without decoding the pixels."""

    image_format: str
    width: int  # as stored, before the orientation is applied
    height: int
    orientation: int  # EXIF/TIFF orientation 1-8 (1: upright)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the upright image (orientations 5-8 swap the sides)."""
        if self.orientation >= 5:
            return self.width, self.height
        return self.height, self.width


def _read_header(stream: BinaryIO, image_format: str, path: str | Path) -> _Header:
    """Read size and orientation from the header of a JPEG, PNG, BMP or TIFF stream."""
    try:
        header = _HEADER_READERS[image_format](stream)
        width, height = header.size
        if image_format == "PNG" and "exif" not in header.info:
            # Pillow would decode the whole PNG to look for an eXIf chunk after the pixel
            # data; OpenCV ignores those too, so only a chunk before IDAT counts.
            orientation = 1
        else:
            orientation = header.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception as error:  # any failure of a third-party parser
        raise DataError(path, f"unreadable {image_format} header ({one_line(error)})") from None
    orientation = orientation if orientation in range(1, 9) else 1
    if image_format == "TIFF" and orientation >= 5:
        raise DataError(path, f"TIFF orientation {orientation} (rotated by 90 degrees) is not "
                              "supported by OpenCV; save the image upright")
    return _Header(image_format, int(width), int(height), int(orientation))


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image stored with EXIF ``orientation`` upright (as ``ImageOps.exif_transpose``)."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def _jpeg_reduction(header: _Header) -> int:
    """The smallest libjpeg denominator (1, 2, 4, 8) that brings the long side within
    :data:`MAX_DECODE_SIDE`; 8 when none does (the rest is done by resizing)."""
    long_side = max(header.width, header.height)
    for denominator in (1, 2, 4):
        if math.ceil(long_side / denominator) <= MAX_DECODE_SIDE:
            return denominator
    return 8


def _decode_with_scale(data: bytes, path: str | Path) -> tuple[np.ndarray, float]:
    """Decode JPEG/PNG/BMP/TIFF bytes; see :func:`read_image_with_scale`."""
    check_image_bytes(data, path)
    image_format = _image_format(data)
    header = _read_header(io.BytesIO(data), image_format, path)
    if header.width * header.height > MAX_PIXELS:
        raise DataError(path, f"image too large ({header.width}x{header.height} pixels; at "
                              f"most {MAX_PIXELS:,} pixels are decoded)")
    buffer = np.frombuffer(data, np.uint8)
    denominator = 1
    if image_format == "JPEG":
        denominator = _jpeg_reduction(header)
        flags = _JPEG_REDUCED_FLAGS[denominator] | cv2.IMREAD_IGNORE_ORIENTATION
    elif image_format == "PNG":
        # ANYDEPTH keeps 16-bit precision until to_uint8.
        flags = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
    else:  # BMP has no orientation; OpenCV's TIFF decoder applies orientations 2-4 itself
        flags = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH
    image = cv2.imdecode(buffer, flags)
    if image is None:
        raise DataError(path, "unreadable image (OpenCV could not decode it)")
    if image.ndim == 3:  # pragma: no cover - defensive, GRAYSCALE returns 2-D
        image = image[..., 0]
    image, factor = shrink_to_max_side(to_uint8(image), MAX_DECODE_SIDE)
    if image_format in ("JPEG", "PNG"):
        image = _apply_orientation(image, header.orientation)
    return image, factor / denominator


@contextmanager
def _file_errors(path: Path):
    """Turn OS errors of reading ``path`` into one-line :class:`DataError`."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(path, "missing image file") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, not an image file") from None
    except OSError as error:
        raise DataError(path, f"cannot read file ({error.strerror})") from None


def _read_bytes(path: Path) -> bytes:
    with _file_errors(path):
        return path.read_bytes()


def decode_image(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode encoded JPEG/PNG/BMP/TIFF bytes to a 2-D grayscale ``uint8`` array (H, W).

    Same handling as :func:`read_image` (orientation applied, huge images reduced) except
    DICOM, which needs a file: ``path`` only names the data in error messages.
    """
    return _decode_with_scale(data, path)[0]


def read_image_with_scale(path: str | Path) -> tuple[np.ndarray, float]:
    """Read an image or DICOM file as ``(image, scale)``.

    ``image`` is a 2-D grayscale ``uint8`` array (H, W), upright, with long side at most
    :data:`MAX_DECODE_SIDE`. ``scale`` is the decoded / original size factor: a point
    ``(x, y)`` in original (upright) pixel coordinates, e.g. a LabelMe annotation, lies at
    ``(x * scale, y * scale)`` in ``image``. It is 1.0 unless the image was reduced, and
    each side of ``image`` is the original side (:func:`image_size`) times ``scale`` to
    within one pixel (libjpeg rounds reduced sizes up).

    Raises:
        DataError: one line naming the file, for any file that cannot be read as an image.
    """
    path = Path(path)
    if path.suffix.lower() == DICOM_EXTENSION:
        return read_dicom_with_scale(path, max_side=MAX_DECODE_SIDE)
    data = _read_bytes(path)
    if has_dicom_marker(data):
        del data  # pydicom reads the file itself
        return read_dicom_with_scale(path, max_side=MAX_DECODE_SIDE)
    return _decode_with_scale(data, path)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image or DICOM file as a 2-D grayscale ``uint8`` array (H, W).

    Images larger than :data:`MAX_DECODE_SIDE` come back reduced; use
    :func:`read_image_with_scale` where original pixel coordinates must be mapped.
    """
    return read_image_with_scale(path)[0]


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of the original, upright image, read from the header only.

    EXIF orientations 5-8 (rotated by 90 degrees) swap the stored sides, as the decoded
    image does. For DICOM this is (Rows, Columns). No pixel data is decoded, and no size
    limit applies.
    """
    path = Path(path)
    if is_dicom_file(path):
        return dicom_size(path)
    with _file_errors(path):
        with path.open("rb") as file:
            head = file.read(16)
            image_format = _image_format(head)
            if not head:
                raise DataError(path, "zero-byte file")
            if image_format is None:
                check_image_bytes(head, path)  # raises "not an image file"
            file.seek(0)
            return _read_header(file, image_format, path).size
