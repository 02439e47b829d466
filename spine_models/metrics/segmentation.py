"""Segmentation metrics: Dice and IoU per structure, with bootstrap CIs over images.

Why pure numpy: the evaluator, the app (scoring a user's uploaded ground-truth mask) and the tests
all need the same numbers without a model or torch. Convention: when both the prediction and the
truth are empty the structure was correctly reported absent, so Dice = IoU = 1.0 (MONAI's
``ignore_empty=False`` behaviour); one empty and one not gives 0.0.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from spine_models.errors import SpineInputError
from spine_models.metrics.bootstrap import M, bootstrap_ci

__all__ = ["dice", "iou", "mask_scores", "score_mask", "segmentation_metrics", "mae_metric"]


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: prediction {p.shape} vs truth {t.shape}")
    return p, t


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|P∩T| / (|P|+|T|) of two binary masks (non-zero = foreground); 1.0 when both are empty."""
    p, t = _pair(pred, truth)
    s = int(p.sum()) + int(t.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(p, t).sum()) / s


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """|P∩T| / |P∪T| (Jaccard) of two binary masks; 1.0 when both are empty."""
    p, t = _pair(pred, truth)
    u = int(np.logical_or(p, t).sum())
    return 1.0 if u == 0 else int(np.logical_and(p, t).sum()) / u


def mask_scores(pred: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """``{structure: {"dice", "iou"}}`` for every structure present in both mappings."""
    return {s: {"dice": dice(pred[s], truth[s]), "iou": iou(pred[s], truth[s])} for s in pred if s in truth}


def score_mask(pred_mask: np.ndarray, truth_mask: np.ndarray, *, name: str = "ground-truth mask") -> dict[str, Any]:
    """Dice and IoU of a predicted mask against a user's ground-truth mask.

    The truth may be any 2-D (or HxWxC, reduced by max) image; non-zero is foreground. When its size
    differs from the prediction it is resized to the prediction's size (nearest neighbour) and the
    result says so in ``"note"``: scores then carry that resampling error too.
    """
    import cv2

    p = np.asarray(pred_mask) > 0
    t = np.asarray(truth_mask)
    if t.ndim == 3:
        t = t.max(axis=-1)
    if t.ndim != 2 or min(t.shape) < 1:
        raise SpineInputError(f"{name}: expected a 2-D mask image, got shape {tuple(np.asarray(truth_mask).shape)}; "
                              "upload a single-channel black/white mask")
    resized = t.shape != p.shape
    note = ""
    if resized:
        note = (f"the ground-truth mask ({t.shape[1]}x{t.shape[0]}) was resized to the prediction "
                f"({p.shape[1]}x{p.shape[0]}) with nearest-neighbour sampling")
        t = cv2.resize((t > 0).astype(np.uint8), (p.shape[1], p.shape[0]), interpolation=cv2.INTER_NEAREST)
    t = t > 0
    out: dict[str, Any] = {"dice": dice(p, t), "iou": iou(p, t), "resized": resized,
                           "pred_area_px": int(p.sum()), "truth_area_px": int(t.sum())}
    if note:
        out["note"] = note
    return out


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def segmentation_metrics(per_image: Sequence[Mapping[str, Mapping[str, float]]], structures: Sequence[str], *,
                         groups: Sequence | None = None, n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """SPEC segment metrics ``{"dice": {s: M}, "iou": {s: M}}`` from per-image score dicts.

    ``per_image[i]`` is :func:`mask_scores`' output for image i; a structure missing from an image's
    truth is skipped for that image. The CI resamples images (or whole ``groups``, e.g. patients).
    """
    out: dict[str, Any] = {"dice": {}, "iou": {}}
    for metric in ("dice", "iou"):
        for s in structures:
            idx = [i for i, d in enumerate(per_image) if s in d]
            vals = np.array([per_image[i][s][metric] for i in idx], float)
            g = None if groups is None else np.asarray(groups)[idx]
            out[metric][s] = bootstrap_ci(_mean, vals, groups=g, n_resamples=n_resamples, seed=seed) if len(vals) \
                else M(None, None)
    return out


def mae_metric(pred: Sequence[float], truth: Sequence[float], *, groups: Sequence | None = None,
               n_resamples: int = 1000, seed: int = 0) -> dict:
    """Mean absolute error as SPEC ``M`` (e.g. ``cobb_mae_deg``, ``slip_mae_percent``)."""
    err = np.abs(np.asarray(pred, float) - np.asarray(truth, float))
    if err.size == 0:
        return M(None, None)
    return bootstrap_ci(_mean, err, groups=groups, n_resamples=n_resamples, seed=seed)
