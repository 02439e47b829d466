"""spine_models.io: every supported format reads into the documented Radiograph."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from spine_models.io import Radiograph, apply_window, read_image, read_image_bytes
from spine_models.io.dicom_build import make_dicom, make_identified_cr


def _ramp(h: int = 64, w: int = 48, top: int = 65535, dtype=np.uint16) -> np.ndarray:
    return (np.linspace(0, top, h * w).reshape(h, w)).astype(dtype)


def _check(r: Radiograph, w: int, h: int) -> None:
    assert r.pixels.dtype == np.float32 and r.pixels.shape == (h, w)
    assert 0.0 <= float(r.pixels.min()) and float(r.pixels.max()) <= 1.0
    assert r.pixels.flags.c_contiguous


def test_png_16bit_exact(tmp_path):
    a = _ramp()
    Image.fromarray(a).save(tmp_path / "g16.png")
    r = read_image(tmp_path / "g16.png")
    _check(r, 48, 64)
    assert (r.bits, r.format, r.photometric, r.frames, r.volume) == (16, "PNG", "MONOCHROME2", 1, None)
    assert np.allclose(r.pixels, a / 65535.0, atol=1e-6)
    assert r.pixel_spacing_mm is None and r.kind == "xray"


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_png_8bit_modes(tmp_path, mode):
    gray = _ramp(top=255, dtype=np.uint8)
    im = Image.fromarray(gray)
    if mode == "RGBA":
        im = Image.merge("RGBA", [im, im, im, Image.new("L", im.size, 255)])
    elif mode != "L":
        im = im.convert(mode)
    im.save(tmp_path / "x.png")
    r = read_image(tmp_path / "x.png")
    _check(r, 48, 64)
    assert r.bits == 8
    assert r.photometric == {"L": "MONOCHROME2", "RGB": "RGB", "RGBA": "RGBA", "P": "PALETTE COLOR"}[mode]
    assert np.abs(r.pixels - gray / 255.0).max() < 0.02  # palette quantisation error only


def test_rgba_alpha_composited_over_black(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :20, 3] = 255  # left opaque, right transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    r = read_image(tmp_path / "a.png")
    assert r.pixels[:, :20].mean() == pytest.approx(200 / 255, abs=1e-3)
    assert r.pixels[:, 20:].max() == 0.0


@pytest.mark.parametrize("ext,fmt", [(".jpg", "JPEG"), (".tif", "TIFF"), (".bmp", "BMP"), (".gif", "GIF"), (".webp", "WEBP")])
def test_other_raster_formats(tmp_path, ext, fmt):
    gray = _ramp(top=255, dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / f"x{ext}")
    r = read_image(tmp_path / f"x{ext}")
    _check(r, 48, 64)
    assert r.format == fmt
    assert np.abs(r.pixels - gray / 255.0).mean() < 0.03


def test_tiff_16bit_and_multipage(tmp_path):
    a = _ramp()
    Image.fromarray(a).save(tmp_path / "g.tif")
    r = read_image(tmp_path / "g.tif")
    assert r.bits == 16 and np.allclose(r.pixels, a / 65535.0, atol=1e-6)
    frames = [Image.fromarray(np.full((40, 40), v, np.uint8)) for v in (0, 128, 255)]
    frames[0].save(tmp_path / "m.tif", save_all=True, append_images=frames[1:])
    m = read_image(tmp_path / "m.tif")
    assert m.frames == 3 and m.volume.shape == (3, 40, 40)
    assert np.allclose(m.volume[:, 0, 0], [0, 128 / 255, 1])
    assert m.pixels is not None and np.shares_memory(m.pixels, m.volume)


def test_16bit_rgb_png_keeps_precision(tmp_path):
    import cv2

    a = _ramp()
    cv2.imwrite(str(tmp_path / "c.png"), np.dstack([a, a, a]))
    r = read_image(tmp_path / "c.png")
    assert r.bits == 16 and r.photometric == "RGB"
    assert np.abs(r.pixels - a / 65535.0).max() < 1e-4


def test_bytes_and_filelike_inputs(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_ramp(top=255, dtype=np.uint8)).save(buf, format="PNG")
    data = buf.getvalue()
    a = read_image_bytes(data, "upload.png")
    b = read_image(io.BytesIO(data), name="upload.png")
    c = read_image(data, name="upload.png")
    # one neutral id for one name (names can be a patient's); the real name only on opt-in
    assert a.name == b.name == c.name != "upload.png" and a.name.startswith("file-") and a.name.endswith(".png")
    assert read_image_bytes(data, "upload.png", show_name=True).name == "upload.png"
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.pixels, c.pixels)


def test_content_wins_over_extension(tmp_path):
    Image.fromarray(_ramp(top=255, dtype=np.uint8)).save(tmp_path / "x.jpg")
    (tmp_path / "x.jpg").rename(tmp_path / "really_jpeg.png")
    r = read_image(tmp_path / "really_jpeg.png")
    assert r.format == "JPEG"
    assert any("content is JPEG" in n for n in r.notes)


def test_pil_global_limit_untouched_and_no_bomb_warning(tmp_path):
    """Our limit is per call; Pillow's global stays as it was and emits nothing."""
    before = Image.MAX_IMAGE_PIXELS
    Image.fromarray(np.zeros((300, 300), np.uint8)).save(tmp_path / "z.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "z.png", max_pixels=100_000)
    assert Image.MAX_IMAGE_PIXELS == before


# ---- DICOM -------------------------------------------------------------------------------------

PYDICOM_FILES = [
    "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm", "MR_small_jpeg_ls_lossless.dcm", "CT_small.dcm", "image_dfl.dcm",
    "SC_rgb_jpeg_dcmtk.dcm", "693_J2KI.dcm",
]


@pytest.mark.parametrize("fname", PYDICOM_FILES)
def test_pydicom_bundled_files(fname):
    from pydicom.data import get_testdata_file

    path = get_testdata_file(fname)
    if path is None:
        pytest.skip(f"{fname} not bundled with this pydicom")
    r = read_image(path)
    assert r.format == "DICOM" and r.pixels.dtype == np.float32
    assert 0.0 <= r.pixels.min() and r.pixels.max() <= 1.0 and r.pixels.std() > 0.01
    if fname.startswith("MR_small"):
        assert (r.width, r.height, r.bits, r.kind) == (64, 64, 16, "mri")
        assert r.pixel_spacing_mm == pytest.approx((0.3125, 0.3125))
        assert r.window == (600.0, 1600.0)  # the file's VOI window was applied


def test_mr_small_variants_decode_identically():
    from pydicom.data import get_testdata_file

    ref = read_image(get_testdata_file("MR_small.dcm")).pixels
    for name in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        path = get_testdata_file(name)
        if path is not None:
            assert np.array_equal(read_image(path).pixels, ref), name


def test_ct_modality_lut_before_scaling():
    from pydicom.data import get_testdata_file

    r = read_image(get_testdata_file("CT_small.dcm"))
    lo, hi = r.value_range
    assert lo < 0 < hi  # Hounsfield units after RescaleIntercept -1024, not raw stored values


def test_pydicom_examples_module():
    import pydicom.examples as ex

    r = read_image(ex.get_path("ct"))
    assert r.kind == "ct" and r.width == 128


def test_monochrome1_cr_window_and_spacing(tmp_path):
    make_identified_cr(tmp_path / "cr.dcm")
    r = read_image(tmp_path / "cr.dcm")
    assert (r.width, r.height, r.bits, r.photometric) == (64, 96, 12, "MONOCHROME1")
    assert r.pixel_spacing_mm == (0.15, 0.15) and r.spacing_source == "ImagerPixelSpacing"
    assert r.window == (2048.0, 2048.0) and r.view == "ap" and r.modality == "CR" and r.kind == "xray"
    # window [1024, 3072] then inversion: stored 0 → white, stored 4095 → black
    assert r.pixels[0, 0] == 1.0 and r.pixels[-1, -1] == 0.0


def test_pixel_spacing_preferred_over_imager_spacing(tmp_path):
    make_dicom(_ramp(), tmp_path / "b.dcm", pixel_spacing=(0.1, 0.12), imager_pixel_spacing=(0.2, 0.2))
    r = read_image(tmp_path / "b.dcm")
    assert r.pixel_spacing_mm == (0.1, 0.12) and r.spacing_source == "PixelSpacing"


def test_12_in_16_bit_without_window(tmp_path):
    a = (np.linspace(0, 4095, 64 * 48).reshape(64, 48)).astype(np.uint16)
    make_dicom(a, tmp_path / "t.dcm", bits_stored=12)
    r = read_image(tmp_path / "t.dcm")
    assert r.bits == 12 and r.window is None
    assert np.allclose(r.pixels, a / 4095.0, atol=1e-6)


def test_multiframe_volume(tmp_path):
    vol = np.stack([np.full((40, 40), v, np.uint16) for v in (0, 100, 200, 300)])
    make_dicom(vol, tmp_path / "mf.dcm", modality="MR")
    r = read_image(tmp_path / "mf.dcm")
    assert r.frames == 4 and r.volume.shape == (4, 40, 40) and r.pixels.shape == (40, 40)
    assert np.allclose(r.volume[:, 5, 5], [0, 1 / 3, 2 / 3, 1], atol=1e-6)  # one scale for all frames


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEG2000Lossless", "DeflatedExplicitVRLittleEndian", "ImplicitVRLittleEndian"])
def test_written_transfer_syntaxes_roundtrip(tmp_path, syntax):
    import pydicom.uid as u

    a = (np.linspace(0, 4095, 64 * 48).reshape(64, 48)).astype(np.uint16)
    make_dicom(a, tmp_path / "t.dcm", bits_stored=12, transfer_syntax=getattr(u, syntax))
    assert np.allclose(read_image(tmp_path / "t.dcm").pixels, a / 4095.0, atol=1e-6)


def test_dicom_without_preamble(tmp_path):
    ds = make_dicom(_ramp())
    ds.save_as(tmp_path / "bare", enforce_file_format=False)
    assert read_image(tmp_path / "bare").format == "DICOM"


def test_apply_window():
    px = np.linspace(0, 1, 11, dtype=np.float32)
    assert np.allclose(apply_window(px, 0.5, 1.0), px)
    out = apply_window(px, 0.5, 0.2)
    assert out.dtype == np.float32 and out[0] == 0 and out[-1] == 1 and out[5] == pytest.approx(0.5)


def test_real_films_read(fraiwan_dir):
    """A few of the real AP films (RGB JPEGs, names with commas and spaces, the odd PNG)."""
    files = sorted(p for p in fraiwan_dir.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    picks = files[:2] + [p for p in files if p.suffix.lower() == ".png"][:1] + [p for p in files if " " in p.name][:1]
    for path in picks:
        r = read_image(path)
        assert r.height > r.width >= 32 and r.pixels.std() > 0.05, path.name


def test_jpeg_draft_decodes_a_reduced_grayscale_thumbnail(tmp_path):
    """``draft=N`` (the leakage check's thumbnails): the JPEG decoder's own 1/2..1/8 scaling, never below N px,
    the same pixels Pillow's draft gives; other formats and the size checks are unaffected."""
    rgb = np.stack([_ramp(512, 384, 255, np.uint8)] * 3, axis=-1)
    Image.fromarray(rgb).save(tmp_path / "f.jpg", quality=95)
    r = read_image(tmp_path / "f.jpg", draft=128)
    _check(r, 192, 256)  # 1/2 scale: 1/4 would be 96 px wide, below 128
    with Image.open(tmp_path / "f.jpg") as im:
        im.draft("L", (128, 128))
        expected = np.asarray(im.convert("L"))
    assert np.array_equal(np.round(r.pixels * 255).astype(np.uint8), expected)
    assert read_image(tmp_path / "f.jpg").pixels.shape == (512, 384)
    Image.fromarray(_ramp()).save(tmp_path / "g16.png")
    assert read_image(tmp_path / "g16.png", draft=16).pixels.shape == (64, 48)
    from spine_models.errors import ImageTooSmallError

    with pytest.raises(ImageTooSmallError, match="smaller than the minimum"):
        read_image(tmp_path / "g16.png", draft=16, min_size=100)
