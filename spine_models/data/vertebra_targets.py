"""Vertebra training targets from whatever a real source gives: masks, corners or boxes.

Why: the real AP sources carry different truth — ``aasce-ap`` the 4 expert corners of T1-L5,
``cadma-vertebra`` one axis-aligned box per vertebra, the phantom full masks. A U-Net learns from all
of them together when each is turned into the same target: a per-pixel vertebra map plus a per-pixel
weight (0 = "no truth here", the loss ignores it).

- corners -> each vertebra's quadrilateral, filled (exact truth inside and outside, weight 1);
- boxes   -> a weak mask: a central core of each box is vertebra (weight 1), the rest of the box is
  unknown (weight 0: a tilted body fills only part of its box), outside every box is background;
- masks   -> read as they are.
A structure a source does not mark (pedicles on a real film) gets weight 0 over the whole film.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["quad_mask", "body_height_scaled", "box_weak_mask", "BOX_CORE", "IGNORE", "encode_ignore", "has_vertebra_truth",
           "vertebra_boxes", "DISC_CORE", "DISC_STRUCTURES", "CAUDAL_LEVELS", "disc_boxes", "disc_mask", "has_disc_truth"]

IGNORE = -1.0  # target value the segment losses skip (weight 0)
BOX_CORE = (0.6, 0.5)  # (width, height) share of a box taken as certain vertebra (centred)


def body_height_scaled(corners: Sequence[Sequence[float]], factor: float) -> np.ndarray:
    """A body's 4 corners (TL, TR, BR, BL) with its height scaled by ``factor`` about its centre, along its
    own axis (each upper corner moves towards or away from the lower corner below it): both endplate
    directions, and so the Cobb angle, stay as they were."""
    c = np.asarray(corners, np.float64).reshape(4, 2)
    tl, tr, br, bl = c
    k = (1.0 - factor) / 2.0
    return np.array([tl + k * (bl - tl), tr + k * (br - tr), br + k * (tr - br), bl + k * (tl - bl)])


def quad_mask(shape: tuple[int, int], landmarks: Mapping[str, Sequence[Sequence[float]]],
              scale: tuple[float, float] = (1.0, 1.0), body_height: float = 1.0) -> np.ndarray:
    """HxW float32 {0, 1}: every vertebra's 4 corners drawn as a filled quadrilateral.

    ``scale`` = (sy, sx) maps the corners' film pixels to ``shape`` (a resized film). ``body_height`` < 1
    draws each body shorter about its centre (:func:`body_height_scaled`): a wider gap between bodies, so a
    predicted mask does not join them across a thin disc (the Predictor scales found bodies back)."""
    import cv2

    out = np.zeros(shape, np.uint8)
    sy, sx = scale
    for corners in landmarks.values():
        pts = np.asarray(corners, np.float64).reshape(-1, 2)
        if pts.shape[0] != 4 or not np.all(np.isfinite(pts)):
            continue
        if body_height != 1.0:
            pts = body_height_scaled(pts, body_height)
        q = np.round(pts * [sx, sy] * 16).astype(np.int32)  # 4 fractional bits: sub-pixel outlines
        cv2.fillPoly(out, [q], 1, lineType=cv2.LINE_8, shift=4)
    return out.astype(np.float32)


def vertebra_boxes(boxes: Sequence[object]) -> list[tuple[float, float, float, float]]:
    """(x1, y1, x2, y2) of the boxes labelled ``vertebra``."""
    return [(float(b.x1), float(b.y1), float(b.x2), float(b.y2)) for b in boxes
            if getattr(b, "label", "") == "vertebra"]


def box_weak_mask(shape: tuple[int, int], boxes: Sequence[tuple[float, float, float, float]],
                  scale: tuple[float, float] = (1.0, 1.0), core: tuple[float, float] = BOX_CORE
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(target, weight), both HxW float32, from axis-aligned vertebra boxes (see module docstring)."""
    target = np.zeros(shape, np.float32)
    weight = np.ones(shape, np.float32)
    sy, sx = scale
    h, w = shape
    cw, ch = core
    for x1, y1, x2, y2 in boxes:
        bx1, bx2 = sorted((x1 * sx, x2 * sx))
        by1, by2 = sorted((y1 * sy, y2 * sy))
        ix1, iy1 = max(0, int(np.floor(bx1))), max(0, int(np.floor(by1)))
        ix2, iy2 = min(w, int(np.ceil(bx2))), min(h, int(np.ceil(by2)))
        if ix2 <= ix1 or iy2 <= iy1:
            continue
        weight[iy1:iy2, ix1:ix2] = 0.0
        mx, my = (bx1 + bx2) / 2, (by1 + by2) / 2
        hw, hh = (bx2 - bx1) * cw / 2, (by2 - by1) * ch / 2
        cx1, cx2 = max(0, int(round(mx - hw))), min(w, max(int(round(mx - hw)) + 1, int(round(mx + hw))))
        cy1, cy2 = max(0, int(round(my - hh))), min(h, max(int(round(my - hh)) + 1, int(round(my + hh))))
        target[cy1:cy2, cx1:cx2] = 1.0
        weight[cy1:cy2, cx1:cx2] = 1.0
    return target, weight


