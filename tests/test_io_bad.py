"""Bad input: each kind gets its SpineInputError subclass and a one-line message naming the file."""
from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from spine_models import errors as E
from spine_models.io import display_name, read_image, read_image_bytes
from spine_models.io.dicom_build import make_dicom, make_identified_cr


def bomb_png(path, side: int = 90000) -> None:
    """A ~100-byte PNG whose IHDR declares side×side 8-bit gray pixels (written by hand)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _raises(cls, path, **kw) -> str:
    with pytest.raises(cls) as info:
        read_image(path, **kw)
    msg = str(info.value)
    # named by its neutral id (file names can be patient names): display_name, never the raw name
    assert "\n" not in msg and display_name(path.name) in msg and path.name not in msg, msg
    return msg


@pytest.fixture
def png16(tmp_path):
    a = (np.random.default_rng(0).random((64, 48)) * 65535).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    return tmp_path / "g16.png"


def test_zero_byte(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty" in _raises(E.EmptyFileError, tmp_path / "empty.png")


def test_text_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("patient list\n" * 20)
    msg = _raises(E.UnsupportedFormatError, tmp_path / "notes.png")
    assert "text file" in msg and ".png" in msg


def test_random_bytes(tmp_path):
    (tmp_path / "noise.jpg").write_bytes(random.Random(1).randbytes(4000))
    assert "not a recognised image format" in _raises(E.UnsupportedFormatError, tmp_path / "noise.jpg")


@pytest.mark.parametrize("blob,what", [(b"%PDF-1.7\n...", "PDF"), (b"PK\x03\x04" + b"\x00" * 100, "ZIP")])
def test_other_formats_named(tmp_path, blob, what):
    (tmp_path / "scan.dcm").write_bytes(blob)
    assert what in _raises(E.UnsupportedFormatError, tmp_path / "scan.dcm")


def test_truncated_png(tmp_path, png16):
    data = png16.read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    _raises(E.TruncatedFileError, tmp_path / "t.png")


def test_bit_flipped_png(tmp_path, png16):
    data = bytearray(png16.read_bytes())
    data[len(data) // 2] ^= 0x10
    (tmp_path / "f.png").write_bytes(bytes(data))
    _raises(E.CorruptFileError, tmp_path / "f.png")


def test_truncated_jpeg(tmp_path):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "x.jpg")
    data = (tmp_path / "x.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) - 200])
    _raises(E.TruncatedFileError, tmp_path / "t.jpg")


def test_png_bomb_refused_before_decoding(tmp_path):
    bomb_png(tmp_path / "bomb.png")
    msg = _raises(E.DecompressionBombError, tmp_path / "bomb.png")
    assert "90000×90000" in msg
    with pytest.raises(E.ImageTooSmallError):  # a huge limit lets it through the bomb check → the real size check
        bomb_png(tmp_path / "small.png", side=20)
        read_image(tmp_path / "small.png")


def test_limit_configurable(png16, monkeypatch):
    with pytest.raises(E.DecompressionBombError):
        read_image(png16, max_pixels=1000)
    monkeypatch.setenv("SPINE_MODELS_MAX_PIXELS", "1000")
    with pytest.raises(E.DecompressionBombError):
        read_image(png16)
    assert read_image(png16, max_pixels=10_000).width == 48  # the argument wins over the env
    monkeypatch.setenv("SPINE_MODELS_MAX_PIXELS", "lots")
    with pytest.raises(E.ConfigError):
        read_image(png16)


def test_too_small(tmp_path):
    Image.fromarray(np.zeros((20, 100), np.uint8)).save(tmp_path / "thumb.png")
    assert "32" in _raises(E.ImageTooSmallError, tmp_path / "thumb.png")
    assert read_image(tmp_path / "thumb.png", min_size=16).height == 20


def test_dicom_without_pixel_data(tmp_path):
    ds = make_dicom(np.zeros((64, 64), np.uint16))
    del ds.PixelData
    ds.save_as(tmp_path / "sr.dcm")
    assert "pixel data" in _raises(E.MissingPixelDataError, tmp_path / "sr.dcm")


def test_unsupported_photometric_named(tmp_path):
    ds = make_dicom(np.zeros((64, 64), np.uint16))
    ds.PhotometricInterpretation = "HSV"
    ds.save_as(tmp_path / "hsv.dcm")
    assert "HSV" in _raises(E.UnsupportedPhotometricError, tmp_path / "hsv.dcm")


def test_transfer_syntax_without_decoder(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import MPEG2MPML

    ds = make_dicom(np.zeros((64, 64), np.uint16))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds.save_as(tmp_path / "video.dcm")
    assert "MPEG2" in _raises(E.UnsupportedTransferSyntaxError, tmp_path / "video.dcm")


def test_missing_plugin_is_named(monkeypatch):
    """On a machine without pylibjpeg, JPEG-LS must say which plugin to install."""
    from pydicom.data import get_testdata_file

    import spine_models.io.dicom as dicom_mod

    path = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    if path is None:
        pytest.skip("JPEG-LS test file not bundled")
    monkeypatch.setattr(dicom_mod, "_decoder_available", lambda decoder: False)
    with pytest.raises(E.UnsupportedTransferSyntaxError, match="pylibjpeg-libjpeg"):
        read_image(path)


def test_truncated_and_flipped_dicom(tmp_path):
    make_identified_cr(tmp_path / "cr.dcm")
    data = (tmp_path / "cr.dcm").read_bytes()
    (tmp_path / "short.dcm").write_bytes(data[: len(data) - 500])
    _raises(E.TruncatedFileError, tmp_path / "short.dcm")
    (tmp_path / "head.dcm").write_bytes(data[:300])
    _raises(E.SpineInputError, tmp_path / "head.dcm")
    flipped = bytearray(data)
    flipped[128:132] = b"DIXM"  # broken magic: no longer DICOM, not anything else either
    (tmp_path / "magic.dcm").write_bytes(bytes(flipped))
    _raises(E.UnsupportedFormatError, tmp_path / "magic.dcm")


def test_dicom_bomb_refused(tmp_path):
    ds = make_dicom(np.zeros((4, 4), np.uint8))
    ds.Rows = ds.Columns = 20000
    ds.save_as(tmp_path / "huge.dcm")
    _raises(E.DecompressionBombError, tmp_path / "huge.dcm")


@pytest.mark.parametrize("kind", ["dicom", "rle", "png", "jpeg", "tiff"])
def test_random_corruption_never_escapes_as_another_exception(tmp_path, kind):
    """Flip bits / cut files at random: the reader returns an image or raises SpineInputError, nothing else."""
    from pydicom.uid import RLELossless

    a = (np.random.default_rng(2).random((48, 40)) * 4000).astype(np.uint16)
    if kind in ("dicom", "rle"):
        make_dicom(a, tmp_path / "src", bits_stored=12, transfer_syntax=RLELossless if kind == "rle" else None)
    else:
        img = Image.fromarray(a) if kind != "jpeg" else Image.fromarray((a >> 4).astype(np.uint8))
        img.save(tmp_path / "src", format={"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}[kind])
    original = (tmp_path / "src").read_bytes()
    for seed in range(40):
        rnd = random.Random(seed)
        data = bytearray(original)
        for _ in range(rnd.choice([1, 3, 12])):
            i = rnd.randrange(len(data))
            data[i] ^= 1 << rnd.randrange(8)
        if seed % 3 == 0:
            data = data[: rnd.randrange(1, len(data))]
        try:
            r = read_image_bytes(bytes(data), f"fuzz-{seed}")
        except E.SpineInputError as exc:
            assert "\n" not in str(exc)
        else:
            assert r.pixels.dtype == np.float32 and np.isfinite(r.pixels).all()
