"""Size limits applied to every image before it is decoded.

Why: a 2 KB PNG can declare 90000×90000 pixels (8.1 gigapixels) and exhaust memory when decoded; a
thumbnail-sized image carries no usable anatomy. Both are refused on the *declared* size, so the check
costs nothing. The limit is per call (``max_pixels=``), else env ``SPINE_MODELS_MAX_PIXELS``, else
:data:`DEFAULT_MAX_PIXELS`; PIL's own global ``MAX_IMAGE_PIXELS`` is left untouched.
"""
from __future__ import annotations

import os

from spine_models.errors import ConfigError, CorruptFileError, DecompressionBombError, ImageTooSmallError

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_MIN_SIZE", "resolve_max_pixels", "check_declared_size", "check_frame_size"]

DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels: a 14"×17" film at 0.05 mm is ~ 60 MP
DEFAULT_MIN_SIZE = 32
ENV_MAX_PIXELS = "SPINE_MODELS_MAX_PIXELS"


def resolve_max_pixels(max_pixels: int | None = None) -> int:
    """The effective limit: the argument, else the env variable, else the default."""
    if max_pixels is not None:
        value: object = max_pixels
        source = "max_pixels"
    else:
        raw = os.environ.get(ENV_MAX_PIXELS, "").strip().replace("_", "")
        if not raw:
            return DEFAULT_MAX_PIXELS
        source = ENV_MAX_PIXELS
        try:
            value = int(float(raw))
        except ValueError:
            raise ConfigError(f"{ENV_MAX_PIXELS}={raw!r} is not a number; set it to a pixel count such as 100000000") from None
    if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{source}={value!r} must be a positive pixel count, e.g. 100000000")
    return value


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
