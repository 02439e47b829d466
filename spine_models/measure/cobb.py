"""Cobb angle from vertebral endplates, and vertebra corners from a segmentation mask.

Why: none of the peer tools measures the curve automatically. The Cobb angle is the angle between
the superior endplate of the upper end vertebra and the inferior endplate of the lower end vertebra,
the end vertebrae being the most tilted ones of a curve. We find every curve as a swing of the
endplate-angle profile (top to bottom) between two turning points, keep up to three, and name them
by their apex (SRS convention): proximal thoracic (apex T1-T5), main thoracic (apex T6-T11),
thoracolumbar/lumbar (apex T12 or below).

Geometry conventions (image coordinates, x right, y down, as the film is seen):
- corners of a vertebra: top-left, top-right, bottom-right, bottom-left (SPEC landmarks.csv);
- an endplate angle is ``atan2(dy, dx)`` of its left->right line in degrees, positive when the
  line goes down to the right of the image.

Angles are of lines, not vectors: a direction and the same direction + 180 deg are one endplate. So
every tilt is kept in (-90, 90], differences of two tilts are taken modulo 180 (:func:`line_diff`), and
an angle between two lines is in [0, 90] (:func:`line_angle`). Why: on real films a mask fragment lying
beside the column gave a centre step near horizontal, read as -89 deg where +91 was meant, and the Cobb
search then reported 277 and 578 deg on fraiwan-ap films. A true curve above 90 deg (3 of the 466
aasce-ap labels) reads as 180 minus it: the angle between two lines cannot say more.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "LEVELS",
    "COLUMN_LEVELS",
    "NOT_IN_CURVES",
    "decode_levels",
    "tidy_bodies",
    "crooked_bodies",
    "neighbour_steps",
    "MAX_BODY_STEP_DEG",
    "level_names",
    "CobbCurve",
    "CobbResult",
    "endplate_angles",
    "cobb_from_endplates",
    "cobb_angle",
    "vertebrae_from_mask",
    "curve_name",
    "fuse_tilts",
    "line_diff",
    "line_angle",
    "fold_line",
    "Centreline",
    "centreline_cobb",
    "CENTRELINE_DEGREE",
]

# Vertebral levels a spine film shows, top to bottom (the phantom's T1..L5; S1 is the sacrum).
LEVELS: tuple[str, ...] = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
# What a learned level reader can call a body on an AP film: the last cervical body above T1, the sacrum below L5.
COLUMN_LEVELS: tuple[str, ...] = ("C7",) + LEVELS + ("S1",)
# Bodies no Cobb curve ends on (the sacrum's top and C7 are not endplates of the thoracolumbar curves measured).
NOT_IN_CURVES: tuple[str, ...] = ("C7", "S1")

# Neighbouring vertebral bodies never differ in tilt by this much: on aasce-ap's expert corners (5,236 bodies of the
# 308 training-part films of seg_unet_ap's split; python docs/tune_body_step.py, docs/body_step_tuning.json) a body lies
# at most 29.8 deg from its nearer neighbour (99.9th percentile 21.1) and at most 33.7 from the next body. A body read
# beyond this from every neighbour is a misread (e.g. corners read a quarter turn off), not anatomy (crooked_bodies).
MAX_BODY_STEP_DEG = 35.0

Point = tuple[float, float]
INTER_OBSERVER_DEG = 5.0  # the published +-5 deg inter-observer variability of manual Cobb angles


def fold_line(a: float | np.ndarray) -> Any:
    """A line direction (deg) folded to (-90, 90]: ``a`` and ``a + 180 k`` are the same line."""
    x = np.asarray(a, dtype=float)
    f = 90.0 - np.mod(90.0 - x, 180.0)  # (-90, 90]
    return float(f) if f.ndim == 0 else f


def line_diff(a: float | np.ndarray, b: float | np.ndarray) -> Any:
    """Signed difference ``a - b`` of two line directions (deg), modulo 180, in (-90, 90]."""
    return fold_line(np.asarray(a, float) - np.asarray(b, float))


def line_angle(a: float | np.ndarray, b: float | np.ndarray) -> Any:
    """Angle between two lines of directions ``a`` and ``b`` (deg): in [0, 90] whatever their wrap."""
    d = np.abs(line_diff(a, b))
    return float(d) if np.ndim(d) == 0 else d


def _unwrap_lines(a: Sequence[float]) -> np.ndarray:
    """Line directions made continuous: each one moved by a multiple of 180 to within 90 of the one
    before, so a profile 89, -89 (two nearly equal lines) reads 89, 91 and not a 178 deg swing."""
    x = np.asarray(a, dtype=float).copy()
    if len(x):
        x[0] = fold_line(x[0])
    for i in range(1, len(x)):
        x[i] = x[i - 1] + line_diff(x[i], x[i - 1])
    return x


def _line_mean(a: float, b: float) -> float:
    """Mean direction of two lines (deg), in (-90, 90]: 89 and -89 average to 90, not 0."""
    return fold_line(a + line_diff(b, a) / 2)


def _angle(p: Sequence[float], q: Sequence[float]) -> float:
    """Angle of the line p->q in degrees, folded to (-90, 90] so left/right order does not matter."""
    return fold_line(math.degrees(math.atan2(float(q[1]) - float(p[1]), float(q[0]) - float(p[0]))))


def endplate_angles(corners: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(upper, lower) endplate angles of one vertebra from its 4 corners TL, TR, BR, BL."""
    c = np.asarray(corners, dtype=float).reshape(4, 2)
    return _angle(c[0], c[1]), _angle(c[3], c[2])


def curve_name(apex: str, index: int | None = None, count: int | None = None) -> str:
    """SRS region of a curve from its apex level; unnamed levels fall back to relative position."""
    if apex in LEVELS:
        i = LEVELS.index(apex)
        if i <= LEVELS.index("T5"):
            return "proximal thoracic"
        if i <= LEVELS.index("T11"):
            return "main thoracic"
        return "thoracolumbar/lumbar"
    if index is None or not count or count < 2:
        return "main thoracic"
    f = index / (count - 1)
    return "proximal thoracic" if f < 0.25 else "main thoracic" if f < 0.6 else "thoracolumbar/lumbar"


