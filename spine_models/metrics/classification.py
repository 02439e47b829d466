"""Classification metrics with bootstrap CIs: SPEC's classify ``metrics`` block in one call.

Why one function: every engine, the CLI and the app must report the same numbers the same way
(confusion matrix rows = truth, columns = prediction, in ``classes`` order; the nine per-class
measures of the segmentation study; balanced accuracy and macro F1 because our sets are small and
imbalanced; calibration because a probability shown to a clinician must mean something).
Point estimates come from scikit-learn; the bootstrap draws indices once and derives every number
from the resampled confusion matrix (vectorised), so 1000 resamples cost well under a second.
A class absent from the data gives NaN -> ``null`` in JSON, never a crash.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from spine_models.metrics.bootstrap import percentile_ci, resample_indices

__all__ = [
    "MEASURES",
    "confusion",
    "per_class_measures",
    "expected_calibration_error",
    "reliability_curve",
    "roc_points",
    "macro_roc",
    "auc_ovr",
    "predict_labels",
    "classification_metrics",
    "ClassificationAccumulator",
]

# the segmentation study's nine per-class measures (one-vs-rest), SPEC's eight plus accuracy
MEASURES = ("sensitivity", "specificity", "precision", "npv", "fpr", "fdr", "fnr", "f1", "accuracy")


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """``n_classes x n_classes`` int matrix, rows = true class, columns = predicted (sklearn convention)."""
    from sklearn.metrics import confusion_matrix

    yt, yp = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    _check_labels(yt, n_classes, "y_true")
    _check_labels(yp, n_classes, "y_pred")
    if yt.size == 0:
        return np.zeros((n_classes, n_classes), dtype=np.int64)
    return confusion_matrix(yt, yp, labels=list(range(n_classes))).astype(np.int64)


def _check_labels(y: np.ndarray, n_classes: int, name: str) -> None:
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} holds label {int(y.max() if y.max() >= n_classes else y.min())}, "
                         f"outside 0..{n_classes - 1}; pass class indices in the classes order")


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def _measures_from_cms(cms: np.ndarray) -> dict[str, np.ndarray]:
    """(..., C, C) confusion matrices -> {measure: (..., C)} one-vs-rest measures (NaN when undefined)."""
    cms = np.asarray(cms, dtype=float)
    tp = np.diagonal(cms, axis1=-2, axis2=-1)
    row = cms.sum(-1)  # true count per class
    col = cms.sum(-2)  # predicted count per class
    total = cms.sum((-2, -1))[..., None]
    fn, fp = row - tp, col - tp
    tn = total - tp - fn - fp
    return {
        "sensitivity": _div(tp, tp + fn),
        "specificity": _div(tn, tn + fp),
        "precision": _div(tp, tp + fp),
        "npv": _div(tn, tn + fn),
        "fpr": _div(fp, fp + tn),
        "fdr": _div(fp, fp + tp),
        "fnr": _div(fn, fn + tp),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "accuracy": _div(tp + tn, np.broadcast_to(total, tp.shape)),
    }


def per_class_measures(cm: np.ndarray, classes: Sequence[str] | None = None) -> dict[Any, dict[str, float]]:
    """The nine one-vs-rest measures per class from a confusion matrix (NaN where undefined).

    Keys are the class names when ``classes`` is given, else the class indices.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    keys = list(classes) if classes is not None else list(range(cm.shape[0]))
    if len(keys) != cm.shape[0]:
        raise ValueError(f"{len(keys)} class names for a {cm.shape[0]}-class confusion matrix")
    m = _measures_from_cms(cm)
    return {k: {name: float(m[name][i]) for name in MEASURES} for i, k in enumerate(keys)}


def _summary_from_cms(cms: np.ndarray) -> dict[str, np.ndarray]:
    """accuracy, balanced accuracy (mean recall over classes present), macro F1 (mean over defined)."""
    cms = np.asarray(cms, dtype=float)
    m = _measures_from_cms(cms)
    tp = np.diagonal(cms, axis1=-2, axis2=-1)
    total = cms.sum((-2, -1))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():  # all-NaN rows are expected for degenerate resamples
            warnings.simplefilter("ignore", RuntimeWarning)
            return {
                "accuracy": _div(tp.sum(-1), total),
                "balanced_accuracy": np.nanmean(m["sensitivity"], axis=-1),
                "macro_f1": np.nanmean(m["f1"], axis=-1),
            }


