"""Fail loudly when a patient or a near-duplicate image sits on two sides of a split.

Why: the real sets are small and often hold re-saved, resized or augmented copies of one film under
another name; one such pair across train/test inflates every metric. Patient ids catch the first case,
a two-stage image check catches the second:

1. a 64-bit perceptual hash (imagehash.phash of a 128x128 grayscale thumbnail, and of its flips, since
   flipped copies are the commonest augmentation), compared all-against-all with one matrix product;
   pairs at Hamming distance <= ``phash_threshold`` are candidates;
2. candidates are verified by normalised cross-correlation of the thumbnails, allowing a little
   scale/shift (re-cropped copies): a best correlation >= ``verify_threshold`` is a near duplicate.

Why two stages: AP spine films all look alike to a 64-bit hash. Measured on fraiwan-ap (187 films):
distinct films come as close as phash distance 8-10, while its real duplicates (the same film re-cropped
under another subject number, e.g. ``N22,S,12,M`` / ``N29,S,12,M``, ``N2,N,18,M`` / ``N4,N,18,M``; 8 pairs
found, all with matching age and sex) lie at 4-16. The verification separates them: duplicates >= 0.944,
distinct films <= 0.908. Each file is decoded once per process (cached by path, size and mtime).
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from spine_models.data.records import Sample, SpineDataset
from spine_models.errors import LeakageError

__all__ = ["check_leakage", "find_near_duplicates", "image_hashes", "DEFAULT_PHASH_THRESHOLD",
           "DEFAULT_VERIFY_THRESHOLD"]

DEFAULT_PHASH_THRESHOLD = 16  # candidate stage (of 64 bits); see the module docstring for the measurements
DEFAULT_VERIFY_THRESHOLD = 0.93  # verification stage (best normalised cross-correlation)
_THUMB = 128
_HASH_CACHE: dict[tuple[str, int, int, bool], tuple[np.ndarray, np.ndarray]] = {}


def _thumbnail(path: Path) -> np.ndarray:
    """Small uint8 grayscale copy of any supported image, decoded as cheaply as the format allows."""
    import cv2
    from PIL import Image

    suffix = path.suffix.lower()
    if suffix in {".dcm", ".dicom"} or not suffix:
        from spine_models.io import read_image  # lazy: pydicom is heavy

        arr = read_image(path).pixels
    elif suffix in {".jpg", ".jpeg"}:
        with Image.open(path) as im:
            im.draft("L", (2 * _THUMB, 2 * _THUMB))  # JPEG DCT scaling: decode at 1/2..1/8 size
            arr = np.asarray(im.convert("L"))
    else:
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
        if arr is None:
            with Image.open(path) as im:
                arr = np.asarray(im)
        if arr.ndim == 3:
            arr = arr[..., :3].mean(axis=2)
    arr = np.asarray(arr, dtype=np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return cv2.resize(arr, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA).astype(np.uint8)


def image_hashes(path: "str | Path", *, flips: bool = True) -> np.ndarray:
    """(k, 64) bool phash bits of the image (k=1) or of it and its h/v/hv flips (k=4)."""
    import imagehash
    from PIL import Image

    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, flips)
    if key not in _HASH_CACHE:
        th = _thumbnail(p)
        variants = [th, th[:, ::-1], th[::-1, :], th[::-1, ::-1]] if flips else [th]
        bits = np.stack([imagehash.phash(Image.fromarray(np.ascontiguousarray(v))).hash.reshape(-1) for v in variants])
        _HASH_CACHE[key] = (bits, th)
    return _HASH_CACHE[key][0]


def _thumb_cached(path: Path, flips: bool) -> np.ndarray:
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, flips)
    if key not in _HASH_CACHE:
        image_hashes(p, flips=flips)
    return _HASH_CACHE[key][1]


_FLIPS = (lambda t: t, lambda t: t[:, ::-1], lambda t: t[::-1, :], lambda t: t[::-1, ::-1])


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Best normalised cross-correlation of a's central 75 % inside b at a few scales (re-crops)."""
    import cv2

    a = a.astype(np.float32)
    b = b.astype(np.float32)
    m = _THUMB // 8
    tpl = a[m:-m, m:-m]
    best = -1.0
    for sx in (0.85, 0.92, 1.0, 1.08, 1.16):
        for sy in (0.92, 1.0, 1.08):
            bb = cv2.resize(b, (int(round(_THUMB * sx)), int(round(_THUMB * sy))), interpolation=cv2.INTER_AREA)
            if bb.shape[0] < tpl.shape[0] or bb.shape[1] < tpl.shape[1]:
                continue
            best = max(best, float(cv2.matchTemplate(bb, tpl, cv2.TM_CCOEFF_NORMED).max()))
    return best


def _verify(fa: Path, fb: Path, flip: int, flips: bool) -> float:
    ta = _thumb_cached(fa, flips)
    tb = np.ascontiguousarray(_FLIPS[flip](_thumb_cached(fb, flips)))
    return max(_similarity(ta, tb), _similarity(tb, ta))