@dataclass
class CobbCurve:
    """One curve: its angle, end vertebrae, apex and the two endplate lines that define it."""

    name: str
    angle_deg: float
    upper_end: str
    lower_end: str
    apex: str
    convex: str  # "image-left" | "image-right" | "unknown": side of the apex relative to the end vertebrae
    upper_line: tuple[Point, Point] | None = None  # superior endplate of the upper end vertebra
    lower_line: tuple[Point, Point] | None = None  # inferior endplate of the lower end vertebra

    @property
    def band(self) -> tuple[float, float]:
        """The +-5 deg inter-observer band: manual readings of the same film typically fall in it."""
        return (max(0.0, self.angle_deg - INTER_OBSERVER_DEG), min(90.0, self.angle_deg + INTER_OBSERVER_DEG))

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "angle_deg": round(self.angle_deg, 2), "upper_end": self.upper_end,
             "lower_end": self.lower_end, "apex": self.apex, "convex": self.convex,
             "band": [round(b, 2) for b in self.band]}
        if self.upper_line is not None and self.lower_line is not None:
            d["upper_line"] = [[round(float(v), 1) for v in p] for p in self.upper_line]
            d["lower_line"] = [[round(float(v), 1) for v in p] for p in self.lower_line]
        return d


@dataclass
class CobbResult:
    """All curves (top to bottom) plus the per-vertebra endplate angles they came from."""

    curves: list[CobbCurve] = field(default_factory=list)
    vertebrae: list[str] = field(default_factory=list)
    upper_angles: list[float] = field(default_factory=list)
    lower_angles: list[float] = field(default_factory=list)
    pixel_spacing_mm: tuple[float, float] | None = None

    @property
    def max_angle(self) -> float:
        """The largest curve's angle (0 for a straight spine): what "the Cobb angle" usually means."""
        return max((c.angle_deg for c in self.curves), default=0.0)

    @property
    def major(self) -> CobbCurve | None:
        return max(self.curves, key=lambda c: c.angle_deg, default=None)

    @property
    def band(self) -> tuple[float, float]:
        return (max(0.0, self.max_angle - INTER_OBSERVER_DEG), min(90.0, self.max_angle + INTER_OBSERVER_DEG))

    def to_dict(self) -> dict[str, Any]:
        return {
            "cobb_deg": round(self.max_angle, 2),
            "band": [round(b, 2) for b in self.band],
            "inter_observer_deg": INTER_OBSERVER_DEG,
            "curves": [c.to_dict() for c in self.curves],
            "vertebrae": [{"name": n, "upper_deg": round(u, 2), "lower_deg": round(lo, 2)}
                          for n, u, lo in zip(self.vertebrae, self.upper_angles, self.lower_angles)],
        }

    def plot(self, image: np.ndarray, *, thickness: int | None = None) -> np.ndarray:
        """RGB uint8 copy of ``image`` with each curve's two endplate lines (extended) and its angle."""
        import cv2

        from spine_models.results.base import to_rgb_uint8

        rgb = np.ascontiguousarray(to_rgb_uint8(image))
        h, w = rgb.shape[:2]
        t = thickness or max(1, round(min(h, w) / 250))
        colors = [(255, 60, 60), (60, 200, 255), (255, 200, 0)]
        for i, c in enumerate(self.curves):
            color = colors[i % len(colors)]
            for line in (c.upper_line, c.lower_line):
                if line is None:
                    continue
                (x1, y1), (x2, y2) = line
                dx, dy = x2 - x1, y2 - y1
                n = math.hypot(dx, dy) or 1.0
                ext = 0.35 * w / n  # extend beyond the body so the angle reads like a hand drawing
                p = (int(round(x1 - dx * ext)), int(round(y1 - dy * ext)))
                q = (int(round(x2 + dx * ext)), int(round(y2 + dy * ext)))
                cv2.line(rgb, p, q, color, t, cv2.LINE_AA)
            if c.upper_line is not None and c.lower_line is not None:
                ys = [c.upper_line[0][1], c.lower_line[0][1]]
                y = int(round(sum(ys) / 2))
                x = int(round(max(c.upper_line[1][0], c.lower_line[1][0]) + 0.05 * w))
                x = min(x, w - int(0.3 * w))
                text = f"{c.angle_deg:.0f} deg"
                scale = max(0.4, min(h, w) / 700)
                cv2.putText(rgb, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), t + 2, cv2.LINE_AA)
                cv2.putText(rgb, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, t, cv2.LINE_AA)
        return rgb


def _turning_points(e: np.ndarray, min_swing: float) -> list[int]:
    """Indices of alternating extrema of ``e`` between swings of at least ``min_swing``.

    A hysteresis (zig-zag) scan: the running extreme becomes a turning point once the profile has
    come back from it by ``min_swing``; the first decisive swing starts at the extreme before it.
    """
    n = len(e)
    if n < 2:
        return []
    pts: list[int] = []
    lo_i = hi_i = ext = 0
    direction = 0
    for i in range(1, n):
        if direction == 0:
            if e[i] > e[hi_i]:
                hi_i = i
            if e[i] < e[lo_i]:
                lo_i = i
            if e[hi_i] - e[lo_i] >= min_swing:
                if lo_i < hi_i:
                    pts.append(lo_i)
                    direction, ext = 1, hi_i
                else:
                    pts.append(hi_i)
                    direction, ext = -1, lo_i
            continue
        if direction == 1:
            if e[i] > e[ext]:
                ext = i
            elif e[ext] - e[i] >= min_swing:
                pts.append(ext)
                direction, ext = -1, i
        else:
            if e[i] < e[ext]:
                ext = i
            elif e[i] - e[ext] >= min_swing:
                pts.append(ext)
                direction, ext = 1, i
    if direction != 0:
        pts.append(ext)
    return pts