def predict_labels(y_prob: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Argmax, or for two classes ``prob[:, 1] >= threshold`` when a threshold is given."""
    p = np.asarray(y_prob, dtype=float)
    if threshold is not None and p.shape[1] == 2:
        return (p[:, 1] >= threshold).astype(int)
    return p.argmax(1).astype(int)


def _auc_ovr_fast(y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC per class via the Mann-Whitney rank statistic (ties averaged), NaN if undefined.

    Equals sklearn's ``roc_auc_score`` per class (tested); used inside the bootstrap for speed.
    """
    from scipy.stats import rankdata

    n, c = y_prob.shape
    out = np.full(c, np.nan)
    for k in range(c):
        pos = y_true == k
        n_pos = int(pos.sum())
        n_neg = n - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        r = rankdata(y_prob[:, k])
        out[k] = (r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return out


def auc_ovr(y_true: Sequence[int], y_prob: np.ndarray) -> float:
    """Macro one-vs-rest AUC (mean of sklearn ``roc_auc_score`` per class = its ``multi_class="ovr"`` for
    probabilities; binary = AUC of class 1); NaN when a class is absent."""
    from sklearn.metrics import roc_auc_score

    yt, p = np.asarray(y_true, dtype=int), np.asarray(y_prob, dtype=float)
    c = p.shape[1]
    if len(yt) == 0 or any(not np.any(yt == k) for k in range(c)):
        return float("nan")
    if c == 2:
        return float(roc_auc_score(yt, p[:, 1]))
    return float(np.mean([roc_auc_score(yt == k, p[:, k]) for k in range(c)]))


def _ece_from(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    if conf.size == 0:
        return float("nan")
    b = np.clip((conf * n_bins).astype(int), 0, n_bins - 1)  # bins (i/n, (i+1)/n]; 1.0 in the last
    cnt = np.bincount(b, minlength=n_bins)
    s_conf = np.bincount(b, weights=conf, minlength=n_bins)
    s_acc = np.bincount(b, weights=correct.astype(float), minlength=n_bins)
    return float(np.abs(s_acc - s_conf).sum() / conf.size)


def expected_calibration_error(y_true: Sequence[int], y_prob: np.ndarray, *, n_bins: int = 10,
                               threshold: float | None = None) -> float:
    """Top-label ECE (Guo et al. 2017): sum over equal-width confidence bins of |accuracy - confidence| * share."""
    p = np.asarray(y_prob, dtype=float)
    pred = predict_labels(p, threshold)
    conf = p[np.arange(len(p)), pred]
    return _ece_from(conf, pred == np.asarray(y_true, dtype=int), n_bins)


def reliability_curve(y_true: Sequence[int], y_prob: np.ndarray, *, n_bins: int = 10,
                      threshold: float | None = None) -> list[dict[str, Any]]:
    """Reliability diagram data: per confidence bin its range, mean confidence, accuracy and count."""
    p = np.asarray(y_prob, dtype=float)
    pred = predict_labels(p, threshold)
    conf = p[np.arange(len(p)), pred] if len(p) else np.zeros(0)
    correct = pred == np.asarray(y_true, dtype=int)
    b = np.clip((conf * n_bins).astype(int), 0, n_bins - 1)
    out = []
    for i in range(n_bins):
        sel = b == i
        k = int(sel.sum())
        out.append({"lo": i / n_bins, "hi": (i + 1) / n_bins, "count": k,
                    "confidence": float(conf[sel].mean()) if k else None,
                    "accuracy": float(correct[sel].mean()) if k else None})
    return out


def _ovr_curve(yt: np.ndarray, p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(fpr, tpr, auc) of class ``k`` against the rest; None when the data holds only one side."""
    from sklearn.metrics import auc, roc_curve

    pos = yt == k
    if not pos.any() or pos.all():
        return None
    fpr, tpr, _ = roc_curve(pos.astype(int), p[:, k], drop_intermediate=True)
    return fpr, tpr, float(auc(fpr, tpr))


def roc_points(y_true: Sequence[int], y_prob: np.ndarray, classes: Sequence[str], *,
               max_points: int = 200) -> dict[str, dict[str, Any]]:
    """One-vs-rest ROC curve per class for plotting (``fpr``, ``tpr``, ``auc``); empty lists if undefined."""
    yt, p = np.asarray(y_true, dtype=int), np.asarray(y_prob, dtype=float)
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(classes):
        curve = _ovr_curve(yt, p, k)
        if curve is None:
            out[name] = {"fpr": [], "tpr": [], "auc": None}
            continue
        fpr, tpr, a = curve
        if len(fpr) > max_points:  # keep the ends, thin the middle evenly
            idx = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
            fpr, tpr = fpr[idx], tpr[idx]
        out[name] = {"fpr": [round(float(x), 5) for x in fpr], "tpr": [round(float(x), 5) for x in tpr], "auc": a}
    return out


def macro_roc(y_true: Sequence[int], y_prob: np.ndarray, classes: Sequence[str], *,
              grid_points: int = 101) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(fpr grid, mean one-vs-rest TPR on it, mean AUC): one ROC line per model for comparing models
    (a two-class task: the first class's curve). None when no class has both positives and negatives."""
    yt, p = np.asarray(y_true, dtype=int), np.asarray(y_prob, dtype=float)
    grid = np.linspace(0, 1, grid_points)
    tprs, aucs = [], []
    for k in range(len(classes)):
        curve = _ovr_curve(yt, p, k)
        if curve is None:
            continue
        tprs.append(np.interp(grid, curve[0], curve[1]))
        aucs.append(curve[2])
        if len(classes) == 2:
            break
    if not tprs:
        return None
    return grid, np.mean(tprs, axis=0), float(np.mean(aucs))


def classification_metrics(y_true: Sequence[int], y_prob: np.ndarray, classes: Sequence[str], *,
                           groups: Sequence | None = None, threshold: float | None = None,
                           n_resamples: int = 1000, seed: int = 0, n_bins: int = 10) -> dict[str, Any]:
    """SPEC classify metrics with 95% bootstrap CIs (over images, or over patients when ``groups`` given).

    ``y_true``: class indices into ``classes``; ``y_prob``: (N, C) probabilities. For two classes a
    ``threshold`` on ``prob[:, 1]`` replaces argmax. Returns ``confusion_matrix``, ``accuracy``,
    ``balanced_accuracy``, ``macro_f1``, ``auc_macro`` (``None`` when a class is absent),
    ``per_class`` (nine measures, each ``M``), ``calibration`` (``ece`` M + reliability ``bins``),
    ``roc`` (per-class curve points), plus ``n``, ``classes``, ``support`` and ``bootstrap`` provenance.
    """
    classes = [str(c) for c in classes]
    c = len(classes)
    yt = np.asarray(y_true, dtype=int).reshape(-1)
    p = np.asarray(y_prob, dtype=float)
    if p.ndim != 2 or p.shape[1] != c:
        raise ValueError(f"y_prob must have shape (N, {c}) for classes {classes}, got {p.shape}")
    if len(p) != len(yt):
        raise ValueError(f"y_true has {len(yt)} rows but y_prob has {len(p)}")
    _check_labels(yt, c, "y_true")
    n = len(yt)
    pred = predict_labels(p, threshold) if n else np.zeros(0, dtype=int)
    cm = confusion(yt, pred, c)
    conf = p[np.arange(n), pred] if n else np.zeros(0)
    correct = pred == yt

    # point estimates (sklearn-backed where it has the function)
    point_meas = _measures_from_cms(cm)
    point_sum = _summary_from_cms(cm)
    auc_point = auc_ovr(yt, p) if n else float("nan")
    ece_point = _ece_from(conf, correct, n_bins)

    # bootstrap: resampled confusion matrices via bincount, everything else derived from them
    idx_sets = resample_indices(n, groups=groups, n_resamples=n_resamples, seed=seed) if n else []
    flat = yt * c + pred
    cms = np.stack([np.bincount(flat[ix], minlength=c * c).reshape(c, c) for ix in idx_sets]) if idx_sets else \
        np.zeros((0, c, c))
    boot_meas = _measures_from_cms(cms)
    boot_sum = _summary_from_cms(cms)
    boot_ece = np.array([_ece_from(conf[ix], correct[ix], n_bins) for ix in idx_sets])
    auc_defined = bool(np.isfinite(auc_point))
    if auc_defined:
        def _boot_auc(a: np.ndarray) -> float:  # same definition as auc_ovr (binary: class 1 only)
            return float("nan") if np.isnan(a).any() else float(a[1] if c == 2 else a.mean())

        boot_auc = np.array([_boot_auc(_auc_ovr_fast(yt[ix], p[ix])) for ix in idx_sets])

    per_class = {name: {m: percentile_ci(float(point_meas[m][k]), boot_meas[m][:, k]) for m in MEASURES}
                 for k, name in enumerate(classes)}
    return {
        "classes": classes,
        "n": int(n),
        "support": {name: int(cm[k].sum()) for k, name in enumerate(classes)},
        "threshold": threshold,
        "confusion_matrix": cm.tolist(),
        "accuracy": percentile_ci(float(point_sum["accuracy"]), boot_sum["accuracy"]),
        "balanced_accuracy": percentile_ci(float(point_sum["balanced_accuracy"]), boot_sum["balanced_accuracy"]),
        "macro_f1": percentile_ci(float(point_sum["macro_f1"]), boot_sum["macro_f1"]),
        "auc_macro": percentile_ci(auc_point, boot_auc) if auc_defined else None,
        "per_class": per_class,
        "calibration": {"ece": percentile_ci(ece_point, boot_ece), "n_bins": n_bins,
                        "bins": reliability_curve(yt, p, n_bins=n_bins, threshold=threshold) if n else []},
        "roc": roc_points(yt, p, classes) if n else {name: {"fpr": [], "tpr": [], "auc": None} for name in classes},
        "bootstrap": {"n_resamples": int(n_resamples), "unit": "patient" if groups is not None else "image",
                      "seed": int(seed), "alpha": 0.05},
    }


class ClassificationAccumulator:
    """Collects batches during an evaluation loop (MONAI ``Cumulative`` style), then computes once.

    ``update(y_true, y_prob, groups=None)`` accepts numpy arrays, lists or torch tensors.
    """

    def __init__(self, classes: Sequence[str], *, threshold: float | None = None) -> None:
        self.classes = [str(c) for c in classes]
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._y: list[np.ndarray] = []
        self._p: list[np.ndarray] = []
        self._g: list[Any] = []
        self._has_groups: bool | None = None

    @staticmethod
    def _np(x: Any) -> np.ndarray:
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        return np.asarray(x)

    def update(self, y_true: Any, y_prob: Any, groups: Sequence | None = None) -> None:
        y = self._np(y_true).reshape(-1).astype(int)
        p = self._np(y_prob).astype(float).reshape(len(y), -1)
        if p.shape[1] != len(self.classes):
            raise ValueError(f"batch probabilities have {p.shape[1]} columns, expected {len(self.classes)}")
        has = groups is not None
        if self._has_groups is not None and has != self._has_groups:
            raise ValueError("pass groups with every batch or with none")
        self._has_groups = has
        self._y.append(y)
        self._p.append(p)
        if has:
            g = list(groups)  # type: ignore[arg-type]
            if len(g) != len(y):
                raise ValueError(f"{len(g)} groups for a batch of {len(y)}")
            self._g.extend(g)

    def __len__(self) -> int:
        return int(sum(len(y) for y in self._y))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, list | None]:
        c = len(self.classes)
        y = np.concatenate(self._y) if self._y else np.zeros(0, dtype=int)
        p = np.concatenate(self._p) if self._p else np.zeros((0, c))
        return y, p, (list(self._g) if self._has_groups else None)

    def compute(self, *, n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
        y, p, g = self.arrays()
        return classification_metrics(y, p, self.classes, groups=g, threshold=self.threshold,
                                      n_resamples=n_resamples, seed=seed)
