"""Bootstrap confidence intervals over images or over patients.

Why: every figure we print is small-sample; SPEC's ``M`` is ``{"value", "ci95"}``. Resampling whole
patients (``groups``) keeps a patient's images together, as the split did.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = ["bootstrap_ci", "M", "resample_indices", "percentile_ci"]


def M(value: float | None, ci95: Sequence[float] | None) -> dict:
    """SPEC metric object; NaN becomes None so JSON stays valid."""
    def f(x):
        return None if x is None or not np.isfinite(x) else float(x)
    return {"value": f(value), "ci95": [f(ci95[0]), f(ci95[1])] if ci95 is not None else [None, None]}


def bootstrap_ci(metric: Callable[..., float], *arrays: np.ndarray, groups: Sequence | None = None,
                 n_resamples: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict:
    """Point estimate on all data plus a percentile CI from ``n_resamples`` resamples.

    ``metric(*arrays_subset)`` must return a float (NaN allowed: such resamples are dropped).
    With ``groups`` (one id per row) whole groups are drawn with replacement.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("bootstrap_ci: arrays differ in length")
    value = float(metric(*arrays))
    if n == 0:
        return M(float("nan"), None)
    rng = np.random.default_rng(seed)
    if groups is None:
        index_sets = None
        n_units = n
    else:
        g = np.asarray(groups)
        _, inverse = np.unique(g, return_inverse=True)
        index_sets = [np.flatnonzero(inverse == k) for k in range(inverse.max() + 1)]
        n_units = len(index_sets)
    stats = np.empty(n_resamples)
    for i in range(n_resamples):
        pick = rng.integers(0, n_units, n_units)
        idx = pick if index_sets is None else np.concatenate([index_sets[k] for k in pick])
        with np.errstate(all="ignore"):
            stats[i] = metric(*(a[idx] for a in arrays))
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return M(value, None)
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    # the percentile interval can miss a degenerate point estimate by rounding; never report that
    lo, hi = min(lo, value) if np.isfinite(value) else lo, max(hi, value) if np.isfinite(value) else hi
    return M(value, (lo, hi))


def resample_indices(n: int, *, groups: Sequence | None = None, n_resamples: int = 1000,
                     seed: int = 0) -> list[np.ndarray]:
    """Row indices of ``n_resamples`` bootstrap resamples (whole groups when ``groups`` given).

    Why: metrics that compute many numbers from one resample (a confusion matrix gives 9 measures
    per class) draw the indices once and reuse them, instead of one ``bootstrap_ci`` call per number.
    The draws match ``bootstrap_ci`` with the same ``seed``.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        return [rng.integers(0, n, n) for _ in range(n_resamples)]
    g = np.asarray(groups)
    if len(g) != n:
        raise ValueError("resample_indices: groups differ in length from the data")
    _, inverse = np.unique(g, return_inverse=True)
    index_sets = [np.flatnonzero(inverse == k) for k in range(int(inverse.max()) + 1)] if n else []
    n_units = len(index_sets)
    return [np.concatenate([index_sets[k] for k in rng.integers(0, n_units, n_units)]) if n_units else
            np.zeros(0, dtype=int) for _ in range(n_resamples)]


def percentile_ci(value: float, stats: Sequence[float] | np.ndarray, alpha: float = 0.05) -> dict:
    """SPEC ``M`` from a point estimate and resampled statistics (non-finite resamples dropped)."""
    s = np.asarray(stats, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0 or not np.isfinite(value):
        return M(value, None)
    lo, hi = np.quantile(s, [alpha / 2, 1 - alpha / 2])
    return M(value, (min(lo, value), max(hi, value)))
