"""The shortcut audit: can the label be guessed from image metadata alone?

Why: small radiograph sets are often framed differently per class (the real AP set's scoliosis films
are taller and cropped differently). A network will happily learn the frame instead of the spine.
If a small classifier that never sees anatomy — only width, height, aspect ratio, bit depth and
global/border intensity statistics — beats the majority-class rate by a clear margin (the lower end
of its bootstrap CI lies above it), the accuracy of any image model on that data is suspect and
``shortcut_warning`` is raised (SPEC "Evaluation report").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from spine_models.metrics.bootstrap import bootstrap_ci

__all__ = ["FEATURES", "metadata_features", "features_matrix", "shortcut_audit", "metadata_baseline_predict"]

FEATURES = (
    "width", "height", "aspect_ratio", "bits", "mean", "std", "p01", "p05", "p50", "p95", "p99",
    "frac_zero", "frac_saturated", "border_mean", "border_std", "center_mean", "border_minus_center",
)

_STATS_SIDE = 256  # intensity statistics are computed on a copy at most this large (speed, not a shortcut)


def _load_pixels(obj: Any) -> tuple[np.ndarray, int]:
    """(float 2-D pixels in [0, 1], bit depth) from a path, a Radiograph-like object or an array."""
    if hasattr(obj, "pixels"):
        return np.asarray(obj.pixels, dtype=np.float32), int(getattr(obj, "bits", 8) or 8)
    if isinstance(obj, np.ndarray):
        a = obj.astype(np.float32)
        bits = 16 if obj.dtype == np.uint16 else 8
        if obj.dtype.kind in "ui":
            a = a / float(np.iinfo(obj.dtype).max)
        return (a if a.ndim == 2 else a.mean(-1)), bits
    from spine_models.io import read_image  # the shared reader (DICOM, 16-bit PNG, ...)

    r = read_image(Path(obj))
    return np.asarray(r.pixels, dtype=np.float32), int(getattr(r, "bits", 8) or 8)


def metadata_features(obj: Any) -> dict[str, float]:
    """Anatomy-blind features of one image: size, aspect ratio, bit depth, global and border intensity stats.

    ``obj`` is a path, a ``spine_models.io`` Radiograph (``.pixels``, ``.bits``) or an array
    (uint8/uint16 or float in [0, 1]).
    """
    px, bits = _load_pixels(obj)
    if px.ndim == 3:  # a volume: use the first frame, as read_image does
        px = px[0]
    h, w = px.shape
    small = px
    if max(h, w) > _STATS_SIDE:
        import cv2

        s = _STATS_SIDE / max(h, w)
        small = cv2.resize(px, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape
    bh, bw = max(1, sh // 10), max(1, sw // 10)
    border = np.concatenate([small[:bh].ravel(), small[-bh:].ravel(), small[:, :bw].ravel(), small[:, -bw:].ravel()])
    center = small[sh // 4: sh - sh // 4 or None, sw // 4: sw - sw // 4 or None]
    p = np.percentile(small, [1, 5, 50, 95, 99])
    f = {
        "width": float(w), "height": float(h), "aspect_ratio": float(h / w), "bits": float(bits),
        "mean": float(small.mean()), "std": float(small.std()),
        "p01": float(p[0]), "p05": float(p[1]), "p50": float(p[2]), "p95": float(p[3]), "p99": float(p[4]),
        "frac_zero": float(np.mean(px <= 0.5 / 255)),  # black padding / collimation
        "frac_saturated": float(np.mean(px >= 254.5 / 255)),  # burnt-in text, markers, overexposure
        "border_mean": float(border.mean()), "border_std": float(border.std()),
        "center_mean": float(center.mean()) if center.size else float(small.mean()),
    }
    f["border_minus_center"] = f["border_mean"] - f["center_mean"]
    return f


def _sample_image(sample: Any) -> Any:
    if getattr(sample, "path", None) is not None:
        return sample.path
    views = getattr(sample, "views", None) or {}
    if views:  # two-view sample: the AP film (or the first view) represents it
        return views.get("ap", next(iter(views.values())))
    raise ValueError(f"sample {getattr(sample, 'id', '?')!r} has no image path")


def _audit_label(sample: Any) -> str | None:
    """What a shortcut could predict: the class, else (detection data) the set of box classes present."""
    if getattr(sample, "label", None) is not None:
        return str(sample.label)
    meta = getattr(sample, "meta", None) or {}
    if meta.get("class") is not None:
        return str(meta["class"])
    boxes = getattr(sample, "boxes", None)
    if boxes is not None and (boxes or getattr(sample, "path", None) is not None):
        return "+".join(sorted({b.label for b in boxes})) or "none"
    return None


def features_matrix(samples: Iterable[Any], *, quiet: bool = True) -> tuple[np.ndarray, list[str]]:
    """(N, len(FEATURES)) matrix for dataset samples (``Sample.path`` or the AP of ``Sample.views``)."""
    from spine_models._progress import progress

    samples = list(samples)
    rows = [metadata_features(_sample_image(s))
            for s in progress(samples, total=len(samples), desc="audit features", quiet=quiet)]
    return np.array([[r[k] for k in FEATURES] for r in rows], dtype=float).reshape(len(rows), len(FEATURES)), list(FEATURES)


def shortcut_audit(data: Any, labels: Sequence | None = None, groups: Sequence | None = None, *,
                   n_splits: int = 5, n_resamples: int = 1000, seed: int = 0, quiet: bool = True) -> dict[str, Any]:
    """Cross-validated metadata-only classifier -> SPEC ``audit`` block (+ majority rate, top features).

    ``data`` is a ``SpineDataset``, a list of ``Sample`` (labels and patients taken from them), or a
    feature table (list of dicts from :func:`metadata_features`, or an (N, F) array with ``labels``
    and optional ``groups``). Folds are stratified and, with groups, patient-grouped; the balanced
    accuracy of the out-of-fold predictions gets a bootstrap CI (over patients when grouped).
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict

    names: list[str] = list(FEATURES)
    samples = getattr(data, "samples", None)
    if samples is None and isinstance(data, (list, tuple)) and data and hasattr(data[0], "patient_id"):
        samples = list(data)
    if samples is not None:
        labelled = [(s, _audit_label(s)) for s in samples]
        samples = [s for s, lab in labelled if lab is not None]
        labels = [lab for _, lab in labelled if lab is not None]
        groups = [s.patient_id for s in samples]
        X, names = features_matrix(samples, quiet=quiet)
    else:
        if labels is None:
            raise ValueError("shortcut_audit: pass labels with a feature table")
        if isinstance(data, (list, tuple)) and data and isinstance(data[0], dict):
            names = list(data[0].keys())
            X = np.array([[row[k] for k in names] for row in data], dtype=float)
        else:
            X = np.asarray(data, dtype=float)
            if X.shape[1] != len(names):
                names = [f"f{i}" for i in range(X.shape[1])]
    y_raw = np.asarray(labels)
    if len(y_raw) != len(X):
        raise ValueError(f"shortcut_audit: {len(X)} feature rows but {len(y_raw)} labels")
    _, y = np.unique(y_raw, return_inverse=True)
    counts = np.bincount(y) if len(y) else np.zeros(0, dtype=int)
    majority = float(counts.max() / len(y)) if len(y) else float("nan")
    base = {"metadata_baseline": {"balanced_accuracy": {"value": None, "ci95": [None, None]}, "features": names},
            "shortcut_warning": False, "majority_rate": majority, "top_features": [], "n": int(len(y)),
            "classifier": "random forest (200 trees, depth 5, balanced class weights) on metadata features",
            "cv": None}
    k = int(min(n_splits, counts.min())) if len(counts) >= 2 else 0
    if k < 2:
        base["note"] = "audit skipped: needs at least two classes with two or more images each"
        return base
    X = np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)
    clf = RandomForestClassifier(n_estimators=200, max_depth=5, class_weight="balanced", random_state=seed, n_jobs=1)
    g = None if groups is None else np.asarray(groups)
    if g is not None and len(np.unique(g)) >= k:
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        oof = cross_val_predict(clf, X, y, cv=cv, groups=g)
        cv_desc = f"stratified group {k}-fold (patients kept together)"
    else:
        g = None
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        oof = cross_val_predict(clf, X, y, cv=cv)
        cv_desc = f"stratified {k}-fold"

    n_cls = len(counts)

    def bacc(yt: np.ndarray, yp: np.ndarray) -> float:
        """Mean recall over the classes present (sklearn's balanced_accuracy_score, without its warnings)."""
        support = np.bincount(yt, minlength=n_cls)
        if np.count_nonzero(support) < 2:
            return float("nan")
        hits = np.bincount(yt[yt == yp], minlength=n_cls)
        present = support > 0
        return float(np.mean(hits[present] / support[present]))

    ba = bootstrap_ci(bacc, y, oof, groups=g, n_resamples=n_resamples, seed=seed)
    clf.fit(X, y)
    order = np.argsort(clf.feature_importances_)[::-1][:5]
    lo = ba["ci95"][0]
    base.update({
        "metadata_baseline": {"balanced_accuracy": ba, "features": names},
        "shortcut_warning": bool(lo is not None and lo > majority),
        "top_features": [{"feature": names[i], "importance": round(float(clf.feature_importances_[i]), 4)} for i in order],
        "cv": cv_desc,
    })
    return base