def cobb_from_endplates(vertebrae: Sequence[tuple[str, float, float]], *, min_curve_deg: float = 5.0,
                        max_curves: int = 3, centers: Sequence[Sequence[float]] | None = None,
                        corners: Sequence[Sequence[Sequence[float]]] | None = None, min_span: int = 1) -> CobbResult:
    """Curves from ``[(name, upper_endplate_deg, lower_endplate_deg), ...]`` ordered top to bottom.

    The endplate profile ``u0, l0, u1, l1, ...`` is split at its turning points (swings smaller than
    ``min_curve_deg`` are ignored as noise); in each swing the upper end vertebra ``a`` and the
    lower end vertebra ``b`` maximise ``|u_a - l_b|`` (the most tilted end vertebrae). The apex is
    the vertebra between them whose centre lies farthest from the line joining the end vertebrae'
    centres (when ``centers`` are given) else the one whose tilt is closest to the curve's mid-tilt.
    The ``max_curves`` largest curves are kept, ordered top to bottom. Endplate angles are lines: the
    profile is unwrapped (each angle within 90 deg of the one before, :func:`_unwrap_lines`), and every
    curve's angle is the angle between its two endplate lines, in [0, 90].
    """
    names = [str(v[0]) for v in vertebrae]
    u_in = np.array([float(v[1]) for v in vertebrae])
    lo_in = np.array([float(v[2]) for v in vertebrae])
    if not (np.all(np.isfinite(u_in)) and np.all(np.isfinite(lo_in))):
        raise ValueError("cobb_from_endplates: an endplate angle is not a finite number; give degrees for every vertebra")
    res = CobbResult(vertebrae=names, upper_angles=[fold_line(x) for x in u_in],
                     lower_angles=[fold_line(x) for x in lo_in])
    n = len(names)
    if n < 2:
        return res
    e = np.empty(2 * n)
    e[0::2], e[1::2] = u_in, lo_in
    e = _unwrap_lines(e)
    u, lo = e[0::2], e[1::2]
    tps = _turning_points(e, min_swing=min_curve_deg)
    curves: list[CobbCurve] = []
    for p, q in zip(tps[:-1], tps[1:]):
        s = 1.0 if e[p] > e[q] else -1.0
        best: tuple[float, int, int] | None = None
        for a in range(n):
            if not (p - 1 <= 2 * a <= q):
                continue
            for b in range(a, n):
                if not (p <= 2 * b + 1 <= q + 1) or b - a + 1 < min_span:
                    continue
                val = s * (u[a] - lo[b])
                # ties (plateaus of equal tilt): the end vertebrae closest to the apex, as read by hand
                if best is None or val > best[0] + 1e-6 or (val > best[0] - 1e-6 and b - a < best[2] - best[1]):
                    best = (val, a, b)
        if best is None or best[0] < min_curve_deg:
            continue
        _, a, b = best
        angle = line_angle(u[a], lo[b])  # a swing past 90 deg is two lines at 180 minus it
        if angle < min_curve_deg:
            continue
        apex_i = _apex(a, b, u, lo, centers)
        convex = _convexity(a, b, apex_i, centers)
        up_line = lo_line = None
        if corners is not None:
            ca, cb = np.asarray(corners[a], float), np.asarray(corners[b], float)
            up_line = ((float(ca[0, 0]), float(ca[0, 1])), (float(ca[1, 0]), float(ca[1, 1])))
            lo_line = ((float(cb[3, 0]), float(cb[3, 1])), (float(cb[2, 0]), float(cb[2, 1])))
        curves.append(CobbCurve(name="", angle_deg=float(angle), upper_end=names[a], lower_end=names[b],
                                apex=names[apex_i], convex=convex, upper_line=up_line, lower_line=lo_line))
        curves[-1]._apex_index = apex_i  # type: ignore[attr-defined]
    if not curves:
        # no swing reaches min_curve_deg: still report the largest endplate difference so a
        # near-straight spine reads e.g. 3 deg, not 0 (keeps errors against truth honest)
        pairs = [(a, b) for a in range(n) for b in range(a, n) if b - a + 1 >= min(min_span, n)]
        a, b = max(pairs, key=lambda ab: line_angle(u[ab[0]], lo[ab[1]]))
        if line_angle(u[a], lo[b]) > 0:
            apex_i = _apex(a, b, u, lo, centers)
            up_line = lo_line = None
            if corners is not None:
                ca, cb = np.asarray(corners[a], float), np.asarray(corners[b], float)
                up_line = ((float(ca[0, 0]), float(ca[0, 1])), (float(ca[1, 0]), float(ca[1, 1])))
                lo_line = ((float(cb[3, 0]), float(cb[3, 1])), (float(cb[2, 0]), float(cb[2, 1])))
            curves.append(CobbCurve(name="", angle_deg=line_angle(u[a], lo[b]), upper_end=names[a],
                                    lower_end=names[b], apex=names[apex_i],
                                    convex=_convexity(a, b, apex_i, centers), upper_line=up_line, lower_line=lo_line))
            curves[-1]._apex_index = apex_i  # type: ignore[attr-defined]
    curves = sorted(sorted(curves, key=lambda c: -c.angle_deg)[:max_curves], key=lambda c: names.index(c.upper_end))
    for c in curves:
        c.name = curve_name(c.apex, getattr(c, "_apex_index", None), n)
    res.curves = curves
    return res


def _apex(a: int, b: int, u: np.ndarray, lo: np.ndarray, centers: Sequence[Sequence[float]] | None) -> int:
    if b <= a:
        return a
    idx = np.arange(a, b + 1)
    if centers is not None:
        c = np.asarray(centers, float)
        p, q = c[a], c[b]
        d = q - p
        nrm = math.hypot(*d) or 1.0
        dist = np.abs(d[0] * (c[idx, 1] - p[1]) - d[1] * (c[idx, 0] - p[0])) / nrm
        return int(idx[int(np.argmax(dist))])
    mid = (u[a] + lo[b]) / 2
    tilt = (u[idx] + lo[idx]) / 2
    return int(idx[int(np.argmin(np.abs(tilt - mid)))])


def _convexity(a: int, b: int, apex: int, centers: Sequence[Sequence[float]] | None) -> str:
    if centers is None or b <= a:
        return "unknown"
    c = np.asarray(centers, float)
    p, q, m = c[a], c[b], c[apex]
    if abs(q[1] - p[1]) < 1e-9:
        return "unknown"
    x_line = p[0] + (q[0] - p[0]) * (m[1] - p[1]) / (q[1] - p[1])
    if abs(m[0] - x_line) < 1e-6:
        return "unknown"
    return "image-right" if m[0] > x_line else "image-left"


CENTRELINE_DEGREE = 3  # the centreline's polynomial degree: one inflection, so a C or an S curve and no wiggle


@dataclass
class Centreline:
    """The column's centreline (a smooth curve through the body centres) and the Cobb angle its tangents make."""

    angle_deg: float
    degree: int
    n_bodies: int
    points: list[Point] = field(default_factory=list)  # the fitted line, top to bottom, for drawing

    def to_dict(self) -> dict[str, Any]:
        return {"angle_deg": round(self.angle_deg, 2), "degree": self.degree, "n_bodies": self.n_bodies,
                "points": [[round(x, 1), round(y, 1)] for x, y in self.points]}


def _robust_polyfit(t: np.ndarray, x: np.ndarray, degree: int, iterations: int = 8) -> np.ndarray:
    """Polynomial coefficients of x(t) by iteratively reweighted least squares with Tukey's biweight (scale: MAD):
    a body centre far off the others' line (a speck beside the column, a sacral fragment) gets weight 0."""
    w = np.ones(len(t))
    coef = np.polyfit(t, x, degree)
    for _ in range(iterations):
        r = x - np.polyval(coef, t)
        scale = 4.685 * max(1.4826 * float(np.median(np.abs(r))), 1e-9)
        w = np.where(np.abs(r) < scale, (1 - (r / scale) ** 2) ** 2, 0.0)
        if np.count_nonzero(w) <= degree + 1:
            break
        coef = np.polyfit(t, x, degree, w=np.sqrt(w))
    return coef


