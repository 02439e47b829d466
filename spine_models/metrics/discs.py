"""Disc-grading metrics (SPEC "Report keys for real-film tasks"): Pfirrmann grade agreement and per-finding ROC figures.

Pure functions over per-disc arrays, each figure with a bootstrap CI over ``groups`` (patients: several discs and
two series per patient). AUC from scikit-learn; NaN where a resample holds one class only (dropped by the bootstrap).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from spine_models.metrics.bootstrap import bootstrap_ci
from spine_models.metrics.classification import confusion
from spine_models.metrics.detection import sens_spec_ci

__all__ = ["auc", "pfirrmann_measures", "finding_measures", "N_GRADES"]

N_GRADES = 5


def auc(y_true: Sequence[int], y_score: Sequence[float]) -> float:
    """ROC AUC of a binary finding; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true).astype(int)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(y_score, float)))


def pfirrmann_measures(y_true: Sequence[int], y_prob: np.ndarray, *, groups: Sequence[str] | None = None,
                       n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``pfirrmann_accuracy``, ``pfirrmann_within1`` (M) and ``pfirrmann_confusion_matrix`` (rows true grade 1-5,
    columns predicted) from true grades as classes 0-4 and (N, 5) probabilities (prediction = most probable grade)."""
    t = np.asarray(y_true, int)
    pred = np.asarray(y_prob, float).reshape(len(t), N_GRADES).argmax(1) if len(t) else np.zeros(0, int)
    acc = bootstrap_ci(lambda a, b: float(np.mean(a == b)) if len(a) else float("nan"), t, pred, groups=groups,
                       n_resamples=n_resamples, seed=seed)
    w1 = bootstrap_ci(lambda a, b: float(np.mean(np.abs(a - b) <= 1)) if len(a) else float("nan"), t, pred, groups=groups,
                      n_resamples=n_resamples, seed=seed)
    cm = confusion(t, pred, N_GRADES) if len(t) else np.zeros((N_GRADES, N_GRADES), int)
    return {"pfirrmann_accuracy": acc, "pfirrmann_within1": w1,
            "pfirrmann_confusion_matrix": np.asarray(cm, int).tolist(), "pfirrmann_grades": [1, 2, 3, 4, 5]}


def finding_measures(y_true: Sequence[int], y_score: Sequence[float], threshold: float, *,
                     groups: Sequence[str] | None = None, n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``auc``, ``sensitivity``, ``specificity`` (M each) of one binary finding at ``threshold``, plus counts."""
    y = np.asarray(y_true, int)
    s = np.asarray(y_score, float)
    sens, spec = sens_spec_ci(y == 1, s, threshold, n_resamples=n_resamples, seed=seed, groups=groups)
    return {"auc": bootstrap_ci(auc, y, s, groups=groups, n_resamples=n_resamples, seed=seed),
            "sensitivity": sens, "specificity": spec,
            "threshold": float(threshold), "n_positive": int((y == 1).sum()), "n": int(len(y))}
