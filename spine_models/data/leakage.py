"""Fail loudly when a patient or a near-duplicate image sits on two sides of a split.

Why: the real sets are small and often hold re-saved, resized or augmented copies of one film under
another name; one such pair across train/test inflates every metric. Patient ids catch the first case,
a two-stage image check catches the second:

1. candidates: a band-pass (difference-of-Gaussians) 32 px thumbnail of every film, its central 24 px
   template (and flips) correlated with the other films' windows at 3x3 re-crop scales and 5x5 shifts,
   all pairs as one matrix product; each film's ``max_candidates`` (4) best partners above 0.75 go on;
2. verification: align the 128 px thumbnails (scale search at 64 px, then ECC affine), correlate their
   band-pass detail; >= ``verify_threshold`` (0.95) is a near duplicate. A 64-bit phash is still
   reported (``distance``) and used alone when ``verify_threshold=None``.

Why band-pass and alignment: films that share a layout (every synthetic phantom, one protocol) correlate
>= 0.93 as raw thumbnails and look alike to a 64-bit hash, so the old phash + raw-correlation check sent
O(n^2) pairs to template matching and grouped distinct phantom patients. Measured (2026-11, verified
candidates): fraiwan-ap (187 films; its 8 real duplicate pairs, the same film re-cropped under another
subject number, e.g. ``N22,S,12,M`` / ``N29,S,12,M``) duplicates 0.989-0.994, distinct films <= 0.46;
400 phantom films (200 AP + 200 lateral, all distinct) <= 0.91; 50 copies made from them (re-crop 5-10 %,
resize 0.5-1.2x, h-flip, gamma 0.7-1.4 / offset, 8-bit PNG or JPEG q60-95) 0.972-0.99, 48/50 found (two
missed: their original ranked below the 4 best candidates). Cost: 450 films 18 s, fraiwan-ap 5 s,
1000 phantom films ~50 s for ``split_dataset(..., group_near_duplicates=True)`` (about 11 s of it decoding).
Each file is decoded once per process (cached by path, size and mtime).
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from spine_models.data.records import Sample, SpineDataset
from spine_models.errors import LeakageError, SpineInputError
from spine_models.io.deid import SHOW_NAMES_ENV, display_name, show_names

__all__ = ["check_leakage", "find_near_duplicates", "near_duplicates_between", "image_hashes", "DEFAULT_PHASH_THRESHOLD",
           "DEFAULT_VERIFY_THRESHOLD", "DEFAULT_MAX_CANDIDATES"]

DEFAULT_PHASH_THRESHOLD = 16  # candidate stage (of 64 bits); see the module docstring for the measurements
DEFAULT_VERIFY_THRESHOLD = 0.95  # verification stage (aligned band-pass correlation); see the docstring
DEFAULT_MAX_CANDIDATES = 4  # best partners per image sent to verification (bounds the cost to O(n * 8))
_THUMB = 128
_HASH_CACHE: dict[tuple[str, int, int, bool], tuple[np.ndarray, np.ndarray]] = {}


def _cache_key(p: Path, flips: bool) -> tuple[str, int, int, bool]:
    """Path, size and mtime: a file is decoded once per process unless it changes."""
    try:
        st = p.stat()
    except OSError as exc:  # missing, unreadable: one line, named as io.read_image names it
        raise SpineInputError(f"cannot be read ({exc.strerror or type(exc).__name__}); check the path",
                              _shown(p)) from exc
    return (str(p.resolve()), st.st_size, st.st_mtime_ns, flips)


def _thumbnail(path: Path) -> np.ndarray:
    """Small uint8 grayscale copy of any supported image, decoded as cheaply as the format allows.

    Through :func:`spine_models.io.read_image` (sniffed format, size limits before decoding, a bad file is one
    SpineInputError with a neutral name); JPEGs decode at 1/2..1/8 scale. 8- and 16-bit images are taken back to
    their stored integers, so the thumbnail is the one the direct OpenCV/Pillow decode gave.
    """
    import cv2

    from spine_models.io import read_image  # lazy: pydicom is heavy

    rg = read_image(path, min_size=1, draft=2 * _THUMB)
    top = {8: 255.0, 16: 65535.0}.get(rg.bits) if rg.format != "DICOM" else None
    arr = np.round(rg.pixels * top) if top else rg.pixels
    arr = np.asarray(arr, dtype=np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return cv2.resize(arr, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA).astype(np.uint8)


def image_hashes(path: "str | Path", *, flips: bool = True) -> np.ndarray:
    """(k, 64) bool phash bits of the image (k=1) or of it and its h/v/hv flips (k=4)."""
    import imagehash
    from PIL import Image

    p = Path(path)
    key = _cache_key(p, flips)
    if key not in _HASH_CACHE:
        th = _thumbnail(p)
        variants = [th, th[:, ::-1], th[::-1, :], th[::-1, ::-1]] if flips else [th]
        bits = np.stack([imagehash.phash(Image.fromarray(np.ascontiguousarray(v))).hash.reshape(-1) for v in variants])
        _HASH_CACHE[key] = (bits, th)
    return _HASH_CACHE[key][0]


def _thumb_cached(path: Path, flips: bool) -> np.ndarray:
    p = Path(path)
    key = _cache_key(p, flips)
    if key not in _HASH_CACHE:
        image_hashes(p, flips=flips)
    return _HASH_CACHE[key][1]


_FLIPS = (lambda t: t, lambda t: t[:, ::-1], lambda t: t[::-1, :], lambda t: t[::-1, ::-1])
_PRE = 32  # candidate-stage thumbnail side (px)
_PRE_TPL = 24  # central template taken from a's candidate thumbnail
_PRE_SCALES = (0.9, 1.0, 1.1)  # re-crop scales tried per axis on b
_PRE_SHIFTS = (-2, -1, 0, 1, 2)  # and shifts of the window (px at 32 px)
_PRE_FLOOR = 0.75  # candidate floor (measured: true copies >= 0.83)
_DOG_PRE = (0.7, 3.0)  # band-pass (Gaussian sigmas, px) of the candidate stage
_DOG_VERIFY = (0.7, 3.0)  # and of the verification at 128 px
_FEAT_CACHE: dict[tuple[str, int, int, bool], tuple[np.ndarray, np.ndarray]] = {}


def _detail(img: np.ndarray, s1: float, s2: float) -> np.ndarray:
    """Band-pass (difference of Gaussians): keeps the film's own detail, drops the shared layout and brightness."""
    import cv2

    img = img.astype(np.float32)
    return cv2.GaussianBlur(img, (0, 0), s1) - cv2.GaussianBlur(img, (0, 0), s2)


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    return (x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)).astype(np.float32)