def centreline_cobb(landmarks: Mapping[str, Sequence[Sequence[float]]], *, degree: int = CENTRELINE_DEGREE,
                    exclude: Sequence[str] = NOT_IN_CURVES, min_curve_deg: float = 5.0, samples: int = 100
                    ) -> Centreline | None:
    """The Cobb angle of the column's centreline: a robust polynomial ``x(y)`` of ``degree`` through the body
    centres, its tangent's tilt along the column read by the same turning-point rule as endplates. None when
    fewer than ``degree + 2`` bodies.

    Why: the endplate rule takes the two most tilted bodies, so one body read crooked (a blob of two bodies, a
    patch on a neighbour's edge) makes a straight column read a curve -- on real full-trunk films of normal
    spines the corner model's endplate reading was 10 deg or more on 92 % of them
    (``docs/scoliosis_call_tuning.json``). Body centres are far steadier than body
    tilts, and a low-degree curve through them cannot follow one odd body, so a straight column reads a few
    degrees. It ignores wedging and rotation of the end vertebrae, so it is no replacement for the endplate
    angle on a scoliotic film; it tells a curve of the column from tilts of single bodies
    (``docs/tune_scoliosis_call.py`` chose the degree on validation films).
    """
    if degree < 1:
        raise ValueError(f"centreline_cobb: degree={degree!r}; use an integer >= 1 (3: C and S curves)")
    items = [(k, c) for k, c in _ordered(landmarks) if k not in set(exclude)]
    if len(items) < degree + 2:
        return None
    cen = np.array([c.mean(axis=0) for _, c in items])
    y0, y1 = float(cen[:, 1].min()), float(cen[:, 1].max())
    span = y1 - y0
    if not span > 0:
        return None
    t = (cen[:, 1] - y0) / span  # scale-free: the fit and its tangent do not depend on the film's size
    coef = _robust_polyfit(t, cen[:, 0] / span, degree)
    ts = np.linspace(0.0, 1.0, max(int(samples), 3))
    tilt = -np.degrees(np.arctan(np.polyval(np.polyder(coef), ts)))  # a line perpendicular to the tangent
    res = cobb_from_endplates([(str(i), float(a), float(a)) for i, a in enumerate(tilt)], min_curve_deg=min_curve_deg)
    pts = [(float(x), float(y)) for x, y in zip(np.polyval(coef, ts) * span, y0 + ts * span)]
    return Centreline(angle_deg=float(res.max_angle), degree=int(degree), n_bodies=len(items), points=pts)


def _ordered(landmarks: Mapping[str, Sequence[Sequence[float]]]) -> list[tuple[str, np.ndarray]]:
    """Vertebrae sorted top to bottom by centre y (names need not be anatomical)."""
    items = [(str(k), np.asarray(v, float).reshape(4, 2)) for k, v in landmarks.items()]
    return sorted(items, key=lambda kv: kv[1][:, 1].mean())


def crooked_bodies(landmarks: Mapping[str, Sequence[Sequence[float]]], max_step_deg: float = MAX_BODY_STEP_DEG) -> list[str]:
    """Names of bodies whose tilt differs from every neighbour's (one at the column's ends, else two) by more than
    ``max_step_deg``: no spine bends that much between two bodies (:data:`MAX_BODY_STEP_DEG`), so such a body's
    corners were misread, and a Cobb curve ending on it would measure the misread, not the spine."""
    return [name for name, steps in neighbour_steps(landmarks) if steps and min(steps) > max_step_deg]


def neighbour_steps(landmarks: Mapping[str, Sequence[Sequence[float]]]) -> list[tuple[str, list[float]]]:
    """Top to bottom, each body's name and how far (deg) its tilt (the mean of its endplates) lies from the body above
    and the body below (one value at the column's ends): what :func:`crooked_bodies` bounds and what
    docs/tune_body_step.py measures on the experts' corners."""
    items = _ordered(landmarks)
    tilts = [_line_mean(*endplate_angles(c)) for _, c in items]
    return [(name, [abs(float(line_diff(tilts[i], tilts[j]))) for j in (i - 1, i + 1) if 0 <= j < len(items)])
            for i, (name, _) in enumerate(items)]


def fuse_tilts(tilts: Sequence[float], centers: Sequence[Sequence[float]], heights: Sequence[float] | None = None, *,
               sigma_body: float = 2.0, sigma_axis: float = 1.0, huber: float = 3.0, gap: float = 1.6,
               body_weights: Sequence[float] | None = None, iterations: int = 10) -> np.ndarray:
    """Body tilts (deg, endplate convention) re-estimated from each body's own tilt and the spine's axis.

    Why: a predicted mask gives each body's orientation to +-2 deg (the model sees the film at half
    resolution), but its centroid to a fraction of a pixel; bodies stack along the spine, their
    endplates about perpendicular to it, so the line from one centre to the next runs along the mean
    of the two bodies' tilts. On the phantom's predicted masks the centre line alone halves the per-body
    error (MAE 1.3 -> 0.8 deg). The line only fixes sums of neighbouring tilts, so the bodies' own tilts
    stay in as a second, weaker observation; they are the one source of real wedging or rotation.

    Solves the weighted least squares ``sum_i w_i (t_i - tilt_i)^2 / sigma_body^2 +
    sum_i (a_i t_i + (1 - a_i) t_{i+1} - s_i)^2 / sigma_axis^2`` where ``s_i`` is the direction of
    ``centers[i] -> centers[i+1]`` and ``a_i`` weighs by body height; a Huber reweighting of both
    terms (``huber`` in units of each sigma) lets a body whose own tilt disagrees with the column (a
    merged body in the mask) follow the axis, and an odd centre step (a fragment) count less. A step longer than ``gap`` times the expected
    pitch (a body missing in between) counts a quarter. ``body_weights`` (0..1) scale each body's
    own-tilt term (e.g. 0 for a body cut out of a merged blob, whose outline is not its own).

    Tilts and centre steps are lines: the tilts are unwrapped along the column and each step's
    direction is taken within 90 deg of its two bodies' tilts before solving (a step between two
    fragments side by side is near horizontal, +-90 alike); the result is folded to (-90, 90].
    """
    t0 = _unwrap_lines(np.asarray(tilts, float))
    n = len(t0)
    c = np.asarray(centers, float).reshape(-1, 2)
    if n < 2:
        return fold_line(t0).reshape(-1)
    if len(c) != n:
        raise ValueError(f"fuse_tilts: {n} tilts but {len(c)} centers")
    h = np.ones(n) if heights is None else np.maximum(np.asarray(heights, float), 1e-6)
    d = np.diff(c, axis=0)
    s = -np.degrees(np.arctan2(d[:, 0], d[:, 1]))  # a centre step straight down is a level (0 deg) body
    pitch = np.hypot(d[:, 0], d[:, 1])
    expected = 1.25 * (h[:-1] + h[1:]) / 2 if heights is not None else np.full(n - 1, np.median(pitch))
    ws = np.where(pitch > gap * expected, 0.25, 1.0) / sigma_axis ** 2
    A = np.zeros((n - 1, n))
    a = h[:-1] / (h[:-1] + h[1:])
    A[np.arange(n - 1), np.arange(n - 1)] = a
    A[np.arange(n - 1), np.arange(1, n)] = 1 - a
    s = A @ t0 + line_diff(s, A @ t0)  # each step as the line nearest its bodies' tilts
    prior = np.ones(n) if body_weights is None else np.clip(np.asarray(body_weights, float), 0.0, 1.0)
    prior = np.maximum(prior, 1e-3)  # keeps the system solvable when every body is down-weighted

    def hub(r: np.ndarray) -> np.ndarray:
        return np.where(r <= huber, 1.0, huber / np.maximum(r, 1e-9))

    # start from the bodies' own tilts, so a wild centre step (a fragment beside the column) is
    # down-weighted from the first iteration instead of dragging the whole chain
    t = t0.copy()
    for _ in range(max(1, iterations)):
        wm = prior * hub(np.abs(t - t0) / sigma_body) / sigma_body ** 2
        wa = ws * hub(np.abs(A @ t - s) / sigma_axis)
        t = np.linalg.solve(np.diag(wm) + A.T @ (wa[:, None] * A), wm * t0 + A.T @ (wa * s))
    return fold_line(t).reshape(-1)


