"""Vertebra corner and Cobb-angle metrics on real films (AASCE-style truth), with CIs over patients.

Why here: ``spine-models evaluate`` on the landmark layout (``landmarks.csv``: 4 corners per vertebra)
reports the figures the scoliosis literature compares on -- mean radial corner error, the AASCE
challenge's symmetric mean absolute percentage error (SMAPE) and the share of films within the +-5 deg
inter-observer band -- and they must mean the same thing in every report. Pure functions on arrays plus
one accumulator; the bootstrap draws whole patients (metrics.bootstrap).

SMAPE here is taken on the largest angle of each film (``cobb_deg``): AASCE's formula sums the three
named angles of a film, ``sum|p_j - t_j| / sum(p_j + t_j)``; with one angle per film it reduces to
``|p - t| / (p + t)``, averaged over films, in percent. A film read 0 deg against a 0 deg truth counts 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from spine_models.metrics.bootstrap import bootstrap_ci

__all__ = ["quad_box", "match_vertebrae", "corner_errors", "smape_percent", "within_deg", "LandmarkAccumulator"]

Corners = Sequence[Sequence[float]]


def quad_box(corners: Corners) -> tuple[float, float, float, float]:
    """Axis-aligned (x1, y1, x2, y2) around a vertebra's 4 corners: how a corner set becomes a box."""
    c = np.asarray(corners, float).reshape(-1, 2)
    return float(c[:, 0].min()), float(c[:, 1].min()), float(c[:, 0].max()), float(c[:, 1].max())


def match_vertebrae(pred: Sequence[Corners], truth: Sequence[Corners], *, min_iou: float = 0.3
                    ) -> list[tuple[int, int]]:
    """One-to-one (pred index, truth index) pairs maximising total box IoU, pairs below ``min_iou`` dropped.

    Why by box overlap and not by level name: a predicted column may start one level off, and the
    corner error should measure where the corners are, not whether the counting agreed."""
    from scipy.optimize import linear_sum_assignment

    from spine_models.metrics.detection import box_iou

    if not len(pred) or not len(truth):
        return []
    iou = box_iou(np.array([quad_box(p) for p in pred]), np.array([quad_box(t) for t in truth]))
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]


def corner_errors(pred: Sequence[Corners], truth: Sequence[Corners], pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Euclidean distance of each corresponding corner (TL, TR, BR, BL) over the matched pairs, px."""
    if not pairs:
        return np.zeros(0)
    p = np.stack([np.asarray(pred[i], float).reshape(4, 2) for i, _ in pairs])
    t = np.stack([np.asarray(truth[j], float).reshape(4, 2) for _, j in pairs])
    return np.linalg.norm(p - t, axis=-1).ravel()


def smape_percent(pred: Sequence[float], truth: Sequence[float]) -> float:
    """Mean over films of ``|p - t| / (p + t)`` x 100 (0 when both are 0); see the module docstring."""
    p, t = np.asarray(pred, float), np.asarray(truth, float)
    if p.size == 0:
        return float("nan")
    den = p + t
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, np.abs(p - t) / np.where(den > 0, den, 1.0), 0.0)
    return float(100.0 * r.mean())


def within_deg(pred: Sequence[float], truth: Sequence[float], tol: float = 5.0) -> float:
    """Share of films whose angle is within ``tol`` degrees of the truth."""
    err = np.abs(np.asarray(pred, float) - np.asarray(truth, float))
    return float(np.mean(err <= tol)) if err.size else float("nan")


@dataclass
class LandmarkAccumulator:
    """Collects per-film Cobb reads and corner matches; ``compute()`` gives SPEC ``M`` figures.

    ``add_cobb(pred, truth, patient)``: ``pred`` None (the measurement failed or abstained) counts as
    0 deg, so failures raise the error instead of leaving the average. ``add_corners(...)``: per film,
    the mean radial error over its matched vertebrae and the share of its truth vertebrae matched."""

    cobb_pred: list[float] = field(default_factory=list)
    cobb_true: list[float] = field(default_factory=list)
    cobb_failed: list[bool] = field(default_factory=list)
    cobb_groups: list[str] = field(default_factory=list)
    mre_px: list[float] = field(default_factory=list)
    mre_rel: list[float] = field(default_factory=list)
    found: list[float] = field(default_factory=list)
    level_ok: list[float] = field(default_factory=list)
    corner_groups: list[str] = field(default_factory=list)

    def add_cobb(self, pred: float | None, truth: float, patient: str) -> None:
        self.cobb_failed.append(pred is None)
        self.cobb_pred.append(0.0 if pred is None else float(pred))
        self.cobb_true.append(float(truth))
        self.cobb_groups.append(str(patient))

    def add_corners(self, pred: Sequence[Corners], truth: Sequence[Corners], film_height: int, patient: str,
                    pred_names: Sequence[str] | None = None, truth_names: Sequence[str] | None = None) -> dict:
        """Record one film; returns its row figures (``mre_px``, ``matched``) for the predictions table.

        With both name lists, the share of matched bodies whose level name (T1..L5) equals the experts' is
        recorded too: the check that names counted along the column are anatomical."""
        pairs = match_vertebrae(pred, truth)
        err = corner_errors(pred, truth, pairs)
        mre = float(err.mean()) if err.size else float("nan")
        self.mre_px.append(mre)
        self.mre_rel.append(mre / float(film_height) if film_height else float("nan"))
        self.found.append(len(pairs) / len(truth) if len(truth) else float("nan"))
        self.corner_groups.append(str(patient))
        level = float("nan")
        if pred_names is not None and truth_names is not None and pairs:
            level = float(np.mean([str(pred_names[i]) == str(truth_names[j]) for i, j in pairs]))
        self.level_ok.append(level)
        return {"mre_px": None if not np.isfinite(mre) else round(mre, 2), "matched": len(pairs),
                "truth_vertebrae": len(truth), **({} if not np.isfinite(level) else {"level_correct": round(level, 3)})}

    def compute(self, *, n_resamples: int = 1000) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cobb_true:
            p, t = np.asarray(self.cobb_pred), np.asarray(self.cobb_true)
            g = self.cobb_groups
            out["cobb_mae_deg"] = bootstrap_ci(lambda a, b: float(np.mean(np.abs(a - b))), p, t, groups=g,
                                               n_resamples=n_resamples)
            out["cobb_smape_percent"] = bootstrap_ci(smape_percent, p, t, groups=g, n_resamples=n_resamples)
            out["cobb_within_5deg"] = bootstrap_ci(within_deg, p, t, groups=g, n_resamples=n_resamples)
            out["cobb_failed_fraction"] = bootstrap_ci(lambda f: float(np.mean(f)), np.asarray(self.cobb_failed, float),
                                                       groups=g, n_resamples=n_resamples)
        if self.mre_px:
            g = self.corner_groups

            def nanmean(a: np.ndarray) -> float:
                a = a[np.isfinite(a)]
                return float(a.mean()) if a.size else float("nan")

            out["landmark_mre_px"] = bootstrap_ci(nanmean, np.asarray(self.mre_px), groups=g, n_resamples=n_resamples)
            out["landmark_mre_rel"] = bootstrap_ci(nanmean, np.asarray(self.mre_rel), groups=g, n_resamples=n_resamples)
            out["vertebrae_matched_fraction"] = bootstrap_ci(nanmean, np.asarray(self.found), groups=g,
                                                             n_resamples=n_resamples)
            lv = np.asarray(self.level_ok, float)
            if np.isfinite(lv).any():
                out["vertebra_level_accuracy"] = bootstrap_ci(nanmean, lv, groups=g, n_resamples=n_resamples)
        return out