def _features(th: np.ndarray, flips: bool) -> tuple[np.ndarray, np.ndarray]:
    """Candidate-stage vectors: a's central detail template per flip (k, d) and b's windows over scale/shift (P, d)."""
    import cv2

    t = th.astype(np.float32)
    small = cv2.resize(t, (_PRE, _PRE), interpolation=cv2.INTER_AREA)
    m = (_PRE - _PRE_TPL) // 2
    tpl = [_detail(np.ascontiguousarray(f(small)), *_DOG_PRE)[m:m + _PRE_TPL, m:m + _PRE_TPL].ravel()
           for f in (_FLIPS if flips else _FLIPS[:1])]
    win = []
    for sx in _PRE_SCALES:
        for sy in _PRE_SCALES:
            w, h = int(round(_PRE * sx)), int(round(_PRE * sy))
            d = _detail(cv2.resize(t, (w, h), interpolation=cv2.INTER_AREA), *_DOG_PRE)
            cx, cy = (w - _PRE_TPL) // 2, (h - _PRE_TPL) // 2
            for dx in _PRE_SHIFTS:
                for dy in _PRE_SHIFTS:
                    x = min(max(cx + dx, 0), w - _PRE_TPL)
                    y = min(max(cy + dy, 0), h - _PRE_TPL)
                    win.append(d[y:y + _PRE_TPL, x:x + _PRE_TPL].ravel())
    return _unit(np.stack(tpl)), _unit(np.stack(win))