# The top and bottom body of a predicted column are often cut: the clavicles over T1-T2, the pelvis over
# L5. A partial outline gives a wrong tilt, and at the end of the chain only one centre step can pull it
# back (a 6 deg phantom film read 30.5 deg from a half-segmented T2). So an end body under this share of
# its neighbours' size leaves the curve. Chosen on a tuning set (xray-ap seed 21, first 150 films, shipped
# seg_unet_ap masks: MAE 1.67 -> 1.56 deg over 0 / 0.7 / 0.8 / 0.9), then held out: seed 911 (the
# seg_unet_ap card's set) 1.99 -> 1.78, seed 9912 1.42 -> 1.34 deg (spine-models evaluate).
END_BODY_MIN_RATIO = 0.9
MIN_END_KEEP = 4  # short columns keep their ends (too few bodies to spare one)


def _quad_area(c: np.ndarray) -> float:
    """A body's area from its corners TL, TR, BR, BL: top edge times left edge (the bodies are near rectangles)."""
    return float(np.hypot(*(c[1] - c[0])) * np.hypot(*(c[3] - c[0])))


def _size_ratios(corners: Sequence[np.ndarray]) -> np.ndarray:
    """Each body's area over the median area of its neighbours (up to two each side; 1 when alone).

    Why: a predicted mask can hold part of a body (a top T1 cut in half), a speck beside the column, or
    two bodies fused across a lost disc; their outlines give no body's own tilt (a half body not even a
    centre on the axis), and one such body made a straight spine read 20 deg. Neighbouring bodies
    differ in size by a few percent, so half or 1.6 times a neighbour is no single real body.
    """
    area = np.array([_quad_area(c) for c in corners])
    n = len(area)
    out = np.ones(n)
    for i in range(n):
        nb = [area[j] for j in range(max(0, i - 2), min(n, i + 3)) if j != i]
        if len(nb) >= 2:
            out[i] = area[i] / max(float(np.median(nb)), 1e-9)
    return out


def tidy_bodies(landmarks: Mapping[str, Sequence[Sequence[float]]], *, close: float = 0.6,
                fragment: float = 0.45) -> dict[str, np.ndarray]:
    """The bodies less duplicates and fragments, names kept: ``{name: corners}`` top to bottom.

    Why: a second stage that reads each body again from a patch (the corner network) can move two patches of
    one body, or of a blob cut in two (:func:`_split_long`), onto the same vertebra, and keeps specks beside
    the column; both add bodies no film has (a column then counts 19-21 bodies and is not measured) and
    tilts no body has. Two bodies whose centres are closer than ``close`` times the column's median centre
    step are one: the larger stays. A body under ``fragment`` times the median area of its neighbours (two
    each side) is a fragment. One is removed at a time, the closest pair first, until none is left; the rest
    are named again by :func:`level_names`."""
    items = _ordered(landmarks)
    while len(items) >= 3:
        cen = np.array([c.mean(axis=0) for _, c in items])
        d = np.hypot(*np.diff(cen, axis=0).T)
        i = int(np.argmin(d))
        if d[i] < close * float(np.median(d)):
            items.pop(i if _quad_area(items[i][1]) < _quad_area(items[i + 1][1]) else i + 1)
            continue
        r = _size_ratios([c for _, c in items])
        j = int(np.argmin(r))
        if r[j] >= fragment:
            break
        items.pop(j)
    return dict(zip(level_names(len(items)), (c for _, c in items)))


