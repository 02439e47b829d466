"""A disc grader on the *validation* patients only (never the test ones): the figures to choose a grader by.

    .venv/bin/python docs/disc_grader_validation.py --model mri_disc_grader_spider --data ../shared/data/spider-mri

Why: choosing a loss, a crop or a read-out by test figures would make the test figures optimistic. This scores a
shipped id or a run folder on the validation part of its card's recorded split, on the same crops the trainer
validates on (``engine.discs.collect_discs``: recovered boxes, else the locator's named discs; the card's crop
margin), with 95 % CIs over patients; plus two read-outs a single slice cannot give but a study can — the mean of a
disc's T1 and T2 grades, and the T2 grade where the patient has a T2 slice (Pfirrmann is defined on T2) — and the
herniation calls at the card's threshold against the radiologists' count.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="shipped grader id or run folder")
    ap.add_argument("--data", required=True)
    ap.add_argument("--resamples", type=int, default=1000)
    a = ap.parse_args(argv)

    from spine_models.data.adapters import load_dataset
    from spine_models.engine.discs import _targets, collect_discs, grade
    from spine_models.engine.predictor import load_predictor
    from spine_models.metrics.discs import finding_measures, pfirrmann_measures
    from spine_models.report.evaluation import split_part

    pred = load_predictor(a.model)
    card = pred.card
    ds = split_part(card, load_dataset([a.data], task="segment"), "val")
    discs = collect_discs(ds.samples, pred.locator, pred.size, margin=pred.margin)
    pf, fi = grade(pred.model, np.stack([d.crop for d in discs]).astype(np.float32), len(pred.findings), pred.device)
    pt, ft = _targets(discs, pred.findings)
    groups = [d.patient for d in discs]
    key = [(d.patient, d.level) for d in discs]
    seq = np.array([d.series.rsplit("_", 1)[-1].lower() for d in discs])
    by_disc: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
    for i, k in enumerate(key):
        by_disc[k].append(i)
    fused, t2 = pf.copy(), pf.copy()
    for ix in by_disc.values():
        fused[ix] = pf[ix].mean(0)
        t2_ix = [i for i in ix if seq[i] == "t2"]
        if t2_ix:
            t2[ix] = pf[t2_ix].mean(0)
    out: dict[str, object] = {"model": card.id, "part": "val", "n_discs": len(discs), "n_patients": len(set(groups))}
    for name, p in (("per_slice", pf), ("fused_t1_t2", fused), ("t2_preferred", t2)):
        m = pfirrmann_measures(pt, p, groups=groups, n_resamples=a.resamples)
        out[name] = {k: m[k] for k in ("pfirrmann_accuracy", "pfirrmann_within1", "pfirrmann_confusion_matrix")}
    expected = np.clip(np.round((pf * np.arange(5)).sum(1)), 0, 4).astype(int)
    out["per_slice_expected_grade_exact"] = float((expected == pt).mean())
    out["per_sequence_exact"] = {s: float((pf.argmax(1) == pt)[seq == s].mean()) for s in sorted(set(seq))}
    out["findings"] = {}
    for j, f in enumerate(pred.findings):
        thr = float(card.thresholds.get(f, 0.5))
        m = finding_measures(ft[:, j], fi[:, j], thr, groups=groups, n_resamples=a.resamples)
        out["findings"][f] = {"auc": m["auc"], "threshold": thr, "calls": int((fi[:, j] >= thr).sum()),
                              "positive": int(ft[:, j].sum())}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
