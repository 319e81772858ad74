"""Reading DICOM radiographs (pydicom) into grayscale ``uint8`` arrays.

The displayed image is rebuilt the way a DICOM viewer does (DICOM PS3.3 C.11):

1. **Pixel data** of the first frame is decoded by pydicom with whichever decoder is
   installed for the transfer syntax: uncompressed, deflate and RLE by pydicom itself;
   JPEG baseline, 12-bit JPEG Extended, JPEG Lossless (process 14, SV1 included), JPEG-LS,
   JPEG 2000 and HTJ2K by the ``pylibjpeg`` plugins (``pylibjpeg-libjpeg``,
   ``pylibjpeg-openjpeg``) and ``pyjpegls`` in requirements.txt (Pillow and
   ``python-gdcm`` are used too when installed). A syntax without an installed decoder is
   refused with a one-line error that names it and what to install. A multi-frame file
   contributes its first frame only, and a warning says so (logger
   ``bone_tumor_tf.data.dicom``).
2. **Modality LUT**: Rescale Slope/Intercept or a Modality LUT Sequence
   (``pydicom.pixels.apply_modality_lut``).
3. **VOI LUT**: the first VOI LUT Sequence item, otherwise the first Window Center/Width
   pair with its VOI LUT Function (``pydicom.pixels.apply_voi_lut``); the output range of the
   LUT (its bit depth) or of the window (as pydicom defines it) is mapped to [0, 255].
   Without either, or with an invalid window (logged), the image's own [min, max] is.
4. **MONOCHROME1** (bright = low values) is inverted, so that bone is bright as in
   MONOCHROME2. (Presentation LUT Shape is not used: for MONOCHROME1 it restates the
   inversion.)

Colour images (RGB, YBR converted to RGB by pydicom, PALETTE COLOR through its palette) are
converted to luminance with OpenCV's weights, and scaled to ``uint8`` by their own
[min, max] when not 8-bit.

With ``max_side`` a large image is shrunk (area interpolation) to that long side, for a
grayscale image before the LUTs, so that the float copies they make stay small.

Files are recognised by the ``DICM`` marker; a file without it (no File Meta header) is
read if pydicom finds pixel data in it, as old scanners write such files.

Files from a PACS can carry malformed header values (a Number of Frames that is no number,
text in Bits Allocated, a non-finite Rescale Slope, an empty Pixel Data). Every failure
of reading one, including any exception of pydicom or a decoding plugin, is raised as a
one-line :class:`~bone_tumor_tf.errors.DataError` naming the file, so that a batch goes
on with the other files. Only a malformed window (Window Center/Width) is not fatal: it is
logged and the image's own range is used.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.pixels import pixel_array as decode_pixel_array
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from bone_tumor_tf.data.pixels import MAX_PIXELS, shrink_to_max_side, to_uint8
from bone_tumor_tf.errors import DataError, one_line

logger = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
#: pip distribution of each pydicom decoding plugin (pydicom names the import).
_PIP_NAMES = {"gdcm": "python-gdcm"}
#: Data types ``cv2.resize`` interpolates with INTER_AREA.
_RESIZABLE = (np.uint8, np.uint16, np.int16, np.float32, np.float64)
#: Header values that must be one whole number when present. pydicom keeps an invalid
#: value as read (text, a list, a fraction), and its own errors about them are cryptic.
_WHOLE_NUMBERS = ("NumberOfFrames", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                  "PixelRepresentation", "PlanarConfiguration")
#: Header values that must be one finite number when present (empty included).
_FINITE_NUMBERS = ("RescaleSlope", "RescaleIntercept")


def _malformed_file_errors(read):
    """Decorator of a reader ``read(path, ...)``: any exception but :class:`DataError` becomes
    one (the last guard for a batch).

    The known malformed values get their own messages below; this catches what pydicom or a
    decoding plugin raises on the others, so that one bad file never ends a batch with a
    traceback. The traceback is logged at DEBUG level for a bug report.
    """
    @functools.wraps(read)
    def guarded(path, *args, **kwargs):
        try:
            return read(path, *args, **kwargs)
        except (DataError, MemoryError):
            raise
        except Exception as error:  # any failure of pydicom, a plugin, NumPy or OpenCV
            logger.debug("%s: reading the DICOM file failed", path, exc_info=True)
            raise DataError(path, f"malformed DICOM file ({type(error).__name__}: "
                                  f"{one_line(error)})") from None

    return guarded


def read_dicom(path: str | Path) -> np.ndarray:
    """Read a DICOM file as a full-resolution 2-D grayscale ``uint8`` array (H, W).

    Raises:
        DataError: one line naming the file: not DICOM, no pixel data, a transfer syntax
            without an installed decoder, undecodable or oversized pixel data.
    """
    return read_dicom_with_scale(path)[0]


@_malformed_file_errors
def read_dicom_with_scale(path: str | Path, max_side: int | None = None
                          ) -> tuple[np.ndarray, float]:
    """Read a DICOM file as ``(image uint8 (H, W), scale)``.

    With ``max_side``, an image whose long side exceeds it is shrunk to that long side and
    ``scale`` (decoded / original size) is below 1; otherwise ``scale`` is 1.0.
    """
    path = Path(path)
    dataset = _read_dataset(path, stop_before_pixels=False)
    rows, columns = _checked_size(dataset, path)
    if rows * columns > MAX_PIXELS:
        raise DataError(path, f"image too large ({columns}x{rows} pixels; at most "
                              f"{MAX_PIXELS:,} pixels are decoded)")
    pixels = _first_frame(dataset, path)
    photometric = dataset.get("PhotometricInterpretation", "MONOCHROME2")
    if photometric in _GRAYSCALE:
        if pixels.ndim != 2:
            raise DataError(path, f"{photometric} pixel data of shape {pixels.shape} (expected "
                                  "one sample per pixel)")
        factor = 1.0
        if max_side is not None:
            pixels, factor = shrink_to_max_side(_resizable(pixels), max_side)
        return _grayscale_display(pixels, dataset, path), factor
    image = _color_to_gray(pixels, dataset, path)
    if max_side is not None:
        return shrink_to_max_side(image, max_side)
    return image, 1.0


@_malformed_file_errors
def dicom_size(path: str | Path) -> tuple[int, int]:
    """``(Rows, Columns)`` of a DICOM file, read without its pixel data."""
    path = Path(path)
    return _checked_size(_read_dataset(path, stop_before_pixels=True), path)


def _read_dataset(path: Path, stop_before_pixels: bool) -> Dataset:
    """Parse the file; files without the ``DICM`` marker are read as raw datasets."""
    try:
        empty = path.stat().st_size == 0
        if not empty:
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except FileNotFoundError:
        raise DataError(path, "missing DICOM file") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, not a DICOM file") from None
    except OSError as error:
        raise DataError(path, f"cannot read file ({error.strerror})") from None
    except InvalidDicomError:
        pass
    except Exception as error:  # any failure of pydicom's parser
        raise DataError(path, f"unreadable DICOM file ({one_line(error)})") from None
    if empty:
        raise DataError(path, "zero-byte file")
    not_dicom = "not a DICOM file (no 'DICM' marker and no image attributes)"
    try:
        with warnings.catch_warnings():  # a forced read of random bytes warns a lot
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
            found = "Rows" in dataset and "Columns" in dataset
    except Exception:  # random bytes make pydicom fail in many ways
        raise DataError(path, not_dicom) from None
    if not found:
        raise DataError(path, not_dicom)
    if "TransferSyntaxUID" not in dataset.file_meta:
        implicit, little = dataset.original_encoding
        dataset.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else
            ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return dataset


def _checked_size(dataset: Dataset, path: Path) -> tuple[int, int]:
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
    except (AttributeError, TypeError, ValueError):
        raise DataError(path, "DICOM file has no valid Rows/Columns (not an image, e.g. a "
                              "report or DICOMDIR, or a truncated file)") from None
    if rows < 1 or columns < 1:
        raise DataError(path, f"DICOM image has an empty size ({columns}x{rows})")
    return rows, columns


def _first_frame(dataset: Dataset, path: Path) -> np.ndarray:
    """Decode the first frame, raising one-line errors for missing or undecodable data."""
    keywords = [keyword for keyword in _PIXEL_KEYWORDS if keyword in dataset]
    if not keywords:
        raise DataError(path, "DICOM file has no pixel data")
    if not dataset[keywords[0]].value:
        raise DataError(path, "DICOM pixel data is empty (zero length)")
    syntax = dataset.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)
    if not isinstance(syntax, str):  # e.g. a multi-valued element
        raise DataError(path, f"invalid Transfer Syntax UID {_shown(syntax)} in the file meta "
                              "header")
    syntax = UID(syntax)
    syntax_name = f"transfer syntax '{syntax.name}' ({syntax})" if syntax.is_valid else (
        f"transfer syntax {str(syntax)!r}")
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DataError(path, f"pydicom has no decoder for {syntax_name}; convert the file "
                              "to an uncompressed syntax (e.g. gdcmconv --raw or dcmdjpeg)"
                        ) from None
    if not decoder.is_available:
        raise DataError(path, f"no installed decoder for {syntax_name}; install one: "
                              f"{_install_hint(decoder.missing_dependencies)}")
    # pydicom's warnings (e.g. "the size matches uncompressed data - check the transfer
    # syntax") explain a failure: they join the error message, or are logged on success.
    # Those about a header value that the check refuses are dropped: its error says it.
    failure = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _check_header_values(dataset, path)
        frames = int(dataset.get("NumberOfFrames") or 1)
        if frames > 1:
            logger.warning("%s: multi-frame DICOM (%d frames); using the first frame", path,
                           frames)
        try:
            pixels = decode_pixel_array(dataset, index=0)
        except Exception as error:  # any failure of a decoding plugin
            failure = error
    notes = [one_line(warning.message) for warning in caught]
    if failure is not None:
        raise DataError(path, f"cannot decode pixel data ({syntax_name}): "
                              + "; ".join([one_line(failure), *notes]))
    for note in notes:
        logger.warning("%s: %s", path, note)
    return pixels


def _check_header_values(dataset: Dataset, path: Path) -> None:
    """Refuse, in one line, a pixel-module value that is not the number (or text) it must be."""
    photometric = dataset.get("PhotometricInterpretation")
    if photometric is not None and not isinstance(photometric, str):  # e.g. multi-valued
        raise DataError(path, f"invalid Photometric Interpretation {_shown(photometric)} in "
                              "the DICOM header (expected one value)")
    for keyword in _WHOLE_NUMBERS + _FINITE_NUMBERS:
        if keyword not in dataset:
            continue
        value = dataset[keyword].value
        if value is None and keyword in _WHOLE_NUMBERS:
            continue  # empty: pydicom assumes 1 frame, or names the missing value
        number = None
        if not isinstance(value, (str, bytes)):  # pydicom keeps invalid text as str
            try:
                number = float(value)
            except (TypeError, ValueError):  # None, a multi-valued element
                pass
        whole = keyword not in _WHOLE_NUMBERS or (number is not None and number.is_integer())
        if number is None or not math.isfinite(number) or not whole:
            expected = "one whole number" if keyword in _WHOLE_NUMBERS else "one finite number"
            raise DataError(path, f"invalid {dataset[keyword].name} {_shown(value)} in the "
                                  f"DICOM header (expected {expected})")


def _shown(value) -> str:
    """A header value for a message: its repr, cut to 40 characters."""
    if value is None:
        return "(empty)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _install_hint(missing: list[str]) -> str:
    """``pip install`` commands from pydicom's ``missing_dependencies`` lines.

    Each line reads like ``'pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0'``.
    """
    commands = []
    for line in missing:
        _, _, requirements = line.partition("requires")
        names = [re.split(r"[<>=!~ ]", part.strip(), maxsplit=1)[0]
                 for part in requirements.split(" and ")]
        names = [_PIP_NAMES.get(name, name) for name in names if name and name != "numpy"]
        if names:
            commands.append("`pip install " + " ".join(names) + "`")
    return " or ".join(commands) or "a pydicom pixel data plugin"


def _resizable(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` in a data type ``cv2.resize`` accepts (exact for 8/16/32-bit integers)."""
    if pixels.dtype in _RESIZABLE:
        return pixels
    return pixels.astype(np.float64)


