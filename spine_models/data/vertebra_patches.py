"""Vertebra patches: one square patch per body, cut along the body's own tilt at the film's resolution.

Why: the AP U-Net sees a real film at about a quarter of its resolution, so the corners it gives a body are off by
~28 px on held-out AASCE films and each body's tilt by several degrees — and the Cobb angle is the largest
difference of two tilts, so that noise decides it. A patch cut around each found body, rotated so the body lies
level, lets a small network read the body's four corners where the endplates really are (the two-stage design of
the vertebra-focused landmark literature). The geometry lives here, once, for training and for the Predictor:
:func:`patch_matrix` maps film to patch, :func:`to_patch` / :func:`to_film` move corners both ways, and
:func:`corner_targets` / :func:`decode_outputs` are the network's target and read-back. A mirrored patch swaps the
corner order (TL <-> TR, BR <-> BL) so "top-left" stays top-left as seen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from spine_models.measure.cobb import endplate_angles

__all__ = ["PATCH_SIZE", "PATCH_SIDE", "WORK_HEIGHT", "body_frame", "patch_matrix", "extract_patch", "to_patch",
           "to_film", "corner_targets", "decode_outputs", "standardize", "work_film", "MIRROR_ORDER", "PatchFilm",
           "patch_films", "work_image", "LevelFilm", "level_patches", "extended_column"]

PATCH_SIZE = 64      # patch pixels a side
PATCH_SIDE = 2.0     # patch side / body width: the body and half a neighbour above and below
WORK_HEIGHT = 1024   # films are resampled to this height before patches are cut (AASCE films: ~2000-3000 px)
ANGLE_SCALE = 10.0   # the network's angle outputs are degrees / ANGLE_SCALE
MIRROR_ORDER = [1, 0, 3, 2]  # corner order after a left-right mirror: TL, TR, BR, BL -> TR, TL, BL, BR


def body_frame(corners: Sequence[Sequence[float]]) -> tuple[np.ndarray, float, float]:
    """(centre (x, y), width, tilt in degrees) of one body from its corners TL, TR, BR, BL."""
    c4 = np.asarray(corners, float).reshape(4, 2)
    width = 0.5 * (float(np.linalg.norm(c4[1] - c4[0])) + float(np.linalg.norm(c4[2] - c4[3])))
    up, low = endplate_angles(c4)
    return c4.mean(axis=0), width, (up + low) / 2


def patch_matrix(center: Sequence[float], angle_deg: float, side: float, *, size: int = PATCH_SIZE,
                 mirror: bool = False) -> np.ndarray:
    """2x3 affine taking film (x, y) to patch pixels: the patch is ``side`` film pixels wide, centred on ``center``,
    its x axis along ``angle_deg`` (a line at that angle on the film is level in the patch); ``mirror`` flips it."""
    if not side > 0:
        raise ValueError(f"patch_matrix: side={side!r}; a body's patch needs a positive width")
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) * (size / side)
    if mirror:
        rot = np.array([[-1.0, 0.0], [0.0, 1.0]]) @ rot
    t = np.array([size / 2, size / 2]) - rot @ np.asarray(center, float)
    return np.hstack([rot, t[:, None]])


def extract_patch(image: np.ndarray, matrix: np.ndarray, size: int = PATCH_SIZE) -> np.ndarray:
    """The (size, size) float32 patch of a 2-D image under ``matrix`` (edges reflected, bilinear)."""
    import cv2

    return cv2.warpAffine(np.asarray(image, np.float32), matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def to_patch(corners: Sequence[Sequence[float]], matrix: np.ndarray, *, mirror: bool = False) -> np.ndarray:
    """Corners (4, 2) in patch pixels, re-ordered TL, TR, BR, BL as seen in the patch when it is mirrored."""
    c4 = np.asarray(corners, float).reshape(4, 2)
    pc = c4 @ matrix[:, :2].T + matrix[:, 2]
    return pc[MIRROR_ORDER] if mirror else pc


def to_film(patch_corners: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Patch-pixel corners (4, 2) back on the film (the inverse of an unmirrored :func:`to_patch`)."""
    a, t = matrix[:, :2], matrix[:, 2]
    return np.linalg.solve(a, (np.asarray(patch_corners, float).reshape(4, 2) - t).T).T


def corner_targets(patch_corners: np.ndarray, size: int = PATCH_SIZE) -> np.ndarray:
    """The network's 10 targets: 8 corner coordinates scaled to [-1, 1] and the (upper, lower) endplate angles
    in the patch, in units of ``ANGLE_SCALE`` degrees."""
    pc = np.asarray(patch_corners, float).reshape(4, 2)
    up, low = endplate_angles(pc)
    return np.concatenate([(pc.reshape(-1) - size / 2) / (size / 2), [up / ANGLE_SCALE, low / ANGLE_SCALE]]).astype(np.float32)


