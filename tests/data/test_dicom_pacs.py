"""DICOM as it comes from a PACS: malformed headers and compressed transfer syntaxes.

A malformed header value becomes a one-line ``DataError`` naming the file, and a batch
(``predict``, ``prepare_images``) reports that file and goes on. Compressed files are
written here (pydicom encodes RLE, JPEG-LS with ``pyjpegls`` and JPEG 2000 with
``pylibjpeg-openjpeg``; JPEG Lossless with a small test encoder) and must decode to the
source pixels. 12-bit JPEG Extended, which nothing here encodes, is read from a sample
that the pydicom wheel ships.
"""

from __future__ import annotations

import json
import logging
import struct

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from test_real_world_inputs import refused, stored_gradient, write_dicom

from bone_tumor_tf.data import dicom
from bone_tumor_tf.data.dicom import read_dicom
from bone_tumor_tf.data.images import image_size, read_image
from bone_tumor_tf.errors import DataError

# ---------------------------------------------------------------------- malformed headers


def with_raw_values(path, **values):
    """Rewrite the DICOM file ``path`` with elements stored as raw ``(VR, bytes)``, as a
    PACS can send them; ``None`` removes the element. pydicom parses them only on access."""
    dataset = pydicom.dcmread(path)
    for keyword, value in values.items():
        tag = Tag(tag_for_keyword(keyword))
        if value is None:
            del dataset[tag]
            continue
        vr, data = value
        data += b" " * (len(data) % 2)  # DICOM values have even length
        dataset[tag] = RawDataElement(tag, vr, len(data), data, 0, False, True)
    dataset.save_as(path, enforce_file_format=True)
    return path


MALFORMED = {
    "frames_not_a_number": ({"NumberOfFrames": ("IS", b"abc")},
                            "invalid Number of Frames 'abc'"),
    "frames_two_values": ({"NumberOfFrames": ("IS", b"1\\2")}, "invalid Number of Frames"),
    "frames_fraction": ({"NumberOfFrames": ("IS", b"1.5")}, "invalid Number of Frames"),
    "bits_allocated_text": ({"BitsAllocated": ("LO", b"sixteen")},
                            "invalid Bits Allocated 'sixteen'"),
    "bits_allocated_12": ({"BitsAllocated": ("US", struct.pack("<H", 12))},
                          "'Bits Allocated' value of '12' is invalid"),
    "bits_stored_above_allocated": ({"BitsStored": ("US", struct.pack("<H", 20))},
                                    "'Bits Stored' value of '20' is invalid"),
    "pixel_representation_text": ({"PixelRepresentation": ("LO", b"x")},
                                  "invalid Pixel Representation 'x'"),
    "pixel_representation_2": ({"PixelRepresentation": ("US", struct.pack("<H", 2))},
                               "'Pixel Representation' value of '2' is invalid"),
    "samples_per_pixel_text": ({"SamplesPerPixel": ("LO", b"one")},
                               "invalid Samples per Pixel 'one'"),
    "samples_per_pixel_2": ({"SamplesPerPixel": ("US", struct.pack("<H", 2))},
                            "'Samples per Pixel' value of '2' is invalid"),
    "rescale_slope_text": ({"RescaleSlope": ("DS", b"abc"), "RescaleIntercept": ("DS", b"0")},
                           "invalid Rescale Slope 'abc'"),
    "rescale_slope_empty": ({"RescaleSlope": ("DS", b""), "RescaleIntercept": ("DS", b"0")},
                            "invalid Rescale Slope (empty)"),
    "rescale_intercept_nan": ({"RescaleSlope": ("DS", b"1"), "RescaleIntercept": ("DS", b"nan")},
                              "invalid Rescale Intercept"),
    "photometric_unknown": ({"PhotometricInterpretation": ("CS", b"FOO")},
                            "'Photometric Interpretation' value 'FOO'"),
    "photometric_two_values": ({"PhotometricInterpretation": ("CS", b"MONOCHROME2\\RGB")},
                               "invalid Photometric Interpretation"),
    "photometric_missing": ({"PhotometricInterpretation": None},
                            "Missing required element: (0028,0004)"),
    "no_pixel_data": ({"PixelData": None}, "has no pixel data"),
    "empty_pixel_data": ({"PixelData": ("OW", b"")}, "pixel data is empty"),
    "short_pixel_data": ({"PixelData": ("OW", b"\0" * 100)}, "less than expected"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_header_value_is_a_one_line_error_naming_the_file(tmp_path, case):
    values, fragment = MALFORMED[case]
    path = with_raw_values(write_dicom(tmp_path / f"{case}.dcm", stored_gradient()), **values)
    refused(path, fragment)
    with pytest.raises(DataError, match="invalid|value|Missing|pixel data"):
        read_dicom(path)


@pytest.mark.parametrize("value", [("LO", b"abc"), ("US", b""), ("US", b"\x20\x00\x00\x00")])
def test_malformed_rows_is_refused_by_the_reader_and_the_size_probe(tmp_path, value):
    path = with_raw_values(write_dicom(tmp_path / "rows.dcm", stored_gradient()), Rows=value)
    refused(path, "no valid Rows/Columns")
    with pytest.raises(DataError, match="no valid Rows/Columns") as caught:
        image_size(path)
    assert str(path) in str(caught.value)


def test_multi_valued_transfer_syntax_is_refused(tmp_path):
    path = write_dicom(tmp_path / "syntax.dcm", stored_gradient())
    data = path.read_bytes()
    # The file meta element (0002,0010) UI, length 20: give it two values.
    old = struct.pack("<HH2sH", 2, 0x10, b"UI", 20) + ExplicitVRLittleEndian.encode() + b"\0"
    new = b"1.2.840.10008.1.2.1\\1.2"
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, struct.pack("<HH2sH", 2, 0x10, b"UI", len(new)) + new))
    refused(path, "invalid Transfer Syntax UID")


