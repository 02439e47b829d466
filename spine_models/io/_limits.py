"""Size limits applied to every image before it is decoded, and to every ZIP before it is read.

Why: a 2 KB PNG can declare 90000×90000 pixels (8.1 gigapixels) and exhaust memory when decoded; a
thumbnail-sized image carries no usable anatomy. Both are refused on the *declared* size, so the check
costs nothing. The limit is per call (``max_pixels=``), else env ``SPINE_MODELS_MAX_PIXELS``, else
:data:`DEFAULT_MAX_PIXELS`; PIL's own global ``MAX_IMAGE_PIXELS`` is left untouched.

ZIPs (``spine_models.io.archive``, the one reader and extractor of study uploads and dataset archives)
have one set of limits here: the uncompressed total (per call ``max_bytes=``, else env
``SPINE_MODELS_MAX_ZIP_BYTES``, else :data:`DEFAULT_MAX_ZIP_BYTES`), the entry count and the
compression ratio that marks a zip bomb.
"""
from __future__ import annotations

import os

from pathlib import Path

from spine_models.errors import (
    ConfigError,
    CorruptFileError,
    DecompressionBombError,
    EmptyFileError,
    ImageTooSmallError,
    SpineInputError,
    UnsupportedFormatError,
)

__all__ = ["MAX_FILE_BYTES", "file_size", "read_file_bytes", "DEFAULT_MAX_PIXELS", "DEFAULT_MIN_SIZE", "resolve_max_pixels", "check_declared_size", "check_frame_size",
           "DEFAULT_MAX_ZIP_BYTES", "MAX_ZIP_MEMBERS", "MAX_ZIP_RATIO", "ZIP_RATIO_MIN_BYTES", "ENV_MAX_ZIP_BYTES",
           "resolve_max_zip_bytes"]

DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels: a 14"×17" film at 0.05 mm is ~ 60 MP
DEFAULT_MIN_SIZE = 32
ENV_MAX_PIXELS = "SPINE_MODELS_MAX_PIXELS"

DEFAULT_MAX_ZIP_BYTES = 20 * 1024**3  # uncompressed total: a training set of films fits, a bomb does not
MAX_ZIP_MEMBERS = 500_000  # entries in one archive (a large dataset of PNGs and masks)
MAX_ZIP_RATIO = 400  # uncompressed/compressed; DICOM and PNG compress far less
ZIP_RATIO_MIN_BYTES = 1024**2  # the ratio test applies from 1 MiB (a member, or the whole archive), inclusive
ENV_MAX_ZIP_BYTES = "SPINE_MODELS_MAX_ZIP_BYTES"
MAX_FILE_BYTES = 2 * 1024**3  # one image or DICOM file (a whole study arrives as many files or a ZIP)


def _unreadable(exc: OSError, shown: str) -> SpineInputError:
    return SpineInputError(f"cannot read the file ({exc.strerror or type(exc).__name__}); check its permissions", shown)


def file_size(path: str | os.PathLike[str], shown: str) -> int:
    """A file's size in bytes, or a one-line :class:`SpineInputError` naming it ``shown`` when it cannot be
    stat'ed or is over the one-file limit (header-only readers check this much before parsing)."""
    try:
        size = Path(path).stat().st_size
    except OSError as exc:  # permission, a name too long, an I/O error
        raise _unreadable(exc, shown) from exc
    if size > MAX_FILE_BYTES:
        raise UnsupportedFormatError(f"file is {size / 1024**3:.1f} GB, above the 2 GB limit for one file; "
                                     "export it as smaller files", shown)
    return size


