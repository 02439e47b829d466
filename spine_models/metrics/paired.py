"""McNemar's test: do two models differ on the same images?

Why: two accuracies with overlapping CIs say little when both models saw the same films; the paired
test looks only at the discordant images (A right / B wrong = ``b``, A wrong / B right = ``c``).
Exact binomial (two-sided) when ``b + c`` is small, otherwise chi-square with Edwards' continuity
correction — the textbook rule (statsmodels ``mcnemar`` does the same; we use scipy directly).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["mcnemar_table", "mcnemar", "mcnemar_test", "EXACT_BELOW"]

EXACT_BELOW = 25  # use the exact binomial test when b + c < 25


def mcnemar_table(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> np.ndarray:
    """2x2 table ``[[both right, A right B wrong], [A wrong B right, both wrong]]``."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"the two models were scored on different numbers of images ({a.size} vs {b.size})")
    return np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]], dtype=int)


def mcnemar(table: Sequence[Sequence[int]] | np.ndarray, *, exact: bool | None = None) -> dict[str, Any]:
    """McNemar's test on a 2x2 paired table; ``exact=None`` picks exact when ``b + c < 25``.

    Returns ``{b, c, n, statistic, p_value, method}``; ``statistic`` is ``min(b, c)`` for the exact
    test and the corrected chi-square otherwise. No discordant pairs -> p = 1.
    """
    from scipy.stats import binomtest, chi2

    t = np.asarray(table, dtype=int)
    if t.shape != (2, 2) or (t < 0).any():
        raise ValueError(f"McNemar needs a 2x2 table of non-negative counts, got {t.tolist()}")
    b, c = int(t[0, 1]), int(t[1, 0])
    nd = b + c
    use_exact = nd < EXACT_BELOW if exact is None else bool(exact)
    if nd == 0:
        stat, p, method = 0.0, 1.0, "exact binomial" if use_exact else "chi-square (continuity corrected)"
    elif use_exact:
        stat = float(min(b, c))
        p = float(binomtest(b, nd, 0.5, alternative="two-sided").pvalue)
        method = "exact binomial"
    else:
        stat = float((abs(b - c) - 1) ** 2 / nd)
        p = float(chi2.sf(stat, 1))
        method = "chi-square (continuity corrected)"
    return {"b": b, "c": c, "n": int(t.sum()), "statistic": stat, "p_value": min(1.0, p), "method": method,
            "table": t.tolist()}


def mcnemar_test(y_true: Sequence, pred_a: Sequence, pred_b: Sequence, *, exact: bool | None = None) -> dict[str, Any]:
    """McNemar for two models' predictions of the same images (in the same order)."""
    yt, pa, pb = (np.asarray(x) for x in (y_true, pred_a, pred_b))
    if not (len(yt) == len(pa) == len(pb)):
        raise ValueError(f"lengths differ: truth {len(yt)}, model A {len(pa)}, model B {len(pb)}")
    out = mcnemar(mcnemar_table(pa == yt, pb == yt), exact=exact)
    out["accuracy_a"] = float(np.mean(pa == yt)) if len(yt) else None
    out["accuracy_b"] = float(np.mean(pb == yt)) if len(yt) else None
    return out
