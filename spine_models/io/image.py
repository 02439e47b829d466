"""Raster images (PNG 8/16-bit, RGBA, palette; JPEG; TIFF; BMP; GIF; WebP) → :class:`Radiograph`.

Why a wrapper around Pillow: the declared size must be checked against *our* per-call limit before
any decoding (Pillow's check is a process-wide global we leave alone), every decoder failure must
become a one-line :class:`~spine_models.errors.SpineInputError`, and every mode (1, L, LA, I;16, I, F,
P, RGB, RGBA, CMYK) must end up as the same float32 [0, 1] grayscale.
"""
from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from typing import Any

import numpy as np

from spine_models.errors import CorruptFileError, DecompressionBombError, SpineInputError, TruncatedFileError
from spine_models.io._limits import DEFAULT_MIN_SIZE, check_declared_size, check_frame_size, resolve_max_pixels
from spine_models.io.deid import safe_reason
from spine_models.io.pixels import scale_to_unit
from spine_models.io.radiograph import Radiograph

__all__ = ["read_raster"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow's "L"
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error, zlib.error, KeyError)


def _decode_error(exc: BaseException, name: str, fmt: str) -> SpineInputError:
    if type(exc).__name__ == "DecompressionBombError":  # Pillow's own check (GIF tiles, TIFF pages, MPO frames)
        return DecompressionBombError(
            f"{fmt} file declares a frame or tile above the pixel limit; refused before decoding "
            "(raise the limit with max_pixels= or env SPINE_MODELS_MAX_PIXELS if the file is genuine)", name)
    text = str(exc).lower()
    if isinstance(exc, EOFError) or "truncated" in text or "end of file" in text or "premature" in text:
        return TruncatedFileError(f"truncated {fmt} file: the data ends before the image does; re-export or re-copy it", name)
    return CorruptFileError(f"corrupt {fmt} file ({safe_reason(exc)}); re-export or re-copy it", name)


def _pillow_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    return (*_DECODE_ERRORS, Image.DecompressionBombError)


def _frame_extent(im: Any) -> tuple[int, int]:
    """The largest (width, height) this frame will decode: its size or any tile's box, whichever is bigger."""
    width, height = (int(v) for v in im.size)
    for tile in getattr(im, "tile", None) or []:
        box = tile[1] if len(tile) > 1 else None
        if box and len(box) == 4:
            width = max(width, int(box[2]) - min(int(box[0]), 0))
            height = max(height, int(box[3]) - min(int(box[1]), 0))
    return width, height


_LIBTIFF_QUIET: list[bool] = []
# Pillow logs some refusals (e.g. "More samples per pixel than can be decoded") at ERROR; with no handler
# configured, Python's last-resort handler prints them on stderr. A NullHandler on Pillow's logger stops
# that and nothing else: records still propagate to handlers an application configures.
if not any(isinstance(h, logging.NullHandler) for h in logging.getLogger("PIL").handlers):
    logging.getLogger("PIL").addHandler(logging.NullHandler())


def _quiet_libtiff() -> None:
    """Turn off libtiff's own warning/error printing to the terminal (once per process).

    Why: libtiff (inside Pillow) writes "ZIPDecode: Decoding error ..." straight to file descriptor 2
    on corrupt TIFFs; the same failure still reaches us as a Pillow exception, which becomes our one
    line. Only libtiff's message handlers change (no Python warning filter); the libtiff is the very
    one Pillow's ``_imaging`` loaded, found next to it or among the process's loaded libraries.
    """
    if _LIBTIFF_QUIET:
        return
    _LIBTIFF_QUIET.append(True)
    import ctypes
    import glob
    import os

    from PIL import Image

    candidates: list[str] = []
    here = os.path.dirname(Image.__file__)
    for pattern in ("../pillow.libs/libtiff*.so*", ".dylibs/libtiff*.dylib", "../Pillow.libs/libtiff*.so*"):
        candidates += glob.glob(os.path.join(here, pattern))
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            candidates += sorted({line.split()[-1] for line in fh if "libtiff" in line and line.split()[-1].startswith("/")})
    except OSError:
        pass  # not Linux: the glob above covers the wheels
    for path in dict.fromkeys(candidates):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for fn in ("TIFFSetWarningHandler", "TIFFSetErrorHandler"):
            if hasattr(lib, fn):
                getattr(lib, fn).restype = ctypes.c_void_p
                getattr(lib, fn)(None)


