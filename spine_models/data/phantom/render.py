"""Radiograph layers for the X-ray phantom: soft tissue, lungs, bone, film formation.

Why a separate module: :mod:`spine_models.data.phantom.xray` owns the geometry and the truth (corners,
masks, boxes, Cobb, slip); this module only turns that geometry into something that looks like a film.
Everything is vectorised numpy/OpenCV on the full frame or a 1/4-resolution grid (soft tissue varies
slowly), with no per-pixel Python loops, so an AP film of 1024x512 renders in well under 0.2 s.

Units: the attenuation map ``A`` holds line integrals (arbitrary units, air = 0, thick soft tissue
~1, a vertebral body adds ~0.6–1, metal ~4). Film formation adds the heel effect, detector blur and
quantum noise that grows where fewer photons arrive, then applies the multi-scale contrast processing
digital radiography systems apply (large-scale equalisation + edge enhancement) and a window/gamma.
All randomness comes from the caller's generator, so films are reproducible.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "body_outline", "fill_poly", "draw_line", "smooth_noise", "trabecular_texture", "bone_from_mask",
    "soft_tissue_ap", "soft_tissue_lat", "ribs_ap", "ribs_lat", "clavicles_ap", "pelvis_ap", "pelvis_lat",
    "cervical_quads", "form_radiograph",
]

_F = 4  # soft-tissue grid subsampling


def fill_poly(img: np.ndarray, pts: np.ndarray, value: float | int) -> None:
    """Anti-aliased polygon fill at 1/4-pixel precision."""
    cv2.fillPoly(img, [np.round(np.asarray(pts) * 4).astype(np.int32)], value, lineType=cv2.LINE_AA, shift=2)


def draw_line(img: np.ndarray, pts: np.ndarray, value: float | int, thickness: int, closed: bool = False) -> None:
    """Polyline at 1/4-pixel precision."""
    cv2.polylines(img, [np.round(np.asarray(pts) * 4).astype(np.int32)], closed, value, max(1, int(thickness)),
                  lineType=cv2.LINE_AA, shift=2)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float, sigma_y: float | None = None) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered noise (drawn at reduced size when sigma is large)."""
    sy = sigma if sigma_y is None else sigma_y
    f = max(1, int(min(sigma, sy) // 2))
    small = rng.standard_normal((shape[0] // f + 1, shape[1] // f + 1), dtype=np.float32)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=max(sigma / f, 0.3), sigmaY=max(sy / f, 0.3))
    out = cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) if f > 1 else small[: shape[0], : shape[1]]
    return out / (float(out.std()) + 1e-6)


def trabecular_texture(rng: np.random.Generator, shape: tuple[int, int], px_per_mm: float) -> np.ndarray:
    """Cancellous-bone texture around 1: fine vertical trabeculae plus coarser marrow variation."""
    fine = smooth_noise(rng, shape, max(0.5, 0.35 * px_per_mm), max(0.8, 0.9 * px_per_mm))
    coarse = smooth_noise(rng, shape, max(1.5, 2.5 * px_per_mm))
    return 0.78 + 0.16 * fine + 0.08 * coarse


def body_outline(c: np.ndarray, waist: float = 0.035, cut: float = 0.08, n: int = 5) -> np.ndarray:
    """A vertebral body outline from its 4 corners (TL, TR, BR, BL): chamfered corners, concave waist
    on the sides and slightly concave endplates, as bodies look on films (not a perfect quadrilateral)."""
    c = np.asarray(c, np.float64)
    centre = c.mean(axis=0)
    w = np.linalg.norm(c[1] - c[0])
    h = np.linalg.norm(c[3] - c[0])
    ts = np.linspace(cut, 1 - cut, n)
    pts = []
    for k in range(4):
        a, b = c[k], c[(k + 1) % 4]
        seg = a + (b - a) * ts[:, None]
        mid = (a + b) / 2
        inward = centre - mid
        inward /= np.linalg.norm(inward) + 1e-9
        depth = (waist * w) if k in (1, 3) else (0.25 * waist * h)
        seg = seg + inward * (depth * np.sin(np.pi * ts))[:, None]
        pts.append(seg)
    return np.vstack(pts)


def smooth_closed(pts: np.ndarray, n: int = 48) -> np.ndarray:
    """A smooth closed curve through ``pts`` (periodic cubic spline): organic outlines, not polygons."""
    from scipy.interpolate import CubicSpline

    pts = np.asarray(pts, np.float64)
    closed = np.vstack([pts, pts[:1]])
    k = np.arange(len(closed), dtype=np.float64)
    cs = CubicSpline(k, closed, bc_type="periodic")
    return cs(np.linspace(0, len(pts), n, endpoint=False))


def circle(centre: np.ndarray, r: float, n: int = 32) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.asarray(centre) + r * np.stack([np.cos(t), np.sin(t)], 1)


def bone_from_mask(mask: np.ndarray, tex: np.ndarray, px_per_mm: float, *, cortex_mm: float = 1.2,
                   depth_mm: float = 5.0, trab: float = 0.55, cort: float = 0.6) -> np.ndarray:
    """Attenuation of solid bones drawn in ``mask``: a chord-like trabecular core (thicker inside)
    times the texture, plus a cortical shell that is brightest at the edge (tangential projection)."""
    out = np.zeros(mask.shape, np.float32)
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return out
    sl = (slice(y, y + h), slice(x, x + w))  # work on the bones' bounding box only (speed)
    m = np.pad(mask[sl], 1)
    dt = cv2.distanceTransform(m, cv2.DIST_L2, 3)[1:-1, 1:-1]
    inside = (mask[sl] > 0).astype(np.float32)
    core = np.sqrt(np.minimum(dt / max(depth_mm * px_per_mm, 1.0), 1.0))
    shell = np.exp(-dt / max(cortex_mm * px_per_mm, 0.8))
    out[sl] = inside * (trab * core * tex[sl] + cort * shell)
    return out


# ---------------------------------------------------------------------------------------------- soft tissue
def _grid(H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    ys = (np.arange(-(-H // _F)) * _F + _F / 2).astype(np.float32)[:, None]
    xs = (np.arange(-(-W // _F)) * _F + _F / 2).astype(np.float32)[None, :]
    return ys, xs


def _up(a: np.ndarray, H: int, W: int) -> np.ndarray:
    return cv2.resize(a, (W, H), interpolation=cv2.INTER_LINEAR)


def _blobs(rng: np.random.Generator, shape: tuple[int, int], centres: np.ndarray, radii: np.ndarray, sigma: float) -> np.ndarray:
    """Soft irregular blobs (bowel gas) on the low-resolution grid."""
    out = np.zeros(shape, np.float32)
    for (x, y), (rx, ry) in zip(centres, radii):
        ang = float(rng.uniform(0, 180))
        cv2.ellipse(out, (int(x / _F * 4), int(y / _F * 4)), (max(1, int(rx / _F * 4)), max(1, int(ry / _F * 4))),
                    ang, 0, 360, float(rng.uniform(0.5, 1.0)), -1, cv2.LINE_AA, 2)
    return cv2.GaussianBlur(out, (0, 0), max(sigma, 0.5))


def soft_tissue_ap(rng: np.random.Generator, H: int, W: int, spine_x: np.ndarray, yT: np.ndarray,
                   px_per_mm: float, size: float, difficulty: str) -> tuple[np.ndarray, np.ndarray]:
    """Trunk envelope, lungs with diaphragm domes, heart, and bowel gas for an AP film.

    Returns the soft-tissue attenuation (full resolution) and the lung map (for lung texture)."""
    ys, xs = _grid(H, W)
    m = px_per_mm * size
    sx = np.interp(ys[:, 0], np.arange(H, dtype=np.float32), spine_x)[:, None]
    off = rng.normal(0, 4) * px_per_mm
    lv = [yT[0] - 90 * px_per_mm, yT[0] - 35 * px_per_mm, yT[2], yT[7], yT[12], yT[14], yT[17], yT[17] + 150 * px_per_mm]
    hw = np.array([55, 62, 185, 155, 140, 133, 165, 175]) * m * rng.uniform(0.9, 1.12)
    half = np.interp(ys[:, 0], lv, hw)[:, None]
    dx = (xs - sx - off) / half
    ell = np.sqrt(np.clip(1 - dx ** 2, 0, 1))
    depth = np.interp(ys[:, 0], [yT[0] - 80 * px_per_mm, yT[0], yT[8], yT[13], yT[17]], [0.55, 0.8, 0.95, 1.05, 1.12])[:, None]
    soft = 1.1 * ell * depth
    # lungs: medial border beside the mediastinum, lateral along the ribs, apex above T1, domed bottom
    top = yT[0] - 22 * px_per_mm
    reach = np.interp(ys[:, 0], [top, yT[3], yT[8], yT[11]], [45, 120, 135, 128])[:, None] * m
    lung = np.zeros_like(soft)
    heart_side = 1.0  # the patient's left shows on the image right of an AP film
    for side in (-1.0, 1.0):
        dome = yT[9] + (14 if side == heart_side else 0) * px_per_mm + rng.normal(0, 5) * px_per_mm
        x_rel = (xs - sx) * side
        med, lat = 24 * m, reach - 8 * m
        u = np.clip((x_rel - med) / np.maximum(lat - med, 1.0), 0, 1)
        bottom = dome + 40 * m * np.clip(u - 0.45, 0, None) ** 2 / 0.3 + 20 * m * np.clip(0.45 - u, 0, None) ** 2 / 0.2
        apex = top + 45 * m * (u - 0.3) ** 2
        inside = (x_rel > med) & (x_rel < lat) & (ys > apex) & (ys < bottom)
        lung += inside.astype(np.float32) * (0.55 + 0.45 * np.sin(np.pi * u))
    lung = cv2.GaussianBlur(lung, (0, 0), max(0.6, 4 * px_per_mm / _F))
    hx, hy = float(np.interp(yT[8], np.arange(H), spine_x)) + heart_side * 38 * m, yT[8] + 10 * px_per_mm
    heart = (((xs - hx) / (68 * m)) ** 2 + ((ys - hy) / (55 * m)) ** 2 < 1).astype(np.float32)
    heart = cv2.GaussianBlur(heart, (0, 0), max(0.6, 4 * px_per_mm / _F))
    lung = lung * (1 - 0.85 * heart)
    soft -= 0.62 * lung * np.clip(ell * 1.3, 0, 1)
    # bowel gas between the diaphragm and the pelvis (more overlap on hard films)
    k = int(rng.integers(3, 9) if difficulty == "easy" else rng.integers(6, 16) if difficulty == "standard" else rng.integers(10, 24))
    cy = rng.uniform(yT[11], yT[17] + 40 * px_per_mm, k)
    cx = np.interp(cy, np.arange(H), spine_x) + rng.normal(0, 70, k) * m
    gas = _blobs(rng, soft.shape, np.stack([cx, cy], 1), rng.uniform(6, 22, (k, 2)) * m, 1.5 * px_per_mm / _F)
    soft -= rng.uniform(0.12, 0.3) * gas * (ell > 0.2)
    return _up(soft, H, W), _up(lung, H, W)


def soft_tissue_lat(rng: np.random.Generator, H: int, W: int, spine_x: np.ndarray, yT: np.ndarray,
                    px_per_mm: float, size: float, difficulty: str) -> tuple[np.ndarray, np.ndarray]:
    """Lateral film (anterior = image left): trunk profile, lungs over and in front of the spine,
    heart, diaphragm, bowel gas."""
    ys, xs = _grid(H, W)
    m = px_per_mm * size
    sx = np.interp(ys[:, 0], np.arange(H, dtype=np.float32), spine_x)[:, None]
    lv = [yT[0] - 90 * px_per_mm, yT[0], yT[5], yT[10], yT[14], yT[17], yT[17] + 150 * px_per_mm]
    ant = np.interp(ys[:, 0], lv, np.array([70, 120, 185, 175, 185, 165, 150]) * m * rng.uniform(0.9, 1.15))[:, None]
    post = np.interp(ys[:, 0], lv, np.array([70, 80, 95, 85, 80, 110, 135]) * m * rng.uniform(0.9, 1.1))[:, None]
    u = (xs - (sx - ant)) / (ant + post)
    ell = np.sqrt(np.clip(1 - (2 * u - 1) ** 2, 0, 1))
    depth = np.interp(ys[:, 0], [yT[0] - 80 * px_per_mm, yT[0], yT[8], yT[13], yT[17]], [0.7, 1.0, 1.15, 1.2, 1.35])[:, None]
    soft = 1.2 * ell * depth
    top = yT[0] - 15 * px_per_mm
    dome_post, dome_ant = yT[11] + rng.normal(0, 5) * px_per_mm, yT[8] + rng.normal(0, 5) * px_per_mm
    front, back = sx - ant + 18 * m, sx + 45 * m
    v = np.clip((xs - front) / np.maximum(back - front, 1.0), 0, 1)  # 0 anterior .. 1 posterior
    bottom = dome_ant + (dome_post - dome_ant) * v ** 1.5 - 25 * m * np.sin(np.pi * v) * 0.6
    inside = (xs > front) & (xs < back) & (ys > top + 45 * m * (2 * v - 1) ** 2) & (ys < bottom)
    lung = cv2.GaussianBlur(inside.astype(np.float32) * (0.6 + 0.4 * np.sin(np.pi * v)), (0, 0), max(0.6, 5 * px_per_mm / _F))
    hx, hy = float(np.interp(yT[8], np.arange(H), spine_x)) - 95 * m, yT[8] + 5 * px_per_mm
    heart = (((xs - hx) / (55 * m)) ** 2 + ((ys - hy) / (62 * m)) ** 2 < 1).astype(np.float32)
    lung = lung * (1 - 0.8 * cv2.GaussianBlur(heart, (0, 0), max(0.6, 4 * px_per_mm / _F)))
    soft -= 0.7 * lung
    k = int(rng.integers(3, 9) if difficulty == "easy" else rng.integers(6, 16) if difficulty == "standard" else rng.integers(10, 24))
    cy = rng.uniform(yT[11], yT[17] + 30 * px_per_mm, k)
    cx = np.interp(cy, np.arange(H), spine_x) - rng.uniform(30, 150, k) * m
    gas = _blobs(rng, soft.shape, np.stack([cx, cy], 1), rng.uniform(6, 20, (k, 2)) * m, 1.5 * px_per_mm / _F)
    soft -= rng.uniform(0.12, 0.3) * gas * (ell > 0.2)
    return _up(soft, H, W), _up(lung, H, W)


# ---------------------------------------------------------------------------------------------- bones
def _band(img: np.ndarray, pts: np.ndarray, value: float, thickness: float) -> None:
    """A tubular bone in projection: a band whose edges (the cortex seen tangentially) are brighter."""
    t = max(2, int(round(thickness)))
    draw_line(img, pts, value, t)
    if t >= 5:
        draw_line(img, pts, 0.55 * value, t - max(2, t // 4))


def ribs_ap(img: np.ndarray, corners: np.ndarray, px_per_mm: float, size: float, rng: np.random.Generator,
            rib_scale: float = 1.0) -> None:
    """Twelve rib pairs: the posterior arc leaves the transverse process, runs out and slightly up,
    turns down along the chest wall; the anterior arc returns medially and downwards, fainter."""
    m = px_per_mm * size
    reach_mm = np.interp(np.arange(12), [0, 3, 8, 11], [50, 118, 133, 122])
    for i in range(12):
        c = corners[i]
        e = (c[1] - c[0]) / (np.linalg.norm(c[1] - c[0]) + 1e-9)
        mid = c.mean(axis=0)
        w = np.linalg.norm(c[1] - c[0])
        thick = (7.5 + 2.5 * min(i, 6) / 6) * m * rib_scale
        for side in (-1.0, 1.0):
            j = rng.normal(0, 2.0, 3) * m
            x0 = mid[0] + side * (0.5 * w + 6 * m)
            y0 = mid[1] - 0.15 * np.linalg.norm(c[3] - c[0]) + side * e[1] * (0.5 * w)
            R = reach_mm[i] * m + j[0]
            t = np.linspace(0, 1, 16)
            drop = (36 + 4.0 * i) * m + j[1]
            px = x0 + side * R * np.sin(t * np.pi / 2) ** 0.9
            py = y0 - 5 * m * np.sin(np.pi * t) + drop * t ** 1.2
            _band(img, np.stack([px, py], 1), 0.30, thick)
            s = np.linspace(0, 1, 12)
            ax = px[-1] - side * R * 0.55 * (1 - np.cos(s * np.pi / 2))
            ay = py[-1] + (30 + 2.5 * i) * m * np.sin(s * np.pi / 2) + j[2]
            _band(img, np.stack([ax, ay], 1)[: 12 - min(i, 6)], 0.14, thick * 0.8)


def clavicles_ap(img: np.ndarray, corners: np.ndarray, px_per_mm: float, size: float) -> None:
    """S-shaped clavicles from the manubrium (about T2-T3) out and up to the shoulders."""
    m = px_per_mm * size
    c0 = corners[1].mean(axis=0)
    t = np.linspace(0, 1, 20)
    for side in (-1.0, 1.0):
        px = c0[0] + side * (18 * m + 150 * m * t)
        py = c0[1] - 6 * m - 38 * m * t + 9 * m * np.sin(2 * np.pi * t)
        _band(img, np.stack([px, py], 1), 0.32, 12 * m)
        # scapula: a faint plate with a bright medial border, lateral of the upper ribs
        sc = np.array([[c0[0] + side * 95 * m, c0[1] - 5 * m], [c0[0] + side * 165 * m, c0[1] - 12 * m],
                       [c0[0] + side * 150 * m, c0[1] + 70 * m], [c0[0] + side * 100 * m, c0[1] + 130 * m]])
        fill_poly(img, smooth_closed(sc, 24), 0.035)
        draw_line(img, smooth_closed(sc, 24)[15:], 0.06, max(2, int(3 * m)))


def cervical_quads(corners: np.ndarray, px_per_mm: float, size: float, ap: bool) -> list[np.ndarray]:
    """C7..C3 bodies continuing the chain above T1 (drawn, but not labelled: truth covers T1..S1)."""
    c = corners[0]
    e = (c[1] - c[0]) / (np.linalg.norm(c[1] - c[0]) + 1e-9)
    up = np.array([e[1], -e[0]])  # perpendicular to the T1 endplate, towards the head
    m = px_per_mm * size
    pos = (c[0] + c[1]) / 2
    out = []
    for k in range(5):
        h, w, d = (12.5 - 0.4 * k) * m, ((25 - 0.8 * k) if ap else (15.5 - 0.3 * k)) * m, 4.5 * m
        if not ap:  # cervical lordosis: the neck bends back (posterior = +x on a left-facing film)
            ang = math.radians(4.0)
            up = np.array([up[0] * math.cos(ang) - up[1] * math.sin(ang), up[0] * math.sin(ang) + up[1] * math.cos(ang)])
            e = np.array([-up[1], up[0]])
        bot = pos + up * d
        top = bot + up * h
        out.append(np.array([top - e * w / 2, top + e * w / 2, bot + e * w / 2, bot - e * w / 2]))
        pos = top
    return out


def _flat_bone(shape: tuple[int, int], polys: list[np.ndarray], tex: np.ndarray, px_per_mm: float,
               fill: float, rim: float, rim_mm: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for poly in polys:
        fill_poly(mask, poly, 255)
    mask = (mask > 127).astype(np.uint8)
    return bone_from_mask(mask, tex, px_per_mm, cortex_mm=rim_mm, depth_mm=0.01, trab=fill, cort=rim)


def pelvis_ap(shape: tuple[int, int], s1: np.ndarray, sacrum_w: float, tex: np.ndarray, px_per_mm: float, size: float) -> np.ndarray:
    """Iliac wings (thin centre, thick crest), the pelvic brim and femoral heads, placed on the sacrum."""
    m = px_per_mm * size
    sm = (s1[0] + s1[1]) / 2
    e = (s1[1] - s1[0]) / (np.linalg.norm(s1[1] - s1[0]) + 1e-9)
    d = np.array([-e[1], e[0]])
    wing = np.array([(0, 5), (8, -30), (40, -45), (85, -38), (105, -15), (110, 15), (98, 60), (85, 95), (45, 85), (5, 60)], np.float64)
    polys = []
    for side in (-1.0, 1.0):
        base = sm + e * side * (sacrum_w / 2)
        polys.append(smooth_closed(base + np.outer(wing[:, 0] * side * m, e) + np.outer(wing[:, 1] * m, d), 60))
    A = _flat_bone(shape, polys, tex, px_per_mm, 0.14, 0.45, 2.5)
    for side in (-1.0, 1.0):  # pelvic brim (arcuate line) and femoral heads
        base = sm + e * side * (sacrum_w / 2)
        t = np.linspace(0, 1, 12)
        brim = base + np.outer((10 + 55 * t) * side * m, e) + np.outer((30 + 70 * np.sin(t * np.pi / 2)) * m, d)
        draw_line(A, brim, 0.25, max(2, int(3 * m)))
        fh = base + e * side * 95 * m + d * 125 * m
        neck = fh + e * side * 30 * m + d * 45 * m
        neck_poly = smooth_closed(np.array([fh - d * 16 * m, fh + d * 14 * m, neck + d * 22 * m + e * side * 10 * m,
                                            neck + d * 60 * m + e * side * 5 * m, neck + d * 60 * m - e * side * 25 * m,
                                            neck - d * 14 * m + e * side * 16 * m]), 40)
        A += _flat_bone(shape, [circle(fh, 24 * m), neck_poly], tex, px_per_mm, 0.22, 0.3, 2.0)
    return A


def pelvis_lat(shape: tuple[int, int], s1: np.ndarray, tex: np.ndarray, px_per_mm: float, size: float) -> np.ndarray:
    """Both iliac wings superimposed over the lumbosacral junction, and the femoral heads."""
    m = px_per_mm * size
    c = s1.mean(axis=0)
    t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
    polys = []
    for k, dx in enumerate((0.0, 6.0)):  # the two sides project slightly apart (magnification)
        centre = c + np.array([(15 + dx) * m, (35 + 3 * k) * m])
        polys.append(centre + np.stack([78 * m * np.cos(t), 58 * m * np.sin(t) * (1 + 0.25 * np.cos(t))], 1))
    A = 0.5 * _flat_bone(shape, polys[:1], tex, px_per_mm, 0.12, 0.4, 2.5) + 0.5 * _flat_bone(shape, polys[1:], tex, px_per_mm, 0.12, 0.4, 2.5)
    fh = c + np.array([-35 * m, 95 * m])
    for dx in (0.0, 5.0):
        cv2.circle(A, (int((fh[0] + dx * m) * 4), int(fh[1] * 4)), int(24 * m * 4), 0.25, -1, cv2.LINE_AA, 2)
    return A


def ribs_lat(img: np.ndarray, corners: np.ndarray, px_per_mm: float, size: float, spine_x: np.ndarray) -> None:
    """Ribs on a lateral film: arcs from behind the spine sweeping forward and down; left and right
    ribs project a few mm apart (double contours)."""
    m = px_per_mm * size
    for i in range(1, 12):
        c = corners[i]
        mid = c.mean(axis=0)
        t = np.linspace(0, 1, 14)
        for dx in (0.0, 7.0):
            px = mid[0] + (55 + dx) * m - (240 - 4 * i) * m * t
            py = mid[1] - 10 * m + (60 + 2 * i) * m * t ** 1.4 - 18 * m * np.sin(np.pi * t)
            _band(img, np.stack([px, py], 1), 0.07, 8 * m)


# ---------------------------------------------------------------------------------------------- film
def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; large kernels run on a downsampled copy (same result to the eye, 20x faster)."""
    if sigma < 6:
        return cv2.GaussianBlur(a, (0, 0), sigma)
    f = max(2, int(sigma // 3))
    H, W = a.shape
    small = cv2.resize(a, (max(1, W // f), max(1, H // f)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)


def form_radiograph(A: np.ndarray, metal: np.ndarray | None, rng: np.random.Generator, *, noise: float,
                    contrast: tuple[float, float]) -> np.ndarray:
    """Attenuation line integrals -> processed radiograph in [0, 1] (bright = dense)."""
    H, W = A.shape
    yy = np.linspace(-0.5, 0.5, H, dtype=np.float32)[:, None]
    A = A + rng.uniform(-0.15, 0.15) * yy  # anode heel: one end of the film receives fewer photons
    A = cv2.GaussianBlur(A, (0, 0), float(rng.uniform(0.5, 1.1)))  # focal spot + detector blur
    n = rng.standard_normal((H, W), dtype=np.float32)
    n = cv2.GaussianBlur(n, (0, 0), 0.6) * 2.1  # detector noise is slightly correlated
    A = A + noise * rng.uniform(0.7, 1.3) * np.exp(0.5 * np.clip(A, 0.0, 4.0)) * n  # fewer photons, more noise
    # digital radiography processing: equalise large-scale density, enhance edges
    big = _blur(A, H / 22.0)
    fine = _blur(A, max(1.0, H / 500.0))
    D = big * rng.uniform(0.45, 0.7) + (A - big) * rng.uniform(1.0, 1.5) + (A - fine) * rng.uniform(0.3, 1.0)
    sample = D[::4, ::4] if metal is None else D[::4, ::4][metal[::4, ::4] < 0.05]  # window on anatomy, not metal
    lo, hi = np.percentile(sample, [1.0, 99.7])
    v = (D - lo) / max(float(hi - lo), 1e-6)
    c = rng.uniform(*contrast)
    v = 0.5 + (v - 0.5) * c + rng.uniform(-0.05, 0.05)
    v = np.clip(v, 0, None) ** rng.uniform(0.8, 1.25)
    knee = 0.85  # soft shoulder: dense bone approaches but never reaches saturation; only metal saturates
    v = np.where(v > knee, knee + 0.1 * np.tanh((v - knee) / 0.1), v)
    if metal is not None:  # metal saturates and blooms
        v = np.maximum(v, np.clip(metal, 0, 1) * rng.uniform(0.97, 1.0))
        v = v + 0.25 * cv2.GaussianBlur(metal, (0, 0), float(2.0 + 2.0 * rng.random()))
    return np.clip(v, 0, 1).astype(np.float32)