def _grayscale_display(pixels: np.ndarray, dataset: Dataset, path: Path) -> np.ndarray:
    """Stored grayscale values -> modality LUT -> VOI LUT -> ``uint8``, MONOCHROME1 inverted."""
    try:
        values = apply_modality_lut(pixels, dataset)
    except Exception as error:  # malformed Modality LUT Sequence or rescale values
        raise DataError(path, f"invalid Modality LUT or Rescale Slope/Intercept "
                              f"({one_line(error)})") from None
    image = None
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise DataError(path, "pixel values are not finite (NaN or infinity) after the "
                              "Modality LUT / Rescale Slope and Intercept")
    voi_sequence = dataset.get("VOILUTSequence")
    # A malformed sequence (wrong VR) is read as text: no item, no LUT.
    voi_item = voi_sequence[0] if isinstance(voi_sequence, Sequence) and voi_sequence else None
    if voi_item is not None and None not in (voi_item.get("LUTDescriptor"),
                                             voi_item.get("LUTData")):
        # LUT input values are integers; a rescale makes them float.
        lut_input = np.round(values).astype(np.int64) if values.dtype.kind == "f" else values
        try:
            bits = int(voi_item.LUTDescriptor[2])
            image = _scale_to_uint8(apply_voi_lut(lut_input, dataset), 0.0, 2.0 ** bits - 1)
        except Exception as error:  # malformed LUTs fail in many ways
            logger.warning("%s: VOI LUT not applied (%s); using the image's own range",
                           path, one_line(error))
    elif None not in (dataset.get("WindowCenter"), dataset.get("WindowWidth")):
        try:
            # The window's output range, as pydicom defines it, from values far outside it.
            low, high = apply_voi_lut(np.array([-np.inf, np.inf]), dataset)
            if not (np.isfinite([low, high]).all() and high > low):  # e.g. a NaN center
                raise ValueError(f"window output range [{low}, {high}] is not valid")
            image = _scale_to_uint8(apply_voi_lut(values, dataset), low, high)
        except Exception as error:  # invalid width, unknown VOI LUT Function
            logger.warning("%s: window not applied (%s); using the image's own range",
                           path, one_line(error))
    if image is None:
        image = to_uint8(values)
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        image = 255 - image
    return image


def _scale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``values`` linearly from [low, high] to [0, 255] (clipped, rounded)."""
    if not high > low:
        return to_uint8(values)
    scaled = (np.asarray(values, np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _color_to_gray(pixels: np.ndarray, dataset: Dataset, path: Path) -> np.ndarray:
    """RGB (or PALETTE COLOR through its palette) -> luminance ``uint8``."""
    photometric = dataset.get("PhotometricInterpretation")
    try:
        if photometric == "PALETTE COLOR":
            pixels = apply_color_lut(pixels, dataset)
    except Exception as error:  # malformed palettes fail in many ways
        raise DataError(path, f"cannot apply the DICOM palette ({one_line(error)})") from None
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise DataError(path, f"unsupported DICOM Photometric Interpretation {photometric!r} "
                              f"(pixel array of shape {pixels.shape})")
    if pixels.dtype not in (np.uint8, np.uint16, np.float32):
        pixels = pixels.astype(np.float32)
    return to_uint8(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY))