def _feat_cached(path: Path, flips: bool) -> tuple[np.ndarray, np.ndarray]:
    p = Path(path)
    key = _cache_key(p, flips)
    if key not in _FEAT_CACHE:
        _FEAT_CACHE[key] = _features(_thumb_cached(p, flips), flips)
    return _FEAT_CACHE[key]


def _prefilter(tpl: np.ndarray, win: np.ndarray, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Best correlation (n_a, n_b) of a's flipped templates with any of b's windows, and which flip.

    One matrix product per chunk of rows: cheap enough to score every pair, discriminative enough (a
    band-pass at 32 px, aligned to a few re-crop hypotheses) to rank a film's copy among look-alikes.
    """
    na, nk, d = tpl.shape
    nb, npos, _ = win.shape
    wb = win.reshape(nb * npos, d).T
    best = np.empty((na, nb), np.float32)
    which = np.empty((na, nb), np.int8)
    for i in range(0, na, chunk):
        t = tpl[i:i + chunk]
        s = (t.reshape(-1, d) @ wb).reshape(t.shape[0], nk, nb, npos).max(axis=3)
        best[i:i + chunk] = s.max(axis=1)
        which[i:i + chunk] = s.argmax(axis=1)
    return best, which


def _coarse_warp(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray]:
    """Scale/shift (as a 2x3 map from a's to b's pixels) that best places a's centre inside b, at 64 px."""
    import cv2

    n = 64
    a64 = cv2.resize(a, (n, n), interpolation=cv2.INTER_AREA)
    b64 = cv2.resize(b, (n, n), interpolation=cv2.INTER_AREA)
    m = n // 8
    tpl = a64[m:-m, m:-m]
    best, warp = -2.0, np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    for sx in (0.88, 0.96, 1.04, 1.12, 1.2):  # ECC refines scale and shift afterwards
        for sy in (0.88, 0.96, 1.04, 1.12, 1.2):
            bb = cv2.resize(b64, (int(round(n * sx)), int(round(n * sy))), interpolation=cv2.INTER_AREA)
            if bb.shape[0] < tpl.shape[0] or bb.shape[1] < tpl.shape[1]:
                continue
            _, v, _, loc = cv2.minMaxLoc(cv2.matchTemplate(bb, tpl, cv2.TM_CCOEFF_NORMED))
            if v > best:
                rx, ry = bb.shape[1] / n, bb.shape[0] / n
                best = v
                warp = np.array([[1 / rx, 0, (loc[0] - m) / rx * 2], [0, 1 / ry, (loc[1] - m) / ry * 2]], np.float32)
    return best, warp


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of a's and b's band-pass detail after aligning b onto a (scale search, then ECC affine).

    Why not the raw thumbnails: films that share a layout (phantoms, one hospital's protocol) correlate
    >= 0.93 as raw thumbnails; only the same film keeps its fine detail once precisely aligned.
    """
    import cv2

    a = a.astype(np.float32)
    b = b.astype(np.float32)
    _, warp = _coarse_warp(a, b)
    try:
        _, warp = cv2.findTransformECC(a, b, warp.copy(), cv2.MOTION_AFFINE,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4), None, 5)
    except cv2.error:
        pass  # ECC did not converge (distinct films): keep the coarse alignment, the score stays low
    n = a.shape[0]
    bw = cv2.warpAffine(b, warp, (n, n), flags=cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    m = n // 8
    da = _detail(a, *_DOG_VERIFY)[m:-m, m:-m].ravel()
    db = _detail(bw, *_DOG_VERIFY)[m:-m, m:-m].ravel()
    da, db = da - da.mean(), db - db.mean()
    den = float(np.linalg.norm(da) * np.linalg.norm(db))
    return float(da @ db) / den if den > 0 else 0.0


def _verify(fa: Path, fb: Path, flip: int, flips: bool) -> float:
    """Best of both directions; ``flip`` is applied to a (the candidate stage's flip of a's template)."""
    ta = np.ascontiguousarray(_FLIPS[flip](_thumb_cached(fa, flips)))
    tb = _thumb_cached(fb, flips)
    return max(_similarity(ta, tb), _similarity(tb, ta))


def _files(s: Sample) -> list[Path]:
    out = [Path(s.path)] if s.path else []
    out += [Path(v) for v in s.views.values()]
    return out


def _index(ds: SpineDataset, flips: bool, problems: list[str] | None = None
           ) -> tuple[list[tuple[Sample, Path]], np.ndarray, np.ndarray]:
    """Entries, their original hashes (n,64) and all variants (n,k,64).

    A file that cannot be read or decoded is left out of the check and described in ``problems`` (one line,
    neutral name): one bad film must not stop the check of all the others.
    """
    entries: list[tuple[Sample, Path]] = []
    hashes: list[np.ndarray] = []
    for s in ds.samples:
        for f in _files(s):
            try:
                hashes.append(image_hashes(f, flips=flips))
            except SpineInputError as exc:
                if problems is not None:
                    problems.append(f"{exc}; left out of the near-duplicate check")
                continue
            entries.append((s, f))
    if not entries:
        return entries, np.zeros((0, 64), bool), np.zeros((0, 1, 64), bool)
    allh = np.stack(hashes)
    return entries, allh[:, 0, :], allh


def _distances(a: np.ndarray, b_variants: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min Hamming distance (n_a, n_b) between a's hashes and any variant of b's, and which variant."""
    af = a.astype(np.float32)
    best = np.full((a.shape[0], b_variants.shape[0]), 65.0, np.float32)
    which = np.zeros(best.shape, np.int8)
    for k in range(b_variants.shape[1]):
        bf = b_variants[:, k, :].astype(np.float32)
        d = af @ (1.0 - bf).T + (1.0 - af) @ bf.T
        which[d < best] = k
        best = np.minimum(best, d)
    return best.astype(np.int32), which


def _candidates(score: np.ndarray, k: int, same: bool) -> np.ndarray:
    """Pairs above the floor that are among row i's or column j's ``k`` best: at most k*(n_a+n_b) pairs."""
    ok = score >= _PRE_FLOOR
    if same:
        np.fill_diagonal(ok, False)
    keep = np.zeros_like(ok)
    if score.shape[1]:
        kk = min(k, score.shape[1])
        rows = np.argpartition(-score, kk - 1, axis=1)[:, :kk]
        keep[np.arange(score.shape[0])[:, None], rows] = True
    if score.shape[0]:
        kk = min(k, score.shape[0])
        cols = np.argpartition(-score, kk - 1, axis=0)[:kk, :]
        keep[cols, np.arange(score.shape[1])[None, :]] = True
    cand = ok & keep
    if same:
        cand = np.triu(cand | cand.T, k=1)
    return cand


def _pairs(
    ea: list[tuple[Sample, Path]], ha: np.ndarray, eb: list[tuple[Sample, Path]], hbv: np.ndarray,
    phash_threshold: int, verify_threshold: float | None, flips: bool, same: bool,
    max_candidates: int = DEFAULT_MAX_CANDIDATES, stats: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Near-duplicate pairs between entry lists a and b (``same``: a is b, report i < j once)."""
    d, which_h = _distances(ha, hbv)
    if verify_threshold is None:  # hash-only mode (fast, coarse): the old single-stage behaviour
        cand = d <= phash_threshold
        if same:
            cand = np.triu(cand, k=1)
        which = None
    else:
        fa = [_feat_cached(f, flips) for _, f in ea]
        fb = fa if same else [_feat_cached(f, flips) for _, f in eb]
        tpl_a, win_a = np.stack([t for t, _ in fa]), np.stack([w for _, w in fa])
        tpl_b, win_b = (tpl_a, win_a) if same else (np.stack([t for t, _ in fb]), np.stack([w for _, w in fb]))
        s_ab, w_ab = _prefilter(tpl_a, win_b)  # a's template inside b
        s_ba, w_ba = (s_ab, w_ab) if same else _prefilter(tpl_b, win_a)
        score = np.maximum(s_ab, s_ba.T)
        which = np.where(s_ab >= s_ba.T, w_ab, w_ba.T)  # flip of a (or, by symmetry, of b: same flip)
        cand = _candidates(score, max_candidates, same)
    n_verified = 0
    out = []
    for i, j in zip(*np.nonzero(cand)):
        sa, fa_ = ea[i]
        sb, fb_ = eb[j]
        if sa is sb:
            continue
        sim = None
        if verify_threshold is not None:
            n_verified += 1
            sim = _verify(fa_, fb_, int(which[i, j]), flips)
            if sim < verify_threshold:
                continue
        out.append({"a": sa.id, "b": sb.id, "file_a": str(fa_), "file_b": str(fb_), "patient_a": sa.patient_id,
                    "patient_b": sb.patient_id, "distance": int(d[i, j]),
                    "similarity": None if sim is None else round(sim, 4)})
    if stats is not None:
        stats["pairs"] = stats.get("pairs", 0) + (len(ea) * (len(ea) - 1) // 2 if same else len(ea) * len(eb))
        stats["verified"] = stats.get("verified", 0) + n_verified
    return sorted(out, key=lambda r: (-(r["similarity"] or 0.0), r["distance"], r["a"], r["b"]))


def find_near_duplicates(
    ds: SpineDataset,
    *,
    threshold: int = DEFAULT_PHASH_THRESHOLD,
    verify_threshold: float | None = DEFAULT_VERIFY_THRESHOLD,
    flips: bool = True,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    stats: dict[str, Any] | None = None,
    problems: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Pairs of different samples in ``ds`` whose images are near duplicates, most similar first.

    Each row: a, b (sample ids), file_a, file_b, patient_a, patient_b, distance (phash), similarity.
    ``threshold`` (phash) is used only when ``verify_threshold`` is None (hash-only mode). At most
    ``max_candidates`` best-ranked partners per image are verified; ``stats`` (a dict) receives the
    number of image pairs scored and of expensive verifications run. Files that cannot be read are
    left out and described in ``problems`` (neutral names).
    """
    entries, h, hv = _index(ds, flips, problems)
    if len(entries) < 2:
        return []
    return _pairs(entries, h, entries, hv, threshold, verify_threshold, flips, same=True,
                  max_candidates=max_candidates, stats=stats)


def near_duplicates_between(
    a: SpineDataset,
    b: SpineDataset,
    *,
    threshold: int = DEFAULT_PHASH_THRESHOLD,
    verify_threshold: float | None = DEFAULT_VERIFY_THRESHOLD,
    flips: bool = True,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    problems: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Near-duplicate pairs with one film in ``a`` and one in ``b`` (rows as :func:`find_near_duplicates`).

    Why: sources with different patient ids can hold the same film (Fraiwan subjects inside cadma-vertebra);
    an evaluation drops the test films that have a near duplicate among the training films. Files that
    cannot be read are left out and described in ``problems`` (neutral names).
    """
    ea, ha, _ = _index(a, flips, problems)
    eb, _, hbv = _index(b, flips, problems)
    if not ea or not eb:
        return []
    return _pairs(ea, ha, eb, hbv, threshold, verify_threshold, flips, same=False, max_candidates=max_candidates)


def _shown(name: Any, kind: str = "file") -> str:
    """A file or patient id as a leakage message shows it: neutral unless the user opted in (io.deid); a file by
    its base name, as io.read_image and :func:`_cache_key` name it, so one file has one id in every message."""
    return display_name(Path(str(name)).name if kind == "file" else str(name), kind=kind)


def _names_hint() -> str:
    """How to see the real names, when they are hidden."""
    return "" if show_names() else f" ({SHOW_NAMES_ENV}=1 shows the file names and patient ids)"


def check_leakage(
    parts: "dict[str, SpineDataset] | SpineDataset",
    other: SpineDataset | None = None,
    *,
    phash_threshold: int | None = DEFAULT_PHASH_THRESHOLD,
    verify_threshold: float | None = DEFAULT_VERIFY_THRESHOLD,
    flips: bool = True,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> dict[str, Any]:
    """Raise :class:`LeakageError` when a patient or a near-duplicate image is in two parts.

    ``parts`` is ``split_dataset``'s dict (or ``check_leakage(train, other)``). ``phash_threshold=None``
    skips the image check (patient ids only); ``verify_threshold=None`` trusts the hash alone (then use a
    lower ``phash_threshold``, e.g. 6). Returns a small report when clean (``verified``: expensive checks run;
    ``problems``: files left out of the image check because they cannot be read, by neutral names).
    """
    if isinstance(parts, SpineDataset):
        if other is None:
            raise TypeError("check_leakage(train, other): 'other' is missing")
        parts = {"train": parts, "other": other}
    names = [n for n, p in parts.items() if len(p)]
    for a, b in combinations(names, 2):
        pa: dict[str, int] = {}
        for s in parts[a].samples:
            pa[s.patient_id] = pa.get(s.patient_id, 0) + 1
        shared = sorted({s.patient_id for s in parts[b].samples if s.patient_id in pa})
        if shared:
            more = f" and {len(shared) - 3} more" if len(shared) > 3 else ""
            raise LeakageError(
                f"patient leakage: patient(s) {', '.join(repr(_shown(p, 'patient')) for p in shared[:3])}{more} in both "
                f"{a!r} and {b!r}; split per patient (spine_models.data.splits.split_dataset) or fix the patient ids"
                f"{_names_hint()}"
            )
    n_pairs = 0
    stats: dict[str, Any] = {}
    problems: list[str] = []
    if phash_threshold is not None:
        idx = {n: _index(parts[n], flips, problems) for n in names}
        for a, b in combinations(names, 2):
            ea, ha, _ = idx[a]
            eb, _, hbv = idx[b]
            if not ea or not eb:
                continue
            n_pairs += len(ea) * len(eb)
            bad = _pairs(ea, ha, eb, hbv, phash_threshold, verify_threshold, flips, same=False,
                         max_candidates=max_candidates, stats=stats)
            if bad:
                r = bad[0]
                sim = "" if r["similarity"] is None else f", similarity {r['similarity']:.3f}"
                raise LeakageError(
                    f"near-duplicate leakage: {_shown(r['file_a'])} ({a}, patient {_shown(r['patient_a'], 'patient')!r}) "
                    f"and {_shown(r['file_b'])} ({b}, patient {_shown(r['patient_b'], 'patient')!r}) are near duplicates "
                    f"(phash distance {r['distance']}{sim}; {len(bad)} such pair(s) between {a!r} and {b!r}); split with "
                    f"split_dataset(..., group_near_duplicates=True) or give copies of one film the same patient id{_names_hint()}"
                )
    return {"parts": {n: len(parts[n]) for n in parts}, "image_pairs_checked": n_pairs,
            "verified": stats.get("verified", 0), "phash_threshold": phash_threshold, "verify_threshold": verify_threshold, "flips": flips,
            "problems": problems}
