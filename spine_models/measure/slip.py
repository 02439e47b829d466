"""Spondylolisthesis slip (Meyerding) and disc heights from lateral vertebra corners or a mask.

Why: the lateral film's clinical numbers. Slip % is the anterior displacement of the upper body's
posterior-inferior corner relative to the lower body's posterior-superior corner, measured along
the lower body's superior endplate and expressed as a percentage of that endplate's length
(Meyerding 1932; the usual Taillard-style percentage). Positive = anterolisthesis (forward slip);
negative = retrolisthesis.

Orientation: corners are TL, TR, BR, BL as seen on the image. Which side is anterior depends on
how the film was taken; pass ``anterior="left"`` (patient facing image-left, the usual display) or
``"right"``. :func:`slip_from_mask` infers it from the spinous processes (they are posterior).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["slip_percent", "slip_grade", "meyerding_grade", "slip_levels", "slip_from_mask", "disc_heights", "infer_anterior",
           "MEYERDING_NAMES"]

MEYERDING_NAMES = {0: "none", 1: "I", 2: "II", 3: "III", 4: "IV", 5: "V (spondyloptosis)"}


def _corners(c: Sequence[Sequence[float]]) -> np.ndarray:
    a = np.asarray(c, float)
    if a.shape != (4, 2):
        raise ValueError(f"vertebra corners must be 4 (x, y) points TL, TR, BR, BL; got shape {a.shape}")
    return a


def _check_side(anterior: str) -> None:
    if anterior not in ("left", "right"):
        raise ValueError(f"anterior={anterior!r}: use 'left' or 'right' (the image side the patient faces)")


def slip_percent(upper: Sequence[Sequence[float]], lower: Sequence[Sequence[float]], *, anterior: str = "left") -> float:
    """Meyerding slip % of ``upper`` over ``lower`` (each 4 corners TL, TR, BR, BL)."""
    _check_side(anterior)
    up, lo = _corners(upper), _corners(lower)
    if anterior == "left":  # posterior is image-right
        post_inf, post_sup, ant_sup = up[2], lo[1], lo[0]
    else:
        post_inf, post_sup, ant_sup = up[3], lo[0], lo[1]
    axis = ant_sup - post_sup  # posterior -> anterior along the lower superior endplate
    length = float(np.hypot(*axis))
    if length <= 0:
        raise ValueError("slip_percent: the lower vertebra's superior endplate has zero length")
    disp = float(np.dot(post_inf - post_sup, axis / length))
    return 100.0 * disp / length


def meyerding_grade(percent: float, *, none_below: float = 1.0) -> int:
    """Meyerding grade 0-5 from slip %.

    Intervals are closed below, open above: grade I [none_below, 25), II [25, 50), III [50, 75),
    IV [75, 100), V >= 100 (spondyloptosis) — so 25.0 is grade II and 100.0 grade V. Slips under
    ``none_below`` % (default 1 %) and retrolisthesis (negative %) are grade 0: Meyerding grades
    forward slips only, and a segmentation measures a normal level at about 0 +- a few %.
    """
    p = float(percent)
    if not math.isfinite(p):
        raise ValueError(f"meyerding_grade: slip percent {percent!r} is not a finite number")
    if p < none_below:
        return 0
    if p >= 100.0:
        return 5
    return 1 + int(p // 25.0)


def slip_grade(upper: Sequence[Sequence[float]], lower: Sequence[Sequence[float]], *,
               anterior: str = "left") -> tuple[float, int]:
    """(slip %, Meyerding grade) of ``upper`` over ``lower`` in one call."""
    pct = slip_percent(upper, lower, anterior=anterior)
    return pct, meyerding_grade(pct)


def slip_levels(landmarks: Mapping[str, Sequence[Sequence[float]]], *, anterior: str = "left") -> dict[str, float]:
    """Slip % for every adjacent pair of vertebrae (sorted top to bottom), keyed ``"L4-L5"``."""
    items = sorted(((k, _corners(v)) for k, v in landmarks.items()), key=lambda kv: kv[1][:, 1].mean())
    return {f"{a}-{b}": slip_percent(ca, cb, anterior=anterior) for (a, ca), (b, cb) in zip(items[:-1], items[1:])}


def infer_anterior(vertebra_mask: np.ndarray, spinous_mask: np.ndarray | None) -> str | None:
    """'left' / 'right' from where the spinous processes sit relative to the bodies (they are posterior)."""
    if spinous_mask is None:
        return None
    v, s = np.nonzero(np.asarray(vertebra_mask) > 0), np.nonzero(np.asarray(spinous_mask) > 0)
    if len(v[1]) == 0 or len(s[1]) == 0:
        return None
    return "left" if s[1].mean() > v[1].mean() else "right"


def _point_line_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    d = b - a
    n = float(np.hypot(*d))
    if n == 0:
        return float(np.hypot(*(p - a)))
    return abs(float(d[0] * (p[1] - a[1]) - d[1] * (p[0] - a[0]))) / n


def disc_heights(landmarks: Mapping[str, Sequence[Sequence[float]]], *, anterior: str = "left",
                 pixel_spacing_mm: tuple[float, float] | None = None) -> dict[str, dict[str, float]]:
    """Per level ``{"anterior_px", "middle_px", "posterior_px"}`` (+ ``*_mm`` when spacing is known).

    Each height is the perpendicular distance from a point of the upper body's inferior endplate
    (its anterior corner, midpoint, posterior corner) to the line of the lower body's superior
    endplate, so a slipped level is not read as a taller disc. ``pixel_spacing_mm`` is (row, col)
    as DICOM gives it; anisotropic spacing is applied before measuring.
    """
    _check_side(anterior)
    items = sorted(((k, _corners(v)) for k, v in landmarks.items()), key=lambda kv: kv[1][:, 1].mean())
    out: dict[str, dict[str, float]] = {}
    scales: list[tuple[str, np.ndarray]] = [("px", np.array([1.0, 1.0]))]
    if pixel_spacing_mm is not None:
        scales.append(("mm", np.array([float(pixel_spacing_mm[1]), float(pixel_spacing_mm[0])])))
    for (a, up), (b, lo) in zip(items[:-1], items[1:]):
        # up: BR=2, BL=3; lo: TL=0, TR=1
        ant_pt, post_pt = (up[3], up[2]) if anterior == "left" else (up[2], up[3])
        d: dict[str, float] = {}
        for unit, sc in scales:
            la, lb = lo[0] * sc, lo[1] * sc
            for key, p in (("anterior", ant_pt), ("middle", (up[2] + up[3]) / 2), ("posterior", post_pt)):
                d[f"{key}_{unit}"] = _point_line_distance(p * sc, la, lb)
        out[f"{a}-{b}"] = d
    return out


def slip_from_mask(vertebra_mask: np.ndarray, *, spinous_mask: np.ndarray | None = None, anterior: str | None = None,
                   pixel_spacing_mm: tuple[float, float] | None = None, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Slip per level, the worst level with its Meyerding grade, and disc heights, from a lateral mask.

    ``anterior`` wins when given; else it is inferred from ``spinous_mask``; else "left" is assumed
    (and said so in the result's ``anterior_source``).
    """
    from spine_models.measure.cobb import vertebrae_from_mask

    source = "given"
    if anterior is None:
        anterior = infer_anterior(vertebra_mask, spinous_mask)
        source = "spinous processes"
        if anterior is None:
            anterior, source = "left", "assumed (no spinous process mask)"
    lm = vertebrae_from_mask(vertebra_mask, names=names)
    levels = slip_levels(lm, anterior=anterior) if len(lm) >= 2 else {}
    worst = max(levels, key=lambda k: levels[k], default=None)
    pct = levels[worst] if worst is not None else 0.0
    grade = meyerding_grade(pct)
    return {
        "anterior": anterior,
        "anterior_source": source,
        "levels": {k: round(v, 2) for k, v in levels.items()},
        "level": worst,
        "slip_percent": round(pct, 2),
        "meyerding_grade": grade,
        "meyerding": MEYERDING_NAMES[grade],
        "disc_heights": disc_heights(lm, anterior=anterior, pixel_spacing_mm=pixel_spacing_mm) if len(lm) >= 2 else {},
        "vertebrae": {k: [[round(x, 1), round(y, 1)] for x, y in v] for k, v in lm.items()},
    }
