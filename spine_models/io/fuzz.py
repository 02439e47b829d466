"""Seeded hostile inputs for the readers, and the check that each one ends in a promised outcome.

Why: the readers promise that any file, frame, ZIP member or series either reads or raises one
:class:`~spine_models.errors.SpineInputError` with one line of at most 300 characters, that no name
or identifying value leaks, and that ``to_dict()`` is valid JSON. A seeded generator makes that
promise testable on thousands of inputs (``python -m bench.fuzz_io --n 10000``) and on a small fixed
subset in the test suite (tests/test_io_fuzz.py).

Families: PNG, JPEG, TIFF, GIF, WEBP, BMP, MPO, DICOM, ZIP and SERIES (a DICOM series folder read by
``read_study``). Mutations: truncation, bit flips, header overwrites, huge declared sizes (on any
frame or page), and per-family structural ones (DICOM element values, embedded codestreams, NaN
pixels and rescales; ZIP member names, data and sizes; a series folder with bad, foreign, empty or
odd-sized slices). Every input is named after a fake patient (``PID-77341_<n>``) and DICOMs carry the
sample identifiers of :mod:`spine_models.io.dicom_build`, so leaks are caught too.
"""
from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
import struct
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["FAMILIES", "Case", "generate", "run_case", "run_cli_case", "write_case", "OUTCOMES", "MAX_MESSAGE", "FAKE_NAME_TOKEN"]

FAMILIES = ("PNG", "JPEG", "TIFF", "GIF", "WEBP", "BMP", "MPO", "DICOM", "ZIP", "SERIES")
OUTCOMES = ("ok", "refused", "crash", "bad_message", "leak", "invalid_json", "stderr_noise")
MAX_MESSAGE = 300
FAKE_NAME_TOKEN = "PID-77341"  # every input's file name carries it; it must never show
_FUZZ_MAX_PIXELS = 4_000_000  # keeps one input's decode small; the limit logic is the same at any value


@dataclass
class Case:
    """One generated input: ``data`` is the file (or the ZIP archive) and ``name`` its file name."""

    family: str
    mutation: str
    name: str
    data: bytes
    members: tuple[tuple[str, bytes], ...] = ()  # SERIES: (relative path, bytes) of the folder's files


# ------------------------------------------------------------------ valid seeds, built once per process


def _image(rng: np.random.Generator, h: int = 48, w: int = 40) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 5 + y * 3) % 256).astype(np.uint8) ^ rng.integers(0, 16, (h, w), dtype=np.uint8)


