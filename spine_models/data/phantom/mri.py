"""Synthetic lumbar MRI studies (T2 sagittal, T2 axial, MR myelography) with exact disc truth.

Why: the MRI study's data is private. A phantom whose disc states, herniation types and stenosis
grades are known exactly lets the slice selection, the ROI, the dataset adapter and the disc
classifiers be tested end to end without real patients.

How: each patient is one 3-D model in patient coordinates (mm; x = patient left, y = posterior,
z = superior; the posterior wall of the vertebral bodies is y = 0) built from a few primitive kinds
(elliptic cylinders along z, ellipsoids, boxes), each carrying a tissue label. Every series is a
set of planes cut through the *same* model, so the sagittal, axial and myelographic views agree
(a herniation seen on the sagittal mid-plane is the one narrowing the canal on the axial slice).
Labels map to T2 signal, then texture, blur, coil shading and Rician noise are added.

The axial series is laid out for the MRI study's selection rule: the mid-plane of disc x
(x = 1 is L5-S1 ... x = 5 is L1-L2) lies exactly on 1-based frame 3x + 2(x-1) = 3, 8, 13, 18, 23, and no
other frame cuts a disc (slice spacing = disc spacing / 5 > half the tallest disc).
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spine_models.data.phantom.writer import write_manifest
from spine_models.data.mri import DISC_LEVELS, select_axial_frame, select_sagittal_frame, study_image_name
from spine_models.data.records import DISC_STATES  # disc_grade = index (0-3); re-exported

__all__ = [
    "DISC_STATES",
    "HERNIATION_TYPES",
    "STENOSIS_GRADES",
    "LABEL_COLUMNS",
    "SERIES",
    "MriPatient",
    "make_patient",
    "render_axial",
    "render_sagittal",
    "render_myelo",
    "generate_mri",
]

GENERATOR_VERSION = "mri-phantom-1"
HERNIATION_TYPES = ["none", "normal", "migration", "sequestration"]
STENOSIS_GRADES = ["normal", "mild", "moderate", "severe"]
LABEL_COLUMNS = [
    "id", "patient_id", "level", "disc_state", "disc_grade", "herniation_type", "herniation_side",
    "scs", "rfs", "lfs", "axial_frame", "sagittal_frame", "study_name", "view", "class",
]
# folder name -> (SeriesDescription, SeriesNumber)
SERIES = {"T2_SAG": ("T2 SAG", 2), "T2_AX": ("T2 AX", 3), "MYELO": ("MYELO", 4)}
N_SAG, N_AX, N_MYELO = 15, 25, 3
SAG_SIZE, AX_SIZE, MYELO_SIZE = 320, 256, 256
_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_DIFFICULTY = {  # noise sigma (fraction of CSF signal), herniation depth range (mm), degeneration nucleus signal
    "easy": (0.015, (5.0, 10.0), 0.18),
    "standard": (0.03, (3.5, 9.0), 0.24),
    "hard": (0.05, (2.5, 6.0), 0.34),
}

# tissue labels (uint8 label maps); nucleus of disc x uses 20 + x, herniated material 30 + x
AIR, FAT, MUSCLE, MARROW, CORTEX, ANNULUS, CSF, NERVE, EPIFAT, VESSEL, BOWEL, SKIN, FACET, SACRUM, RPFAT = (
    0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 14, 15, 16)
NUCLEUS0, HERNIA0 = 20, 30
_T2 = {AIR: 0.0, FAT: 0.78, MUSCLE: 0.22, MARROW: 0.46, CORTEX: 0.05, ANNULUS: 0.28, CSF: 1.0, NERVE: 0.36,
       EPIFAT: 0.72, VESSEL: 0.04, BOWEL: 0.42, SKIN: 0.5, FACET: 0.7, SACRUM: 0.5, RPFAT: 0.62}
_FINE_TEX = {MARROW: 0.22, SACRUM: 0.22, MUSCLE: 0.10, BOWEL: 0.25, FAT: 0.05}
_COARSE_TEX = {BOWEL: 0.3, FAT: 0.10, MUSCLE: 0.12, RPFAT: 0.1}


# ----------------------------------------------------------------------------------------------
# the model
@dataclass
class Prim:
    """One tissue primitive. kind: 'ecyl' (ellipse in x-y, extruded over z0..z1, optional y <= yclip),
    'ell' (ellipsoid centre c, radii r), 'box' (x0,x1,y0,y1,z0,z1)."""

    kind: str
    label: int
    p: tuple[float, ...]
    yclip: float | None = None


@dataclass
class Disc:
    x: int  # 1 = L5-S1 ... 5 = L1-L2 (0 = T12-L1, unlabelled, always normal)
    z: float  # mid-plane height (mm)
    height: float
    state: str = "normal"
    htype: str = "none"
    side: str = "none"  # none | central | left | right (patient's left)
    depth: float = 0.0  # herniation protrusion beyond the posterior wall (mm)
    bulge: float = 0.0  # circumferential extension (mm)
    nucleus: float = 0.85  # T2 signal of the nucleus
    hernia_signal: float = 0.6
    migrate: float = 0.0  # +up / -down (mm) for migration / sequestration
    scs: str = "normal"
    rfs: str = "normal"
    lfs: str = "normal"


@dataclass
class MriPatient:
    patient_id: str
    seed: int
    difficulty: str
    ax_spacing: float  # mm between axial slices (= disc spacing / 5)
    z_ref: float  # z of the L5-S1 mid-plane
    body_depth: float
    body_hw: float
    canal_ap: float
    canal_w: float
    sac_hw: float
    fat: float  # subcutaneous fat thickness (mm)
    discs: list[Disc]
    prims: list[Prim] = field(default_factory=list)
    noise: float = 0.03
    scale: float = 2400.0
    ax_ps: float = 0.75
    sag_ps: float = 0.94
    myelo_ps: float = 1.0
    ax_shift: tuple[float, float] = (0.0, 0.0)  # pixel jitter (col, row)
    sag_shift: tuple[float, float] = (0.0, 0.0)
    lordosis: float = 12.0  # mm


def _grade(c: float) -> str:
    """Fraction of the canal/foramen taken by disc material -> stenosis grade."""
    return STENOSIS_GRADES[int(np.searchsorted([0.25, 0.45, 0.65], c, side="right"))]


def _make_disc(rng: np.random.Generator, x: int, z: float, base_h: float, difficulty: str,
               canal_ap: float, forced: str | None = None) -> Disc:
    _, (dmin, dmax), deg_signal = _DIFFICULTY[difficulty]
    if forced is None:
        # lower discs carry more pathology; over a cohort the four states stay roughly balanced
        p_norm = [0.22, 0.24, 0.32, 0.40, 0.46][x - 1]
        rest = (1 - p_norm) / 3
        state = str(rng.choice(DISC_STATES, p=[p_norm, rest, rest, rest]))
    else:
        state = forced
    d = Disc(x=x, z=z, height=base_h, state=state, nucleus=float(rng.uniform(0.78, 0.92)))
    central, fr, fl = 0.05 * rng.random(), 0.0, 0.0
    if state == "degeneration":
        loss = float(rng.uniform(0.3, 0.5))
        d.height = base_h * (1 - loss)
        d.nucleus = float(deg_signal * rng.uniform(0.85, 1.15))
        d.bulge = float(rng.uniform(0.0, 1.0))
        central += d.bulge / canal_ap
        fr = fl = loss * 0.8 + float(rng.uniform(-0.08, 0.08))
    elif state == "bulge":
        d.height = base_h * float(rng.uniform(0.8, 0.95))
        d.nucleus = float(rng.uniform(0.45, 0.65))
        d.bulge = float(rng.uniform(2.0, 4.5))
        central += 1.5 * d.bulge / canal_ap
        fr = d.bulge / 8.0 + float(rng.uniform(-0.08, 0.08))
        fl = d.bulge / 8.0 + float(rng.uniform(-0.08, 0.08))
    elif state == "herniation":
        d.height = base_h * float(rng.uniform(0.8, 0.95))
        d.nucleus = float(rng.uniform(0.4, 0.7))
        d.htype = str(rng.choice(HERNIATION_TYPES[1:], p=[0.5, 0.3, 0.2]))
        d.side = str(rng.choice(["central", "left", "right"], p=[0.5, 0.25, 0.25]))
        d.depth = float(rng.uniform(dmin, dmax))
        d.hernia_signal = float(rng.uniform(0.45, 0.75))
        if d.htype in ("migration", "sequestration"):
            d.migrate = float(rng.choice([-1.0, 1.0]) * rng.uniform(6.0, 10.0))
        central += 1.3 * d.depth / canal_ap * (1.0 if d.side == "central" else 0.55)
        if d.side == "left":
            fl = d.depth / 8.0
        elif d.side == "right":
            fr = d.depth / 8.0
    d.scs, d.rfs, d.lfs = _grade(central), _grade(max(fr, 0.0)), _grade(max(fl, 0.0))
    return d


def make_patient(patient_id: str, seed: int, index: int, difficulty: str = "standard",
                 forced_states: dict[int, str] | None = None) -> MriPatient:
    """Draw one phantom patient (geometry, disc states, grades) deterministically from (seed, index)."""
    if difficulty not in _DIFFICULTY:
        from spine_models.errors import SpineInputError

        raise SpineInputError(f"difficulty {difficulty!r} is not one of easy, standard, hard")
    rng = np.random.default_rng([int(seed), int(index), 7331])
    s = float(rng.uniform(7.0, 8.0))
    canal_ap = float(rng.uniform(13.0, 18.0))
    pat = MriPatient(
        patient_id=patient_id, seed=seed, difficulty=difficulty, ax_spacing=s, z_ref=0.0,
        body_depth=float(rng.uniform(31.0, 36.0)), body_hw=float(rng.uniform(21.0, 24.0)),
        canal_ap=canal_ap, canal_w=float(rng.uniform(22.0, 26.0)), sac_hw=float(rng.uniform(7.5, 9.5)),
        fat=float(rng.uniform(8.0, 30.0)), discs=[],
        noise=_DIFFICULTY[difficulty][0] * float(rng.uniform(0.8, 1.25)), scale=float(rng.uniform(1900, 2900)),
        ax_ps=float(rng.uniform(0.70, 0.80)), sag_ps=float(rng.uniform(0.88, 1.0)), myelo_ps=float(rng.uniform(0.95, 1.1)),
        ax_shift=(float(rng.uniform(-3, 3)), float(rng.uniform(-4, 4))),
        sag_shift=(float(rng.uniform(-6, 6)), float(rng.uniform(-6, 6))), lordosis=float(rng.uniform(6, 16)),
    )
    base_h = [10.5, 11.0, 10.0, 9.0, 8.5]
    for x in range(1, 6):
        forced = (forced_states or {}).get(x)
        h = base_h[x - 1] * float(rng.uniform(0.9, 1.1))
        pat.discs.append(_make_disc(rng, x, pat.z_ref + (x - 1) * 5 * s, h, difficulty, canal_ap, forced))
    for d in pat.discs:  # the frame rule needs no neighbour slice to touch a disc
        d.height = min(d.height, 2 * s - 2.5)
    pat.discs.insert(0, Disc(x=0, z=pat.z_ref + 25 * s, height=8.0 * float(rng.uniform(0.9, 1.1))))
    pat.prims = _build(pat, rng)
    return pat


def _build(p: MriPatient, rng: np.random.Generator) -> list[Prim]:
    """Primitives in painting order (later ones overwrite earlier ones)."""
    bd, bhw, cap, cw, shw = p.body_depth, p.body_hw, p.canal_ap, p.canal_w, p.sac_hw
    D = 5 * p.ax_spacing
    discs = sorted(p.discs, key=lambda d: d.z)  # L5-S1 first
    z_top, z_bot = discs[-1].z + D + 40, p.z_ref - 120
    y_skin = cap + 45 + p.fat
    out: list[Prim] = []
    # envelope: skin, fat, then muscle/abdomen
    out.append(Prim("ecyl", SKIN, (0, y_skin - 125, 175, 125, z_bot, z_top)))
    out.append(Prim("ecyl", FAT, (0, y_skin - 125, 172, 122.5, z_bot, z_top)))
    out.append(Prim("ecyl", BOWEL, (0, y_skin - 125, 172 - p.fat, 122 - p.fat, z_bot, z_top)))
    # paraspinal muscles (erector spinae + multifidus), midline interspinous tissue, quadratus lumborum
    y_m0, y_m1 = cap - 6, y_skin - p.fat - 1.5
    for sgn in (-1, 1):
        out.append(Prim("ecyl", MUSCLE, (sgn * 27, (y_m0 + y_m1) / 2, 33, (y_m1 - y_m0) / 2, z_bot, z_top)))
        out.append(Prim("ecyl", MUSCLE, (sgn * 64, 2, 17, 12, p.z_ref - 10, z_top)))
    out.append(Prim("ecyl", MUSCLE, (0, (y_m0 + y_m1) / 2, 14, (y_m1 - y_m0) / 2, z_bot, z_top)))
    out.append(Prim("ecyl", RPFAT, (0, -bd / 2 - 4, bhw + 26, bd / 2 + 12, z_bot, z_top), 0.0))
    # psoas: grows towards the pelvis
    for sgn in (-1, 1):
        for k in range(6):
            z0 = p.z_ref + (k - 1) * D
            r = 18.0 - 2.2 * k
            out.append(Prim("ecyl", MUSCLE, (sgn * (bhw + r * 0.7), -bd * 0.45, r, r * 0.85, z0, z0 + D)))
    # great vessels: aorta (left) bifurcating at L4, IVC (right)
    z_bif = p.z_ref + 1.5 * D
    out.append(Prim("ecyl", VESSEL, (9, -bd - 11, 9, 9, z_bif, z_top)))
    out.append(Prim("ecyl", VESSEL, (-17, -bd - 9, 11, 8, z_bif - 6, z_top)))
    for sgn in (-1, 1):
        out.append(Prim("ecyl", VESSEL, (sgn * 14, -bd - 9, 6, 6, z_bot, z_bif)))
    # sacrum (S1 body + ala, S2) and the vertebral bodies T12..L5
    l5s1 = discs[0]
    s_top = l5s1.z - l5s1.height / 2
    out.append(Prim("ecyl", CORTEX, (0, -bd / 2, bhw + 3.5, bd / 2 + 1, s_top - 30, s_top), 1.0))
    out.append(Prim("box", CORTEX, (-55, 55, -bd * 0.7, 6, s_top - 30, s_top - 6)))
    out.append(Prim("box", SACRUM, (-53, 53, -bd * 0.7 + 1.5, 4.5, s_top - 28.5, s_top - 7.5)))
    out.append(Prim("ecyl", SACRUM, (0, -bd / 2, bhw + 2.3, bd / 2 - 0.2, s_top - 28.8, s_top - 1.2), -0.2))
    out.append(Prim("ecyl", CORTEX, (0, -bd / 2 + 12, bhw, bd / 2 - 4, z_bot, s_top - 31), 10.0))
    out.append(Prim("ecyl", SACRUM, (0, -bd / 2 + 12, bhw - 1.2, bd / 2 - 5.2, z_bot, s_top - 32.2), 8.8))
    for i in range(len(discs)):
        z0 = discs[i].z + discs[i].height / 2
        z1 = discs[i + 1].z - discs[i + 1].height / 2 if i + 1 < len(discs) else discs[i].z + D - 4
        hw = bhw + (0.6 * (4 - i) if i < 5 else -1.0)
        out.append(Prim("ecyl", CORTEX, (0, -bd / 2, hw, bd / 2 + 0.6, z0, z1), 0.0))
        out.append(Prim("ecyl", MARROW, (0, -bd / 2, hw - 1.3, bd / 2 - 0.7, z0 + 1.3, z1 - 1.3), -1.3))
        # pedicles (upper part of the body), laminae, spinous process, transverse processes
        for sgn in (-1, 1):
            xa, xb = sorted((sgn * cw / 2, sgn * (cw / 2 + 8)))
            out.append(Prim("box", CORTEX, (xa, xb, -1, cap + 1, z1 - 15, z1 - 2)))
            out.append(Prim("box", MARROW, (xa + 1.3, xb - 1.3, 0, cap, z1 - 13.7, z1 - 3.3)))
            xa, xb = sorted((sgn * (cw / 2 + 6), sgn * (cw / 2 + 30)))
            out.append(Prim("box", CORTEX, (xa, xb, cap - 4, cap + 4, z1 - 12, z1 - 4)))
        out.append(Prim("box", CORTEX, (-cw / 2 - 8, cw / 2 + 8, cap, cap + 7, (z0 + z1) / 2 - 2, z1 - 1)))
        out.append(Prim("box", MARROW, (-cw / 2 - 7, cw / 2 + 7, cap + 1.3, cap + 5.7, (z0 + z1) / 2 - 0.7, z1 - 2.3)))
        out.append(Prim("box", CORTEX, (-3.5, 3.5, cap + 6, cap + 36, (z0 + z1) / 2 - 9, (z0 + z1) / 2 + 9)))
        out.append(Prim("box", MARROW, (-2.2, 2.2, cap + 7, cap + 34.7, (z0 + z1) / 2 - 7.7, (z0 + z1) / 2 + 7.7)))
    # discs, foramina, facets, ligamentum flavum
    for d in discs:
        h = d.height
        nuc = NUCLEUS0 + d.x
        fr = {"right": STENOSIS_GRADES.index(d.rfs), "left": STENOSIS_GRADES.index(d.lfs)}
        for sgn, side in ((-1, "right"), (1, "left")):
            g = fr[side] if d.x else 0
            fx = sgn * (cw / 2 + 4.5)
            out.append(Prim("ell", EPIFAT, (fx, cap * 0.45, d.z + 5, 5.5, (cap * 0.45 - 1) * (1 - 0.22 * g), 9 * (1 - 0.15 * g))))
            nr = 2.6 * (1 - 0.2 * g)
            out.append(Prim("ell", NERVE, (fx, cap * 0.45, d.z + 9, nr, nr, 3.0)))
            # facet joint: two articular processes with a fluid line
            xa, xb = sorted((sgn * (cw / 2 + 2), sgn * (cw / 2 + 13)))
            out.append(Prim("box", CORTEX, (xa, xb, cap - 3, cap + 9, d.z - 5, d.z + 9)))
            out.append(Prim("box", MARROW, (xa + 1.2, xb - 1.2, cap - 1.8, cap + 7.8, d.z - 3.8, d.z + 7.8)))
            fx = sgn * (cw / 2 + 7.5)
            out.append(Prim("box", FACET, (fx - 0.6, fx + 0.6, cap - 3, cap + 9, d.z - 5, d.z + 9)))
        out.append(Prim("box", CORTEX, (-cw / 2 - 3, cw / 2 + 3, cap - 2, cap + 2.5, d.z - 7, d.z + 9)))
        b = d.bulge
        out.append(Prim("ecyl", ANNULUS, (0, -bd / 2, p.body_hw + b, bd / 2 + b, d.z - h / 2, d.z + h / 2), b))
        out.append(Prim("ecyl", nuc, (0, -bd / 2 - 1, p.body_hw * 0.62, bd * 0.3, d.z - h * 0.32, d.z + h * 0.32)))
    # thecal sac (CSF), cord + conus, cauda equina; sac ends at S2
    z_conus = discs[-1].z + D * 0.5
    sac_y = cap / 2 + 0.3
    out.append(Prim("ecyl", EPIFAT, (0, cap / 2, cw / 2 - 1, cap / 2 - 0.5, z_bot, z_top)))
    out.append(Prim("ecyl", CSF, (0, sac_y, shw, cap / 2 - 1.2, s_top - 35, z_top)))
    out.append(Prim("ecyl", NERVE, (0, sac_y, 4.5, 3.5, z_conus, z_top)))
    out.append(Prim("ell", NERVE, (0, sac_y, z_conus, 3.8, 3.0, 9.0)))
    for k in range(10):
        ang = np.pi * (0.15 + 0.7 * k / 9)
        rx, ry = (shw - 2.5) * np.cos(ang), (cap / 2 - 3.0) * np.sin(ang)
        out.append(Prim("ecyl", NERVE, (float(rx), float(sac_y + ry), 0.9, 0.9, s_top - 30, z_conus)))
    # root sleeves (CSF) towards each foramen; cut short on a stenotic side
    for d in discs:
        for sgn, g in ((-1, d.rfs), (1, d.lfs)):
            length = 9.0 * (1 - 0.3 * STENOSIS_GRADES.index(g))
            xa, xb = sorted((sgn * (shw - 1), sgn * (shw + length)))
            out.append(Prim("box", CSF, (xa, xb, sac_y - 2, sac_y + 2, d.z + D * 0.35, d.z + D * 0.35 + 3)))
    # herniated material last: it indents the sac
    for d in discs:
        if d.state != "herniation":
            continue
        lab = HERNIA0 + d.x
        cx = {"central": 0.0, "left": 6.5, "right": -6.5}[d.side]
        rz = d.height / 2
        if d.htype == "normal":
            out.append(Prim("ell", lab, (cx, 0.0, d.z, 7.5, d.depth, rz)))
        elif d.htype == "migration":
            out.append(Prim("ell", lab, (cx, 0.0, d.z + d.migrate / 2, 7.0, d.depth, rz + abs(d.migrate) / 2)))
        else:  # sequestration: a small stalk at the disc and a free fragment beyond it
            out.append(Prim("ell", lab, (cx, 0.0, d.z, 5.0, d.depth * 0.45, rz * 0.8)))
            fz = d.z + np.sign(d.migrate) * (rz + abs(d.migrate))
            out.append(Prim("ell", lab, (cx, d.depth * 0.35, float(fz), 6.0, d.depth * 0.65, 4.5)))
    return out


# ----------------------------------------------------------------------------------------------
# slicing and rendering
def _ellipse_pts(cu: float, cv: float, ru: float, rv: float, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cu + ru * np.cos(t), cv + rv * np.sin(t)], axis=1)


def _rrect(u0: float, u1: float, v0: float, v1: float, r: float = 2.5) -> np.ndarray:
    """Rectangle with rounded corners (mm): vertebral bodies and discs are not sharp-cornered boxes."""
    r = max(0.0, min(r, (u1 - u0) / 2, (v1 - v0) / 2))
    if r <= 0.2:
        return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])
    t = np.linspace(0, np.pi / 2, 5)
    c, s = np.cos(t), np.sin(t)
    pts = [np.stack([u1 - r + r * c, v1 - r + r * s], 1), np.stack([u0 + r - r * s, v1 - r + r * c], 1),
           np.stack([u0 + r - r * c, v0 + r - r * s], 1), np.stack([u1 - r + r * s, v0 + r - r * c], 1)]
    return np.concatenate(pts, 0)


def _fill(lab: np.ndarray, pts: np.ndarray, value: int) -> None:
    cv2.fillPoly(lab, [np.round(pts * 16).astype(np.int32)], int(value), cv2.LINE_8, 4)


def _paint(prims: list[Prim], plane: str, pos: float, to_px, shape: tuple[int, int],
           only: set[int] | None = None) -> np.ndarray:
    """Label map of one plane. plane 'ax' (z=pos, u=x, v=y), 'sag' (x=pos, u=y, v=z), 'cor' (y=pos, u=x, v=z).
    ``to_px(u, v) -> (col, row)`` arrays in pixels."""
    lab = np.zeros(shape, np.uint8)
    for pr in prims:
        if only is not None and pr.label not in only:
            continue
        poly = None
        if pr.kind == "ecyl":
            cx, cy, rx, ry, z0, z1 = pr.p
            if plane == "ax":
                if z0 <= pos <= z1:
                    poly = _ellipse_pts(cx, cy, rx, ry)
                    if pr.yclip is not None:
                        poly[:, 1] = np.minimum(poly[:, 1], pr.yclip)
            elif plane == "sag":
                if abs(pos - cx) < rx:
                    s = np.sqrt(1 - ((pos - cx) / rx) ** 2)
                    y0, y1 = cy - ry * s, cy + ry * s
                    if pr.yclip is not None:
                        y1 = min(y1, pr.yclip)
                    if y1 > y0:
                        poly = _rrect(y0, y1, z0, z1)
            else:
                if abs(pos - cy) < ry and (pr.yclip is None or pos <= pr.yclip):
                    s = np.sqrt(1 - ((pos - cy) / ry) ** 2)
                    poly = _rrect(cx - rx * s, cx + rx * s, z0, z1)
        elif pr.kind == "ell":
            cx, cy, cz, rx, ry, rz = pr.p
            c = {"ax": (cz, rz, cx, rx, cy, ry), "sag": (cx, rx, cy, ry, cz, rz), "cor": (cy, ry, cx, rx, cz, rz)}[plane]
            if abs(pos - c[0]) < c[1]:
                s = np.sqrt(1 - ((pos - c[0]) / c[1]) ** 2)
                poly = _ellipse_pts(c[2], c[4], c[3] * s, c[5] * s)
        else:
            x0, x1, y0, y1, z0, z1 = pr.p
            c = {"ax": ((z0, z1), x0, x1, y0, y1), "sag": ((x0, x1), y0, y1, z0, z1), "cor": ((y0, y1), x0, x1, z0, z1)}[plane]
            if c[0][0] <= pos <= c[0][1]:
                poly = np.array([[c[1], c[3]], [c[2], c[3]], [c[2], c[4]], [c[1], c[4]]])
        if poly is not None:
            u, v = to_px(poly[:, 0], poly[:, 1])
            _fill(lab, np.stack([u, v], axis=1), pr.label)
    return lab


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance correlated noise; coarse scales are drawn at low resolution and upsampled (fast)."""
    if sigma >= 3:
        k = max(1, int(sigma // 2))
        small = rng.standard_normal((shape[0] // k + 1, shape[1] // k + 1), dtype=np.float32)
        small = cv2.GaussianBlur(small, (0, 0), sigma / k)
        n = cv2.resize(small, (shape[1] // k * k + k, shape[0] // k * k + k), interpolation=cv2.INTER_LINEAR)[: shape[0], : shape[1]]
    else:
        n = cv2.GaussianBlur(rng.standard_normal(shape, dtype=np.float32), (0, 0), sigma)
    return n / max(float(n.std()), 1e-6)


def _signal(p: MriPatient, lab: np.ndarray, rng: np.random.Generator, lut_over: dict[int, float] | None = None,
            blur: float = 0.7, coil: str = "post") -> np.ndarray:
    """Labels -> T2 signal with texture, blur, coil shading and Rician noise -> uint16 (12-bit)."""
    lut = np.zeros(256, np.float32)
    fine = np.zeros(256, np.float32)
    coarse = np.zeros(256, np.float32)
    for k, v in _T2.items():
        lut[k] = v
    for d in p.discs:
        lut[NUCLEUS0 + d.x] = d.nucleus
        lut[HERNIA0 + d.x] = d.hernia_signal
        fine[NUCLEUS0 + d.x] = 0.05
    for k, v in _FINE_TEX.items():
        fine[k] = v
    for k, v in _COARSE_TEX.items():
        coarse[k] = v
    if lut_over:
        for k, v in lut_over.items():
            lut[k] = v
    h, w = lab.shape
    sig = lut[lab] * (1 + fine[lab] * _smooth_noise(rng, (h, w), 0.9) + coarse[lab] * _smooth_noise(rng, (h, w), 5.0))
    sig = cv2.GaussianBlur(np.clip(sig, 0, None), (0, 0), blur)
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    if coil == "post":  # spine coil under the back: brighter posteriorly (bottom of axial, right of sagittal)
        shade = 1.0 + 0.18 * yy + 0.05 * xx
    else:
        shade = 1.0 - 0.1 * (xx**2 + yy**2)
    sig = sig * shade
    s = p.noise
    n1 = rng.standard_normal((h, w), dtype=np.float32) * s
    n2 = rng.standard_normal((h, w), dtype=np.float32) * s
    mag = np.sqrt((sig + n1) ** 2 + n2**2)
    return np.clip(np.round(mag * p.scale), 0, 4095).astype(np.uint16)


def _ax_mapper(p: MriPatient, size: int):
    col0 = size * 6 / 13 + p.ax_shift[0]  # spine centre on the ROI's centre column
    row0 = size * 0.49 + p.ax_shift[1]  # posterior vertebral wall
    return lambda u, v: (col0 + u / p.ax_ps, row0 + v / p.ax_ps)


def axial_z(p: MriPatient, frame: int) -> float:
    """z (mm) of 1-based axial frame: frame 3 is the L5-S1 mid-plane, frames every ax_spacing upwards."""
    return p.z_ref + (frame - 3) * p.ax_spacing


def sagittal_x(p: MriPatient, frame: int, n: int = N_SAG) -> float:
    """x (mm) of 1-based sagittal frame; frame n//2+1 is the mid-sagittal plane (x = 0)."""
    return (frame - (n // 2 + 1)) * 4.0


def render_axial(p: MriPatient, frame: int, size: int = AX_SIZE, *, labels: bool = False) -> np.ndarray:
    """One axial T2 frame (uint16) or, with labels=True, its tissue label map."""
    lab = _paint(p.prims, "ax", axial_z(p, frame), _ax_mapper(p, size), (size, size))
    if labels:
        return lab
    rng = np.random.default_rng([p.seed, abs(hash_id(p.patient_id)), 1, frame])
    return _signal(p, lab, rng)


def render_sagittal(p: MriPatient, frame: int, size: int = SAG_SIZE, n: int = N_SAG, *, labels: bool = False) -> np.ndarray:
    """One sagittal T2 frame: anterior left, superior up; lordosis bends the column."""
    D = 5 * p.ax_spacing
    zc = p.z_ref + 2.2 * D
    col0 = size * 0.52 + p.sag_shift[0]
    row0 = size * 0.5 + p.sag_shift[1]
    to_px = lambda u, v: (col0 + u / p.sag_ps, row0 - (v - zc) / p.sag_ps)  # noqa: E731
    lab = _paint(p.prims, "sag", sagittal_x(p, frame, n), to_px, (size, size))
    # lordosis: shift each row anteriorly (left) most at mid-lumbar level
    rows = np.arange(size, dtype=np.float32)
    zr = (rows - row0) * p.sag_ps
    shift = p.lordosis * (1 - (zr / (2.8 * D)) ** 2).clip(-1, 1) / p.sag_ps
    mapx = np.arange(size, dtype=np.float32)[None, :] + shift[:, None]
    mapy = np.repeat(rows[:, None], size, axis=1)
    lab = cv2.remap(lab, mapx.astype(np.float32), mapy.astype(np.float32), cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    if labels:
        return lab
    rng = np.random.default_rng([p.seed, abs(hash_id(p.patient_id)), 2, frame])
    return _signal(p, lab, rng)


def render_myelo(p: MriPatient, frame: int, size: int = MYELO_SIZE) -> np.ndarray:
    """MR myelography: heavily T2-weighted coronal slab, only CSF bright (mean over the slab)."""
    D = 5 * p.ax_spacing
    zc = p.z_ref + 2.2 * D
    squeeze = [1.0, 0.85, 0.85][(frame - 1) % 3]  # frames 2, 3: oblique views, narrower projection
    col0, row0 = size / 2, size * 0.5
    to_px = lambda u, v: (col0 + squeeze * u / p.myelo_ps, row0 - (v - zc) / p.myelo_ps)  # noqa: E731
    sac_y = p.canal_ap / 2
    acc = np.zeros((size, size), np.float32)
    ys = np.linspace(sac_y - p.canal_ap / 2 + 1.5, sac_y + p.canal_ap / 2 - 1.5, 7)
    for y in ys:
        acc += (_paint(p.prims, "cor", float(y), to_px, (size, size)) == CSF).astype(np.float32)
    acc /= len(ys)
    rng = np.random.default_rng([p.seed, abs(hash_id(p.patient_id)), 3, frame])
    sig = cv2.GaussianBlur(acc, (0, 0), 0.8) + 0.03 * (1 + 0.5 * _smooth_noise(rng, (size, size), 8.0)).clip(0, None)
    s = p.noise * 0.7
    mag = np.sqrt((sig + rng.standard_normal(sig.shape, dtype=np.float32) * s) ** 2
                  + (rng.standard_normal(sig.shape, dtype=np.float32) * s) ** 2)
    return np.clip(np.round(mag * p.scale), 0, 4095).astype(np.uint16)


def hash_id(text: str) -> int:
    """Stable 31-bit integer from a string (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


# ----------------------------------------------------------------------------------------------
# DICOM writing
def _uid(*parts: object):
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(x) for x in parts])


def _series_template(p: MriPatient, series_key: str, *, n_frames: int, iop: list[float], spacing: float,
                     thickness: float, between: float, shape: tuple[int, int]):
    """A Dataset holding everything shared by one series; :func:`_write_instance` fills the rest.
    (Building a pydicom Dataset per file costs more than writing it.)"""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    desc, number = SERIES[series_key]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _MR_STORAGE
    meta.MediaStorageSOPInstanceUID = _uid("sop", p.seed, p.patient_id, series_key, 0)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _uid("spine_models", GENERATOR_VERSION)
    meta.ImplementationVersionName = "SPINEMODELS01"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "SYNTHETIC"]
    ds.SOPClassUID = _MR_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "000000"
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.Manufacturer = "spine_models phantom"
    ds.InstitutionName = "SYNTHETIC"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "LUMBAR SPINE (SYNTHETIC PHANTOM)"
    ds.SeriesDescription = desc
    ds.PatientName = "PHANTOM^SYNTHETIC"
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "LSPINE"
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D" if series_key == "MYELO" else "2D"
    ds.SliceThickness = f"{thickness:.2f}"
    ds.RepetitionTime = "6000" if series_key == "MYELO" else "3500"
    ds.EchoTime = "700" if series_key == "MYELO" else "100"
    ds.MagneticFieldStrength = "1.5"
    ds.SpacingBetweenSlices = f"{between:.4f}"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = _uid("study", p.seed, p.patient_id)
    ds.SeriesInstanceUID = _uid("series", p.seed, p.patient_id, series_key)
    ds.StudyID = "1"
    ds.SeriesNumber = number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 0
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
    ds.FrameOfReferenceUID = _uid("for", p.seed, p.patient_id)
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = "0"
    ds.ImagesInAcquisition = n_frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(shape[0]), int(shape[1])
    ds.PixelSpacing = [f"{spacing:.6f}", f"{spacing:.6f}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "1200"
    ds.WindowWidth = "2400"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "synthetic phantom: no real patient"
    ds.PixelData = b""
    return ds


def _write_instance(ds, path: Path, pixels: np.ndarray, *, p: MriPatient, series_key: str, instance: int,
                    ipp: list[float], slice_loc: float) -> None:
    sop = _uid("sop", p.seed, p.patient_id, series_key, instance)
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SOPInstanceUID = sop
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
    ds.SliceLocation = f"{slice_loc:.4f}"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_study(p: MriPatient, study_dir: Path) -> list[Path]:
    """Write the three series of one phantom patient (DIR/<patient>/<series>/<instance>.dcm)."""
    files: list[Path] = []
    D = 5 * p.ax_spacing
    zc = p.z_ref + 2.2 * D
    # axial: rows run +x (patient left), columns +y (posterior); LPS patient coordinates
    col0, row0 = AX_SIZE * 6 / 13 + p.ax_shift[0], AX_SIZE * 0.49 + p.ax_shift[1]
    ds = _series_template(p, "T2_AX", n_frames=N_AX, iop=[1, 0, 0, 0, 1, 0], spacing=p.ax_ps, thickness=4.0,
                          between=p.ax_spacing, shape=(AX_SIZE, AX_SIZE))
    for f in range(1, N_AX + 1):
        z = axial_z(p, f)
        path = study_dir / "T2_AX" / f"{f:04d}.dcm"
        _write_instance(ds, path, render_axial(p, f), p=p, series_key="T2_AX", instance=f,
                        ipp=[-col0 * p.ax_ps, -row0 * p.ax_ps, z], slice_loc=z)
        files.append(path)
    scol0, srow0 = SAG_SIZE * 0.52 + p.sag_shift[0], SAG_SIZE * 0.5 + p.sag_shift[1]
    ds = _series_template(p, "T2_SAG", n_frames=N_SAG, iop=[0, 1, 0, 0, 0, -1], spacing=p.sag_ps, thickness=3.5,
                          between=4.0, shape=(SAG_SIZE, SAG_SIZE))
    for f in range(1, N_SAG + 1):
        x = sagittal_x(p, f)
        path = study_dir / "T2_SAG" / f"{f:04d}.dcm"
        _write_instance(ds, path, render_sagittal(p, f), p=p, series_key="T2_SAG", instance=f,
                        ipp=[x, -scol0 * p.sag_ps, zc + srow0 * p.sag_ps], slice_loc=x)
        files.append(path)
    y = p.canal_ap / 2
    ds = _series_template(p, "MYELO", n_frames=N_MYELO, iop=[1, 0, 0, 0, 0, -1], spacing=p.myelo_ps,
                          thickness=40.0, between=0.0, shape=(MYELO_SIZE, MYELO_SIZE))
    for f in range(1, N_MYELO + 1):
        path = study_dir / "MYELO" / f"{f:04d}.dcm"
        _write_instance(ds, path, render_myelo(p, f), p=p, series_key="MYELO", instance=f,
                        ipp=[-MYELO_SIZE / 2 * p.myelo_ps, y, zc + MYELO_SIZE / 2 * p.myelo_ps], slice_loc=y)
        files.append(path)
    return files


def generate_mri(out_dir: Path, n: int, seed: int, difficulty: str = "standard", quiet: bool = False) -> dict:
    """Write n synthetic lumbar MRI studies + labels.csv + MANIFEST.json; returns the manifest dict.

    Same arguments -> byte-identical files (no clocks, no process-salted hashes, UIDs from entropy).
    """
    from spine_models import __version__
    from spine_models._progress import progress
    from spine_models.errors import SpineInputError

    out_dir = Path(out_dir)
    if int(n) < 1:
        raise SpineInputError(f"--n {n}: need at least 1 patient")
    if difficulty not in _DIFFICULTY:
        raise SpineInputError(f"--difficulty {difficulty!r}: use easy, standard or hard")
    if out_dir.exists() and not out_dir.is_dir():
        raise SpineInputError(f"{out_dir}: exists and is not a folder; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    counts = {s: 0 for s in DISC_STATES}
    for i in progress(range(n), total=n, desc="mri-lumbar", quiet=quiet):
        pid = f"SYN-MRI-{i + 1:04d}"
        p = make_patient(pid, seed, i, difficulty)
        write_study(p, out_dir / pid)
        for d in sorted((d for d in p.discs if d.x), key=lambda d: -d.x):  # L1-L2 first
            level = DISC_LEVELS[d.x - 1]  # the labels name the frames the study's rule will choose
            rows.append({
                "id": f"{pid}_{level}", "patient_id": pid, "level": level, "disc_state": d.state,
                "disc_grade": DISC_STATES.index(d.state), "herniation_type": d.htype, "herniation_side": d.side,
                "scs": d.scs, "rfs": d.rfs, "lfs": d.lfs, "axial_frame": select_axial_frame(d.x),
                "sagittal_frame": select_sagittal_frame(N_SAG), "study_name": study_image_name(pid, "ax", d.x),
                "view": "mri_ax", "class": d.state,
            })
            counts[d.state] += 1
    with open(out_dir / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=LABEL_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    meta = {
        "generator": "spine_models.data.phantom.mri", "generator_version": GENERATOR_VERSION,
        "package_version": __version__, "kind": "mri-lumbar",
        "arguments": {"n": int(n), "seed": int(seed), "difficulty": difficulty}, "seed": int(seed),
        "counts": {"patients": int(n), "discs": len(rows), "disc_state": counts,
                   "herniation_type": {t: sum(r["herniation_type"] == t for r in rows) for t in HERNIATION_TYPES}},
        "series": {k: {"description": v[0], "frames": {"T2_SAG": N_SAG, "T2_AX": N_AX, "MYELO": N_MYELO}[k]}
                   for k, v in SERIES.items()},
    }
    write_manifest(out_dir, meta)
    return json.loads((out_dir / "MANIFEST.json").read_text(encoding="utf-8"))