def _open_lazy(data: bytes, fmt: str, name: str) -> Any:
    """Open with the one Pillow plugin for ``fmt`` only, reading the header but no pixels.

    Uses the plugin factory directly so Pillow's global bomb check never fires: our own limit is
    applied by the caller on ``im.size``.
    """
    from PIL import Image

    Image.init()
    if fmt == "TIFF":
        _quiet_libtiff()
    factory, _accept = Image.OPEN[fmt]
    try:
        return factory(io.BytesIO(data), name)
    except _pillow_errors() as exc:
        raise _decode_error(exc, name, fmt) from exc


def _gray(im: Any, fmt: str, name: str) -> tuple[np.ndarray, int, str, list[str]]:
    """One frame → (float32 HxW in [0, 1], bits, photometric, notes)."""
    mode = im.mode
    notes: list[str] = []
    if mode == "1":
        return np.asarray(im, dtype=np.float32), 1, "MONOCHROME2", notes
    if mode == "L":
        return np.asarray(im, dtype=np.float32) / 255.0, 8, "MONOCHROME2", notes
    if mode == "LA":
        arr = np.asarray(im, dtype=np.float32) / 255.0
        notes.append("alpha channel composited over black")
        return arr[..., 0] * arr[..., 1], 8, "MONOCHROME2", notes
    if mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.float32)
        return arr / 65535.0, 16, "MONOCHROME2", notes
    if mode in ("I", "F"):
        arr = np.asarray(im).astype(np.float32)
        if mode == "I" and fmt == "PNG" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
            return arr / 65535.0, 16, "MONOCHROME2", notes
        if arr.size and np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0:
            return arr, 32, "MONOCHROME2", notes
        finite = arr[np.isfinite(arr)]
        if not finite.size:
            raise CorruptFileError(f"{fmt} file holds no finite pixel value (all NaN or infinite); re-export it", name)
        lo, hi = float(finite.min()), float(finite.max())
        if finite.size < arr.size:
            notes.append(f"{arr.size - finite.size} NaN/infinite pixel value(s) replaced by the nearest finite extreme")
        notes.append(f"{32}-bit values scaled min-max to [0, 1]")
        arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
        return scale_to_unit(arr, lo, hi), 32, "MONOCHROME2", notes
    photometric = {"P": "PALETTE COLOR", "PA": "PALETTE COLOR", "RGBA": "RGBA", "CMYK": "CMYK", "YCbCr": "YBR_FULL"}.get(mode, "RGB")
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if (mode == "PA" or "transparency" in im.info) else "RGB")
    elif mode not in ("RGB", "RGBA"):
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.float32) / 255.0
    gray = arr[..., :3] @ _LUMA
    if arr.shape[-1] == 4:
        gray = gray * arr[..., 3]
        notes.append("alpha channel composited over black")
    return np.clip(gray, 0.0, 1.0).astype(np.float32), 8, photometric, notes


def _png_16bit_color(data: bytes) -> bool:
    """Pillow reduces 16-bit RGB(A) PNGs to 8 bits; detect them (IHDR bit depth 16, colour type 2/6)."""
    return len(data) > 26 and data[12:16] == b"IHDR" and data[24] == 16 and data[25] in (2, 6)


