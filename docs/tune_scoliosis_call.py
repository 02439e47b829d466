"""Choose how the column's centreline reading is used (the scoliosis call, a floor of the Cobb angle) on real
validation films, never on test films.

    .venv/bin/python docs/tune_scoliosis_call.py --model seg_vertebra_corners_aasce \
        --aasce ../shared/data/aasce-ap --fraiwan ../shared/data/fraiwan-ap \
        --classifier ap_scoliosis_mobilenet_v2_fraiwan --out docs/scoliosis_call_tuning.json [--write weights/X.json]

Why: the corner model's endplate reading is close to the experts' on AASCE films, but on full-trunk films of
normal spines (fraiwan-ap) it reads a curve of 10 deg or more on most of them: one crooked body is enough for the
endplate rule, which takes the two most tilted bodies. ``measure.centreline_cobb`` reads the column's own bend
from a smooth curve through the body centres; the page then calls scoliosis only when both read 10 deg or more
(``report.findings.cobb_call``). Which polynomial degree (or none) is an empirical question, answered here on:

- the *validation* part of the model's recorded patient split of aasce-ap (expert Cobb angles: the call must keep
  the curves of 10 deg or more it finds), and
- the fraiwan-ap films (normal / scoliosis labels) in neither test part -- not the vertebra model's (its recorded
  split re-made on fraiwan-ap) and not ``--classifier``'s -- so every later comparison on test films stays unseen.
  No vertebra model trained on fraiwan-ap.

The model runs once per film; each setting re-reads its bodies. First the degree: balanced accuracy of the call on
the Fraiwan films, the share of normal films called scoliosis, the AASCE sensitivity at the experts' 10 deg; the
degree kept is, among those whose call keeps AASCE sensitivity >= ``MIN_AASCE_SENSITIVITY``, the one with the highest
Fraiwan balanced accuracy (ties: higher AASCE sensitivity, then the lower degree). Then, at that degree, the
centreline as a floor of the shown angle (``centreline_margin_deg``: the angle is raised to the centreline's reading
less the margin where the endplates read less -- where the bodies at a severe curve's ends were not found, the
endplate reading loses most of the curve and the centreline does not), scored by the Cobb figures
``spine-models evaluate`` reports on the AASCE validation films; the lowest MAE wins (None: no floor).
``--write CARD`` stores both in the card's ``preprocessing``; test films are then measured once by
``docs/make_real_vertebra_eval.py``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

__all__ = ["main", "DEGREES"]

DEGREES: tuple[int | None, ...] = (None, 2, 3, 4, 5)
# the call may miss at most one in 20 of the curves of >= 10 deg the experts measured (the endplate reading alone
# misses none of the validation films'): a parabola (degree 2) cannot follow an S curve and missed 22 % of them.
# Disclosed: this floor was added after the first run of this script, which ranked by Fraiwan balanced accuracy
# alone and picked degree 2 (docs/scoliosis_call_tuning.json keeps every degree's row); no test film was read.
MIN_AASCE_SENSITIVITY = 0.95
# the centreline as a floor of the shown angle: None (the endplate reading alone) or this many degrees below it
MARGINS: tuple[float | None, ...] = (None, 5.0, 10.0, 15.0, 20.0, 25.0)


def _reads(pred: Any, path: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The film's ``cobb`` measurement (centreline left out) and its refined bodies."""
    res = pred.predict(path)
    cobb = {k: v for k, v in (res.measurements.get("cobb") or {}).items() if not k.startswith("centreline")}
    return cobb, {v["name"]: np.asarray(v["corners"], float) for v in res.vertebrae}


def _read(cobb: dict[str, Any], bodies: dict[str, np.ndarray], degree: int | None, margin: float | None = None
          ) -> dict[str, Any]:
    from spine_models.engine.landmarks import with_centreline

    return with_centreline(cobb, bodies, degree, margin=margin) if degree else cobb


def _call(cobb: dict[str, Any], bodies: dict[str, np.ndarray], degree: int | None, margin: float | None = None) -> str:
    from spine_models.report.findings import cobb_call

    return cobb_call(_read(cobb, bodies, degree, margin))


def _shown(cobb: dict[str, Any]) -> float:
    """The angle the page shows (0 when it shows none, as ``spine-models evaluate`` counts it)."""
    from spine_models.measure import cobb_read

    r = cobb_read(cobb)
    return float(r.value) if r.ok else 0.0


