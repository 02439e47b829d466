"""Spondylolisthesis slip (Meyerding) and disc heights from lateral vertebra corners or a mask.

Why: the lateral film's clinical numbers. Slip % is the anterior displacement of the upper body's
posterior-inferior corner relative to the lower body's posterior-superior corner, measured along
the lower body's superior endplate and expressed as a percentage of that endplate's length
(Meyerding 1932; the usual Taillard-style percentage). Positive = anterolisthesis (forward slip);
negative = retrolisthesis.

Orientation: corners are TL, TR, BR, BL as seen on the image. Which side is anterior depends on
how the film was taken; pass ``anterior="left"`` (patient facing image-left, the usual display) or
``"right"``. :func:`slip_from_mask` infers it from the spinous processes (they are posterior).

:func:`slip_from_mask` says when its read must not be shown as a finding (``reliable``, ``warnings``):
no level found, a slip no two adjacent bodies show, or an anterior side assumed rather than seen.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["slip_percent", "slip_grade", "meyerding_grade", "slip_levels", "slip_from_mask", "disc_heights", "infer_anterior",
           "s1_endplate_from_disc", "s1_endplate_from_corner", "LUMBAR_LOWER",
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


def meyerding_grade(percent: float, *, none_below: float = 5.0) -> int:
    """Meyerding grade 0-5 from slip %.

    Intervals are closed below, open above: grade I [none_below, 25), II [25, 50), III [50, 75),
    IV [75, 100), V >= 100 (spondyloptosis) — so 25.0 is grade II and 100.0 grade V. Slips under
    ``none_below`` % (default 5 %) and retrolisthesis (negative %) are grade 0: Meyerding grades
    forward slips only, and a segmentation measures a normal level at 0 +- a few % (phantom ground-truth
    masks: MAE 1.1 %). The phantom's truth labels use this same function, so a measured grade and the
    truth can only differ by the measurement.
    """
    p = float(percent)
    if not math.isfinite(p):
        raise ValueError(f"meyerding_grade: slip percent {percent!r} is not a finite number")
    if p < none_below:
        return 0
    if p >= 100.0:
        return 5
    return 1 + int(p // 25.0)


# Slip % two adjacent bodies can show: beyond a full body length forward (grade V is >= 100 %; a body
# displaced further than half a length again has left the level) or half a length backwards
# (retrolisthesis rarely passes a quarter), the "level" is two unrelated fragments of a mask.
SLIP_PLAUSIBLE_PERCENT = (-50.0, 150.0)


def _slip_plausibility(level: str | None, pct: float, anterior_source: str) -> dict[str, Any]:
    """``{"reliable", "warnings"}`` of a slip read: why a number must not be shown as a finding."""
    warnings = []
    if level is None:
        warnings.append("fewer than 2 vertebral bodies found; slip needs two adjacent bodies")
    elif not (math.isfinite(pct) and SLIP_PLAUSIBLE_PERCENT[0] <= pct <= SLIP_PLAUSIBLE_PERCENT[1]):
        lo, hi = SLIP_PLAUSIBLE_PERCENT
        warnings.append(f"slip {pct:.0f} % at {level} is outside what two adjacent bodies show ({lo:.0f} to {hi:.0f} %)")
    if anterior_source.startswith("assumed"):
        warnings.append("the film's anterior side was assumed, not seen (no spinous process found): "
                        "a forward slip may read as a backward one")
    return {"reliable": not warnings, "warnings": warnings}


def slip_grade(upper: Sequence[Sequence[float]], lower: Sequence[Sequence[float]], *,
               anterior: str = "left") -> tuple[float, int]:
    """(slip %, Meyerding grade) of ``upper`` over ``lower`` in one call."""
    pct = slip_percent(upper, lower, anterior=anterior)
    return pct, meyerding_grade(pct)


def slip_levels(landmarks: Mapping[str, Sequence[Sequence[float]]], *, anterior: str = "left") -> dict[str, float]:
    """Slip % for every adjacent pair of vertebrae (sorted top to bottom), keyed ``"L4-L5"``."""
    items = sorted(((k, _corners(v)) for k, v in landmarks.items()), key=lambda kv: kv[1][:, 1].mean())
    return {f"{a}-{b}": slip_percent(ca, cb, anterior=anterior) for (a, ca), (b, cb) in zip(items[:-1], items[1:])}


def _measurable_levels(landmarks: Mapping[str, np.ndarray], anterior: str) -> tuple[dict[str, float], dict[str, str]]:
    """Like :func:`slip_levels`, but a level that cannot be measured (a degenerate body from a predicted
    mask) is listed with its reason instead of aborting the whole film (and a batch with it)."""
    items = sorted(((k, _corners(v)) for k, v in landmarks.items()), key=lambda kv: kv[1][:, 1].mean())
    levels: dict[str, float] = {}
    failed: dict[str, str] = {}
    for (a, ca), (b, cb) in zip(items[:-1], items[1:]):
        try:
            value = slip_percent(ca, cb, anterior=anterior)
        except ValueError as exc:
            failed[f"{a}-{b}"] = str(exc).split(": ", 1)[-1]
            continue
        if math.isfinite(value):
            levels[f"{a}-{b}"] = value
        else:
            failed[f"{a}-{b}"] = "slip is not a finite number (degenerate corners)"
    return levels, failed


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


LUMBAR_LOWER = ("L2", "L3", "L4", "L5", "S1")  # lower body of a lumbar level (L1-L2 .. L5-S1)


def s1_endplate_from_disc(disc_mask: np.ndarray, lowest_body: Sequence[Sequence[float]], *,
                          anterior: str = "left", min_length: float | None = None,
                          posterior_line_mask: np.ndarray | None = None) -> list[tuple[float, float]] | None:
    """The sacrum's superior endplate (anterior and posterior corner) from the L5-S1 disc mask.

    Why: a lateral vertebra mask holds the bodies T1..L5 only (the phantom draws the sacrum as bone,
    not as a vertebra), so the L5-S1 level, where most slips happen, has no lower body in it. The
    disc below L5 ends on the S1 endplate: its bottom boundary is a straight line over the sacral
    endplate, while beyond the sacrum's anterior corner a slipped disc's edge climbs towards L5. The
    line is fitted on the posterior part of the profile; the anterior end is the last column still on
    it. A forward slip leaves only a thin sliver of disc over the sacrum's posterior corner, which a
    predicted mask loses; the posterior vertebral line (lateral ``posterior_line`` structure) ends on
    that corner, so when given, its lowest point below the endplate's normal direction (projected
    onto the endplate line) moves the posterior corner back when it lies further posterior.
    ``min_length`` (px, off by default) extends a short endplate posteriorly from the anterior corner.
    Returns 4 corners TL, TR, BR, BL as seen (the lower two a body height below, a placeholder:
    only the upper endplate is used), or None when no disc lies below the lowest body.
    """
    _check_side(anterior)
    m = (np.asarray(disc_mask) > 0).astype(np.uint8)
    if m.ndim != 2 or not m.any():
        return None
    low = _corners(lowest_body)
    body_w = float(np.hypot(*(low[1] - low[0]))) or 1.0
    body_h = float(np.hypot(*(low[3] - low[0]))) or 1.0
    disc = _disc_below(m, low)
    if disc is None:
        return None
    cols, yb = _lower_outline(disc)
    if len(cols) < 4:
        return None
    # order columns from posterior to anterior
    order = np.argsort(-cols) if anterior == "left" else np.argsort(cols)
    cols, yb = cols[order].astype(float), yb[order]
    k = len(cols)
    fit = slice(int(0.05 * k), max(int(0.5 * k), int(0.05 * k) + 3))
    mfit, cfit = np.polyfit(cols[fit], yb[fit], 1)
    tol = max(1.5, 0.03 * body_w)
    on = np.abs(yb - (mfit * cols + cfit)) <= tol
    # anterior end: the last column of the first long run on the line (a few noisy columns may dip off)
    end = k - 1
    off = 0
    for j in range(k):
        off = 0 if on[j] else off + 1
        if off > max(2, int(0.04 * k)):
            end = j - off
            break
    sel = slice(0, max(end + 1, 3))
    core = slice(int(0.1 * (end + 1)), max(int(0.9 * (end + 1)), int(0.1 * (end + 1)) + 2))
    mfit, cfit = np.polyfit(cols[sel][core], yb[sel][core], 1)
    post_x, ant_x = float(cols[0]), float(cols[max(end, 1)])
    post = np.array([post_x, mfit * post_x + cfit])
    ant = np.array([ant_x, mfit * ant_x + cfit])
    u = (post - ant) / (float(np.hypot(*(post - ant))) or 1.0)  # anterior -> posterior along the endplate
    if posterior_line_mask is not None:
        pys, pxs = np.nonzero(np.asarray(posterior_line_mask) > 0)
        if len(pxs):
            pts = np.stack([pxs, pys], 1).astype(float)
            near = np.hypot(*(pts - post).T) < 0.8 * body_w
            if near.any():
                pts = pts[near]
                nrm = np.array([-u[1], u[0]])
                nrm = nrm if nrm[1] > 0 else -nrm  # pointing down, away from L5
                pr = (pts - post) @ nrm
                tip = pts[pr >= pr.max() - 1.5].mean(axis=0)
                along = float((tip - ant) @ u)
                if along > float((post - ant) @ u):
                    post = ant + u * along
    length = float(np.hypot(*(post - ant)))
    if min_length and length < min_length and length > 0:
        post = ant + (post - ant) / length * float(min_length)
    down = np.array([-(post - ant)[1], (post - ant)[0]]) if anterior == "left" else np.array([(post - ant)[1], -(post - ant)[0]])
    down = down / (np.hypot(*down) or 1.0) * body_h
    if down[1] < 0:
        down = -down
    tl, tr = (ant, post) if anterior == "left" else (post, ant)
    return [tuple(map(float, tl)), tuple(map(float, tr)), tuple(map(float, tr + down)), tuple(map(float, tl + down))]


def _mirror_corners(c: np.ndarray, width: int) -> np.ndarray:
    """Corners TL, TR, BR, BL of the left-right mirrored image (TL and TR swap, BR and BL swap)."""
    m = c[[1, 0, 3, 2]].copy()
    m[:, 0] = width - 1 - m[:, 0]
    return m


def s1_endplate_from_corner(disc_mask: np.ndarray, lowest_body: Sequence[Sequence[float]], *,
                            anterior: str = "left", posterior_line_mask: np.ndarray | None = None,
                            length_ratio: float = 0.9, tilt_deg: float = 10.0,
                            fit_length: float = 0.5) -> list[tuple[float, float]] | None:
    """The sacrum's superior endplate anchored on its anterior-superior corner (for predicted masks).

    Why: a segmentation model paints the L5-S1 disc under L5 and loses the part that a forward slip
    leaves over the sacrum's posterior half, so the posterior corner (the slip's reference point) is
    not in a predicted disc mask, while the anterior-superior corner of S1 still is: the L5-S1 disc is
    lordotic, its lower edge (the S1 endplate) is steeper than L5's lower endplate, and the S1 corner
    is the disc outline's extreme point along the normal of a line ``tilt_deg`` steeper than L5's
    endplate (the part of a slipped disc hanging in front of the sacrum runs parallel to L5 and so
    does not win). The endplate's direction is fitted on the lower outline behind that corner (within
    ``fit_length`` L5 endplate lengths); its length is the longer of the outline seen and
    ``length_ratio`` x L5's lower endplate (the sacral endplate is about as long as L5's). When the
    posterior vertebral line (``posterior_line``) reaches past L5's posterior-inferior corner, its end
    is the S1 posterior corner and sets the length instead. Defaults tuned on a phantom tuning set
    (seed 321, predicted masks). Returns 4 corners TL, TR, BR, BL (lower two a placeholder), or None
    when no disc lies below the lowest body or the outline gives no corner (an L5-S1 disc not steeper
    than L5, e.g. a hand-drawn parallel disc): :func:`s1_endplate_from_disc` then applies.
    """
    _check_side(anterior)
    m = np.asarray(disc_mask) > 0
    low = _corners(lowest_body)
    if m.ndim != 2 or not m.any():
        return None
    pl = None if posterior_line_mask is None else np.asarray(posterior_line_mask) > 0
    if anterior == "right":  # work on the mirrored film (patient facing left) and mirror back
        w = m.shape[1]
        out = s1_endplate_from_corner(m[:, ::-1], _mirror_corners(low, w), anterior="left",
                                      posterior_line_mask=None if pl is None else pl[:, ::-1],
                                      length_ratio=length_ratio, tilt_deg=tilt_deg, fit_length=fit_length)
        return None if out is None else [tuple(map(float, q)) for q in _mirror_corners(np.asarray(out), w)]
    comp = _disc_below(m.astype(np.uint8), low)
    if comp is None:
        return None
    pts = np.stack(_lower_outline(comp), 1).astype(float)  # lower outline, one point per column
    if len(pts) < 4:
        return None
    t5 = low[2] - low[3]  # L5's lower endplate, anterior -> posterior (image-right when facing left)
    l5_len = float(np.hypot(*t5))
    if l5_len <= 0:
        return None
    t5 /= l5_len
    a = -math.radians(tilt_deg)  # turn the posterior end up (a lordotic L5-S1 disc)
    t = np.array([math.cos(a) * t5[0] - math.sin(a) * t5[1], math.sin(a) * t5[0] + math.cos(a) * t5[1]])
    nrm = np.array([-t[1], t[0]])
    nrm = nrm if nrm[1] > 0 else -nrm  # pointing down, away from L5
    ant = pts[int(np.argmax(pts @ nrm))]
    if float((ant - low[2]) @ t5) > -0.1 * l5_len:
        # the "corner" lies under or behind L5's posterior-inferior corner: an outline with no lordotic
        # corner (a disc parallel to L5 whose lower edge ends at S1's posterior corner) - the profile
        # method reads that one; a real S1 anterior corner lies in front of it unless the slip is ~100 %
        return None
    along = (pts - ant) @ t5
    sel = (along > 0.05 * l5_len) & (along < fit_length * l5_len)
    u = t
    if sel.sum() >= 3:
        k, _ = np.polyfit(pts[sel, 0], pts[sel, 1], 1)
        cand = np.array([1.0, k]) / math.hypot(1.0, k)
        if 5.0 <= math.degrees(math.acos(float(np.clip(cand @ t5, -1.0, 1.0)))) <= 40.0:
            u = cand  # a plausible lumbosacral angle; else keep the prior direction
    length = max(float(((pts - ant) @ u).max()), length_ratio * l5_len)
    if pl is not None and pl.any():
        pys, pxs = np.nonzero(pl)
        q = np.stack([pxs, pys], 1).astype(float)
        br = low[2]
        q = q[(((q - br) @ nrm) > 0.15 * l5_len) & (np.hypot(*(q - br).T) < 1.5 * l5_len)]
        if len(q):
            tip = q[int(np.argmax((q - br) @ nrm))]
            seen = float((tip - ant) @ u)
            if 0.5 * l5_len <= seen <= 2.0 * l5_len:
                length = seen
    post = ant + u * length
    down = np.array([-u[1], u[0]]) * l5_len
    down = down if down[1] > 0 else -down
    return [tuple(map(float, ant)), tuple(map(float, post)), tuple(map(float, post + down)), tuple(map(float, ant + down))]


def _posterior_line_reaches_s1(posterior_line_mask: np.ndarray | None, lowest_body: np.ndarray) -> bool:
    """True when the posterior vertebral line runs on past L5's posterior-inferior corner (to S1's).

    Why: then the masks hold the S1 posterior corner itself (ground-truth-like masks), and the disc
    profile plus that line's end reads the slip best; predicted lines stop at L5.
    """
    if posterior_line_mask is None:
        return False
    pys, pxs = np.nonzero(np.asarray(posterior_line_mask) > 0)
    if not len(pxs):
        return False
    low = np.asarray(lowest_body, float)
    axis = (low[3] + low[2]) / 2 - (low[0] + low[1]) / 2  # down the body
    h = float(np.hypot(*axis)) or 1.0
    q = np.stack([pxs, pys], 1).astype(float) - low[2]
    return bool(np.any(((q @ (axis / h)) > 0.15 * h) & (np.hypot(*q.T) < 2.0 * h)))


def _lower_outline(disc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and lowest y of every column a disc component covers: its boundary over the sacrum."""
    ys, xs = np.nonzero(disc)
    x0 = int(xs.min())
    prof = np.full(int(xs.max()) - x0 + 1, -np.inf)
    np.maximum.at(prof, xs - x0, ys)
    cols = np.flatnonzero(np.isfinite(prof))
    return cols + x0, prof[cols]


