"""A fixed subset of the seeded fuzz (spine_models.io.fuzz): every hostile input reads or is refused in one line."""
from __future__ import annotations

import collections

import numpy as np

from spine_models.io.fuzz import FAMILIES, generate, run_case
from spine_models.measure.slip import _measurable_levels


def test_fuzz_subset_only_one_line_refusals(tmp_path):
    counts = collections.Counter()
    bad = []
    for i, case in enumerate(generate(200, seed=20261202)):
        work = tmp_path / str(i)
        work.mkdir()
        outcome, detail = run_case(case, work)
        counts[(case.family, outcome)] += 1
        if outcome not in ("ok", "refused"):
            bad.append((case.family, case.mutation, outcome, detail))
    assert bad == []
    assert {f for f, o in counts if o == "refused"} == set(FAMILIES)  # every family really exercised


def test_zero_length_endplate_is_a_failed_level_not_an_exception():
    good = np.array([[0, 0], [40, 0], [40, 20], [0, 20]], float)
    flat = np.array([[10, 30], [10, 30], [10, 50], [10, 50]], float)  # TL == TR: zero-length endplate
    levels, failed = _measurable_levels({"L4": good, "L5": flat}, "left")
    assert levels == {} and "zero length" in failed["L4-L5"]