@pytest.mark.parametrize("window", [(b"abc", b"400"), (b"500", b"abc"), (b"nan", b"nan")])
def test_malformed_window_is_logged_and_the_image_range_used(tmp_path, caplog, window):
    stored = stored_gradient(top=1000)
    path = with_raw_values(write_dicom(tmp_path / "window.dcm", stored),
                           WindowCenter=("DS", window[0]), WindowWidth=("DS", window[1]))
    with caplog.at_level(logging.WARNING, logger="bone_tumor_tf.data.dicom"):
        image = read_image(path)
    assert np.array_equal(image, read_image(write_dicom(tmp_path / "plain.dcm", stored)))
    assert "window not applied" in caplog.text and str(path) in caplog.text


def test_voi_lut_sequence_with_a_wrong_vr_is_ignored(tmp_path):
    stored = stored_gradient(top=1000)
    path = with_raw_values(write_dicom(tmp_path / "voi.dcm", stored),
                           VOILUTSequence=("LO", b"not a sequence"))
    assert np.array_equal(read_image(path),
                          read_image(write_dicom(tmp_path / "plain.dcm", stored)))


def test_an_unanticipated_failure_still_becomes_a_one_line_error(tmp_path, monkeypatch):
    """Whatever pydicom, a plugin or OpenCV raises on an odd file, the batch gets a DataError."""
    path = write_dicom(tmp_path / "odd.dcm", stored_gradient())

    def fail(*args, **kwargs):
        raise cv2.error("OpenCV(5.0.0) resize.cpp:1: error: (-215:Assertion failed)\n in resize")

    monkeypatch.setattr(dicom, "shrink_to_max_side", fail)
    refused(path, "malformed DICOM file (error: OpenCV(5.0.0) resize.cpp:1")
    monkeypatch.setattr(dicom, "_checked_size", lambda *args: [][0])
    with pytest.raises(DataError, match="malformed DICOM file \\(IndexError"):
        image_size(path)


# ------------------------------------------------------------------------------- batches


