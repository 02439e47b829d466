"""Display windowing for the UI's window/level sliders.

Why: users adjust contrast interactively; the same linear DICOM window (PS3.3 C.11.2.1.2.1) that the
readers apply on arrival is applied here to the [0, 1] pixels (or to original values when the caller
passes them in those units).
"""
from __future__ import annotations

import numpy as np

__all__ = ["apply_window"]


def apply_window(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear window: values below ``center - width/2`` → 0, above ``center + width/2`` → 1 (float32).

    ``center``/``width`` are in the units of ``pixels`` (e.g. 0.5 / 1.0 leaves [0, 1] pixels unchanged).
    """
    if not np.isfinite(center) or not np.isfinite(width) or width <= 0:
        from spine_models.errors import SpineInputError

        raise SpineInputError(f"window center={center!r} width={width!r}: width must be a positive number")
    arr = np.asarray(pixels, dtype=np.float32)
    low = center - width / 2.0
    out = (arr - low) / float(width)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)