def _disc_below(m: np.ndarray, low: np.ndarray) -> np.ndarray | None:
    """The disc component just below the lowest body (specks and discs above it skipped), or None."""
    import cv2

    bottom_mid = (low[2] + low[3]) / 2
    body_w = float(np.hypot(*(low[1] - low[0]))) or 1.0
    body_h = float(np.hypot(*(low[3] - low[0]))) or 1.0
    n, lab, stats, cents = cv2.connectedComponentsWithStats(m, connectivity=8)
    best, best_d = 0, np.inf
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < 4 or cents[i][1] < bottom_mid[1] - 0.25 * body_h:
            continue  # specks, and discs above L5's lower endplate
        d = float(np.hypot(*(cents[i] - bottom_mid)))
        if d < best_d:
            best, best_d = i, d
    if best == 0 or best_d > 1.5 * body_w:
        return None
    return lab == best


def slip_from_mask(vertebra_mask: np.ndarray, *, spinous_mask: np.ndarray | None = None, anterior: str | None = None,
                   pixel_spacing_mm: tuple[float, float] | None = None, names: Sequence[str] | None = None,
                   disc_mask: np.ndarray | None = None, posterior_line_mask: np.ndarray | None = None, worst_of: Sequence[str] | None = LUMBAR_LOWER) -> dict[str, Any]:
    """Slip per level, the worst lumbar level with its Meyerding grade, and disc heights, from a lateral mask.

    ``anterior`` wins when given; else it is inferred from ``spinous_mask``; else "left" is assumed
    (and said so in the result's ``anterior_source``). With ``disc_mask`` (the lateral disc_height
    structure) the sacrum's endplate is found below L5 so L5-S1 is measured too: anchored on the S1
    anterior-superior corner (:func:`s1_endplate_from_corner`, robust to a predicted disc that lost
    its posterior sliver), else from the disc's lower profile (:func:`s1_endplate_from_disc`); the
    result's ``sacrum_method`` says which. The worst level is taken among levels whose lower body is in ``worst_of`` (lumbar
    by default: thoracic kyphosis makes neighbouring bodies look offset by 5-8 % without any slip);
    ``worst_of=None`` considers every level. A level that cannot be measured (e.g. a degenerate body
    with a zero-length endplate) is listed in ``failed_levels`` with its reason, never raised.
    """
    from spine_models.measure.cobb import vertebrae_from_mask

    source = "given"
    if anterior is None:
        anterior = infer_anterior(vertebra_mask, spinous_mask)
        source = "spinous processes"
        if anterior is None:
            anterior, source = "left", "assumed (no spinous process mask)"
    lm = vertebrae_from_mask(vertebra_mask, names=names)
    sacrum_method = None
    if disc_mask is not None and lm and "S1" not in lm:
        low = np.asarray(list(lm.values())[-1], float)
        s1, sacrum_method = None, "disc corner"
        if not _posterior_line_reaches_s1(posterior_line_mask, low):
            # a predicted disc loses its posterior sliver; anchor on the S1 anterior corner instead
            s1 = s1_endplate_from_corner(disc_mask, low, anterior=anterior, posterior_line_mask=posterior_line_mask)
        if s1 is None:  # complete masks (the line ends on S1's posterior corner) or no lordotic corner
            s1 = s1_endplate_from_disc(disc_mask, low, anterior=anterior, posterior_line_mask=posterior_line_mask)
            sacrum_method = "disc profile"
        if s1 is not None:
            lm["S1"] = s1
    levels, failed = _measurable_levels(lm, anterior) if len(lm) >= 2 else ({}, {})
    pool = {k: v for k, v in levels.items() if worst_of is None or k.split("-")[-1] in set(worst_of)} or levels
    worst = max(pool, key=lambda k: pool[k], default=None)
    pct = pool[worst] if worst is not None else 0.0
    grade = meyerding_grade(pct)
    return {
        "anterior": anterior,
        "anterior_source": source,
        "levels": {k: round(v, 2) for k, v in levels.items()},
        "level": worst,
        "slip_percent": round(pct, 2),
        "meyerding_grade": grade,
        "meyerding": MEYERDING_NAMES[grade],
        **_slip_plausibility(worst, pct, source),
        "disc_heights": disc_heights(lm, anterior=anterior, pixel_spacing_mm=pixel_spacing_mm) if len(lm) >= 2 else {},
        "vertebrae": {k: [[round(x, 1), round(y, 1)] for x, y in v] for k, v in lm.items()},
        "sacrum_from_disc": "S1" in lm and (names is None or "S1" not in names),
        "sacrum_method": sacrum_method if "S1" in lm else None,
        "failed_levels": failed,
    }