def cobb_angle(landmarks: Mapping[str, Sequence[Sequence[float]]], *, min_curve_deg: float = 5.0,
               max_curves: int = 3, exclude: Sequence[str] = NOT_IN_CURVES,
               pixel_spacing_mm: tuple[float, float] | None = None, angles: str = "endplates",
               body_weights: Mapping[str, float] | None = None, fusion: Mapping[str, float] | None = None,
               min_span: int = 1) -> CobbResult:
    """Cobb curves from ``{vertebra: 4 corners (TL, TR, BR, BL)}`` (e.g. landmarks.csv or a mask).

    The sacrum (``S1``) and ``C7`` are left out by default: neither is an end vertebra of the curves measured.
    ``angles="endplates"`` (default) uses each endplate's own slope, the clinical definition, right for
    landmarks placed by hand or known exactly. ``angles="body_tilt"`` gives both endplates of a body
    its mean tilt: corners read off a predicted mask carry a degree or two of noise per endplate, and
    the Cobb search takes the most tilted pair, so noise alone reads a straight spine as 5-7 deg; the
    mean halves that noise (on the phantom's unseen-seed set: MAE 3.8 -> 2.5 deg) at the price of
    ignoring the end vertebrae's own wedging. ``angles="fused"`` goes further for masks: body tilts
    re-estimated together with the line through the body centres (:func:`fuse_tilts`), bodies under
    0.55 of their neighbours' size dropped (the top and bottom body under ``END_BODY_MIN_RATIO``) and over
    1.6 times (fused) following the axis. Phantom AP
    sets, moment corners: tuning set (seed 123) predicted masks MAE 4.0 -> 1.5 deg, held-out test
    (seed 911) 3.0 -> 2.0 deg; ground-truth masks 1.2 -> 0.5. ``body_weights`` ({name: 0..1}) only
    matter for "fused". It assumes endplates about perpendicular to the column; rotated bodies on a
    straight column read smaller than their own tilts say. ``fusion``: keywords for :func:`fuse_tilts`
    (``sigma_body``, ``sigma_axis``, ...), for tuning the read-out on validation films. ``min_span``: the
    fewest vertebrae a curve spans, end vertebrae included (1: any pair; 3: two neighbouring bodies never
    make a curve on their own -- one mis-read body beside a good one then reads as no curve).
    """
    if angles not in ("endplates", "body_tilt", "fused"):
        raise ValueError(f"cobb_angle: angles={angles!r}; use 'endplates', 'body_tilt' or 'fused'")
    items = [(k, c) for k, c in _ordered(landmarks) if k not in set(exclude)]
    verts = [(k, *endplate_angles(c)) for k, c in items]
    centers = [c.mean(axis=0) for _, c in items]
    if angles == "body_tilt":
        verts = [(k, _line_mean(u, lo), _line_mean(u, lo)) for k, u, lo in verts]
    elif angles == "fused" and len(items) >= 2:
        ratio = _size_ratios([c for _, c in items])
        keep = ratio >= 0.55  # fragments: out of the curve (their centre is off the axis too)
        if len(keep) > MIN_END_KEEP:  # the column's ends: a partly segmented body there has one neighbour to correct it
            keep[[0, -1]] &= ratio[[0, -1]] >= END_BODY_MIN_RATIO
        items = [it for it, k in zip(items, keep) if k]
        verts = [v for v, k in zip(verts, keep) if k]
        centers = [c for c, k in zip(centers, keep) if k]
        heights = [float(np.hypot(*((c[3] + c[2]) / 2 - (c[0] + c[1]) / 2))) for _, c in items]
        given = body_weights or {}
        # fused bodies keep their centre on the axis but not their own tilt
        bw = [float(given.get(k, 1.0)) * (0.1 if r > 1.6 else 1.0) for (k, _), r in zip(items, ratio[keep])]
        t = fuse_tilts([_line_mean(u, lo) for _, u, lo in verts], centers, heights, body_weights=bw, **(fusion or {}))
        verts = [(k, float(x), float(x)) for (k, _, _), x in zip(verts, t)]
    res = cobb_from_endplates(verts, min_curve_deg=min_curve_deg, max_curves=max_curves,
                              centers=centers, corners=[c for _, c in items], min_span=min_span)
    res.pixel_spacing_mm = pixel_spacing_mm
    return res


def _fit_edge(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float] | None:
    """Least-squares line y = m x + c through the central part of an edge profile."""
    if len(xs) < 3:
        return None
    lo, hi = np.quantile(xs, [0.2, 0.8])
    keep = (xs >= lo) & (xs <= hi)
    if keep.sum() < 2:
        keep = np.ones_like(xs, bool)
    m, c = np.polyfit(xs[keep], ys[keep], 1)
    return float(m), float(c)


def _count_bodies(m: np.ndarray, min_area_frac: float) -> tuple[int, np.ndarray]:
    import cv2

    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return 0, lab
    areas = stats[1:, cv2.CC_STAT_AREA]
    return int((areas >= max(4.0, min_area_frac * float(np.median(areas)))).sum()), lab


def _split_touching(m: np.ndarray, min_area_frac: float, max_erosions: int = 4) -> np.ndarray:
    """Component labels, with bodies a predicted mask bridged across a thin disc split apart.

    Erode 1..``max_erosions`` times and keep the erosion that yields the most bodies; every pixel
    of the original mask then takes the label of its nearest eroded body (so shapes keep their
    size). With nothing bridged this is plain connected-component labelling.
    """
    import cv2
    from scipy import ndimage

    best_n, best_lab = _count_bodies(m, min_area_frac)
    best_k = 0
    kernel = np.ones((3, 3), np.uint8)
    e = m
    for k in range(1, max_erosions + 1):
        e = cv2.erode(e, kernel)
        if not e.any():
            break
        n, lab = _count_bodies(e, min_area_frac)
        if n > best_n:
            best_n, best_lab, best_k = n, lab, k
    if best_k == 0:
        return best_lab
    _, idx = ndimage.distance_transform_edt(best_lab == 0, return_indices=True)
    full = best_lab[idx[0], idx[1]]
    full[m == 0] = 0
    return full


# A component this many times the median body's area holds several bodies (a lost disc, or a severe curve's
# apex where bodies overlap at the model's resolution); see _split_long.
LONG_BODY_RATIO = 1.6
PITCH_PER_WIDTH = 0.8  # centre-to-centre distance over body width: median 0.80 (IQR 0.68-0.90) on aasce-ap's expert corners


