"""Synthetic AP and lateral spine radiographs with exact ground truth.

Why: the studies' films are private and the one real set at hand has two classes and ~190 films.
Every model, metric and page needs films whose truth is known exactly: vertebral corners, Cobb
angle, slip, masks, boxes, implants.

How: one *patient* (seeded by ``(seed, index)``, so ``xray-ap`` and ``xray-lat`` runs with the same
seed and n give the same patients) is a chain of 18 vertebrae T1..L5 + S1. Each view bends the chain
by a tilt profile along the spine (coronal: scoliotic curves; sagittal: kyphosis, lordosis and the
sacral slope), places the bodies along the tangent, then renders an attenuation map (soft tissue,
lungs, trabecular bone with cortical rims, pedicles, spinous processes, ribs, clavicles, iliac wings,
sacrum, metal), converts it to a radiograph (exposure, gamma, heel effect, blur, photon noise,
collimation, burned-in text and a ruler) and quantises it to 16 bits.

Truth is *measured* from what was drawn: the Cobb angle comes from the endplate corners written to
``landmarks.csv`` (the largest angle between an upper endplate and a lower endplate below it), and
the slip from the corners of the slipped vertebra and the one below (Meyerding). Class labels follow
from those measurements: AP ``scoliosis`` when Cobb >= 10 deg; lateral ``spondylolisthesis`` when the
slip grade is >= I. Lateral films show sagittal findings only (a scoliotic patient's lateral film is
``normal`` unless it slips): that is how the two views are read clinically. Lateral films face left
(anterior = image left).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from spine_models.data.phantom import render as R
from spine_models.measure.slip import meyerding_grade  # one definition for the truth and the measurement

__all__ = [
    "VERTEBRAE", "AP_STRUCTURES", "LAT_STRUCTURES", "BOX_CLASSES", "DIFFICULTIES", "Patient", "Film",
    "make_patient", "render_film", "cobb_from_corners", "slip_from_corners", "meyerding_grade",
]

VERTEBRAE = [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"]
AP_STRUCTURES = ["vertebra", "spinous_process", "pedicle"]
LAT_STRUCTURES = ["vertebra", "spinous_process", "disc_height", "anterior_line", "posterior_line"]
BOX_CLASSES = ["lumbar_implant", "scoliosis", "vertebra"]  # YOLO ids 0, 1, 2; COCO ids 1, 2, 3
DIFFICULTIES = ("easy", "standard", "hard")

# body height / width (coronal) / depth (sagittal), mm, T1..L5 then S1; disc heights below each body
_H = np.array([14, 15, 16, 17, 18, 19, 20, 20.5, 21, 22, 23, 24, 25, 26, 27, 27.5, 27, 28], np.float32)
_W = np.array([28, 29, 30, 31, 32, 33, 34, 35, 36, 38, 40, 42, 44, 46, 48, 50, 52, 54], np.float32)
_D = np.array([16, 18, 20, 22, 24, 25, 26, 27, 28, 29, 30, 31, 33, 34, 35, 35, 34, 36], np.float32)
_DISC = np.array([4, 4, 4.5, 4.5, 4.5, 5, 5, 5, 5.5, 5.5, 6, 7, 8.5, 9.5, 10, 11, 11], np.float32)

_NOISE = {"easy": 0.006, "standard": 0.014, "hard": 0.028}
_CONTRAST = {"easy": (0.9, 1.1), "standard": (0.7, 1.2), "hard": (0.5, 1.3)}
_BORDERLINE = {"easy": 0.0, "standard": 0.2, "hard": 0.45}  # share of films with Cobb/slip near the cut-off


@dataclass
class Patient:
    """View-independent anatomy and findings of one phantom patient."""

    patient_id: str
    size: np.ndarray  # per-vertebra scale jitter (18,)
    scoliosis_knots: list[tuple[float, float]]  # (vertebra index, tilt deg) of the coronal profile
    curve_type: str
    sagittal_knots: list[tuple[float, float]]
    slip_level: int | None  # index of the slipping vertebra (15 = L4, 16 = L5) or None
    slip_target: float  # percent
    implant: bool
    implant_levels: tuple[int, int]  # first, last instrumented vertebra index
    cage: bool
    seed_key: tuple[int, int]


@dataclass
class Film:
    """A rendered film and all its truth (pixel coordinates of the film)."""

    image: np.ndarray  # uint16 HxW
    masks: dict[str, np.ndarray]  # structure -> uint8 0/255
    corners: np.ndarray  # (18, 4, 2) TL, TR, BR, BL as seen on the image
    boxes: list[tuple[str, float, float, float, float]]  # (class, x1, y1, x2, y2)
    labels: dict[str, Any] = field(default_factory=dict)


def _angle_deg(p: np.ndarray, q: np.ndarray) -> float:
    d = q - p
    return math.degrees(math.atan2(float(d[1]), float(d[0])))


def cobb_from_corners(corners: np.ndarray, names: list[str] = VERTEBRAE[:17]) -> dict[str, Any]:
    """Largest angle between an upper endplate and a lower endplate at or below it (degrees).

    ``corners`` (N, 4, 2) TL, TR, BR, BL. Returns the angle and the end vertebrae.
    """
    up = np.array([_angle_deg(c[0], c[1]) for c in corners])
    lo = np.array([_angle_deg(c[3], c[2]) for c in corners])
    best, bi, bj = 0.0, 0, 0
    for i in range(len(corners)):
        d = np.abs(up[i] - lo[i:])
        j = int(np.argmax(d))
        if d[j] > best:
            best, bi, bj = float(d[j]), i, i + j
    return {"cobb_deg": best, "upper_end": names[bi], "lower_end": names[bj]}


def slip_from_corners(upper: np.ndarray, lower: np.ndarray) -> float:
    """Meyerding slip %: how far the upper body's posterior-inferior corner sits anterior to the lower
    body's posterior-superior corner, along the lower superior endplate, over that endplate's length.
    Films face left, so posterior corners are TR/BR and anterior is -x along the endplate."""
    a, p = lower[0], lower[1]  # anterior-superior (TL), posterior-superior (TR) of the lower body
    e = (a - p) / (np.linalg.norm(a - p) + 1e-9)  # unit vector pointing anterior
    return float(np.dot(upper[2] - p, e) / (np.linalg.norm(a - p) + 1e-9) * 100.0)


# ----------------------------------------------------------------------------------------------
# patient
def make_patient(seed: int, index: int, difficulty: str = "standard", implant_fraction: float = 0.25) -> Patient:
    """Draw one patient; the same (seed, index) gives the same patient in every view."""
    rng = np.random.default_rng([int(seed), int(index), 11])
    border = rng.random() < _BORDERLINE[difficulty]
    scoliotic = rng.random() < 0.5
    if scoliotic:
        cobb = rng.uniform(8.0, 16.0) if border else rng.uniform(16.0 if difficulty != "easy" else 20.0, 60.0)
    else:
        cobb = rng.uniform(5.0, 10.0) if border else rng.uniform(0.0, 4.0)
    kind = rng.choice(["thoracic", "thoracolumbar", "lumbar", "double"], p=[0.35, 0.25, 0.15, 0.25])
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if kind == "double" and cobb >= 6:
        e0, e1, e2 = int(rng.integers(2, 5)), int(rng.integers(8, 11)), int(rng.integers(14, 17))
        c2 = cobb * rng.uniform(0.6, 1.0)
        t1 = cobb * rng.uniform(0.4, 0.6)
        knots = [(e0, sign * (cobb - t1)), (e1, -sign * t1), (e2, sign * (c2 - t1))]
    else:
        lo, hi = {"thoracic": ((2, 5), (9, 12)), "thoracolumbar": ((6, 9), (13, 15)),
                  "lumbar": ((10, 12), (15, 17)), "double": ((3, 6), (11, 14))}[str(kind)]
        e0, e1 = int(rng.integers(*lo)), int(rng.integers(*hi))
        knots = [(e0, sign * cobb / 2), (e1, -sign * cobb / 2)]
        kind = "single" if kind == "double" else kind
    sag = [(0, rng.uniform(10, 20)), (6, rng.uniform(-3, 3)), (11, -rng.uniform(8, 16)), (14, rng.uniform(-4, 2)),
           (16, rng.uniform(14, 24)), (17, rng.uniform(32, 44))]
    slipping = rng.random() < 0.5
    slip_level = (16 if rng.random() < 0.8 else 15) if slipping else None
    if slipping:
        slip = rng.uniform(6.0, 30.0) if border else float(rng.choice([rng.uniform(12, 25), rng.uniform(25, 50),
                                                                      rng.uniform(50, 75), rng.uniform(75, 92)],
                                                                     p=[0.45, 0.3, 0.15, 0.1]))
    else:
        slip = rng.uniform(0.0, 3.0)
    implant = rng.random() < implant_fraction
    first = int(rng.integers(12, 16))
    last = int(min(16, first + rng.integers(1, 4)))
    return Patient(
        patient_id=f"P{seed}-{index:05d}", size=rng.uniform(0.92, 1.08) * rng.uniform(0.97, 1.03, 18).astype(np.float32),
        scoliosis_knots=[(float(a), float(b)) for a, b in knots], curve_type=str(kind),
        sagittal_knots=[(float(a), float(b)) for a, b in sag], slip_level=slip_level, slip_target=float(slip),
        implant=bool(implant), implant_levels=(first, last), cage=bool(rng.random() < 0.5), seed_key=(int(seed), int(index)),
    )


def _tilt_profile(knots: list[tuple[float, float]], n: int = 18, taper: float = 2.5) -> np.ndarray:
    """Tilt (deg) per vertebra: cosine between knots, decaying to 0 beyond the outer knots."""
    s = np.arange(n, dtype=np.float64)
    out = np.zeros(n)
    xs, ys = zip(*sorted(knots))
    for i, v in enumerate(s):
        if v <= xs[0]:
            out[i] = ys[0] * math.exp(-((v - xs[0]) / taper) ** 2)
        elif v >= xs[-1]:
            out[i] = ys[-1] * math.exp(-((v - xs[-1]) / taper) ** 2)
        else:
            k = int(np.searchsorted(xs, v) - 1)
            t = (v - xs[k]) / (xs[k + 1] - xs[k])
            w = (1 - math.cos(math.pi * t)) / 2
            out[i] = ys[k] * (1 - w) + ys[k + 1] * w
    return out


def _sagittal_profile(knots: list[tuple[float, float]]) -> np.ndarray:
    xs, ys = zip(*knots)
    from scipy.interpolate import PchipInterpolator

    return PchipInterpolator(xs, ys)(np.arange(18, dtype=np.float64))


def _chain(tilt_deg: np.ndarray, heights: np.ndarray, widths: np.ndarray, discs: np.ndarray,
           wedge_deg: np.ndarray) -> np.ndarray:
    """Corners (18, 4, 2) in mm of bodies placed along the tangent of the tilt profile, from T1 down."""
    corners = np.zeros((18, 4, 2), np.float64)
    center = np.zeros(2)
    for i in range(18):
        th = math.radians(tilt_deg[i])
        t = np.array([math.sin(th), math.cos(th)])  # spine axis, pointing down the image
        if i > 0:
            th_prev = math.radians(tilt_deg[i - 1])
            tp = np.array([math.sin(th_prev), math.cos(th_prev)])
            center = center + tp * (heights[i - 1] / 2 + discs[i - 1] / 2) + t * (heights[i] / 2 + discs[i - 1] / 2)
        half_w = widths[i] / 2
        wu, wl = math.radians(tilt_deg[i] + wedge_deg[i] / 2), math.radians(tilt_deg[i] - wedge_deg[i] / 2)
        eu, el = np.array([math.cos(wu), -math.sin(wu)]), np.array([math.cos(wl), -math.sin(wl)])
        top, bot = center - t * heights[i] / 2, center + t * heights[i] / 2
        corners[i] = [top - eu * half_w, top + eu * half_w, bot + el * half_w, bot - el * half_w]
    return corners


# ----------------------------------------------------------------------------------------------
# rendering helpers (pixels of the film; the layers live in render.py)
def _shrink(c: np.ndarray, f: float) -> np.ndarray:
    m = c.mean(axis=0)
    return m + (c - m) * f


def render_film(p: Patient, view: str, *, height: int = 1024, width: int = 512, difficulty: str = "standard") -> Film:
    """Render the AP (``"ap"``) or lateral (``"lat"``) film of patient ``p``."""
    if view not in ("ap", "lat"):
        raise ValueError(f"view must be 'ap' or 'lat', not {view!r}")
    rng = np.random.default_rng([*p.seed_key, 1 if view == "ap" else 2, 23])
    H, W = height, width
    ap = view == "ap"
    heights = _H * p.size
    widths = (_W if ap else _D) * p.size
    discs = _DISC * p.size[:17]
    if ap:
        tilt = _tilt_profile(p.scoliosis_knots) + rng.normal(0, 0.4, 18)
        curv = np.gradient(tilt)
        wedge = np.clip(-curv * 0.35, -6, 6) + rng.normal(0, 0.3, 18)
    else:
        tilt = _sagittal_profile(p.sagittal_knots) + rng.normal(0, 0.5, 18)
        wedge = np.gradient(tilt) * 0.3 + rng.normal(0, 0.3, 18)
    wedge[17] = 0.0
    mm = _chain(tilt, heights, widths, discs, wedge)
    if not ap and p.slip_level is not None:  # slide the slipping body and everything above it anteriorly
        lower = mm[p.slip_level + 1]
        e = (lower[0] - lower[1]) / np.linalg.norm(lower[0] - lower[1])
        mm[: p.slip_level + 1] += e * (p.slip_target / 100.0) * np.linalg.norm(lower[0] - lower[1])
    # scale and place on the film: the chain T1-top .. S1-bottom fills 72-88 % of the height
    lo, hi = mm.reshape(-1, 2).min(0), mm.reshape(-1, 2).max(0)
    span = hi[1] - lo[1]
    scale = rng.uniform(0.72, 0.86) * H / (span + 90)  # px per mm, room for the sacrum/pelvis
    spacing = 1.0 / scale
    cx = W * rng.uniform(0.45, 0.55) if ap else W * rng.uniform(0.50, 0.62)
    top = rng.uniform(0.03, 0.10) * H
    mid_x = (lo[0] + hi[0]) / 2
    corners = (mm - np.array([mid_x, lo[1]])) * scale + np.array([cx, top])
    # ------------------------------------------------------------------ attenuation map (line integrals)
    centers = corners.mean(axis=1)
    yrow = np.arange(H, dtype=np.float32)
    spine_x = np.interp(yrow, centers[:, 1], centers[:, 0]).astype(np.float32)
    spine_x = cv2.GaussianBlur(spine_x.reshape(-1, 1), (1, 0), sigmaX=0.1, sigmaY=0.06 * H).ravel()  # the body does not step with a slip
    sz = float(np.mean(p.size))
    yT = centers[:, 1]
    if ap:
        A, lung = R.soft_tissue_ap(rng, H, W, spine_x, yT, scale, sz, difficulty)
    else:
        A, lung = R.soft_tissue_lat(rng, H, W, spine_x, yT, scale, sz, difficulty)
    tex = R.trabecular_texture(rng, (H, W), scale)
    A += 0.035 * lung * R.smooth_noise(rng, (H, W), max(1.0, 3.0 * scale), max(1.0, 5.0 * scale))  # vascular lung markings
    bone = np.zeros((H, W), np.float32)  # flat/tubular bone and posterior elements (volume-ish)
    rim = np.zeros((H, W), np.float32)  # cortical outlines seen tangentially
    masks = {k: np.zeros((H, W), np.uint8) for k in (AP_STRUCTURES if ap else LAT_STRUCTURES)}
    lw = max(1, int(round(1.2 * scale)))
    # vertebral bodies T1..L5 (+ unlabelled C7..C3 and the sacrum): rounded outlines, cortex + trabeculae
    bodies = np.zeros((H, W), np.uint8)
    for i in range(17):
        outline = R.body_outline(corners[i])
        R.fill_poly(bodies, outline, 255)
        R.fill_poly(masks["vertebra"], outline, 255)
        if ap:  # endplates seen slightly obliquely: faint elliptical rings (ring apophyses)
            c = corners[i]
            for a, b in ((c[0], c[1]), (c[3], c[2])):
                mid_e = (a + b) / 2
                ang = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
                half = np.linalg.norm(b - a) / 2
                cv2.ellipse(rim, (int(mid_e[0] * 4), int(mid_e[1] * 4)), (int(half * 0.92 * 4), max(1, int(half * 0.07 * 4))),
                            ang, 0, 360, 0.18, 1, cv2.LINE_AA, 2)
    for q in R.cervical_quads(corners, scale, sz, ap):
        R.fill_poly(bodies, R.body_outline(q), 255)
    # sacrum: S1 top endplate extended into a tapering wedge along the spine axis
    c = corners[17]
    axis = (c[3] + c[2]) / 2 - (c[0] + c[1]) / 2
    axis /= np.linalg.norm(axis) + 1e-9
    length = 95 * scale
    sac = np.array([c[0], c[1], (c[0] + c[1]) / 2 + axis * length + (c[1] - c[0]) * 0.12,
                    (c[0] + c[1]) / 2 + axis * length - (c[1] - c[0]) * 0.12])
    if not ap:  # lateral sacrum curves posteriorly: push the tip back
        sac[2:] += np.array([1, 0]) * 0.35 * length
    if ap:  # sacral ala widen the top
        ew = (c[1] - c[0]) / (np.linalg.norm(c[1] - c[0]) + 1e-9)
        sac = np.array([sac[0] - ew * 0.15 * widths[17] * scale, sac[1] + ew * 0.15 * widths[17] * scale, sac[2], sac[3]])
    bodies = (bodies > 127).astype(np.uint8)
    # a lateral beam crosses the bodies' narrower flanks less obliquely: less bone on the path than AP
    A += R.bone_from_mask(bodies, tex, scale) if ap else R.bone_from_mask(bodies, tex, scale, trab=0.38, cort=0.45)
    sacrum = np.zeros((H, W), np.uint8)
    R.fill_poly(sacrum, R.smooth_closed(sac, 40) if ap else R.body_outline(sac, waist=0.02, cut=0.05), 255)
    A += R.bone_from_mask((sacrum > 127).astype(np.uint8), tex, scale, trab=0.3 if ap else 0.2, cort=0.45 if ap else 0.35)
    if ap:  # sacral foramina: paired holes in the sacrum
        sm, ew = (c[0] + c[1]) / 2, (c[1] - c[0]) / (np.linalg.norm(c[1] - c[0]) + 1e-9)
        holes = np.zeros((H, W), np.float32)
        for k in range(4):
            for side in (-1, 1):
                fc = sm + axis * (20 + 18 * k) * scale + ew * side * (0.22 - 0.03 * k) * widths[17] * scale
                cv2.circle(holes, (int(fc[0] * 4), int(fc[1] * 4)), max(1, int((4 - 0.6 * k) * scale * 4)), 0.15, -1, cv2.LINE_AA, 2)
        A -= cv2.GaussianBlur(holes, (0, 0), 1.0)
        A += R.pelvis_ap((H, W), c, widths[17] * scale * 1.15, tex, scale, sz)
    else:
        A += R.pelvis_lat((H, W), c, tex, scale, sz)
    # posterior elements
    rot = np.zeros(17)
    if ap:
        line_x = np.interp(centers[:17, 1], [centers[0, 1], centers[17, 1]], [centers[0, 0], centers[17, 0]])
        rot = np.clip((centers[:17, 0] - line_x) / (0.5 * widths[:17] * scale), -1, 1)
    for i in range(17):
        c = corners[i]
        e = (c[1] - c[0]) / (np.linalg.norm(c[1] - c[0]) + 1e-9)
        t = np.array([-e[1], e[0]])  # down the spine
        w = np.linalg.norm(c[1] - c[0])
        h = np.linalg.norm(c[3] - c[0])
        mid_top = (c[0] + c[1]) / 2
        if ap:
            shift = -0.18 * w * rot[i]
            for side in (-1, 1):
                pc = mid_top + e * (side * 0.30 * w + shift) + t * 0.32 * h
                ax, ay = 0.10 * w, 0.17 * h
                ang = math.degrees(math.atan2(e[1], e[0]))
                cv2.ellipse(bone, (int(pc[0] * 4), int(pc[1] * 4)), (int(ax * 4), int(ay * 4)), ang, 0, 360, 0.12, -1, cv2.LINE_AA, 2)
                cv2.ellipse(rim, (int(pc[0] * 4), int(pc[1] * 4)), (int(ax * 4), int(ay * 4)), ang, 0, 360, 0.45, lw, cv2.LINE_AA, 2)
                cv2.ellipse(masks["pedicle"], (int(pc[0] * 4), int(pc[1] * 4)), (int((ax + 1) * 4), int((ay + 1) * 4)), ang, 0, 360, 255, -1, cv2.LINE_AA, 2)
            sc = mid_top + e * (1.6 * shift) + t * 0.85 * h
            sp = np.array([sc - e * 0.07 * w - t * 0.25 * h, sc + e * 0.07 * w - t * 0.25 * h, sc + t * 0.35 * h])
            R.fill_poly(bone, sp, 0.2)
            R.draw_line(rim, sp, 0.25, lw, closed=True)
            R.fill_poly(masks["spinous_process"], sp, 255)
            for side in (-1, 1):  # transverse processes (ribs attach to the thoracic ones), laminae
                base = mid_top + e * side * 0.45 * w + t * 0.35 * h
                tip = base + e * side * (0.35 if i >= 12 else 0.16) * w - t * (0.05 * h if i >= 12 else 0.0)
                R.draw_line(bone, np.array([base, tip]), 0.2, max(2, int(0.16 * h)))
                R.draw_line(rim, np.array([mid_top + e * side * 0.1 * w + t * 0.7 * h, mid_top + e * side * 0.35 * w + t * 0.95 * h]),
                            0.12, max(1, lw))
        else:
            post_top, post_bot = c[1], c[2]
            pe = post_top + (post_bot - post_top) * 0.15
            pe2 = post_top + (post_bot - post_top) * 0.75
            back = e * 0.55 * w
            lam = np.array([pe, pe2, pe2 + back + t * 0.2 * h, pe + back])
            R.fill_poly(bone, lam, 0.2)
            R.draw_line(rim, lam, 0.25, lw, closed=True)
            base = pe + back * 0.9 + t * 0.1 * h
            down = 0.35 if i < 12 else 0.1
            sp = np.array([base, base + t * 0.55 * h, base + e * (0.9 * w) + t * (0.55 + down * 2) * h,
                           base + e * (0.95 * w) + t * (0.3 + down * 2) * h])
            R.fill_poly(bone, sp, 0.22)
            R.draw_line(rim, sp, 0.25, lw, closed=True)
            R.fill_poly(masks["spinous_process"], sp, 255)
            # facet joint: articular processes above/below, a dark joint line between
            fj = pe2 + back * 0.7
            R.draw_line(rim, np.array([fj - t * 0.25 * h, fj + t * 0.45 * h]), 0.2, max(1, lw))
    if not ap:
        for i in range(17):  # disc spaces, including L5-S1
            u, l = corners[i], corners[i + 1]
            R.fill_poly(masks["disc_height"], np.array([u[3], u[2], l[1], l[0]]), 255)
        ant = np.concatenate([[c[0], c[3]] for c in corners[:17]] + [[corners[17][0]]])
        post = np.concatenate([[c[1], c[2]] for c in corners[:17]] + [[corners[17][1]]])
        R.draw_line(masks["anterior_line"], ant, 255, max(3, lw))
        R.draw_line(masks["posterior_line"], post, 255, max(3, lw))
    # ribs, clavicles, scapulae
    if ap:
        R.ribs_ap(bone, corners, scale, sz, rng)
        R.clavicles_ap(bone, corners, scale, sz)
    else:
        R.ribs_lat(bone, corners, scale, sz, spine_x)
    A += 1.3 * bone * tex + 1.1 * rim
    # metal: pedicle screws, rods, cage
    boxes: list[tuple[str, float, float, float, float]] = []
    metal = None
    if p.implant:
        metal = np.zeros((H, W), np.float32)
        f, l = p.implant_levels
        heads = {-1: [], 1: []}
        for i in range(f, l + 1):
            c = corners[i]
            e = (c[1] - c[0]) / (np.linalg.norm(c[1] - c[0]) + 1e-9)
            t = np.array([-e[1], e[0]])
            w = np.linalg.norm(c[1] - c[0])
            h = np.linalg.norm(c[3] - c[0])
            mid_top = (c[0] + c[1]) / 2
            if ap:
                for side in (-1, 1):
                    head = mid_top + e * side * 0.42 * w + t * 0.35 * h
                    tip = mid_top + e * side * 0.08 * w + t * 0.45 * h
                    R.draw_line(metal, np.array([head, tip]), 1.0, max(3, int(0.16 * h)))
                    cv2.circle(metal, (int(head[0] * 4), int(head[1] * 4)), int(0.13 * h * 4), 1.0, -1, cv2.LINE_AA, 2)
                    heads[side].append(head)
            else:
                head = c[1] + (c[2] - c[1]) * 0.3 + e * 0.7 * w
                tip = c[0] + (c[3] - c[0]) * 0.4 + e * 0.15 * w
                R.draw_line(metal, np.array([head, tip]), 1.0, max(3, int(0.15 * h)))
                cv2.circle(metal, (int(head[0] * 4), int(head[1] * 4)), int(0.14 * h * 4), 1.0, -1, cv2.LINE_AA, 2)
                heads[1].append(head)
        for side, hs in heads.items():
            if len(hs) >= 2:
                R.draw_line(metal, np.array(hs), 0.9, max(3, int(5 * scale)))
        if p.cage and l > f:
            u, lo_ = corners[f], corners[f + 1]
            disc = np.array([u[3], u[2], lo_[1], lo_[0]])
            cage = _shrink(disc, 0.6)
            R.draw_line(metal, cage, 0.9, max(2, int(1.5 * scale)), closed=True)
        ys, xs = np.nonzero(metal > 0.3)
        pad = 3 * scale
        boxes.append(("lumbar_implant", float(xs.min() - pad), float(ys.min() - pad), float(xs.max() + pad), float(ys.max() + pad)))
        A += 4.0 * metal
    # ------------------------------------------------------------------ truth measured from what was drawn
    labels: dict[str, Any] = {"pixel_spacing_mm": round(float(spacing), 4), "facing": "" if ap else "left"}
    if ap:
        cobb = cobb_from_corners(corners[:17])
        cls = "scoliosis" if cobb["cobb_deg"] >= 10.0 else "normal"
        labels.update(cobb_deg=round(cobb["cobb_deg"], 3), cobb_upper_end=cobb["upper_end"], cobb_lower_end=cobb["lower_end"],
                      curve_type=p.curve_type if cls == "scoliosis" else "none", slip_percent="", meyerding_grade="", slip_level="")
        if cls == "scoliosis":
            i0, i1 = VERTEBRAE.index(cobb["upper_end"]), VERTEBRAE.index(cobb["lower_end"])
            pts = corners[i0:i1 + 1].reshape(-1, 2)
            pad = 6 * scale
            boxes.append(("scoliosis", float(pts[:, 0].min() - pad), float(pts[:, 1].min() - pad),
                          float(pts[:, 0].max() + pad), float(pts[:, 1].max() + pad)))
    else:
        lvl = p.slip_level if p.slip_level is not None else 16
        slip = max(0.0, slip_from_corners(corners[lvl], corners[lvl + 1]))
        grade = meyerding_grade(slip)
        cls = "spondylolisthesis" if grade >= 1 else "normal"
        labels.update(cobb_deg="", cobb_upper_end="", cobb_lower_end="", curve_type="", slip_percent=round(slip, 3),
                      meyerding_grade=grade, slip_level=f"{VERTEBRAE[lvl]}-{VERTEBRAE[lvl + 1]}" if grade >= 1 else "")
    labels["class"] = cls
    for i in range(17):
        c = corners[i]
        boxes.append(("vertebra", float(c[:, 0].min()), float(c[:, 1].min()), float(c[:, 0].max()), float(c[:, 1].max())))
    # ------------------------------------------------------------------ radiograph formation
    img = R.form_radiograph(A, metal, rng, noise=_NOISE[difficulty], contrast=_CONTRAST[difficulty])
    # collimation: unexposed margins outside a random field on ~half the films (bright or shuttered dark)
    if rng.random() < 0.5:
        x0, x1 = int(rng.uniform(0, 0.08) * W), int(W - rng.uniform(0, 0.08) * W)
        y0, y1 = int(rng.uniform(0, 0.03) * H), int(H - rng.uniform(0, 0.04) * H)
        field_ = np.zeros((H, W), np.float32)
        field_[y0:y1, x0:x1] = 1
        field_ = cv2.GaussianBlur(field_, (0, 0), 2.0)
        outside = rng.uniform(0.75, 0.95) if rng.random() < 0.6 else rng.uniform(0.0, 0.06)
        img = img * field_ + (1 - field_) * outside
    # burned-in text and a ruler, as on real films
    txt = np.zeros((H, W), np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    marker = ("R" if rng.random() < 0.5 else "L") if ap else ("LAT" if rng.random() < 0.5 else "L")
    cv2.putText(txt, marker, (int(W * rng.uniform(0.04, 0.15)), int(H * rng.uniform(0.05, 0.12))), font, W / 400, 255, 2, cv2.LINE_AA)
    if rng.random() < 0.6:
        words = ["STANDING", "ERECT", "WHOLE SPINE", "PA", "AP", "SUPINE"] if ap else ["STANDING", "ERECT", "LATERAL", "WHOLE SPINE"]
        cv2.putText(txt, str(rng.choice(words)), (int(W * 0.05), int(H * 0.97)), font, W / 1100, 255, 1, cv2.LINE_AA)
        cv2.putText(txt, f"{int(rng.integers(60, 99))}kV {int(rng.integers(5, 40))}mAs", (int(W * 0.55), int(H * 0.97)), font, W / 1200, 255, 1, cv2.LINE_AA)
    if rng.random() < 0.4:
        vertical = rng.random() < 0.6
        step = 10.0 / spacing  # a tick per centimetre
        if vertical:
            rx = int(W * (0.93 if rng.random() < 0.5 else 0.05))
            y_a, y_b = int(H * 0.15), int(H * 0.85)
            cv2.line(txt, (rx, y_a), (rx, y_b), 255, 2)
            k = 0
            while y_a + k * step < y_b:
                y = int(y_a + k * step)
                cv2.line(txt, (rx, y), (rx + (10 if k % 5 == 0 else 5), y), 255, 1)
                k += 1
        else:  # along the bottom edge, as on many long films
            ry = int(H * 0.985)
            x_a, x_b = int(W * 0.1), int(W * 0.9)
            cv2.line(txt, (x_a, ry), (x_b, ry), 255, 1)
            k = 0
            while x_a + k * step < x_b:
                x = int(x_a + k * step)
                cv2.line(txt, (x, ry), (x, ry - (8 if k % 5 == 0 else 4)), 255, 1)
                k += 1
    img = np.maximum(img, txt.astype(np.float32) * (rng.uniform(0.85, 1.0) / 255.0))
    img16 = (np.clip(img, 0, 1) * 65535.0 + 0.5).astype(np.uint16)
    masks = {k: (m > 127).astype(np.uint8) * 255 for k, m in masks.items()}
    return Film(image=img16, masks=masks, corners=corners, boxes=_clip_boxes(boxes, W, H), labels=labels)


def _clip_boxes(boxes: list[tuple[str, float, float, float, float]], W: int, H: int) -> list[tuple[str, float, float, float, float]]:
    out = []
    for c, x1, y1, x2, y2 in boxes:
        x1, x2 = max(0.0, x1), min(float(W - 1), x2)
        y1, y2 = max(0.0, y1), min(float(H - 1), y2)
        if x2 - x1 >= 2 and y2 - y1 >= 2:
            out.append((c, round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)))
    return out
