"""The disc grader's one preprocessing: a disc box on a sagittal slice -> a fixed-size, upright, normalised crop.

Why one function for training and inference: the grader is trained on crops cut from whole slices at the
recovered (or found) disc boxes and must see exactly the same kind of crop on an uploaded slice — never the
upstream crops with their drawn red frames. Upright: the slice is turned by a multiple of 90° so that the
column's cranial direction points up (from the found levels), which makes a disc lie horizontally with its upper
endplate on top whatever the slice's orientation; left-right (anterior/posterior) is left to augmentation.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["CROP_SIZE", "CROP_MARGIN", "upright_turns", "disc_crop", "column_up"]

CROP_SIZE = (64, 128)  # (H, W) of the grader's input
CROP_MARGIN = (0.1, 0.2)  # extra share of the box's width, height on each side (end plates and neighbours' edges)


def upright_turns(up: Sequence[float]) -> int:
    """k for ``np.rot90(img, k)`` that makes the image direction ``up`` (dx, dy; y down) point closest to up."""
    dx, dy = float(up[0]), float(up[1])
    best, best_k = -2.0, 0
    for k in range(4):
        # rot90 once (counter-clockwise) maps a direction (dx, dy) to (dy, -dx)
        score = -dy  # cosine with (0, -1)
        if score > best + 1e-9:
            best, best_k = score, k
        dx, dy = dy, -dx
    return best_k


def column_up(centres_caudal_to_cranial: Sequence[Sequence[float]]) -> tuple[float, float]:
    """The column's cranial unit direction from disc centres ordered L5-S1 upwards (least squares line)."""
    c = np.asarray(centres_caudal_to_cranial, float)
    if len(c) < 2:
        return (0.0, -1.0)
    d = c[-1] - c[0]
    n = float(np.hypot(*d))
    return (float(d[0] / n), float(d[1] / n)) if n > 0 else (0.0, -1.0)


def disc_crop(pixels: np.ndarray, box: Sequence[float], up: Sequence[float] = (0.0, -1.0), *,
              size: tuple[int, int] = CROP_SIZE, margin: tuple[float, float] = CROP_MARGIN) -> np.ndarray:
    """(H, W) float32 in [0, 1]: the box plus margins (zero-padded outside the slice), turned upright, resized,
    and stretched between its 1st and 99th intensity percentiles (T1 and T2 from any scanner on one scale)."""
    import cv2

    img = np.asarray(pixels, np.float32)
    if img.ndim == 3:
        img = img.mean(-1)
    h, w = img.shape
    x1, y1, x2, y2 = (float(v) for v in box)
    k = upright_turns(up)
    # the box's own width/height as seen upright: a turned slice swaps them
    bw, bh = (x2 - x1, y2 - y1)
    mx, my = (margin if k % 2 == 0 else margin[::-1])
    X1, X2 = int(np.floor(x1 - mx * bw)), int(np.ceil(x2 + mx * bw))
    Y1, Y2 = int(np.floor(y1 - my * bh)), int(np.ceil(y2 + my * bh))
    if X2 <= X1 or Y2 <= Y1:
        raise ValueError(f"disc box {tuple(box)} is empty")
    out = np.zeros((Y2 - Y1, X2 - X1), np.float32)
    sx1, sy1, sx2, sy2 = max(0, X1), max(0, Y1), min(w, X2), min(h, Y2)
    if sx2 > sx1 and sy2 > sy1:
        out[sy1 - Y1:sy2 - Y1, sx1 - X1:sx2 - X1] = img[sy1:sy2, sx1:sx2]
    out = np.ascontiguousarray(np.rot90(out, k))
    out = cv2.resize(out, (size[1], size[0]), interpolation=cv2.INTER_AREA if out.shape[0] > size[0] else cv2.INTER_LINEAR)
    lo, hi = np.percentile(out, [1, 99])
    return np.clip((out - lo) / (hi - lo), 0, 1).astype(np.float32) if hi > lo else np.zeros(size, np.float32)
