"""Discs on a sagittal MR slice: disc probability maps -> one box per disc, with its level, in any orientation.

Why levels from the column and not from the image's top: real slices arrive flipped and rotated (SPIDER's
renderings: most are upside down), so "the lowest disc" is only known from anatomy. The locator marks every disc
(channel ``disc``) and, separately, the three lowest lumbar discs L3-L4, L4-L5, L5-S1 (channel ``disc_caudal``,
learnt from the sacrum and the lordosis under all 8 flips/rotations; three discs are a steadier signal than the
lumbosacral disc alone). Discs are ordered along the column's main axis; the end whose three discs carry more of
the caudal channel is the caudal end, its last disc is L5-S1, and levels count upwards: L5-S1, L4-L5, … T9-T10.
When the caudal channel is weak at both ends or does not tell them apart, the discs keep their boxes but get no
level (``levels_reliable`` false) — no guessed name.

Box from an ellipse: training targets are ellipses of ``DISC_CORE`` of each box's width and height
(``data.vertebra_targets.disc_mask``); a found disc's box is its ellipse's extent along the disc's own long and
short axes divided by those shares, laid axis-aligned the way the disc lies (a rotated slice turns it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Disc", "DiscRead", "discs_from_probs", "LEVELS_UP", "MIN_AREA_FRACTION"]

LEVELS_UP = ("L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2", "T12-L1", "T11-T12", "T10-T11", "T9-T10")
MIN_AREA_FRACTION = 0.15  # a component smaller than this share of the median disc component is noise
CAUDAL_MIN = 0.3  # mean caudal probability over an end's discs below which that end is not taken as caudal
CAUDAL_MARGIN = 0.15  # how much more caudal one end must look than the other


@dataclass
class Disc:
    """One found disc: box (x1, y1, x2, y2) in slice pixels, level (or None), score, centre and long-axis angle."""

    box: tuple[float, float, float, float]
    score: float
    centre: tuple[float, float]
    angle_deg: float  # long axis against the image's x axis, (-90, 90]
    level: str | None = None
    caudal: float = 0.0  # mean disc_caudal probability inside the disc

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "box": [round(float(v), 1) for v in self.box], "score": round(float(self.score), 4),
                "centre": [round(float(v), 1) for v in self.centre], "angle_deg": round(float(self.angle_deg), 1)}


@dataclass
class DiscRead:
    discs: list[Disc]
    levels_reliable: bool
    note: str = ""
    axis: tuple[float, float] = (0.0, 1.0)  # unit vector along the column, pointing cranially when levels are known


def _component_disc(mask: np.ndarray, prob: np.ndarray, core: tuple[float, float]) -> Disc:
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    c = pts.mean(0)
    cov = np.cov((pts - c).T) if len(pts) > 2 else np.eye(2)
    evals, evecs = np.linalg.eigh(cov)
    major = evecs[:, 1]
    minor = evecs[:, 0]
    # extents along the axes (+1 pixel: a pixel has width)
    proj_major = (pts - c) @ major
    proj_minor = (pts - c) @ minor
    length = (proj_major.max() - proj_major.min() + 1) / core[0]
    thick = (proj_minor.max() - proj_minor.min() + 1) / core[1]
    ang = float(np.degrees(np.arctan2(major[1], major[0])))
    ang = ang - 180 if ang > 90 else ang + 180 if ang <= -90 else ang
    # the axis-aligned box of the full disc box (a rectangle length x thick turned by ang)
    t = np.radians(ang)
    half_w = abs(np.cos(t)) * length / 2 + abs(np.sin(t)) * thick / 2
    half_h = abs(np.sin(t)) * length / 2 + abs(np.cos(t)) * thick / 2
    # the training boxes are axis-aligned boxes of tilted discs: their core ellipse is the box's, so scale the
    # found ellipse's own axis-aligned extent instead when the disc lies close to an image axis
    if abs(np.sin(2 * t)) < 0.5:
        horiz = abs(np.cos(t)) >= abs(np.sin(t))
        ext_x = (xs.max() - xs.min() + 1) / (core[0] if horiz else core[1])
        ext_y = (ys.max() - ys.min() + 1) / (core[1] if horiz else core[0])
        half_w, half_h = ext_x / 2, ext_y / 2
    h, w = mask.shape
    box = (max(0.0, c[0] - half_w), max(0.0, c[1] - half_h), min(float(w), c[0] + half_w), min(float(h), c[1] + half_h))
    return Disc(box=tuple(float(v) for v in box), score=float(prob[mask].mean()), centre=(float(c[0]), float(c[1])),
                angle_deg=ang)


def discs_from_probs(prob_disc: np.ndarray, prob_caudal: np.ndarray | None, *, threshold: float = 0.5,
                     core: tuple[float, float] = (0.8, 0.5)) -> DiscRead:
    """Discs (boxes, scores, levels) from the locator's probability maps at slice resolution."""
    import cv2

    mask = (prob_disc > threshold).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    comps = [k for k in range(1, n)]
    if not comps:
        return DiscRead([], False, "no disc found on this slice")
    areas = np.array([stats[k, cv2.CC_STAT_AREA] for k in comps], float)
    keep = [k for k, a in zip(comps, areas) if a >= MIN_AREA_FRACTION * np.median(areas) and a >= 4]
    discs = []
    for k in keep:
        m = lab == k
        d = _component_disc(m, prob_disc, core)
        if prob_caudal is not None:
            d.caudal = float(prob_caudal[m].mean())
        discs.append(d)
    if len(discs) < 2:
        return DiscRead(discs, False, "fewer than two discs found: the column's direction is unknown, so no level is named")
    cs = np.array([d.centre for d in discs])
    mu = cs.mean(0)
    _, _, vt = np.linalg.svd(cs - mu)
    axis = vt[0]
    order = np.argsort((cs - mu) @ axis)
    discs = [discs[i] for i in order]
    k = min(3, len(discs) // 2) or 1
    front = float(np.mean([d.caudal for d in discs[:k]]))
    back = float(np.mean([d.caudal for d in discs[-k:]]))
    if prob_caudal is None or max(front, back) < CAUDAL_MIN:
        return DiscRead(discs, False, "the lower lumbar discs were not recognised: discs are shown without level names")
    if abs(front - back) < CAUDAL_MARGIN:
        return DiscRead(discs, False, f"both ends of the column look alike ({front:.2f} vs {back:.2f}): discs are shown "
                        "without level names")
    if back > front:
        discs.reverse()
        axis = -axis
    for i, d in enumerate(discs):
        d.level = LEVELS_UP[i] if i < len(LEVELS_UP) else None
    return DiscRead(discs, True, "", (float(axis[0]), float(axis[1])))
