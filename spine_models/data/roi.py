"""Regions of interest located by a segmentation model: the lumbosacral junction of a lateral film.

Why: a Meyerding grade I slip moves L5 by 5 % of its depth, about 2 px on a 1024-px phantom film and
1 px at the 448 x 224 a whole-film classifier sees. A crop around the lowest lumbar body at the film's
own resolution keeps that step visible. The crop is placed by the shipped lateral U-Net's vertebra
mask (its lowest body is L5: the lateral structures have no sacrum), the same function at training
and at inference, so a classifier never learns from ground-truth positions it will not have later.
The side is a multiple of the bodies' height, so films of any resolution give the same anatomy.

This module runs no network: ``locate`` takes the segmenter as a callable (the engine passes one
built on its predictor, ``spine_models.engine.classify.vertebra_mask``), so data/ stays below engine/.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from spine_models.errors import ConfigError

__all__ = ["CROPS", "lumbosacral_box", "crop_box", "locate", "DEFAULT_CROP_MODEL", "SIDE_IN_BODIES", "VertebraSegmenter"]

#: (full-resolution pixels, segmentation model id) -> the boolean vertebra mask of those pixels
VertebraSegmenter = Callable[[np.ndarray, str], np.ndarray]

CROPS = ("none", "lumbosacral")
DEFAULT_CROP_MODEL = "seg_unet_lat"
SIDE_IN_BODIES = 5.5  # L3 to the sacrum, with room for a grade IV slip


def lumbosacral_box(vertebra_mask: np.ndarray, *, side_in_bodies: float = SIDE_IN_BODIES) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of a square centred on the lowest vertebral body of a lateral mask, or None when
    the mask holds fewer than two bodies (nothing to anchor on)."""
    from spine_models.measure.cobb import vertebrae_from_mask

    h, w = vertebra_mask.shape[:2]
    bodies = list(vertebrae_from_mask(vertebra_mask).values())
    if len(bodies) < 2:
        return None
    low = np.asarray(bodies[-1], float)
    heights = [0.5 * (np.linalg.norm(c[3] - c[0]) + np.linalg.norm(c[2] - c[1])) for c in map(np.asarray, bodies[-3:])]
    side = int(round(np.clip(side_in_bodies * float(np.median(heights)), 32, min(h, w))))
    cy, cx = float(low[:, 1].mean()), float(low[:, 0].mean())
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    return y0, y0 + side, x0, x0 + side


def crop_box(pixels: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """``pixels`` inside ``box`` (y0, y1, x0, x1); the whole image when ``box`` is None (nothing found)."""
    if box is None:
        return pixels
    y0, y1, x0, x1 = box
    return pixels[y0:y1, x0:x1]


def locate(pixels: np.ndarray, kind: str, model: str | None = None, *,
           side_in_bodies: float | None = None, segment: VertebraSegmenter | None = None) -> tuple[int, int, int, int] | None:
    """The crop box of ``kind`` on full-resolution ``pixels`` (None for ``none`` or when nothing is found:
    the whole film is used). ``segment(pixels, model)`` gives the vertebra mask; the caller owns inference."""
    if kind in ("none", "", None):
        return None
    if kind != "lumbosacral":
        raise ConfigError(f"crop={kind!r}; valid: {', '.join(CROPS)}")
    if segment is None:
        raise ConfigError(f"crop={kind!r} needs segment=: a callable (pixels, model id) -> vertebra mask, "
                          "e.g. spine_models.engine.classify.vertebra_mask")
    mask = segment(pixels, model or DEFAULT_CROP_MODEL)
    return lumbosacral_box(mask, side_in_bodies=side_in_bodies or SIDE_IN_BODIES)