DISC_STRUCTURES = ("disc", "disc_caudal")  # every disc; the three lowest lumbar discs (tell the caudal end)
CAUDAL_LEVELS = ("L3-L4", "L4-L5", "L5-S1")  # the discs of the ``disc_caudal`` channel
DISC_CORE = (0.8, 0.5)  # (width, height) share of a disc box drawn as the disc's target ellipse (centred)


def disc_boxes(boxes: Sequence[object], level: str | None = None) -> list[tuple[float, float, float, float]]:
    """(x1, y1, x2, y2) of the boxes labelled ``disc`` or ``disc <level>`` (only ``disc <level>`` when given)."""
    out = []
    for b in boxes:
        lab = str(getattr(b, "label", ""))
        if (lab == f"disc {level}") if level else (lab == "disc" or lab.startswith("disc ")):
            out.append((float(b.x1), float(b.y1), float(b.x2), float(b.y2)))
    return out


def disc_mask(shape: tuple[int, int], boxes: Sequence[tuple[float, float, float, float]],
              scale: tuple[float, float] = (1.0, 1.0), core: tuple[float, float] = DISC_CORE) -> np.ndarray:
    """HxW float32: a filled ellipse of ``core`` of each disc box's width and height about its centre.

    Why an ellipse smaller than the box: a disc box (SPIDER's crop frame) also holds the halves of both
    neighbouring bodies; the centred ellipse keeps neighbouring discs apart in the mask, and the box is
    recovered from a found ellipse by dividing its extent by ``core`` (the Predictor does that)."""
    import cv2

    out = np.zeros(shape, np.uint8)
    sy, sx = scale
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2 * sx, (y1 + y2) / 2 * sy
        ax, ay = abs(x2 - x1) * sx * core[0] / 2, abs(y2 - y1) * sy * core[1] / 2
        cv2.ellipse(out, (int(round(cx * 16)), int(round(cy * 16))), (max(1, int(round(ax * 16))), max(1, int(round(ay * 16)))),
                    0, 0, 360, 1, -1, lineType=cv2.LINE_8, shift=4)
    return out.astype(np.float32)


def encode_ignore(target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """One array for the loss: ``target`` where ``weight`` > 0.5, else :data:`IGNORE`."""
    return np.where(weight > 0.5, target, IGNORE).astype(np.float32)


def has_disc_truth(sample: object) -> bool:
    """Whether a sample carries disc boxes (the disc-grading layout's recovered crop frames)."""
    return bool(disc_boxes(getattr(sample, "boxes", [])))


def has_vertebra_truth(sample: object) -> bool:
    """Whether a sample carries any vertebra truth (a mask file, corners or vertebra boxes)."""
    return bool("vertebra" in getattr(sample, "masks", {}) or getattr(sample, "landmarks", None)
                or vertebra_boxes(getattr(sample, "boxes", [])))
