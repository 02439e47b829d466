"""One way to turn "an image" (Radiograph, file path, or array) into model-ready grayscale pixels.

Why: every engine's Predictor accepts all three; doing the coercion once keeps the rules (RGB averaged,
values outside [0, 1] min-max scaled, anything not 2-D refused) the same for every task.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from spine_models.errors import SpineInputError

__all__ = ["as_pixels", "scale_to_unit"]


def scale_to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """float32 ``(values - low) / (high - low)`` clipped to [0, 1], without float32 overflow.

    Why: a rescale slope of 1e38 (or float pixels near the float32 limits) gives a range wider than
    float32 can hold; ``values - low`` then overflows to inf and the division to NaN. A range that
    wide is divided first, so every step stays finite.
    """
    lo, hi = float(low), float(high)
    span = hi - lo if hi > lo else 1.0
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        if span > 1e30:
            out = values.astype(np.float32, copy=False) * np.float32(1.0 / span) - np.float32(lo / span)
        else:
            out = (values.astype(np.float32, copy=False) - np.float32(lo)) / np.float32(span)
    out = np.asarray(out, dtype=np.float32)
    np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def as_pixels(image: Any) -> tuple[np.ndarray, str, tuple[float, float] | None]:
    """(float32 HxW in [0, 1], de-identified name, pixel spacing (row, col) in mm or None)."""
    if isinstance(image, (str, Path)):
        from spine_models.io import read_image

        image = read_image(image)
    if hasattr(image, "pixels"):
        sp = getattr(image, "pixel_spacing_mm", None)
        return np.asarray(image.pixels, np.float32), str(getattr(image, "name", "")), tuple(sp) if sp else None
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3].mean(axis=-1)
    if a.ndim != 2:
        raise SpineInputError(f"image array of shape {a.shape}: expected a 2-D grayscale image (H, W)")
    a = a.astype(np.float32)
    if a.size and (a.min() < 0 or a.max() > 1):
        lo, hi = float(a.min()), float(a.max())
        a = scale_to_unit(a, lo, hi) if hi > lo else np.zeros_like(a)
    return a, "", None