def read_file_bytes(path: str | os.PathLike[str], shown: str) -> bytes:
    """The bytes of one file, or a one-line :class:`SpineInputError` naming it as ``shown`` (a neutral id).

    Why one helper: every reader of the package (images, study folders, dataset scans, exports) refuses
    a missing, empty, over-2-GB or unreadable file the same way, before anything is decoded.
    """
    file = Path(path)
    try:
        if not file.exists():
            raise SpineInputError("no such file; check the path", shown)
        if file.is_dir():
            raise UnsupportedFormatError("is a folder, not a file; point to an image file or use a study reader", shown)
        if file_size(file, shown) == 0:
            raise EmptyFileError("file is empty (0 bytes); re-copy or re-export it", shown)
        return file.read_bytes()
    except OSError as exc:  # a FIFO, an I/O error while reading
        raise _unreadable(exc, shown) from exc


def _resolve(value: int | None, arg: str, env: str, default: int, unit: str, example: int) -> int:
    """The effective limit: the argument, else the env variable (read on every call), else the default."""
    source = arg
    if value is None:
        raw = os.environ.get(env, "").strip().replace("_", "")
        if not raw:
            return default
        source = env
        try:
            value = int(float(raw))
        except (ValueError, OverflowError):  # "abc", "nan"; "inf", "1e999"
            raise ConfigError(f"{env}={raw[:40]!r} is not a number; set it to a {unit} such as {example}") from None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{source}={value!r} must be a positive {unit}, e.g. {example}")
    return value


def resolve_max_pixels(max_pixels: int | None = None) -> int:
    """The effective pixel limit: the argument, else env ``SPINE_MODELS_MAX_PIXELS``, else the default."""
    return _resolve(max_pixels, "max_pixels", ENV_MAX_PIXELS, DEFAULT_MAX_PIXELS, "pixel count", 100_000_000)


def resolve_max_zip_bytes(max_bytes: int | None = None) -> int:
    """The effective ZIP size limit: the argument, else env ``SPINE_MODELS_MAX_ZIP_BYTES``, else the default."""
    return _resolve(max_bytes, "max_bytes", ENV_MAX_ZIP_BYTES, DEFAULT_MAX_ZIP_BYTES, "byte count", 21474836480)


def check_declared_size(
    name: str, width: int, height: int, frames: int = 1, *, max_pixels: int | None = None, min_size: int = DEFAULT_MIN_SIZE
) -> None:
    """Raise before decoding when the header's size is too large (bomb) or too small for analysis."""
    limit = resolve_max_pixels(max_pixels)
    total = int(width) * int(height) * max(int(frames), 1)
    if total > limit:
        what = f"{width}×{height}" + (f"×{frames} frames" if frames > 1 else "")
        raise DecompressionBombError(
            f"declares {what} = {total:,} pixels, above the limit of {limit:,}; refused before decoding "
            f"(raise the limit with max_pixels= or env {ENV_MAX_PIXELS} if the file is genuine)",
            name,
        )
    if min(int(width), int(height)) < min_size:
        raise ImageTooSmallError(
            f"image is {width}×{height} px, smaller than the minimum {min_size} px per side; use the full-resolution original",
            name,
        )


def check_frame_size(name: str, width: int, height: int, index: int, frames: int, *, max_pixels: int | None = None) -> None:
    """Raise before decoding frame/page ``index`` (0-based) when it alone is above the limit.

    Why: the declared size is the first frame's; a TIFF's second page, an MPO's second JPEG or a DICOM's
    embedded codestream can declare far more, and would be decoded unchecked.
    """
    limit = resolve_max_pixels(max_pixels)
    total = int(width) * int(height)
    where = f"frame {index + 1} of {frames}" if frames > 1 else "its image data"
    if width <= 0 or height <= 0:
        raise CorruptFileError(f"{where} declares an empty {width}×{height} frame; re-export the file", name)
    if total > limit:
        raise DecompressionBombError(
            f"{where} declares {width}×{height} = {total:,} pixels, above the limit of {limit:,}; refused before decoding "
            f"(raise the limit with max_pixels= or env {ENV_MAX_PIXELS} if the file is genuine)",
            name,
        )
