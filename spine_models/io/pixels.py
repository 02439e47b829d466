"""One way to turn "an image" (Radiograph, file path, or array) into model-ready grayscale pixels.

Why: every engine's Predictor accepts all three; doing the coercion once keeps the rules (RGB averaged,
values outside [0, 1] min-max scaled, anything not 2-D refused) the same for every task.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from spine_models.errors import SpineInputError

__all__ = ["as_pixels"]


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
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a, "", None