def _read_png_16bit_color(data: bytes, name: str) -> tuple[np.ndarray, list[str]]:
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise CorruptFileError("corrupt PNG file (16-bit colour data does not decode); re-export or re-copy it", name)
    arr = arr.astype(np.float32) / 65535.0
    gray = arr[..., 2] * 0.299 + arr[..., 1] * 0.587 + arr[..., 0] * 0.114  # OpenCV is BGR(A)
    notes = []
    if arr.shape[-1] == 4:
        gray = gray * arr[..., 3]
        notes.append("alpha channel composited over black")
    return np.clip(gray, 0, 1).astype(np.float32), notes


def read_raster(data: bytes, name: str, fmt: str, *, max_pixels: int | None = None, min_size: int = DEFAULT_MIN_SIZE,
                draft: int | None = None) -> Radiograph:
    """Decode a sniffed raster format; size limits are checked on the header before decoding.

    ``draft`` (JPEG only): let the decoder scale by 1/2 … 1/8 (its DCT scaling) down to no less than ``draft`` px per
    side, decoding straight to grayscale: a thumbnail at a fraction of the cost (the leakage check's films).
    """
    from PIL import ImageOps

    errors = _pillow_errors()
    limit = resolve_max_pixels(max_pixels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        im = _open_lazy(data, fmt, name)
        width, height = im.size
        try:
            n_frames = int(getattr(im, "n_frames", 1) or 1)
        except errors as exc:
            raise _decode_error(exc, name, fmt) from exc
        check_declared_size(name, width, height, n_frames, max_pixels=limit, min_size=min_size)
        try:
            if draft and fmt == "JPEG":
                im.draft("L", (int(draft), int(draft)))
                width, height = im.size
            if fmt == "PNG":  # CRC of every chunk: catches flipped bits that zlib alone may not
                _open_lazy(data, fmt, name).verify()
            if fmt == "PNG" and _png_16bit_color(data):
                gray, notes = _read_png_16bit_color(data, name)
                frames, bits, photometric = [gray], 16, "RGBA" if data[25] == 6 else "RGB"
            else:
                frames, notes = [], []
                for index in range(n_frames):
                    im.seek(index)
                    if index and tuple(im.size) != (width, height):  # decided before decoding the odd frame
                        notes.append(f"frames {index + 1}..{n_frames} differ in size and were skipped")
                        break
                    # every frame and page, on what it will really decode (GIF tiles may exceed the screen)
                    check_frame_size(name, *_frame_extent(im), index, n_frames, max_pixels=limit)
                    frame = im
                    if index == 0 and fmt in ("JPEG", "TIFF", "WEBP") and im.getexif().get(0x0112, 1) not in (1, None):
                        frame = ImageOps.exif_transpose(im)
                        notes.append("rotated per EXIF orientation")
                    frame.load()
                    gray, bits, photometric, frame_notes = _gray(frame, fmt, name)
                    notes.extend(n for n in frame_notes if n not in notes)
                    if frames and gray.shape != frames[0].shape:
                        notes.append(f"frames {index + 1}..{n_frames} differ in size and were skipped")
                        break
                    frames.append(gray)
        except SpineInputError:
            raise
        except errors as exc:
            raise _decode_error(exc, name, fmt) from exc
        except MemoryError as exc:
            raise CorruptFileError("image too large to decode in memory; lower its resolution", name) from exc
    if any("truncated" in str(w.message).lower() for w in caught):
        raise TruncatedFileError(f"truncated {fmt} file: the data ends before the image does; re-export or re-copy it", name)
    volume = np.ascontiguousarray(np.stack(frames)) if len(frames) > 1 else None
    pixels = volume[0] if volume is not None else np.ascontiguousarray(frames[0], dtype=np.float32)
    header: dict[str, Any] = {"Format": fmt, "Mode": im.mode, "Size": [int(pixels.shape[1]), int(pixels.shape[0])]}
    return Radiograph(
        pixels=pixels,
        bits=bits,
        format=fmt,
        name=name,
        photometric=photometric,
        frames=len(frames),
        volume=volume,
        value_range=(0.0, float(2**bits - 1)) if bits in (8, 16) else None,
        header=header,
        notes=notes,
    )