def _centreline(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Points (x, y) along a component's centre line: the mean x of each row, smoothed over a few rows.

    Why rows: on an AP film the column runs top to bottom even through a 90 deg curve (its bodies tilt, the
    column's direction stays within ~60 deg of vertical), so each row crosses it once."""
    y0 = int(ys.min())
    rows = ys - y0
    n = int(rows.max()) + 1
    cnt = np.bincount(rows, minlength=n).astype(float)
    sx = np.bincount(rows, weights=xs, minlength=n)
    has = cnt > 0
    yy = np.flatnonzero(has).astype(float)
    xx = sx[has] / cnt[has]
    k = max(1, int(round(len(xx) / 12)))
    if len(xx) > 2 * k:
        xx = np.convolve(np.pad(xx, k, mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), mode="valid")
    return np.stack([xx, yy + y0], 1)


def _split_long(lab: np.ndarray, min_area_frac: float, ratio: float = LONG_BODY_RATIO) -> np.ndarray:
    """Component labels with each component that holds several bodies cut into bodies along its centre line.

    Why: the U-Net sees a film at 512 x 256; where a severe curve's bodies overlap, or a thin real disc is lost,
    it draws one blob over several bodies, which erosion cannot split (:func:`_split_touching`). Such a blob
    gives the measurement one body where there are several, with a tilt no body has (held-out real films: the
    apex of 70-94 deg curves read 40-60 deg; whole thoracic columns found as one blob, "cannot measure").
    A component holds several bodies when its area is at least ``ratio`` times the median area of its
    neighbours in the column (two each side; lumbar bodies are twice a thoracic body's area, their neighbours
    are not; the first and last components are left whole); with fewer than four components there are no
    neighbours, and its length along its centre line decides. It is cut into ``k = round(length / pitch)`` pieces (``k`` bodies span ``(k - 1)`` pitches and one
    body's height, less than a pitch), ``pitch`` the median centre step between the single bodies next to each
    other, else ``PITCH_PER_WIDTH`` times the blob's width. The pieces are of equal length along the line, each
    pixel going to the piece of its nearest centre-line point, so each piece's principal axes follow the local
    column (a stage that reads each body again, e.g. the corner network, then refines it)."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    n = int(lab.max()) + 1
    if n <= 1:
        return lab
    areas = np.bincount(lab.ravel(), minlength=n)[1:].astype(float)
    med = float(np.median(areas[areas > 0]))
    comps = [i for i in range(n - 1) if areas[i] >= max(4.0, min_area_frac * med)]
    if not comps:
        return lab
    ys_all, xs_all = np.nonzero(lab)
    w_all = np.maximum(areas, 1)
    cy = np.bincount(lab[ys_all, xs_all], weights=ys_all, minlength=n)[1:] / w_all
    cx = np.bincount(lab[ys_all, xs_all], weights=xs_all, minlength=n)[1:] / w_all
    comps.sort(key=lambda i: cy[i])
    many = len(comps) >= 4
    long_ = []
    for pos, i in enumerate(comps):
        nb = [areas[comps[q]] for q in range(max(0, pos - 2), min(len(comps), pos + 3)) if q != pos]
        # the column's first and last blob stay whole: one-sided neighbours, and the clavicles or the pelvis
        # over them make them large (a straight spine read 22 deg from a cut top blob on a validation film)
        end = pos in (0, len(comps) - 1)
        long_.append((not end and areas[i] >= ratio * float(np.median(nb))) if many else True)
    steps = [math.hypot(cx[a] - cx[b], cy[a] - cy[b]) for (a, la), (b, lb) in
             zip(zip(comps, long_), list(zip(comps, long_))[1:]) if not la and not lb]
    pitch = float(np.median(steps)) if len(steps) >= 2 else None
    out = lab.copy()
    nxt = n
    boxes = ndimage.find_objects(lab)
    for i, is_long in zip(comps, long_):
        if not is_long:
            continue
        sl = boxes[i]
        ys, xs = np.nonzero(lab[sl] == i + 1)
        ys, xs = ys + sl[0].start, xs + sl[1].start
        line = _centreline(xs.astype(float), ys)
        if len(line) < 4:
            continue
        step = np.diff(line, axis=0)
        seg = np.hypot(*step.T)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        length = float(s[-1])
        if length <= 0:
            continue
        p = pitch
        if p is None:
            # the median row's run across the column, foreshortened by the column's slope, is a body's width
            runs = np.bincount(ys - int(ys.min()))
            cos = float(np.median(np.abs(step[:, 1]) / np.maximum(seg, 1e-9)))
            p = PITCH_PER_WIDTH * max(float(np.median(runs[runs > 0])) * cos, 1.0)
        k = int(round(length / p))
        if k < 2:
            continue
        _, j = cKDTree(line).query(np.stack([xs, ys], 1).astype(float))
        piece = np.minimum((s[j] / length * k).astype(int), k - 1)
        for q in range(1, k):
            out[ys[piece == q], xs[piece == q]] = nxt
            nxt += 1
    return out

def _moment_box(xs: np.ndarray, ys: np.ndarray) -> list[tuple[float, float]]:
    """Corners TL, TR, BR, BL of the rectangle along a pixel set's principal axes (the near-level one
    taken as the endplate direction), centred on their centroid with their extent along each axis."""
    mx, my = float(xs.mean()), float(ys.mean())
    dx, dy = xs - mx, ys - my
    cxx, cyy, cxy = float((dx * dx).mean()), float((dy * dy).mean()), float((dx * dy).mean())
    a = 0.5 * math.atan2(2 * cxy, cxx - cyy)  # major axis; fold to the axis within 45 deg of level
    while a > math.pi / 4:
        a -= math.pi / 2
    while a <= -math.pi / 4:
        a += math.pi / 2
    ex = np.array([math.cos(a), math.sin(a)])  # along the endplates, left -> right
    ey = np.array([-math.sin(a), math.cos(a)])  # along the spine, downwards
    u, v = dx * ex[0] + dy * ex[1], dx * ey[0] + dy * ey[1]
    c = np.array([mx, my])
    # centred on the centroid (to a fraction of a pixel, the centre line needs it; the extreme pixels
    # are much noisier), sized by the pixels' extent plus half a pixel each side
    hw, hh = (float(u.max() - u.min()) + 1) / 2, (float(v.max() - v.min()) + 1) / 2
    u0, u1, v0, v1 = -hw, hw, -hh, hh
    pts = [c + ex * u0 + ey * v0, c + ex * u1 + ey * v0, c + ex * u1 + ey * v1, c + ex * u0 + ey * v1]
    return [(float(p[0]), float(p[1])) for p in pts]


def vertebrae_from_mask(mask: np.ndarray, *, names: Sequence[str] | None = None, min_area_frac: float = 0.15,
                        levels: Sequence[str] = LEVELS, split_touching: bool = True,
                        max_side: int | None = 1024, orientation: str = "edges",
                        split_long: bool = False) -> dict[str, list[tuple[float, float]]]:
    """``{name: 4 corners TL, TR, BR, BL}`` for each vertebral body in a binary mask, top to bottom.

    Bodies a predicted mask joins across a thin disc are split first (``split_touching``: erosion
    markers, then every pixel goes to its nearest marker). Each body (components smaller than
    ``min_area_frac`` of the median body are dropped as specks) gets a minimum-area rectangle for its extent and orientation; its upper and lower
    endplates are then refitted as lines through the central 60 % of the component's top and
    bottom boundary, so wedged bodies keep distinct endplate slopes. Names: ``names`` when given,
    else ``levels`` counted from the bottom up (the lowest body is L5) when the count fits, else
    ``V1..Vn`` (with one body more than ``levels``, the lowest is taken as the sacrum ``S1``).
    Masks larger than ``max_side`` are measured downscaled (corners are returned in full-size pixels).
    ``split_long``: components holding several bodies are also cut along their centre line (:func:`_split_long`;
    off by default: the shipped U-Net cards were measured without it, a card turns it on).
    ``orientation="moments"`` instead gives each body a rectangle along the principal axes of its
    pixels (second moments, folded to within 45 deg of level): both endplates get the body's mean tilt,
    estimated from every pixel rather than two boundary rows, about half the per-body error of the edge
    fit on the phantom's ground-truth masks (MAE 0.47 -> 0.40 deg) -- the choice for Cobb, where only
    body tilts are used; "edges" keeps wedging, which the lateral slip needs.
    """
    import cv2

    if orientation not in ("edges", "moments"):
        raise ValueError(f"vertebrae_from_mask: orientation={orientation!r}; use 'edges' or 'moments'")

    m = (np.asarray(mask) > 0).astype(np.uint8)
    if m.ndim != 2:
        raise ValueError(f"vertebrae_from_mask: expected a 2-D mask, got shape {m.shape}")
    if max_side and max(m.shape) > max_side:
        # big films: measure on a downscaled mask (slopes do not change) and scale the corners back
        f = max(m.shape) / max_side
        small = cv2.resize(m, (round(m.shape[1] / f), round(m.shape[0] / f)), interpolation=cv2.INTER_AREA)
        sx, sy = m.shape[1] / small.shape[1], m.shape[0] / small.shape[0]
        lm = vertebrae_from_mask(small, names=names, min_area_frac=min_area_frac, levels=levels,
                                 split_touching=split_touching, max_side=None, orientation=orientation,
                                 split_long=split_long)
        return {k: [((x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5) for x, y in v] for k, v in lm.items()}
    lab = _split_touching(m, min_area_frac) if split_touching else cv2.connectedComponents(m, connectivity=8)[1]
    if split_long:
        lab = _split_long(lab, min_area_frac)
    n = int(lab.max()) + 1
    if n <= 1:
        return {}
    areas = np.bincount(lab.ravel(), minlength=n)[1:]
    ys_all, xs_all = np.nonzero(lab)
    cy = np.bincount(lab[ys_all, xs_all], weights=ys_all, minlength=n)[1:] / np.maximum(areas, 1)
    med = float(np.median(areas[areas > 0]))
    comps = [i + 1 for i in range(n - 1) if areas[i] >= max(4.0, min_area_frac * med)]
    comps.sort(key=lambda i: cy[i - 1])
    out: list[list[tuple[float, float]]] = []
    from scipy import ndimage

    boxes = ndimage.find_objects(lab)
    for i in comps:
        sl = boxes[i - 1]
        ys, xs = np.nonzero(lab[sl] == i)
        ys, xs = ys + sl[0].start, xs + sl[1].start
        pts = np.stack([xs, ys], 1).astype(np.float32)
        if orientation == "moments":
            out.append(_moment_box(xs.astype(float), ys.astype(float)))
            continue
        rect = cv2.minAreaRect(pts)
        box = cv2.boxPoints(rect)
        # order the rectangle's corners as seen: the two upper ones (by y) then left/right by x
        order = np.argsort(box[:, 1])
        top, bot = box[order[:2]], box[order[2:]]
        tl, tr = sorted(top.tolist(), key=lambda p: p[0])
        bl, br = sorted(bot.tolist(), key=lambda p: p[0])
        # refit the endplates from the boundary profile (wedge-aware)
        x0 = int(xs.min())
        top = np.full(int(xs.max()) - x0 + 1, np.inf)
        bot = np.full_like(top, -np.inf)
        np.minimum.at(top, xs - x0, ys)
        np.maximum.at(bot, xs - x0, ys)
        has = np.isfinite(top)
        ux = np.flatnonzero(has) + x0
        top_y, bot_y = top[has], bot[has]
        ft, fb = _fit_edge(ux.astype(float), top_y), _fit_edge(ux.astype(float), bot_y)
        if ft is not None and fb is not None:
            xl, xr = float(min(tl[0], bl[0])), float(max(tr[0], br[0]))
            xl_t, xr_t = float(tl[0]), float(tr[0])
            xl_b, xr_b = float(bl[0]), float(br[0])
            if xr_t - xl_t < 2 or xr_b - xl_b < 2:
                xl_t = xl_b = xl
                xr_t = xr_b = xr
            tl = [xl_t, ft[0] * xl_t + ft[1]]
            tr = [xr_t, ft[0] * xr_t + ft[1]]
            bl = [xl_b, fb[0] * xl_b + fb[1]]
            br = [xr_b, fb[0] * xr_b + fb[1]]
        out.append([tuple(map(float, tl)), tuple(map(float, tr)), tuple(map(float, br)), tuple(map(float, bl))])
    k = len(out)
    if names is not None:
        if len(names) != k:
            raise ValueError(f"vertebrae_from_mask: {k} bodies found but {len(names)} names given")
        labels = list(names)
    else:
        labels = level_names(k, levels)
    return dict(zip(labels, out))


def level_names(k: int, levels: Sequence[str] = LEVELS) -> list[str]:
    """Names for ``k`` bodies found top to bottom: ``levels`` counted from the bottom up (the lowest is L5) when
    the count fits, the sacrum ``S1`` as one body more, else ``V1..Vk`` (cannot be named safely)."""
    if k <= len(levels):
        return list(levels[len(levels) - k:])
    if k == len(levels) + 1:  # the whole column plus the sacrum, the usual extra body on a spine film
        return list(levels) + ["S1"]
    return [f"V{i + 1}" for i in range(k)]  # Cobb names curves by position


def decode_levels(log_probs: np.ndarray, *, skip_log_prob: float = -3.0) -> list[int]:
    """The most likely level index per body, bodies given top to bottom: ``log_probs`` (n, K) from a level reader
    over K ordered levels (e.g. :data:`COLUMN_LEVELS`). Why a decode and not each body's own best level: single
    mid-thoracic bodies look alike, while the column's ends (first rib, last rib, pelvis) do not; levels must rise
    strictly down the column, so the distinctive bodies name the others. Each level skipped between two bodies (a
    body the detector missed) costs ``skip_log_prob``. Viterbi over n x K states."""
    lp = np.asarray(log_probs, float)
    if lp.ndim != 2 or not lp.size:
        raise ValueError(f"decode_levels: log_probs of shape {lp.shape}; pass (bodies, levels) with at least one body")
    n, k = lp.shape
    if n > k:
        raise ValueError(f"decode_levels: {n} bodies cannot take {k} distinct levels; drop duplicate bodies first")
    if skip_log_prob > 0:
        raise ValueError(f"decode_levels: skip_log_prob={skip_log_prob}; a skipped level must cost (use a value <= 0)")
    score = lp[0].copy()
    back = np.zeros((n, k), int)
    idx = np.arange(k)
    for i in range(1, n):
        # from level j at body i-1 to level m > j at body i: (m - j - 1) levels skipped
        cand = score[None, :] + skip_log_prob * (idx[:, None] - idx[None, :] - 1)
        cand[idx[:, None] <= idx[None, :]] = -np.inf
        back[i] = np.argmax(cand, axis=1)
        score = cand[idx, back[i]] + lp[i]
    out = [int(np.argmax(score))]
    for i in range(n - 1, 0, -1):
        out.append(int(back[i, out[-1]]))
    return out[::-1]