def malformed_batch(folder):
    """[good, bad, good] DICOM files; the bad one has a Number of Frames that is no number."""
    good = [write_dicom(folder / name, stored_gradient()) for name in ("a.dcm", "c.dcm")]
    bad = with_raw_values(write_dicom(folder / "b.dcm", stored_gradient()),
                          NumberOfFrames=("IS", b"abc"))
    return [good[0], bad, good[1]], bad


def test_predict_batch_reports_the_malformed_file_and_predicts_the_others(tmp_path, capsys):
    import keras

    from bone_tumor_tf.cli.predict import main as predict_main

    inputs = keras.Input((16, 16, 1))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(features))
    model.save(tmp_path / "tiny.keras")
    files, bad = malformed_batch(tmp_path)
    code = predict_main(["--model", str(tmp_path / "tiny.keras"), *map(str, files), "--json",
                         "--batch-size", "2"])
    captured = capsys.readouterr()
    assert code == 1
    rows = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [row["file"] for row in rows] == [str(files[0]), str(files[2])]
    assert all(row["predicted"] in ("normal", "tumor") for row in rows)
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {bad}: invalid Number of Frames 'abc' in the DICOM header "
                      "(expected one whole number)"]
    assert "Traceback" not in captured.err


def test_prepare_images_lists_the_malformed_file_and_prepares_the_others(tmp_path):
    from bone_tumor_tf.data.prepare import prepare_images
    from bone_tumor_tf.data.records import ImageRecord

    files, bad = malformed_batch(tmp_path)
    records = [ImageRecord(image_id=path.name, path=path, label="normal", group=path.stem)
               for path in files]
    prepared = prepare_images(records, 16, workers=2)
    assert prepared.ok().tolist() == [True, False, True]
    assert prepared.images[[0, 2]].max() > 200  # the good ones were decoded
    assert [error.file for error in prepared.failures] == [str(bad)]


# ------------------------------------------------------------------ compressed syntaxes


def source_image(bits, rows=40, columns=56):
    """A gradient with noise over the full ``bits``-bit range (uint16)."""
    top = 2 ** bits - 1
    noise = np.random.default_rng(bits).integers(-200, 200, (rows, columns))
    image = np.clip(np.linspace(0, top, rows * columns).reshape(rows, columns) + noise, 0, top)
    image = image.astype(np.uint16)
    image[0, :2] = 0, top
    return image


def displayed(stored):
    """What the reader shows for an image without a window: its own range to [0, 255]."""
    low, high = float(stored.min()), float(stored.max())
    return np.round((stored.astype(np.float64) - low) * (255.0 / (high - low)))


def compressed_file(path, source, bits, syntax, **options):
    dataset = pydicom.dcmread(write_dicom(path, source, bits_stored=bits))
    dataset.compress(syntax, source, **options)  # pydicom's encoders / plugins
    dataset.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    return path


@pytest.mark.parametrize("bits", [12, 16])
@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless],
                         ids=lambda uid: uid.name)
def test_lossless_syntax_decodes_to_the_source_pixels(tmp_path, syntax, bits):
    source = source_image(bits)
    path = compressed_file(tmp_path / "lossless.dcm", source, bits, syntax)
    assert np.array_equal(pydicom.dcmread(path).pixel_array, source)  # the file is exact
    assert np.array_equal(read_image(path), displayed(source))


@pytest.mark.parametrize("bits", [12, 16])
def test_near_lossless_jpeg_ls_stays_within_its_error_bound(tmp_path, bits):
    source = source_image(bits)
    path = compressed_file(tmp_path / "near.dcm", source, bits, JPEGLSNearLossless,
                           jls_error=3)
    stored = pydicom.dcmread(path).pixel_array.astype(int)
    assert 0 < np.abs(stored - source).max() <= 3
    assert np.abs(read_image(path) - displayed(source)).max() <= 1