def decode_outputs(out: np.ndarray, size: int = PATCH_SIZE) -> tuple[np.ndarray, float, float]:
    """(corners (4, 2) in patch pixels, upper and lower endplate angles in the patch, degrees) from 10 outputs."""
    o = np.asarray(out, float).reshape(-1)
    return o[:8].reshape(4, 2) * (size / 2) + size / 2, float(o[8] * ANGLE_SCALE), float(o[9] * ANGLE_SCALE)


def standardize(patch: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance: films differ in exposure and equalisation; a body's outline does not."""
    p = np.asarray(patch, np.float32)
    return (p - p.mean()) / (p.std() + 1e-6)


def work_film(pixels: np.ndarray, height: int = WORK_HEIGHT) -> tuple[np.ndarray, float]:
    """(the film resampled to ``height`` rows (area-averaged), scale work/film): patches are cut from it so a
    body covers about the same pixels on every film, whatever its scanner's resolution."""
    import cv2

    px = np.asarray(pixels, np.float32)
    scale = height / px.shape[0]
    if abs(scale - 1.0) < 1e-9:
        return px, 1.0
    w = max(1, round(px.shape[1] * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(px, (w, height), interpolation=interp), scale


def work_image(pixels: np.ndarray, height: int = WORK_HEIGHT) -> tuple[np.ndarray, float]:
    """(the film at ``height`` rows as uint8, scale work/film): what a training film holds in memory for the patch
    networks (a quarter of float32's), read back as ``image / 255``."""
    work, scale = work_film(pixels, height)
    return (np.clip(work, 0, 1) * 255).round().astype(np.uint8), scale


@dataclass
class PatchFilm:
    """One training film at the work height (uint8) and its bodies' expert corners (N, 4, 2) in work pixels."""

    image: np.ndarray
    corners: np.ndarray
    patient_id: str


def patch_films(samples: Sequence[Any], *, height: int = WORK_HEIGHT, quiet: bool = True) -> list[PatchFilm]:
    """The films with expert corners (S1 left out: its top is no vertebral body), resampled to ``height`` rows: what
    the corner network trains on (``data.torch_datasets.VertebraPatchDataset``)."""
    from spine_models._progress import progress
    from spine_models.io.pixels import as_pixels

    out = []
    for s in progress(samples, total=len(samples), desc="prepare films", quiet=quiet):
        if not s.landmarks or s.path is None:
            continue
        px, _, _ = as_pixels(s.path)
        work, scale = work_image(px, height)
        c = np.array([np.asarray(v, float).reshape(4, 2) for k, v in s.landmarks.items() if k != "S1"]) * scale
        if len(c):
            out.append(PatchFilm(work, c, str(s.patient_id)))
    return out


@dataclass
class LevelFilm:
    """One film for the level reader at the work height (uint8): bodies as a model found them and as the experts
    marked them (N, 4, 2 work pixels, top to bottom), each with its level index (-1: no level known)."""

    image: np.ndarray
    bodies: np.ndarray
    labels: np.ndarray
    patient_id: str


def extended_column(corners: np.ndarray) -> np.ndarray:
    """The experts' T1..L5 bodies (N >= 2, top to bottom) with one body more at each end, shifted by the end's
    step (where C7 and the sacrum lie): the reader learns what lies beyond the column, which the experts did not mark."""
    c = np.asarray(corners, float)
    if len(c) < 2:
        raise ValueError(f"extended_column: {len(c)} bodies; the column's ends need at least 2")
    return np.concatenate([[c[0] - (c[1] - c[0])], c, [c[-1] + (c[-1] - c[-2])]])


def level_patches(work: np.ndarray, bodies: np.ndarray, *, side: float, size: int = PATCH_SIZE,
                  mirror: bool = False) -> np.ndarray:
    """(N, 1, size, size) float32: one standardized patch per body (work pixels), cut along the body's tilt and
    ``side`` body widths wide (``mirror``: flipped left-right): the level reader's input at inference (training
    draws its own, jittered)."""
    out = []
    for b in np.asarray(bodies, float).reshape(-1, 4, 2):
        c, w, tilt = body_frame(b)
        m = patch_matrix(c, tilt, side * max(w, 1.0), size=size, mirror=mirror)
        out.append(standardize(extract_patch(work, m, size))[None])
    return np.stack(out).astype(np.float32) if out else np.zeros((0, 1, size, size), np.float32)
