"""Detection metrics: COCO-style mAP and image-level sensitivity / specificity, with bootstrap CIs.

Why our own code: torchmetrics' MeanAveragePrecision needs pycocotools/faster-coco-eval (not installed),
and a bootstrap over images needs AP recomputed ~1000 times. Matching (which detection is a true
positive at which IoU) depends only on the image, so it is done once; a resample only re-weights
images, which makes each AP a weighted cumulative sum. AP is COCO's 101-point interpolated precision;
matching is COCO's greedy (by score, best-IoU unmatched ground truth, per image and class).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from spine_models.metrics.bootstrap import bootstrap_ci

__all__ = [
    "IOU_THRESHOLDS",
    "ImageBoxes",
    "box_iou",
    "match_image",
    "detection_map",
    "detection_map_ci",
    "image_scores",
    "image_level_sens_spec",
    "sens_spec_ci",
    "youden_threshold",
]

IOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)


@dataclass
class ImageBoxes:
    """Boxes of one image: ``boxes`` (n, 4) x1y1x2y2 pixels, ``labels`` (n,) class names, ``scores`` (n,)."""

    boxes: np.ndarray
    labels: Sequence[str]
    scores: np.ndarray | None = None  # None for ground truth

    @classmethod
    def make(cls, boxes, labels, scores=None) -> "ImageBoxes":
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        s = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = list(labels)
        if len(labels) != len(b) or (s is not None and len(s) != len(b)):
            raise ValueError(f"ImageBoxes: {len(b)} boxes, {len(labels)} labels, {None if s is None else len(s)} scores")
        return cls(b, labels, s)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (n,4) and (m,4) x1y1x2y2 boxes -> (n, m)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_image(pred: ImageBoxes, gt: ImageBoxes, cls: str,
                iou_thresholds: np.ndarray = IOU_THRESHOLDS) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores (n,), tp (n, T) bool, n_gt) for class ``cls`` in one image, COCO greedy matching."""
    pi = np.array([i for i, lab in enumerate(pred.labels) if lab == cls], dtype=int)
    gi = np.array([i for i, lab in enumerate(gt.labels) if lab == cls], dtype=int)
    scores = pred.scores[pi] if len(pi) else np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    pi, scores = pi[order], scores[order]
    tp = np.zeros((len(pi), len(iou_thresholds)), dtype=bool)
    if len(pi) and len(gi):
        iou = box_iou(pred.boxes[pi], gt.boxes[gi])
        for t, thr in enumerate(iou_thresholds):
            taken = np.zeros(len(gi), dtype=bool)
            for d in range(len(pi)):
                cand = np.where(~taken & (iou[d] >= thr - 1e-12), iou[d], -1.0)
                j = int(np.argmax(cand))
                if cand[j] >= 0:
                    taken[j] = True
                    tp[d, t] = True
    return scores, tp, len(gi)


def _ap101(scores: np.ndarray, tp: np.ndarray, w: np.ndarray, npos: float) -> float:
    """101-point interpolated AP of weighted detections (w = how often its image was drawn)."""
    if npos <= 0:
        return float("nan")
    keep = w > 0
    if not keep.any():
        return 0.0
    scores, tp, w = scores[keep], tp[keep], w[keep]
    order = np.argsort(-scores, kind="stable")
    tp, w = tp[order], w[order]
    ctp = np.cumsum(w * tp)
    cfp = np.cumsum(w * ~tp)
    recall = ctp / npos
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # envelope
    rec_pts = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, rec_pts, side="left")
    q = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(q.mean())


class _Matched:
    """Per class: concatenated detections (image index, score, tp per IoU) and GT counts per image."""

    def __init__(self, preds: Sequence[ImageBoxes], gts: Sequence[ImageBoxes], classes: Sequence[str],
                 iou_thresholds: np.ndarray) -> None:
        if len(preds) != len(gts):
            raise ValueError(f"detection metrics: {len(preds)} predictions for {len(gts)} images")
        self.n = len(gts)
        self.classes = list(classes)
        self.iou_thresholds = np.asarray(iou_thresholds)
        self.per_class: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        for c in self.classes:
            img, sc, tps, ngt = [], [], [], np.zeros(self.n)
            for i, (p, g) in enumerate(zip(preds, gts)):
                s, tp, k = match_image(p, g, c, self.iou_thresholds)
                img.append(np.full(len(s), i))
                sc.append(s)
                tps.append(tp)
                ngt[i] = k
            self.per_class[c] = (np.concatenate(img).astype(int), np.concatenate(sc),
                                 np.concatenate(tps) if tps else np.zeros((0, len(self.iou_thresholds)), bool), ngt)

    def ap(self, c: str, weights: np.ndarray) -> np.ndarray:
        """AP per IoU threshold of class ``c`` with per-image weights."""
        img, sc, tp, ngt = self.per_class[c]
        npos = float((weights * ngt).sum())
        w = weights[img]
        return np.array([_ap101(sc, tp[:, t], w, npos) for t in range(len(self.iou_thresholds))])

    def summary(self, weights: np.ndarray | None = None) -> dict:
        w = np.ones(self.n) if weights is None else np.asarray(weights, dtype=np.float64)
        aps = {c: self.ap(c, w) for c in self.classes}
        i50 = int(np.argmin(np.abs(self.iou_thresholds - 0.5)))
        ap50 = {c: float(a[i50]) for c, a in aps.items()}
        ap = {c: float(np.mean(a)) if np.all(np.isfinite(a)) else float("nan") for c, a in aps.items()}

        def mean(d: dict) -> float:
            v = [x for x in d.values() if np.isfinite(x)]
            return float(np.mean(v)) if v else float("nan")

        return {"map50": mean(ap50), "map50_95": mean(ap), "ap50": ap50, "ap50_95": ap}


