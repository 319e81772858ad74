"""Odd and broken real-world inputs to ``read_image``: handled correctly or refused in one line.

Every file is built here with Pillow, OpenCV or pydicom: broken files (zero-byte, truncated,
text named ``.jpeg``), colour models (CMYK JPEG, palette PNG), 16-bit PNG, EXIF orientation,
huge images (reduced decode, size limit) and DICOM (MONOCHROME1, rescale + window, VOI LUT,
multi-frame, RGB, transfer syntaxes without a decoder, non-DICOM content).
"""

from __future__ import annotations

import logging
import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pydicom
import pytest
from PIL import Image, ImageOps
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from bone_tumor_tf.data import images
from bone_tumor_tf.data.dicom import dicom_size, read_dicom
from bone_tumor_tf.data.images import (
    MAX_DECODE_SIDE,
    image_size,
    read_image,
    read_image_with_scale,
)
from bone_tumor_tf.errors import DataError


def refused(path, *fragments):
    """Assert that ``read_image(path)`` raises a one-line DataError naming the file."""
    with pytest.raises(DataError) as caught:
        read_image(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ----------------------------------------------------------------------------- broken files


def test_zero_byte_truncated_and_text_files_are_refused_naming_the_file(tmp_path):
    for name in ("empty.jpg", "empty.png", "empty.dcm"):
        (tmp_path / name).write_bytes(b"")
        refused(tmp_path / name, "zero-byte file")

    ok, jpeg = cv2.imencode(".jpg", np.full((64, 64), 128, np.uint8))
    (tmp_path / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    refused(tmp_path / "cut.jpg", "truncated JPEG")
    ok, png = cv2.imencode(".png", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    (tmp_path / "cut.png").write_bytes(png.tobytes()[: len(png) // 2])
    refused(tmp_path / "cut.png", "truncated PNG")

    (tmp_path / "notes.jpeg").write_text("patient 12: femur, see report\n")
    refused(tmp_path / "notes.jpeg", "not an image file", "patient 12")
    refused(tmp_path / "absent.png", "missing image file")
    for path in (tmp_path / "notes.jpeg", tmp_path / "empty.png"):
        with pytest.raises(DataError, match="not an image file|zero-byte"):
            image_size(path)


# ---------------------------------------------------------------------------- colour models


@pytest.mark.parametrize("black", [0, 64, 128, 200, 255])
def test_cmyk_jpeg_of_known_gray_gives_its_luminance(tmp_path, black):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (48, 32), (0, 0, 0, black)).save(path, quality=95)
    image = read_image(path)
    assert image.shape == (32, 48) and image.dtype == np.uint8
    assert np.abs(image.astype(int) - (255 - black)).max() <= 2


def test_cmyk_jpeg_in_colour_matches_pillows_luminance(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (48, 32), (50, 100, 150, 20)).save(path, quality=95)
    expected = np.asarray(Image.open(path).convert("RGB").convert("L"), np.int16)
    assert np.abs(read_image(path).astype(np.int16) - expected).max() <= 2


def test_palette_png_gives_the_gray_values_and_the_luminance_of_colours(tmp_path):
    gradient = np.tile(np.arange(256, dtype=np.uint8), (10, 1))
    Image.fromarray(gradient).convert("P").save(tmp_path / "gray.png")
    assert Image.open(tmp_path / "gray.png").mode == "P"
    assert np.array_equal(read_image(tmp_path / "gray.png"), gradient)

    colours = np.zeros((10, 30, 3), np.uint8)
    colours[:, :10], colours[:, 10:20], colours[:, 20:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    Image.fromarray(colours).convert("P", palette=Image.Palette.ADAPTIVE).save(
        tmp_path / "colour.png")
    expected = np.asarray(Image.open(tmp_path / "colour.png").convert("L"), np.int16)
    assert np.abs(read_image(tmp_path / "colour.png").astype(np.int16) - expected).max() <= 1


def test_16_bit_png_is_scaled_by_its_own_range(tmp_path):
    stored = np.linspace(1000, 5000, 40 * 50).reshape(40, 50).astype(np.uint16)  # 12-bit data
    cv2.imwrite(str(tmp_path / "g16.png"), stored)
    expected = (stored.astype(np.float64) - 1000) * 255 / 4000
    image = read_image(tmp_path / "g16.png")
    assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255
    assert np.abs(image - expected).max() <= 0.5 + 1e-9


# ------------------------------------------------------------------------------ orientation


def marked_image(height=40, width=24):
    """Dark image with a bright top-left corner and a mid-gray bottom edge."""
    image = np.full((height, width), 40, np.uint8)
    image[: height // 5, : width // 4] = 250
    image[-3:] = 150
    return image


def save_with_orientation(path, pixels, orientation, **options):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif, **options)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_and_image_size_agrees(tmp_path, orientation):
    for name, options in (("o.jpg", {"quality": 100}), ("o.png", {})):
        path = tmp_path / name
        save_with_orientation(path, marked_image(), orientation, **options)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("L"), np.int16)
        image = read_image(path)
        assert image.shape == expected.shape == image_size(path), name
        assert np.abs(image.astype(np.int16) - expected).max() <= 8, name


def test_reduced_decode_of_an_exif_rotated_jpeg_maps_coordinates(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_DECODE_SIDE", 48)
    stored = marked_image(160, 96)  # stored 96 wide, 160 high; shown rotated: 160 x 96
    save_with_orientation(tmp_path / "rot.jpg", stored, 6, quality=100)
    assert image_size(tmp_path / "rot.jpg") == (96, 160)
    image, scale = read_image_with_scale(tmp_path / "rot.jpg")
    assert scale == 0.25 and image.shape == (24, 40)  # libjpeg decode at 1/4
    # Orientation 6 puts the stored top-left corner at the top-right.
    assert image[:4, -6:].mean() > 200 and image[:, :4].mean() < 80


def test_tiff_orientation_is_applied_up_to_4_and_refused_beyond(tmp_path):
    for orientation in (3, 6):
        path = tmp_path / f"o{orientation}.tif"
        Image.fromarray(marked_image()).save(path, tiffinfo={0x0112: orientation})
        if orientation == 3:
            expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
            assert np.array_equal(read_image(path), expected)
        else:
            refused(path, "TIFF orientation 6")


# ---------------------------------------------------------------------------- huge images


def test_10000_pixel_jpeg_is_decoded_reduced_without_allocating_it(tmp_path):
    path = tmp_path / "huge.jpg"
    stored = np.zeros((10_000, 10_000), np.uint8)
    stored[:2000, :1000] = 255  # marked region, to check where it lands
    cv2.imwrite(str(path), stored, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del stored

    assert image_size(path) == (10_000, 10_000)
    tracemalloc.start()
    try:
        image, scale = read_image_with_scale(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert max(image.shape) <= MAX_DECODE_SIDE
    assert scale == 0.25 and image.shape == (2500, 2500)  # libjpeg decode at 1/4
    assert peak < 30 * 2**20, f"peak {peak / 2**20:.0f} MiB: the full image was allocated?"
    assert image[:490, :240].min() > 200 and image[510:, :].max() < 60
    assert image[:, 260:].max() < 60
    assert read_image(path).shape == (2500, 2500)


def test_jpeg_beyond_the_largest_reduction_is_resized_the_rest_of_the_way(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(images, "MAX_DECODE_SIDE", 100)
    cv2.imwrite(str(tmp_path / "wide.jpg"), np.full((300, 1000), 90, np.uint8))
    image, scale = read_image_with_scale(tmp_path / "wide.jpg")
    assert image.shape == (30, 100) and scale == pytest.approx(0.1)  # 1/8, then 125 -> 100


def test_large_png_is_shrunk_with_its_scale(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_DECODE_SIDE", 100)
    stored = np.zeros((300, 200), np.uint16)
    stored[150:] = 4000
    cv2.imwrite(str(tmp_path / "big16.png"), stored)
    image, scale = read_image_with_scale(tmp_path / "big16.png")
    assert image.shape == (100, 67) and scale == pytest.approx(1 / 3)
    assert image[:49].max() == 0 and image[51:].min() == 255
    assert image_size(tmp_path / "big16.png") == (300, 200)


def test_png_claiming_more_than_max_pixels_is_refused_before_decoding(tmp_path):
    ok, png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    data = bytearray(png.tobytes())
    # IHDR is the first chunk: length(4) type(4) width(4) height(4) ... crc(4) at 8..33.
    data[16:24] = struct.pack(">II", 30_000, 30_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    assert image_size(tmp_path / "bomb.png") == (30_000, 30_000)
    refused(tmp_path / "bomb.png", "image too large", "30000x30000")


# ----------------------------------------------------------------------------------- DICOM


def write_dicom(path, pixels, photometric="MONOCHROME2", bits_stored=12, syntax=None,
                **attributes):
    """Write a Secondary Capture DICOM file; ``syntax`` set: pixels stored encapsulated."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "DX"
    color = pixels.ndim == 3 and pixels.shape[-1] == 3
    if pixels.ndim == 3 and not color:
        dataset.NumberOfFrames = pixels.shape[0]
    dataset.Rows, dataset.Columns = pixels.shape[-3:-1] if color else pixels.shape[-2:]
    dataset.SamplesPerPixel = 3 if color else 1
    if color:
        dataset.PlanarConfiguration = 0
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = pixels.itemsize * 8
    dataset.BitsStored = bits_stored if pixels.itemsize == 2 else 8
    dataset.HighBit = dataset.BitsStored - 1
    dataset.PixelRepresentation = int(pixels.dtype.kind == "i")
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    data = pixels.tobytes()
    dataset.PixelData = encapsulate([data]) if syntax else data
    dataset.save_as(path, enforce_file_format=True)
    return path


def stored_gradient(rows=32, columns=48, top=4095):
    return np.linspace(0, top, rows * columns).reshape(rows, columns).astype(np.uint16)


def test_dicom_monochrome1_is_inverted(tmp_path):
    stored = stored_gradient()
    path = write_dicom(tmp_path / "mono1.dcm", stored, photometric="MONOCHROME1")
    image = read_image(path)
    assert image.shape == stored.shape and image.dtype == np.uint8
    brightest, darkest = np.unravel_index(stored.argmax(), stored.shape), (0, 0)
    assert image[brightest] == 0 and image[darkest] == 255
    monochrome2 = read_image(write_dicom(tmp_path / "mono2.dcm", stored))
    assert np.array_equal(image, 255 - monochrome2)


def test_dicom_rescale_and_window_match_the_dicom_formula(tmp_path):
    stored = stored_gradient()
    center, width, slope, intercept = 500.0, 1000.0, 2.0, -1024.0
    path = write_dicom(tmp_path / "window.dcm", stored, RescaleSlope=slope,
                       RescaleIntercept=intercept, WindowCenter=center, WindowWidth=width)
    values = stored * slope + intercept
    # DICOM PS3.3 C.11.2.1.2.1, LINEAR: output range mapped to [0, 255].
    expected = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255
    image = read_image(path)
    assert np.abs(image - expected).max() <= 0.5 + 1e-6
    assert (image == 0).any() and (image == 255).any()  # window narrower than the data
    # A window wider than the data does not stretch it to [0, 255].
    wide = read_image(write_dicom(tmp_path / "wide.dcm", stored, WindowCenter=2048,
                                  WindowWidth=16384))
    assert 80 < wide.min() and wide.max() < 175


def test_dicom_without_window_uses_its_own_range(tmp_path):
    stored = stored_gradient(top=1000)
    image = read_image(write_dicom(tmp_path / "plain.dcm", stored + 3000, bits_stored=16))
    assert image.min() == 0 and image.max() == 255
    assert np.abs(image - stored.astype(np.float64) * 255 / 1000).max() <= 0.5 + 1e-6


def test_dicom_with_an_invalid_window_falls_back_to_its_own_range(tmp_path, caplog):
    stored = stored_gradient(top=1000)
    path = write_dicom(tmp_path / "zero_width.dcm", stored, WindowCenter=500, WindowWidth=0)
    with caplog.at_level(logging.WARNING, logger="bone_tumor_tf.data.dicom"):
        image = read_image(path)
    assert image.min() == 0 and image.max() == 255
    assert "window not applied" in caplog.text and str(path) in caplog.text


def test_dicom_voi_lut_sequence_is_applied_over_its_bit_depth(tmp_path):
    stored = stored_gradient(top=255)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [256, 0, 8])
    item.add_new("LUTData", "US", list(range(255, -1, -1)))  # an inverting LUT
    path = write_dicom(tmp_path / "lut.dcm", stored, VOILUTSequence=[item])
    assert np.array_equal(read_image(path), 255 - stored.astype(np.uint8))


def test_multiframe_dicom_uses_the_first_frame_and_says_so(tmp_path, caplog):
    frames = np.stack([stored_gradient(), 4095 - stored_gradient()])
    path = write_dicom(tmp_path / "frames.dcm", frames)
    with caplog.at_level(logging.WARNING, logger="bone_tumor_tf.data.dicom"):
        image = read_image(path)
    assert image.shape == (32, 48) and image[0, 0] == 0 and image[-1, -1] == 255
    assert "first frame" in caplog.text and "2 frames" in caplog.text


def test_rgb_dicom_is_converted_to_luminance(tmp_path):
    rgb = np.zeros((16, 30, 3), np.uint8)
    rgb[:, :10], rgb[:, 10:20], rgb[:, 20:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    image = read_image(write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB"))
    assert np.array_equal(image[0, ::10], [76, 150, 29])  # ITU-R BT.601 luma, not stretched


def test_dicom_is_recognised_without_extension_and_reduced_with_scale(tmp_path, monkeypatch):
    stored = stored_gradient(64, 32)
    path = write_dicom(tmp_path / "IM0001", stored)
    assert np.array_equal(read_image(path), read_dicom(path))
    assert image_size(path) == dicom_size(path) == (64, 32)
    monkeypatch.setattr(images, "MAX_DECODE_SIDE", 16)
    image, scale = read_image_with_scale(path)
    assert image.shape == (16, 8) and scale == 0.25


def test_compressed_syntaxes_with_an_installed_decoder_are_read(tmp_path):
    stored = stored_gradient(top=255).astype(np.uint8)
    rle = pydicom.dcmread(write_dicom(tmp_path / "plain.dcm", stored))
    rle.compress(RLELossless)  # pydicom's own RLE encoder
    rle.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    assert np.array_equal(read_image(tmp_path / "rle.dcm"), stored)
    # JPEG baseline, decoded by the Pillow plugin.
    ok, jpeg = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 100])
    path = write_dicom(tmp_path / "jpeg.dcm", stored, syntax=JPEGBaseline8Bit)
    dataset = pydicom.dcmread(path)
    dataset.PixelData = encapsulate([jpeg.tobytes()])
    dataset.save_as(path, enforce_file_format=True)
    assert np.abs(read_image(path).astype(int) - stored).max() <= 2


def test_dicom_without_preamble_is_read_and_a_truncated_one_refused(tmp_path):
    stored = stored_gradient()
    full = write_dicom(tmp_path / "full.dcm", stored)
    dataset = pydicom.dcmread(full)
    del dataset.file_meta
    dataset.preamble = None
    pydicom.dcmwrite(tmp_path / "raw.dcm", dataset, implicit_vr=True, little_endian=True)
    assert (tmp_path / "raw.dcm").read_bytes()[128:132] != b"DICM"
    assert np.array_equal(read_image(tmp_path / "raw.dcm"), read_image(full))
    data = full.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-1000])
    refused(tmp_path / "cut.dcm", "cannot decode pixel data", "less than expected")


def test_undecodable_transfer_syntaxes_are_refused_naming_the_syntax(tmp_path):
    stored = stored_gradient()
    # JPEG 2000 whose "compressed" frame is raw bytes: whichever decoder is installed fails.
    message = refused(write_dicom(tmp_path / "j2k.dcm", stored, syntax=JPEG2000),
                      "JPEG 2000 Image Compression", JPEG2000)
    assert "decode" in message
    # Raw, not even encapsulated, pixel data labelled JPEG 2000 (pydicom's writer refuses
    # to write that, so the file is assembled from its parts).
    plain = pydicom.dcmread(write_dicom(tmp_path / "raw.dcm", stored))
    plain.file_meta.TransferSyntaxUID = JPEG2000
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buffer, plain.file_meta)
    write_dataset(buffer, plain)
    (tmp_path / "raw_j2k.dcm").write_bytes(buffer.getvalue())
    refused(tmp_path / "raw_j2k.dcm", "JPEG 2000 Image Compression", "check that the transfer "
                                                                     "syntax has been set")


def test_transfer_syntax_without_an_installed_decoder_says_what_to_install(tmp_path,
                                                                          monkeypatch):
    # requirements.txt installs the JPEG-LS decoders: pydicom's decoder is made to see
    # none of its plugins, as on a machine without them.
    decoder = get_decoder(JPEGLSLossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {
        "pyjpegls": ("numpy", "pyjpegls>=1.2"),
        "pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-libjpeg>=2.1")})
    assert not get_decoder(JPEGLSLossless).is_available
    path = write_dicom(tmp_path / "jls.dcm", stored_gradient(), syntax=JPEGLSLossless)
    refused(path, "no installed decoder", "JPEG-LS Lossless", "pip install", "pylibjpeg")


def test_non_dicom_content_in_a_dcm_file_is_refused(tmp_path):
    (tmp_path / "text.dcm").write_text("exported by viewer: see attached PDF\n" * 4)
    refused(tmp_path / "text.dcm", "not a DICOM file")
    ok, jpeg = cv2.imencode(".jpg", np.zeros((8, 8), np.uint8))
    (tmp_path / "photo.dcm").write_bytes(jpeg.tobytes())
    refused(tmp_path / "photo.dcm", "not a DICOM file")
    no_pixels = Dataset()
    no_pixels.file_meta = FileMetaDataset()
    no_pixels.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    no_pixels.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    no_pixels.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    no_pixels.PatientName = "Anon"
    no_pixels.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    refused(tmp_path / "report.dcm", "no valid Rows/Columns")


def test_a_dicom_folder_is_a_class_per_folder_dataset(tmp_path):
    """DIR/<class>/*.dcm (and extension-less DICOM files) load and prepare like images."""
    from bone_tumor_tf.data import load_dataset
    from bone_tumor_tf.data.prepare import prepare_images

    for cls in ("normal", "cancer"):
        (tmp_path / cls).mkdir()
        write_dicom(tmp_path / cls / "a.dcm", stored_gradient())
        write_dicom(tmp_path / cls / "b_no_extension", stored_gradient())
    dataset = load_dataset(tmp_path)
    assert dataset.class_names == ("normal", "cancer")
    assert len(dataset.records) == 4
    prepared = prepare_images(dataset.records, 32)
    assert prepared.failures == [] and prepared.images.shape == (4, 32, 32)
    assert prepared.images.max() > 200  # the gradient's bright end survived