def _pil_bytes(im: Any, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _raster_seeds() -> dict[str, list[bytes]]:
    from PIL import Image

    rng = np.random.default_rng(7)
    g8 = _image(rng)
    g16 = (g8.astype(np.uint16) * 257)
    rgb = np.stack([g8, g8[::-1], 255 - g8], axis=-1)
    L, RGB = Image.fromarray(g8), Image.fromarray(rgb)
    I16 = Image.fromarray(g16)
    F = Image.fromarray(g8.astype(np.float32) / 255.0)
    seeds = {
        "PNG": [_pil_bytes(L, "PNG"), _pil_bytes(I16, "PNG"), _pil_bytes(RGB, "PNG"), _pil_bytes(RGB.convert("P"), "PNG"),
                _pil_bytes(RGB.convert("RGBA"), "PNG"), _pil_bytes(L.convert("LA"), "PNG")],
        "JPEG": [_pil_bytes(L, "JPEG"), _pil_bytes(RGB, "JPEG", quality=80), _pil_bytes(L, "JPEG", progressive=True)],
        "TIFF": [_pil_bytes(L, "TIFF"), _pil_bytes(I16, "TIFF", compression="tiff_deflate"), _pil_bytes(F, "TIFF"),
                 _pil_bytes(RGB, "TIFF", compression="tiff_lzw"), _pil_bytes(L, "TIFF", save_all=True, append_images=[L, L]),
                 _pil_bytes(L, "TIFF", compression="packbits")],
        "GIF": [_pil_bytes(L, "GIF"), _pil_bytes(L.convert("P"), "GIF", save_all=True, append_images=[L.convert("P")] * 2)],
        "WEBP": [_pil_bytes(RGB, "WEBP", quality=70), _pil_bytes(L, "WEBP", lossless=True)],
        "BMP": [_pil_bytes(L, "BMP"), _pil_bytes(RGB, "BMP")],
        "MPO": [_pil_bytes(RGB, "MPO", save_all=True, append_images=[RGB]),
                _pil_bytes(L.convert("RGB"), "MPO", save_all=True, append_images=[RGB, RGB])],
    }
    # rarer layouts and codecs: each decoder path of Pillow/libtiff/libwebp gets mutated input too
    extra = {
        "TIFF": [lambda: _pil_bytes(RGB, "TIFF", compression="jpeg"), lambda: _pil_bytes(L.convert("1"), "TIFF", compression="group4"),
                 lambda: _pil_bytes(RGB.convert("CMYK"), "TIFF"), lambda: _pil_bytes(Image.fromarray(g8.astype(np.int32) * 1000), "TIFF"),
                 lambda: _pil_bytes(L, "TIFF", tiff_tile=(16, 16)), lambda: _pil_bytes(RGB.convert("LAB"), "TIFF")],
        "JPEG": [lambda: _pil_bytes(RGB.convert("CMYK"), "JPEG")],
        "PNG": [lambda: _pil_bytes(RGB, "PNG", save_all=True, append_images=[RGB.rotate(90)]), lambda: _pil_bytes(L.convert("1"), "PNG")],
        "WEBP": [lambda: _pil_bytes(RGB, "WEBP", save_all=True, append_images=[RGB.rotate(90), RGB], lossless=True)],
        "GIF": [lambda: _pil_bytes(L.convert("P"), "GIF", save_all=True, append_images=[L.convert("P").rotate(k) for k in range(1, 12)])],
        "BMP": [lambda: _pil_bytes(L.convert("1"), "BMP"), lambda: _pil_bytes(RGB.convert("P"), "BMP")],
    }
    for fam, builders in extra.items():
        for build in builders:
            try:
                seeds[fam].append(build())
            except (OSError, ValueError, KeyError):  # a codec this Pillow build lacks: fewer seeds
                continue
    nan = g8.astype(np.float32)
    nan[:4, :4] = np.nan
    nan[-2:, -2:] = np.inf
    seeds["TIFF"].append(_pil_bytes(Image.fromarray(nan), "TIFF"))
    return seeds


def _dicom_bytes(ds: Any) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _dicom_seeds() -> list[bytes]:
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless, DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

    from spine_models.io.dicom_build import SAMPLE_IDENTIFIERS, make_dicom

    ids = {k: v for k, v in SAMPLE_IDENTIFIERS.items() if k not in ("PatientID", "PatientName")}
    who = {"patient_id": SAMPLE_IDENTIFIERS["PatientID"], "patient_name": SAMPLE_IDENTIFIERS["PatientName"], "extra": dict(ids)}
    rng = np.random.default_rng(11)
    g16 = (rng.random((48, 40)) * 4000).astype(np.uint16)
    g8 = (rng.random((48, 40)) * 255).astype(np.uint8)
    out = []

    def add(pixels: np.ndarray, **kw: Any) -> None:
        try:
            out.append(_dicom_bytes(make_dicom(pixels, uid_seed=f"fuzz-{len(out)}", **{**who, **kw})))
        except (ValueError, RuntimeError, NotImplementedError, ImportError):  # an encoder plugin missing: fewer seeds
            return

    add(g16, modality="CR", photometric="MONOCHROME1", bits_stored=12, window=(2048, 2048), imager_pixel_spacing=(0.15, 0.15))
    add(g16, modality="CT", rescale=(1.0, -1024.0), window=(40, 400), pixel_spacing=(0.7, 0.7))
    add(g8, modality="DX", view_position="LL")
    add(np.stack([g16] * 3), modality="MR", series_description="T2 SAG QUIZBLORF", image_orientation=(0, 1, 0, 0, 0, -1),
        image_position=(0, 0, 0), slice_thickness=3.0)
    add(np.stack([g8, g8[::-1], 255 - g8], axis=-1), photometric="RGB", modality="OT")
    add(g16, transfer_syntax=RLELossless)
    add(g8, transfer_syntax=JPEGBaseline8Bit, modality="DX")
    add(g16, transfer_syntax=JPEG2000Lossless, modality="DX")
    add(g16, transfer_syntax=DeflatedExplicitVRLittleEndian)
    add(g16, transfer_syntax=ImplicitVRLittleEndian)
    add(g8, modality="CR", photometric="MONOCHROME1", window=(128, 200))
    add((g16.astype(np.int32) - 2000).astype(np.int16), modality="CT", rescale=(1.0, 0.0), window=(0, 2000))
    add(np.stack([g8, g8[::-1], 255 - g8], axis=-1), photometric="YBR_FULL", modality="OT")
    add(np.stack([g8, g8[::-1]]), modality="DX", transfer_syntax=JPEGBaseline8Bit)
    add(np.stack([g16, g16[::-1]]), modality="DX", transfer_syntax=RLELossless)
    # the rarer pixel modules: 1-bit, signed 32-bit, planar RGB, palette colour, double float
    from pydicom.pixels import pack_bits

    def variant(edit: Callable[[Any], None], base: np.ndarray, **kw: Any) -> None:
        try:
            ds = make_dicom(base, uid_seed=f"fuzz-{len(out)}", **{**who, **kw})
            edit(ds)
            out.append(_dicom_bytes(ds))
        except (ValueError, TypeError, AttributeError, KeyError, RuntimeError, NotImplementedError, ImportError):
            return

    def one_bit(ds: Any) -> None:
        ds.BitsAllocated = ds.BitsStored = 1
        ds.HighBit = 0
        ds.PixelData = pack_bits((g8 > 128).astype(np.uint8))

    def int32(ds: Any) -> None:
        ds.BitsAllocated = ds.BitsStored = 32
        ds.HighBit, ds.PixelRepresentation = 31, 1
        ds.PixelData = (g8.astype(np.int32) * 100000 - 10**7).tobytes()

    rgb = np.stack([g8, g8[::-1], 255 - g8], axis=-1)

    def planar(ds: Any) -> None:
        ds.PlanarConfiguration = 1
        ds.PixelData = np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()

    def palette(ds: Any) -> None:
        ds.PhotometricInterpretation = "PALETTE COLOR"
        for tag in (0x00281101, 0x00281102, 0x00281103):
            ds.add_new(tag, "US", [256, 0, 16])
        for tag in (0x00281201, 0x00281202, 0x00281203):
            ds.add_new(tag, "OW", (np.arange(256, dtype=np.uint16) * 257).tobytes())

    def double(ds: Any) -> None:
        del ds.PixelData
        del ds.PixelRepresentation
        ds.BitsAllocated = ds.BitsStored = 64
        ds.HighBit = 63
        ds.DoubleFloatPixelData = (g8.astype(np.float64) / 3).tobytes()

    variant(one_bit, g8)
    variant(int32, g8, modality="CT")
    variant(planar, rgb, photometric="RGB", modality="OT")
    variant(palette, g8, modality="OT")
    variant(double, g8, modality="OT")
    # a VOI LUT sequence, a Modality LUT sequence and enhanced functional groups: the rarely exercised paths
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = make_dicom(g16, uid_seed="fuzz-luts", **who)
    voi = Dataset()
    voi.LUTDescriptor = [256, 0, 16]
    voi.add_new(0x00283006, "US", list(range(0, 65536, 256)))
    ds.VOILUTSequence = Sequence([voi])
    mod = Dataset()
    mod.LUTDescriptor = [256, 0, 16]
    mod.add_new(0x00283006, "US", list(range(0, 4096, 16)))
    mod.ModalityLUTType = "US"
    ds.ModalityLUTSequence = Sequence([mod])
    out.append(_dicom_bytes(ds))
    ds = make_dicom(np.stack([g16] * 2), modality="MR", uid_seed="fuzz-enh", **who)
    shared, meas, trans = Dataset(), Dataset(), Dataset()
    meas.PixelSpacing = [0.5, 0.5]
    trans.RescaleSlope, trans.RescaleIntercept, trans.RescaleType = 2.0, -10.0, "US"
    shared.PixelMeasuresSequence = Sequence([meas])
    shared.PixelValueTransformationSequence = Sequence([trans])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    out.append(_dicom_bytes(ds))
    return out


def _series_seeds() -> list[bytes]:
    """Four slices of one sagittal MR series (one study, one series UID, positions 3 mm apart)."""
    from spine_models.io.dicom_build import SAMPLE_IDENTIFIERS, make_dicom

    rng = np.random.default_rng(13)
    who = {"patient_id": SAMPLE_IDENTIFIERS["PatientID"], "patient_name": SAMPLE_IDENTIFIERS["PatientName"]}
    out = []
    for k in range(4):
        pixels = (rng.random((48, 40)) * 3000).astype(np.uint16)
        ds = make_dicom(pixels, modality="MR", series_description="T2 SAG", image_orientation=(0, 1, 0, 0, 0, -1),
                        image_position=(3.0 * k, 0, 0), slice_thickness=3.0, instance_number=k + 1,
                        study_uid="1.2.826.0.1.3680043.8.498.1", series_uid="1.2.826.0.1.3680043.8.498.2",
                        uid_seed=f"fuzz-series-{k}", **who)
        out.append(_dicom_bytes(ds))
    return out


_SEEDS: dict[str, list[bytes]] = {}


def seeds() -> dict[str, list[bytes]]:
    """Valid files per family (cached): the starting points every mutation works on."""
    if not _SEEDS:
        _SEEDS.update(_raster_seeds())
        _SEEDS["DICOM"] = _dicom_seeds()
        _SEEDS["SERIES"] = _series_seeds()
    return _SEEDS


# ------------------------------------------------------------------ generic mutations


def _truncate(r: random.Random, data: bytes) -> bytes:
    return data[: r.randrange(0, max(len(data), 1))]


def _bitflip(r: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(r.choice((1, 2, 4, 16, 64))):
        i = r.randrange(len(out))
        out[i] ^= 1 << r.randrange(8)
    return bytes(out)


def _header_overwrite(r: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    start = r.randrange(min(len(out), 600))
    run = r.choice((1, 2, 4, 8, 32))
    fill = r.choice((b"\x00", b"\xff", b"\x7f", None))
    for i in range(start, min(start + run, len(out))):
        out[i] = fill[0] if fill else r.randrange(256)
    return bytes(out)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png_chunk_mutation(r: random.Random, data: bytes) -> bytes:
    """One chunk's body damaged (bit flips, cut, a run overwritten, an odd chunk added) with its CRC recomputed,
    so the damage reaches the PNG decoder and zlib instead of stopping at the checksum."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _bitflip(r, data)
    chunks, pos = [], 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        chunks.append([kind, body])
        pos += 12 + length
    if not chunks:
        return _bitflip(r, data)
    k = r.randrange(len(chunks))
    kind, body = chunks[k]
    action = r.randrange(4)
    if action == 0 and body:
        body = _bitflip(r, body)
    elif action == 1:
        body = body[: r.randrange(len(body) + 1)]
    elif action == 2 and body:
        body = _header_overwrite(r, body)
    else:  # an extra chunk: a second IHDR, a huge iCCP/zTXt, an acTL claiming many frames
        extra = r.choice(([b"IHDR", body[:13] if kind == b"IHDR" else b"\x00" * 13],
                          [b"zTXt", b"k\x00\x00" + zlib.compress(b"\x00" * 4_000_000)],
                          [b"iCCP", b"p\x00\x00" + zlib.compress(b"\x00" * 100_000)],
                          [b"acTL", struct.pack(">II", 2**31 - 1, 0)],
                          [b"IDAT", zlib.compress(b"\xff" * 5000)[:-4]]))
        chunks.insert(k + 1 if k + 1 < len(chunks) else k, extra)
    chunks[k][1] = body
    return data[:8] + b"".join(_png_chunk(c, b) for c, b in chunks)


def _huge(r: random.Random, fam: str, data: bytes) -> bytes:
    """The file's own header rewritten to declare a huge (or zero, or odd) size; checksums fixed where they exist."""
    big = r.choice((0, 1, 31, 33000, 65535, 90000, 2**31 - 1, 2**32 - 1))
    other = r.choice((1, 64, 20000, 65535))
    out = bytearray(data)
    if fam == "PNG" and len(out) > 33:
        ihdr = bytearray(out[16:29])
        ihdr[0:4], ihdr[4:8] = struct.pack(">I", big & 0xFFFFFFFF), struct.pack(">I", other)
        return bytes(out[:8]) + _png_chunk(b"IHDR", bytes(ihdr)) + bytes(out[33:])
    if fam in ("JPEG", "MPO"):
        sofs = [i for i in range(2, len(out) - 9) if out[i] == 0xFF and out[i + 1] in (0xC0, 0xC1, 0xC2)]
        if sofs:  # an MPO's later frame: the size check must cover every frame (a 144 MP second frame before)
            i = sofs[-1] if fam == "MPO" and r.random() < 0.7 else sofs[0]
            out[i + 5 : i + 7] = struct.pack(">H", big & 0xFFFF)
            out[i + 7 : i + 9] = struct.pack(">H", other & 0xFFFF)
        return bytes(out)
    if fam == "GIF" and len(out) > 10:
        out[6:8] = struct.pack("<H", big & 0xFFFF)
        i = out.find(b"\x2c", 13)  # first image descriptor: a frame larger than the screen
        if i > 0 and i + 9 < len(out) and r.random() < 0.5:
            out[i + 5 : i + 9] = struct.pack("<HH", big & 0xFFFF, other & 0xFFFF)
        return bytes(out)
    if fam == "BMP" and len(out) > 26:
        out[18:26] = struct.pack("<ii", big & 0x7FFFFFFF, other)
        return bytes(out)
    if fam == "WEBP" and len(out) > 30:
        out[26:30] = struct.pack("<HH", big & 0x3FFF, other & 0x3FFF)
        return bytes(out)
    if fam == "TIFF":
        return _tiff_huge(r, bytes(out), big, other)
    return bytes(out)


def _tiff_huge(r: random.Random, data: bytes, big: int, other: int) -> bytes:
    """ImageWidth / ImageLength (tags 256/257) of the first or a later page set to huge values."""
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return data
    e = "<" if data[:2] == b"II" else ">"
    out = bytearray(data)
    offset = struct.unpack(e + "I", data[4:8])[0]
    pages = []
    while 0 < offset < len(out) - 2 and len(pages) < 8:
        pages.append(offset)
        n = struct.unpack(e + "H", out[offset : offset + 2])[0]
        nxt = offset + 2 + 12 * n
        if nxt + 4 > len(out):
            break
        offset = struct.unpack(e + "I", out[nxt : nxt + 4])[0]
    if not pages:
        return data
    page = pages[-1] if r.random() < 0.5 else pages[0]  # the later page: the size check must cover every page
    n = struct.unpack(e + "H", out[page : page + 2])[0]
    for k in range(n):
        at = page + 2 + 12 * k
        if at + 12 > len(out):
            break
        tag, typ = struct.unpack(e + "HH", out[at : at + 4])
        if tag in (256, 257):
            value = big if tag == 256 else other
            out[at + 2 : at + 4] = struct.pack(e + "H", 4)
            out[at + 4 : at + 8] = struct.pack(e + "I", 1)
            out[at + 8 : at + 12] = struct.pack(e + "I", value & 0xFFFFFFFF)
    return bytes(out)


# ------------------------------------------------------------------ DICOM structural mutations

_GARBAGE = ("abc", "", "nan", "inf", "-inf", "1\\2", "\\", "0", "-0", "1e309", "\x00\x01\x02", "9" * 40,
            "PIDX-77412093", "QUIZBLORF")


def _dicom_element(r: random.Random, data: bytes) -> bytes:
    """One header element of a valid DICOM set to a hostile value (parsed with pydicom, then written back)."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(io.BytesIO(data))
    choice = r.randrange(14)
    value = r.choice(_GARBAGE)
    try:
        if choice == 0:
            ds.RescaleSlope = value
        elif choice == 1:
            ds.RescaleIntercept = value
            ds.RescaleSlope = r.choice(("1", "nan", "0", "2\\3"))
        elif choice == 2:
            ds.WindowCenter, ds.WindowWidth = value, r.choice(_GARBAGE)
        elif choice == 3:
            item = Dataset()
            if r.random() < 0.7:
                item.LUTDescriptor = r.choice(([256, 0, 16], [256, 0, 0], [256], [0, 0, 8], [65535, 0, 16]))
            if r.random() < 0.7:
                item.add_new(0x00283006, "US", r.choice(([1, 2, 3], list(range(256)), [])))
            setattr(ds, r.choice(("ModalityLUTSequence", "VOILUTSequence")), Sequence([item]))
        elif choice == 4:
            if r.random() < 0.5:
                ds.VOILUTSequence = Sequence([Dataset()])
                ds.VOILUTSequence[0].LUTDescriptor = [3, 0, 16]
                ds.VOILUTSequence[0].add_new(0x00283006, "OW", b"\x01\x02\x03")  # odd-length LUT data
            else:
                ds.VOILUTSequence = Sequence([Dataset()])
                ds.VOILUTSequence[0].LUTDescriptor = [0, 0, 0]  # 0 bits
                ds.VOILUTSequence[0].add_new(0x00283006, "US", [0])
        elif choice == 5:
            ds.file_meta.TransferSyntaxUID = r.choice(("", "garbage", "1.2.3.4", "\x00\xff", "1.2.840.10008.1.2.4.50.999"))
        elif choice == 6:
            ds.PixelSpacing = value
            ds.ImagerPixelSpacing = r.choice(_GARBAGE)
        elif choice == 7:
            groups = Dataset()
            meas, trans = Dataset(), Dataset()
            meas.add_new(0x00280030, r.choice(("DS", "OB", "UN")), r.choice((b"abc", b"\x00\x01", b"0.5\\0.5")))
            trans.add_new(0x00281053, r.choice(("DS", "UN")), r.choice((b"abc", b"", b"1")))
            groups.PixelMeasuresSequence = Sequence([meas])
            groups.PixelValueTransformationSequence = Sequence([trans])
            ds.SharedFunctionalGroupsSequence = Sequence([groups])
            ds.NumberOfFrames = 1
        elif choice == 8:
            setattr(ds, r.choice(("Rows", "Columns")), r.choice((0, 1, 31, 20000, 65535)))
        elif choice == 9:
            ds.NumberOfFrames = r.choice(("abc", "0", "100000", "-1", "2"))
        elif choice == 10:
            setattr(ds, r.choice(("BitsStored", "BitsAllocated", "HighBit")), r.choice((0, 1, 7, 33, 64)))
        elif choice == 11:
            ds.PhotometricInterpretation = r.choice(("", "YBR_FULL", "PALETTE COLOR", "CMYK", "garbage"))
        elif choice == 12:  # identifying values copied into allow-listed fields
            ds.ImageType = ["ORIGINAL", "PIDX-77412093"]
            ds.Manufacturer = "Vorplex Memorial Infirmary"
            ds.BodyPartExamined = "QUIZBLORF"
        else:
            ds.SOPClassUID = r.choice(("\x00\x01\xff" * 20, "9" * 100, "garbage"))
            if "PixelData" in ds and r.random() < 0.5:
                del ds.PixelData
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=False)
        return buf.getvalue()
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError, struct.error):
        return _bitflip(r, data)  # pydicom would not write that value: a plain bit flip instead


def _dicom_big_codestream(r: random.Random, data: bytes) -> bytes:
    """Rows/Columns small but an embedded JPEG that declares far more (decoded unchecked before)."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    ds = pydicom.dcmread(io.BytesIO(data))
    jpeg = bytearray(seeds()["JPEG"][0])
    for i in range(2, len(jpeg) - 9):
        if jpeg[i] == 0xFF and jpeg[i + 1] == 0xC0:
            jpeg[i + 5 : i + 9] = struct.pack(">HH", r.choice((20000, 65535, 48)), r.choice((20000, 40, 65535)))
            break
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = 48, 40
    if "NumberOfFrames" in ds:
        del ds.NumberOfFrames
    ds.PixelData = encapsulate([bytes(jpeg)])
    ds["PixelData"].is_undefined_length = True
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def _dicom_syntax_swap(r: random.Random, data: bytes) -> bytes:
    """Another transfer syntax declared over foreign data: a JPEG / MPO / DICOM (damaged or not) as the
    codestream of a JPEG-LS, lossless JPEG, JPEG 2000, HTJ2K or RLE file, or native data under a big-endian
    or deflated syntax. The native decoders get bytes they never expected."""
    import pydicom
    from pydicom import uid as u
    from pydicom.encaps import encapsulate

    syntaxes = (u.JPEGBaseline8Bit, u.JPEGExtended12Bit, u.JPEGLossless, u.JPEGLosslessSV1, u.JPEGLSLossless,
                u.JPEGLSNearLossless, u.JPEG2000Lossless, u.JPEG2000, u.HTJ2KLossless, u.HTJ2K, u.RLELossless,
                u.ExplicitVRBigEndian, u.DeflatedExplicitVRLittleEndian, u.MPEG2MPML)
    ds = pydicom.dcmread(io.BytesIO(data))
    ts = r.choice(syntaxes)
    ds.file_meta.TransferSyntaxUID = ts
    if ts not in (u.ExplicitVRBigEndian, u.DeflatedExplicitVRLittleEndian):
        payload = r.choice(seeds()["JPEG"] + seeds()["MPO"] + [data])
        payload = r.choice((_bitflip, _truncate, lambda _r, d: d))(r, payload) or b"\x00\x00"
        ds.PixelData = encapsulate([payload])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        if "NumberOfFrames" in ds:
            del ds.NumberOfFrames
    buf = io.BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=False)
    except (ValueError, TypeError, AttributeError, NotImplementedError, struct.error):
        return _bitflip(r, data)  # pydicom would not write that combination: a plain bit flip instead
    return buf.getvalue()


def _dicom_float_nan(r: random.Random, data: bytes) -> bytes:
    """Float pixel data or a rescale that holds NaN / inf (NaN reached to_dict and info JSON before)."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    if r.random() < 0.5 and ds.get("SamplesPerPixel", 1) == 1:
        rows, cols = int(ds.Rows), int(ds.Columns)
        arr = np.random.default_rng(r.randrange(2**31)).random((rows, cols)).astype(np.float32)
        arr.flat[:: r.choice((3, 7, 1))] = r.choice((np.nan, np.inf, -np.inf))
        for k in ("PixelData", "DoubleFloatPixelData"):
            if k in ds:
                delattr(ds, k)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
        for k in ("PixelRepresentation", "WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept"):
            if k in ds:
                delattr(ds, k)
        ds.FloatPixelData = arr.tobytes()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    else:
        ds.RescaleSlope = r.choice(("nan", "inf", "1e38"))
        ds.RescaleIntercept = r.choice(("nan", "0", "-inf"))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


# ------------------------------------------------------------------ ZIP


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data, compress_type=method)
    return buf.getvalue()


def _zip_case(r: random.Random) -> tuple[str, bytes]:
    dicoms = seeds()["DICOM"]
    good = [(f"PID-77341/{k}.dcm", dicoms[k % len(dicoms)]) for k in range(r.randint(1, 4))]
    kind = r.randrange(10)
    if kind == 0:  # corrupt deflate data inside one member (zlib.error before)
        z = bytearray(_zip(good + [("PID-77341/bad.dcm", dicoms[0])]))
        at = z.rfind(b"PID-77341/bad.dcm") + 17 + r.randrange(1, 40)
        if at < len(z):
            z[at] ^= 0xFF
        return "corrupt_member", bytes(z)
    if kind == 1:  # a file "a" and a member "a/b.dcm" (FileExistsError on extraction)
        return "name_clash", _zip(good + [("PID-77341/x", b"x"), ("PID-77341/x/y.dcm", dicoms[0])])
    if kind == 2:  # names too long for any file system
        return "long_name", _zip(good + [("PID-77341/" + "n" * r.choice((256, 300, 5000)) + ".dcm", dicoms[0])])
    if kind == 3:  # traversal, absolute, backslash
        bad = r.choice(("../../PID-77341.dcm", "/tmp/PID-77341.dcm", "..\\..\\PID-77341.dcm", "C:/PID-77341.dcm"))
        return "traversal", _zip(good + [(bad, dicoms[0])])
    if kind == 4:  # members of zeros, at and around the ratio boundary
        size = r.choice((1024**2 - 1, 1024**2, 2 * 1024**2))
        return "ratio_bomb", _zip(good + [(f"PID-77341/z{k}.dcm", b"\x00" * size) for k in range(r.randint(1, 3))])
    if kind == 5:  # declared sizes that lie
        z = bytearray(_zip(good))
        i = z.find(b"PK\x01\x02")
        if i >= 0:
            z[i + 24 : i + 28] = struct.pack("<I", r.choice((0, 1, 2**31, 2**32 - 1)))
        return "size_lie", bytes(z)
    if kind == 6:
        return "truncated", _truncate(r, _zip(good))
    if kind == 7:
        return "bitflip", _bitflip(r, _zip(good))
    if kind == 9 and r.random() < 0.2:  # a member whose name is empty in the central directory
        z = bytearray(_zip(good + [("Q", dicoms[0])], r.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED))))
        cd = z.rfind(b"PK\x01\x02")
        eocd = z.rfind(b"PK\x05\x06")
        if cd >= 0 and eocd > cd and z[cd + 46 : cd + 47] == b"Q":
            z[cd + 28 : cd + 30] = struct.pack("<H", 0)
            del z[cd + 46]
            eocd -= 1
            z[eocd + 12 : eocd + 16] = struct.pack("<I", struct.unpack("<I", z[eocd + 12 : eocd + 16])[0] - 1)
        return "empty_name", bytes(z)
    if kind == 9 and r.random() < 0.3:  # members of zeros exactly at the size where the ratio test starts
        from spine_models.io._limits import ZIP_RATIO_MIN_BYTES

        size = ZIP_RATIO_MIN_BYTES + r.choice((-1, 0, 1))
        count = r.choice((1, 2, 12))
        return "ratio_boundary", _zip(good + [(f"PID-77341/e{k}.dcm", b"\x00" * size) for k in range(count)],
                                      r.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)))
    if kind == 9 and r.random() < 0.3:  # other compression methods, data corrupted
        z = bytearray(_zip(good, r.choice((zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA))))
        for _ in range(r.choice((1, 4, 16))):
            at = r.randrange(30, max(len(z) // 2, 31))
            if at < len(z):
                z[at] ^= 1 << r.randrange(8)
        return "corrupt_method", bytes(z)
    if kind == 8:  # one bad file among good ones: the study must still read, the bad one in problems
        return "one_bad_member", _zip(good + [("PID-77341/broken.dcm", _bitflip(r, _truncate(r, dicoms[0])))], zipfile.ZIP_STORED)
    return "mutated_member", _zip(good + [("PID-77341/m.dcm", _dicom_element(r, r.choice(dicoms)))])


# ------------------------------------------------------------------ series folders


def _series_case(r: random.Random) -> tuple[str, list[tuple[str, bytes]]]:
    """A series folder (file names carry the fake patient id), one structural fault per case."""
    slices = list(seeds()["SERIES"])
    naming = r.choice((lambda k: f"PID-77341_{k}.dcm", lambda k: f"IM{k:04d}", lambda k: f"PID-77341/sub/{k}.dcm"))
    kind = r.randrange(11)
    mutation = ("clean", "truncate", "bitflip", "element", "nan", "codestream", "junk", "all_bad", "odd_size",
                "foreign", "frames")[kind]
    bad = r.randrange(len(slices))
    if kind == 1:
        slices[bad] = _truncate(r, slices[bad])
    elif kind == 2:
        slices[bad] = _bitflip(r, slices[bad])
    elif kind == 3:
        slices[bad] = _dicom_element(r, slices[bad])
    elif kind == 4:
        slices[bad] = _dicom_float_nan(r, slices[bad])
    elif kind == 5:
        slices[bad] = _dicom_big_codestream(r, slices[bad])
    elif kind == 7:
        slices = [r.choice((_truncate, _bitflip, _header_overwrite))(r, d) for d in slices]
    elif kind in (8, 9, 10):
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(slices[bad]))
        if kind == 8:  # a slice of another size in the same series
            ds.Rows, ds.Columns = 40, 48
        elif kind == 9:  # a slice without pixel data, or of another series
            if r.random() < 0.5:
                del ds.PixelData
            else:
                ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.99"
        else:
            ds.NumberOfFrames = r.choice(("2", "0", "65535", "-1"))
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=False)
        slices[bad] = buf.getvalue()
    members = [(naming(k), data) for k, data in enumerate(slices)]
    if kind == 6:  # OS litter, an empty file, a text file and a file named like the patient
        members += [("PID-77341_notes.txt", b"PIDX-77412093 QUIZBLORF\n"), ("empty.dcm", b""), (".DS_Store", b"\x00\x01"),
                    ("PID-77341_scout.png", seeds()["PNG"][0]), ("DICOMDIR", b"\x00" * 128 + b"DICM")]
    return mutation, members


# ------------------------------------------------------------------ generator


def generate(n: int, seed: int = 0, families: tuple[str, ...] = FAMILIES) -> Iterator[Case]:
    """``n`` hostile inputs, round-robin over ``families``; the same (n, seed) gives the same bytes."""
    s = seeds()
    generic: list[tuple[str, Callable[[random.Random, bytes], bytes]]] = [
        ("truncate", _truncate), ("bitflip", _bitflip), ("header", _header_overwrite)]
    for i in range(n):
        fam = families[i % len(families)]
        r = random.Random(f"{seed}:{i}")
        ext = {"DICOM": "dcm", "ZIP": "zip", "MPO": "jpg"}.get(fam, fam.lower())
        name = f"{FAKE_NAME_TOKEN}_{i:05d}.{ext}"
        if fam == "ZIP":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mutation, data = _zip_case(r)
            yield Case(fam, mutation, name, data)
            continue
        if fam == "SERIES":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mutation, members = _series_case(r)
            yield Case(fam, mutation, f"{FAKE_NAME_TOKEN}_{i:05d}", b"", tuple(members))
            continue
        base = r.choice(s[fam])
        options = generic + [("huge", lambda rr, d, f=fam: _huge(rr, f, d))]
        if fam == "PNG":
            options += [("chunk", _png_chunk_mutation)] * 3
        if fam == "DICOM":
            options = generic + [("element", _dicom_element), ("element", _dicom_element), ("element", _dicom_element),
                                 ("codestream", _dicom_big_codestream), ("nan", _dicom_float_nan),
                                 ("syntax", _dicom_syntax_swap)]
        mutation, fn = r.choice(options)
        with warnings.catch_warnings():  # pydicom warns about the invalid values we write on purpose
            warnings.simplefilter("ignore")
            data = fn(r, base)
        if r.random() < 0.15:  # a second mutation on top
            data = _bitflip(r, data) if data else data
        yield Case(fam, mutation, name, data)


# ------------------------------------------------------------------ runner


# our own refusal wrapped in another one ("does not parse (DecompressionBombError)") hides what is wrong
_OWN_ERRORS = re.compile(r"\b(SpineInputError|CorruptFileError|TruncatedFileError|DecompressionBombError|ImageTooSmallError|"
                         r"EmptyFileError|UnsupportedFormatError|MissingPixelDataError|DatasetError|ConfigError)\)")


def _message_problem(msg: str) -> str | None:
    """Why a refusal's message breaks the promise (more than one line, too long, a wrapped own error), else None."""
    if "\n" in msg or "\r" in msg:
        return "more than one line"
    if len(msg) > MAX_MESSAGE:
        return f"{len(msg)} characters"
    if _OWN_ERRORS.search(msg):
        return "our own refusal wrapped as another"
    return None


def _text_leaks(text: str) -> bool:
    from spine_models.io.dicom_build import leaked_tokens

    return FAKE_NAME_TOKEN.lower() in text.lower() or bool(leaked_tokens(text))


class _CaptureFd2:
    """Redirect file descriptor 2 (where C libraries such as libtiff write) to a temp file."""

    def __enter__(self) -> "_CaptureFd2":
        self.tmp = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.tmp.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.tmp.seek(0)
        self.text = self.tmp.read().decode("utf-8", "replace")
        self.tmp.close()


def run_case(case: Case, workdir: str | Path, *, capture_stderr: bool = True) -> tuple[str, str]:
    """(outcome, detail) of one input; ``workdir`` is an empty scratch folder for ZIPs.

    Only :class:`SpineInputError` counts as a refusal; any other exception is a ``crash``.
    """
    import sys

    from spine_models.errors import SpineInputError
    from spine_models.io import read_image_bytes, read_study
    from spine_models.io.archive import safe_extract_zip

    outputs: list[str] = []
    cap = _CaptureFd2() if capture_stderr else None
    try:
        if cap:
            cap.__enter__()
        sys.stderr.flush()
        try:
            if case.family == "SERIES":
                from spine_models.io.study import scan_studies

                folder = write_case(case, workdir)
                scanned: list[str] = []
                try:  # the header-only scan of dataset folders: same promise (a refusal is fine, the read below still runs)
                    outputs.append(repr([(len(s.series), [x.n_frames for x in s.series])
                                         for s in scan_studies(folder, problems=scanned)]))
                    outputs.extend(scanned)  # each left-out file: one line, neutral name (checked below)
                except SpineInputError as exc:
                    outputs.append(str(exc).replace(str(folder), "<dir>"))  # the folder is the user's own argument
                    problem = _message_problem(outputs[-1])
                    if problem:
                        return "bad_message", f"scan_studies: {problem}: {str(exc)[:300]}"
                study = read_study(folder, max_pixels=_FUZZ_MAX_PIXELS)
                outputs.extend(study.problems)
                outputs.append(json.dumps(study.to_dict(), allow_nan=False))
                outputs.append(repr(study))
            elif case.family == "ZIP":
                path = Path(workdir) / case.name
                path.write_bytes(case.data)
                problems: list[str] = []
                try:
                    safe_extract_zip(path, Path(workdir) / "out", problems=problems)
                finally:
                    outputs.extend(problems)
                study = read_study(path, max_pixels=_FUZZ_MAX_PIXELS)
                outputs.extend(study.problems)
                outputs.append(json.dumps(study.to_dict(), allow_nan=False))
            else:
                rg = read_image_bytes(case.data, case.name, max_pixels=_FUZZ_MAX_PIXELS)
                d = rg.to_dict()
                outputs.append(json.dumps(d, allow_nan=False))
                outputs.append(repr(rg))
                if not np.isfinite(rg.pixels).all() or rg.pixels.min() < 0 or rg.pixels.max() > 1:
                    return "crash", "pixels outside [0, 1] or not finite"
            outcome, detail = "ok", ""
        except SpineInputError as exc:
            msg = str(exc)
            outputs.append(msg)
            outcome, detail = "refused", msg
            if _message_problem(msg):
                return "bad_message", f"{_message_problem(msg)}: {msg[:400]}"
        except ValueError as exc:
            if "Out of range float values are not JSON compliant" in str(exc):
                return "invalid_json", str(exc)[:200]
            return "crash", f"{type(exc).__name__}: {str(exc)[:200]}"
        except Exception as exc:  # noqa: BLE001 - the fuzz records every escape as a finding
            return "crash", f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        sys.stderr.flush()
        if cap:
            cap.__exit__(None, None, None)
    for text in outputs:
        if "\n" in text and not text.startswith("{") or len(text) > MAX_MESSAGE and not text.startswith("{"):
            return "bad_message", text[:400]
        if _text_leaks(text):
            return "leak", text[:300]
    if cap and cap.text.strip():
        return "stderr_noise", cap.text.strip().splitlines()[0][:200]
    return outcome, detail


def write_case(case: Case, workdir: str | Path) -> Path:
    """The case on disk under ``workdir`` (a file, or a folder of files for SERIES), named after the fake patient."""
    target = Path(workdir) / case.name
    if case.family == "SERIES":
        for rel, data in case.members:
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    else:
        target.write_bytes(case.data)
    return target


def run_cli_case(case: Case, workdir: str | Path, *, timeout: float = 120.0) -> tuple[str, str]:
    """(outcome, detail) of ``spine-models info --header`` on the case, in a subprocess.

    The promise: exit 0 with valid JSON, or exit 2 with one line on stderr; no traceback, no other
    terminal output (a native library's warnings included), no name or identifying value in stdout,
    and none in stderr beyond the path the user typed (the SPEC's exit-2 line echoes it).
    """
    path = write_case(case, workdir)
    env = {**os.environ, "SPINE_MODELS_MAX_PIXELS": str(_FUZZ_MAX_PIXELS)}
    env.pop("SPINE_MODELS_SHOW_NAMES", None)
    try:
        proc = subprocess.run([sys.executable, "-m", "spine_models.cli", "info", str(path), "--header"], capture_output=True,
                              text=True, errors="replace", timeout=timeout, env=env, cwd=str(workdir))
    except subprocess.TimeoutExpired:
        return "crash", f"info did not finish in {timeout:.0f} s"
    err = proc.stderr.strip()
    if "Traceback" in err:
        return "crash", err.splitlines()[-1][:200]
    if proc.returncode == 0:
        try:
            json.loads(proc.stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError as exc:
            return "invalid_json", str(exc)[:200]
        if _text_leaks(proc.stdout):
            return "leak", "stdout names the input or an identifying value"
        if err:
            return "stderr_noise", err.splitlines()[0][:200]
        return "ok", ""
    if proc.returncode != 2:
        return "crash", f"exit {proc.returncode}: {err[:200]}"
    if proc.stdout.strip():
        return "bad_message", f"exit 2 with stdout: {proc.stdout[:100]}"
    line = err.replace(str(path), "<arg>")
    prefix = "spine-models info: error: "
    problem = _message_problem(line[len(prefix):] if line.startswith(prefix) else line)
    if problem:
        return "bad_message", f"{problem}: {err[:300]}"
    if _text_leaks(line):
        return "leak", line[:300]
    return "refused", err