@pytest.mark.parametrize("bits", [12, 16])
def test_lossy_jpeg_2000_is_close_to_the_source(tmp_path, bits):
    source = source_image(bits)
    path = compressed_file(tmp_path / "j2k.dcm", source, bits, JPEG2000, j2k_psnr=[60])
    error = pydicom.dcmread(path).pixel_array.astype(np.float64) - source
    psnr = 10 * np.log10((2 ** bits - 1) ** 2 / np.mean(error ** 2))
    assert np.abs(error).max() > 0 and psnr > 55  # lossy, at about the requested quality
    difference = np.abs(read_image(path) - displayed(source))
    assert difference.mean() < 0.5 and difference.max() <= 2


def jpeg_lossless(image, precision):
    """Encode a 2-D unsigned image as lossless JPEG (ITU-T T.81 process 14, predictor 1).

    No installed package encodes JPEG Lossless, so the test writes the bitstream: one
    Huffman table gives each difference category 0-16 a 5-bit code (T.81 H.1.2).
    """
    rows, columns = image.shape
    values = image.astype(np.int64)
    prediction = np.empty_like(values)
    prediction[0, 0] = 1 << (precision - 1)
    prediction[0, 1:] = values[0, :-1]  # first line: the left neighbour
    prediction[1:, 0] = values[:-1, 0]  # first column: the one above
    prediction[1:, 1:] = values[1:, :-1]  # predictor 1: the left neighbour
    differences = (values - prediction) % 65536  # modulo 2**16, in [-32767, 32768]
    differences[differences > 32768] -= 65536
    bits = []
    for difference in differences.ravel().tolist():
        category = abs(difference).bit_length()
        bits.append(format(category, "05b"))
        if 0 < category < 16:  # category 16 (32768) has no extra bits
            extra = difference if difference > 0 else difference + (1 << category) - 1
            bits.append(format(extra, f"0{category}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)  # pad with 1-bits
    data = int(stream, 2).to_bytes(len(stream) // 8, "big").replace(b"\xff", b"\xff\x00")

    def segment(marker, payload):
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)  # 17 codes of length 5
    return (b"\xff\xd8"
            + segment(0xC3, struct.pack(">BHHBBBB", precision, rows, columns, 1, 1, 0x11, 0))
            + segment(0xC4, b"\x00" + counts + bytes(range(17)))
            + segment(0xDA, bytes([1, 1, 0x00, 1, 0, 0]))  # Ss = 1: predictor 1
            + data + b"\xff\xd9")


@pytest.mark.parametrize("bits", [12, 16])
@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLossless], ids=lambda uid: uid.name)
def test_jpeg_lossless_decodes_to_the_source_pixels(tmp_path, syntax, bits):
    source = source_image(bits)
    path = write_dicom(tmp_path / "jpeg_lossless.dcm", source, bits_stored=bits, syntax=syntax)
    dataset = pydicom.dcmread(path)
    dataset.PixelData = encapsulate([jpeg_lossless(source, bits)])
    dataset.save_as(path, enforce_file_format=True)
    assert np.array_equal(pydicom.dcmread(path).pixel_array, source)
    assert np.array_equal(read_image(path), displayed(source))


def pydicom_sample(name):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom's sample {name} is not installed")
    return path


def test_12_bit_jpeg_extended_sample_decodes():
    """pydicom's 12-bit JPEG Extended sample against the same image as JPEG 2000, decoded
    by another library (openjpeg instead of libjpeg): both are lossy, so they correlate."""
    path = pydicom_sample("JPGExtended.dcm")
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == JPEGExtended12Bit
    assert pydicom.dcmread(path).BitsStored == 12
    image = read_image(path)
    twin = read_image(pydicom_sample("JPEG2000.dcm"))
    assert image.shape == twin.shape == (1024, 256)
    assert np.corrcoef(image.ravel(), twin.ravel())[0, 1] > 0.9


def test_jpeg_lossless_colour_sample_matches_its_rle_twin():
    image = read_image(pydicom_sample("SC_rgb_jpeg_gdcm.dcm"))  # JPEG Lossless SV1, RGB
    assert np.array_equal(image, read_image(pydicom_sample("SC_rgb_rle.dcm")))
    assert len(np.unique(image)) > 3