def main(argv: list[str] | None = None) -> int:
    from spine_models.data.adapters import load_dataset
    from spine_models.engine.landmarks import VertebraCornerPredictor
    from spine_models.models.cards import store_choice
    from spine_models.models.hub import resolve_card
    from spine_models.report.evaluation import corner_tuning_args, outside_test_parts, split_part

    args = corner_tuning_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "centreline_degree").parse_args(argv)
    from spine_models.report.findings import PRESENT

    card = resolve_card(args.model)
    card = dataclasses.replace(card, preprocessing={**(card.preprocessing or {}), "centreline_degree": None,
                                                                "centreline_margin_deg": None})
    pred = VertebraCornerPredictor(card)
    aasce = [s for s in split_part(card, load_dataset(args.aasce, task="segment"), "val").samples
             if s.meta.get("cobb_deg") is not None]
    fraiwan = load_dataset(args.fraiwan, task="classify")
    tune = outside_test_parts(fraiwan, card, resolve_card(args.classifier))
    a_reads = [_reads(pred, s.path) for s in aasce]
    f_reads = [_reads(pred, s.path) for s in tune]
    truth = np.array([float(s.meta["cobb_deg"]) for s in aasce])
    scol = np.array([s.label == "scoliosis" for s in tune])
    rows = []
    for deg in DEGREES:
        fa = np.array([_call(c, b, deg) == PRESENT for c, b in f_reads])
        aa = np.array([_call(c, b, deg) == PRESENT for c, b in a_reads])
        sens, spec = float(fa[scol].mean()), float((~fa[~scol]).mean())
        rows.append({"centreline_degree": deg, "fraiwan_balanced_accuracy": round((sens + spec) / 2, 4),
                     "fraiwan_sensitivity": round(sens, 4), "fraiwan_specificity": round(spec, 4),
                     "fraiwan_normal_called_scoliosis": round(1 - spec, 4),
                     "aasce_sensitivity_cobb_ge_10": round(float(aa[truth >= 10].mean()), 4),
                     "aasce_called_of_cobb_lt_10": f"{int(aa[truth < 10].sum())}/{int((truth < 10).sum())}"})
        print(json.dumps(rows[-1]), flush=True)
    keep = [r for r in rows if r["centreline_degree"] and r["aasce_sensitivity_cobb_ge_10"] >= MIN_AASCE_SENSITIVITY]
    if not keep:
        raise SystemExit(f"no centreline degree keeps AASCE sensitivity >= {MIN_AASCE_SENSITIVITY}: leave the card as it is")
    best = max(keep, key=lambda r: (r["fraiwan_balanced_accuracy"], r["aasce_sensitivity_cobb_ge_10"], -r["centreline_degree"]))
    # the centreline as a floor of the shown angle (card key centreline_margin_deg), at the chosen degree
    from spine_models.metrics.landmarks import smape_percent

    margins = []
    for m in MARGINS:
        v = np.array([_shown(_read(c, b, best["centreline_degree"], m)) for c, b in a_reads])
        e = np.abs(v - truth)
        fa = np.array([_call(c, b, best["centreline_degree"], m) == PRESENT for c, b in f_reads])
        sens, spec = float(fa[scol].mean()), float((~fa[~scol]).mean())
        margins.append({"centreline_margin_deg": m, "aasce_cobb_mae_deg": round(float(e.mean()), 3),
                        "aasce_cobb_smape_percent": round(float(smape_percent(v, truth)), 3),
                        "aasce_cobb_within_5deg": round(float(np.mean(e <= 5)), 4),
                        "aasce_films_raised": int(sum(_shown(_read(c, b, best["centreline_degree"], m)) > _shown(c) + 1e-6
                                                      for c, b in a_reads)),
                        "fraiwan_balanced_accuracy": round((sens + spec) / 2, 4)})
        print(json.dumps(margins[-1]), flush=True)
    best_margin = min(margins, key=lambda r: (r["aasce_cobb_mae_deg"], -(r["centreline_margin_deg"] or 1e9)))
    out = {"model": card.id, "sha256": card.sha256,
           "films": {"aasce-ap validation part": {"n": len(aasce), "n_patients": len({s.patient_id for s in aasce})},
                     "fraiwan-ap outside both test parts": {"n": len(tune), "n_patients": len({s.patient_id for s in tune}),
                                                            "scoliosis": int(scol.sum()), "normal": int((~scol).sum())}},
           "min_aasce_sensitivity": MIN_AASCE_SENSITIVITY,
           "call": "scoliosis when the shown Cobb angle is >= 10 deg and (with a centreline) its centreline reads >= 10 deg",
           "best": best, "rows": rows, "best_margin": best_margin, "margin_rows": margins}
    print(f"best {best}")
    store_choice(args.out, out, args.write, {"centreline_degree": best["centreline_degree"],  # None: removed
                                             "centreline_margin_deg": best_margin["centreline_margin_deg"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