def metadata_baseline_predict(train: Sequence[Any], test: Sequence[Any], *, seed: int = 0,
                              quiet: bool = True) -> list[str]:
    """Labels the metadata-only classifier (the audit's random forest) gives ``test`` after fitting on ``train``.

    Why: a paired test (McNemar) against a model needs one baseline answer per test film, from a baseline that
    never saw those films, as a deployed shortcut would be; ``shortcut_audit`` gives out-of-fold answers instead.
    """
    from sklearn.ensemble import RandomForestClassifier

    tr = [(s, _audit_label(s)) for s in train]
    tr = [(s, lab) for s, lab in tr if lab is not None]
    if len({lab for _, lab in tr}) < 2:
        raise ValueError(f"metadata_baseline_predict: the {len(tr)} training samples hold fewer than two classes")
    X, _ = features_matrix([s for s, _ in tr], quiet=quiet)
    Xt, _ = features_matrix(list(test), quiet=quiet)
    clf = RandomForestClassifier(n_estimators=200, max_depth=5, class_weight="balanced", random_state=seed, n_jobs=1)
    clf.fit(np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0), [lab for _, lab in tr])
    return [str(v) for v in clf.predict(np.nan_to_num(Xt, nan=0.0, posinf=0.0, neginf=0.0))]
