"""Raster images (PNG 8/16-bit, RGBA, palette; JPEG; TIFF; BMP; GIF; WebP) → :class:`Radiograph`.

Why a wrapper around Pillow: the declared size must be checked against *our* per-call limit before
any decoding (Pillow's check is a process-wide global we leave alone), every decoder failure must
become a one-line :class:`~spine_models.errors.SpineInputError`, and every mode (1, L, LA, I;16, I, F,
P, RGB, RGBA, CMYK) must end up as the same float32 [0, 1] grayscale.
"""
from __future__ import annotations

import io
import struct
import warnings
import zlib
from typing import Any

import numpy as np

from spine_models.errors import CorruptFileError, SpineInputError, TruncatedFileError
from spine_models.io._limits import DEFAULT_MIN_SIZE, check_declared_size
from spine_models.io.radiograph import Radiograph

__all__ = ["read_raster"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow's "L"
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error, zlib.error, KeyError)


def _decode_error(exc: BaseException, name: str, fmt: str) -> SpineInputError:
    text = str(exc).lower()
    if isinstance(exc, EOFError) or "truncated" in text or "end of file" in text or "premature" in text:
        return TruncatedFileError(f"truncated {fmt} file: the data ends before the image does; re-export or re-copy it", name)
    reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return CorruptFileError(f"corrupt {fmt} file ({reason}); re-export or re-copy it", name)


def _open_lazy(data: bytes, fmt: str, name: str) -> Any:
    """Open with the one Pillow plugin for ``fmt`` only, reading the header but no pixels.

    Uses the plugin factory directly so Pillow's global bomb check never fires: our own limit is
    applied by the caller on ``im.size``.
    """
    from PIL import Image

    Image.init()
    factory, _accept = Image.OPEN[fmt]
    try:
        return factory(io.BytesIO(data), name)
    except _DECODE_ERRORS as exc:
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
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        notes.append(f"{32}-bit values scaled min-max to [0, 1]")
        arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
        return ((arr - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32), 32, "MONOCHROME2", notes
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


def read_raster(data: bytes, name: str, fmt: str, *, max_pixels: int | None = None, min_size: int = DEFAULT_MIN_SIZE) -> Radiograph:
    """Decode a sniffed raster format; size limits are checked on the header before decoding."""
    from PIL import ImageOps

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        im = _open_lazy(data, fmt, name)
        width, height = im.size
        try:
            n_frames = int(getattr(im, "n_frames", 1) or 1)
        except _DECODE_ERRORS as exc:
            raise _decode_error(exc, name, fmt) from exc
        check_declared_size(name, width, height, n_frames, max_pixels=max_pixels, min_size=min_size)
        try:
            if fmt == "PNG":  # CRC of every chunk: catches flipped bits that zlib alone may not
                _open_lazy(data, fmt, name).verify()
            if fmt == "PNG" and _png_16bit_color(data):
                gray, notes = _read_png_16bit_color(data, name)
                frames, bits, photometric = [gray], 16, "RGBA" if data[25] == 6 else "RGB"
            else:
                frames, notes = [], []
                for index in range(n_frames):
                    im.seek(index)
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
        except _DECODE_ERRORS as exc:
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