def _files(s: Sample) -> list[Path]:
    out = [Path(s.path)] if s.path else []
    out += [Path(v) for v in s.views.values()]
    return out


def _index(ds: SpineDataset, flips: bool) -> tuple[list[tuple[Sample, Path]], np.ndarray, np.ndarray]:
    """Entries, their original hashes (n,64) and all variants (n,k,64)."""
    entries = [(s, f) for s in ds.samples for f in _files(s)]
    if not entries:
        return entries, np.zeros((0, 64), bool), np.zeros((0, 1, 64), bool)
    allh = np.stack([image_hashes(f, flips=flips) for _, f in entries])
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


def _pairs(
    ea: list[tuple[Sample, Path]], ha: np.ndarray, eb: list[tuple[Sample, Path]], hbv: np.ndarray,
    phash_threshold: int, verify_threshold: float | None, flips: bool, same: bool,
) -> list[dict[str, Any]]:
    """Near-duplicate pairs between entry lists a and b (``same``: a is b, report i < j once)."""
    d, which = _distances(ha, hbv)
    cand = d <= phash_threshold
    if same:
        cand = np.triu(cand, k=1)
    out = []
    for i, j in zip(*np.nonzero(cand)):
        sa, fa = ea[i]
        sb, fb = eb[j]
        if sa is sb:
            continue
        sim = None
        if verify_threshold is not None:
            sim = _verify(fa, fb, int(which[i, j]), flips)
            if sim < verify_threshold:
                continue
        out.append({"a": sa.id, "b": sb.id, "file_a": str(fa), "file_b": str(fb), "patient_a": sa.patient_id,
                    "patient_b": sb.patient_id, "distance": int(d[i, j]),
                    "similarity": None if sim is None else round(sim, 4)})
    return sorted(out, key=lambda r: (-(r["similarity"] or 0.0), r["distance"], r["a"], r["b"]))


def find_near_duplicates(
    ds: SpineDataset,
    *,
    threshold: int = DEFAULT_PHASH_THRESHOLD,
    verify_threshold: float | None = DEFAULT_VERIFY_THRESHOLD,
    flips: bool = True,
) -> list[dict[str, Any]]:
    """Pairs of different samples in ``ds`` whose images are near duplicates, most similar first.

    Each row: a, b (sample ids), file_a, file_b, patient_a, patient_b, distance (phash), similarity.
    """
    entries, h, hv = _index(ds, flips)
    if len(entries) < 2:
        return []
    return _pairs(entries, h, entries, hv, threshold, verify_threshold, flips, same=True)


def check_leakage(
    parts: "dict[str, SpineDataset] | SpineDataset",
    other: SpineDataset | None = None,
    *,
    phash_threshold: int | None = DEFAULT_PHASH_THRESHOLD,
    verify_threshold: float | None = DEFAULT_VERIFY_THRESHOLD,
    flips: bool = True,
) -> dict[str, Any]:
    """Raise :class:`LeakageError` when a patient or a near-duplicate image is in two parts.

    ``parts`` is ``split_dataset``'s dict (or ``check_leakage(train, other)``). ``phash_threshold=None``
    skips the image check (patient ids only); ``verify_threshold=None`` trusts the hash alone (then use a
lower ``phash_threshold``, e.g. 6). Returns a small report when clean.
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
                f"patient leakage: patient(s) {', '.join(repr(p) for p in shared[:3])}{more} in both {a!r} and {b!r}; "
                "split per patient (spine_models.data.splits.split_dataset) or fix the patient ids"
            )
    n_pairs = 0
    if phash_threshold is not None:
        idx = {n: _index(parts[n], flips) for n in names}
        for a, b in combinations(names, 2):
            ea, ha, _ = idx[a]
            eb, _, hbv = idx[b]
            if not ea or not eb:
                continue
            n_pairs += len(ea) * len(eb)
            bad = _pairs(ea, ha, eb, hbv, phash_threshold, verify_threshold, flips, same=False)
            if bad:
                r = bad[0]
                sim = "" if r["similarity"] is None else f", similarity {r['similarity']:.3f}"
                raise LeakageError(
                    f"near-duplicate leakage: {r['file_a']} ({a}, patient {r['patient_a']!r}) and {r['file_b']} "
                    f"({b}, patient {r['patient_b']!r}) are near duplicates (phash distance {r['distance']}{sim}; "
                    f"{len(bad)} such pair(s) between {a!r} and {b!r}); split with "
                    "split_dataset(..., group_near_duplicates=True) or give copies of one film the same patient id"
                )
    return {"parts": {n: len(parts[n]) for n in parts}, "image_pairs_checked": n_pairs,
            "phash_threshold": phash_threshold, "verify_threshold": verify_threshold, "flips": flips}