def detection_map(preds: Sequence[ImageBoxes], gts: Sequence[ImageBoxes], classes: Sequence[str],
                  iou_thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict:
    """``{"map50", "map50_95", "ap50": {cls}, "ap50_95": {cls}}``; classes without ground truth are NaN
    and left out of the means (COCO convention)."""
    return _Matched(preds, gts, classes, np.asarray(iou_thresholds)).summary()


def detection_map_ci(preds: Sequence[ImageBoxes], gts: Sequence[ImageBoxes], classes: Sequence[str], *,
                     n_resamples: int = 1000, seed: int = 0, groups: Sequence | None = None) -> dict:
    """Like :func:`detection_map` but every figure is an ``M`` with a bootstrap CI over images
    (or over ``groups``, e.g. patients)."""
    m = _Matched(preds, gts, classes, IOU_THRESHOLDS)
    idx = np.arange(m.n)
    cache: dict[bytes, dict] = {}  # same seed -> every stat sees the same resamples: summarise each once

    def summary(sel: np.ndarray) -> dict:
        key = sel.tobytes()
        if key not in cache:
            cache[key] = m.summary(np.bincount(sel, minlength=m.n).astype(float))
        return cache[key]

    def stat(key: str, cls: str | None):
        def f(sel: np.ndarray) -> float:
            s = summary(sel)
            return s[key] if cls is None else s[key][cls]
        return bootstrap_ci(f, idx, groups=groups, n_resamples=n_resamples, seed=seed)

    return {"map50": stat("map50", None), "map50_95": stat("map50_95", None),
            "ap50": {c: stat("ap50", c) for c in m.classes}, "ap50_95": {c: stat("ap50_95", c) for c in m.classes}}


def image_scores(preds: Sequence[ImageBoxes], cls: str) -> np.ndarray:
    """Per image, the highest score of a ``cls`` box (0 when there is none): the image-level score."""
    out = np.zeros(len(preds))
    for i, p in enumerate(preds):
        s = [float(p.scores[j]) for j, lab in enumerate(p.labels) if lab == cls]
        out[i] = max(s) if s else 0.0
    return out


def image_level_sens_spec(y_true: Sequence[bool], y_score: Sequence[float], threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity): an image is called positive when its score is >= ``threshold``.

    NaN for sensitivity when no image is positive, for specificity when none is negative.
    """
    t = np.asarray(y_true, dtype=bool)
    called = np.asarray(y_score, dtype=np.float64) >= threshold
    sens = float((called & t).sum() / t.sum()) if t.any() else float("nan")
    spec = float((~called & ~t).sum() / (~t).sum()) if (~t).any() else float("nan")
    return sens, spec


def sens_spec_ci(y_true: Sequence[bool], y_score: Sequence[float], threshold: float, *, n_resamples: int = 1000,
                 seed: int = 0, groups: Sequence | None = None) -> tuple[dict, dict]:
    """Image-level sensitivity and specificity as ``M`` with bootstrap CIs."""
    t = np.asarray(y_true, dtype=bool)
    s = np.asarray(y_score, dtype=np.float64)
    sens = bootstrap_ci(lambda a, b: image_level_sens_spec(a, b, threshold)[0], t, s, groups=groups,
                        n_resamples=n_resamples, seed=seed)
    spec = bootstrap_ci(lambda a, b: image_level_sens_spec(a, b, threshold)[1], t, s, groups=groups,
                        n_resamples=n_resamples, seed=seed)
    return sens, spec


def youden_threshold(y_true: Sequence[bool], y_score: Sequence[float], *, floor: float = 0.01) -> tuple[float, float]:
    """(threshold, J) maximising Youden's J = sens + spec - 1 over cut points between observed scores.

    Cut points are midpoints between consecutive distinct scores (so a new image scoring near a
    training score is not decided by a tie); among equal J the middle cut point is taken. NaN J
    (only one kind of image) returns (0.5, nan).
    """
    t = np.asarray(y_true, dtype=bool)
    s = np.asarray(y_score, dtype=np.float64)
    if not t.any() or t.all():
        return 0.5, float("nan")
    u = np.unique(s)
    cuts = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]]) if len(u) > 1 else np.array([u[0]])
    cuts = cuts[cuts >= floor] if (cuts >= floor).any() else np.array([floor])
    j = np.array([sum(image_level_sens_spec(t, s, c)) - 1 for c in cuts])
    best = np.flatnonzero(j >= j.max() - 1e-12)
    c = float(cuts[best[len(best) // 2]])
    return c, float(j.max())
