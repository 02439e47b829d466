"""Choose what a gap in the corner model's column does to its Cobb reading (card key ``column_gaps``) on real films
outside the test parts, never on test films.

    .venv/bin/python docs/tune_column_gaps.py --model seg_vertebra_corners_aasce --aasce ../shared/data/aasce-ap \
        --fraiwan ../shared/data/fraiwan-ap --classifier ap_scoliosis_mobilenet_v2_fraiwan \
        --out docs/column_gaps_tuning.json [--write weights/X.json]

Why: the plausibility rule the corner model shares with the AP U-Net (``engine.segment._plausibility``) withholds the
reading ("cannot measure") when the gap between two found bodies is over 4 times the median gap. The rule was made
for a phantom-trained U-Net's specks on the skull and pelvis; the corner model's bodies are cut, tidied and named by
its level reader, so a gap there is bodies not found inside the column, and a clinician gets no angle at all on a
film whose curve is plain to see. ``note`` keeps the reading and says that a curve ending in a gap reads low. Here a
withheld film counts as 0 deg (what a reader gets from it); ``spine-models evaluate`` counts the withheld reading at its
value in ``cobb_mae_deg`` and reports the share withheld apart (``cobb_not_shown_fraction``), so there the choice moves
the share shown, not the error. Each setting is scored on

- the training and validation parts of aasce-ap (the model's recorded patient split; the training films were seen by
  both networks, but this is a read-out rule, not a learned one, and 40 validation films alone decide nothing --
  as ``docs/tune_corner_passes.py``): Cobb MAE, within 5 deg, films not shown;
- the fraiwan-ap films in neither test part (the vertebra model's split re-made on fraiwan-ap, and ``--classifier``'s):
  balanced accuracy of the page's scoliosis call (``report.findings.cobb_call``).

Rule (fixed before the first run): ``note`` only when its pooled AASCE MAE is lower than ``withhold``'s and its Fraiwan
balanced accuracy is at most ``MAX_CALL_LOSS`` below; else ``withhold``. ``--write CARD`` stores the choice in the card's
``preprocessing``; test films are then measured once by ``spine-models evaluate`` and ``docs/make_real_vertebra_eval.py``.
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

__all__ = ["main"]

MAX_CALL_LOSS = 0.02  # Fraiwan tuning films' call balanced accuracy ``note`` may lose against ``withhold``


def _score(card: Any, value: Any, aasce: dict[str, list[Any]], tune: list[Any], key: str = "column_gaps") -> dict[str, Any]:
    """One setting of the card's preprocessing ``key`` (``value``) scored on the pooled AASCE training and
    validation films and the Fraiwan tuning films (docs/tune_body_step.py scores its key the same way)."""
    from spine_models.engine.landmarks import VertebraCornerPredictor
    from spine_models.measure import cobb_read
    from spine_models.report.findings import PRESENT, cobb_call

    pred = VertebraCornerPredictor(dataclasses.replace(card, preprocessing={**(card.preprocessing or {}), key: value}))
    row: dict[str, Any] = {key: value}
    pooled = []
    for part, films in aasce.items():
        reads = [cobb_read(pred.predict(s.path).measurements.get("cobb")) for s in films]
        err = np.abs(np.array([r.value if r.ok else 0.0 for r in reads]) - [float(s.meta["cobb_deg"]) for s in films])
        pooled.append(err)
        row[part] = {"n": len(films), "cobb_mae_deg": round(float(err.mean()), 3),
                     "cobb_within_5deg": round(float(np.mean(err <= 5)), 4), "not_shown": int(sum(not r.ok for r in reads))}
    err = np.concatenate(pooled)
    row["pooled_cobb_mae_deg"] = round(float(err.mean()), 3)
    row["pooled_cobb_within_5deg"] = round(float(np.mean(err <= 5)), 4)
    called = np.array([cobb_call(pred.predict(s.path).measurements.get("cobb")) == PRESENT for s in tune])
    scol = np.array([s.label == "scoliosis" for s in tune])
    sens, spec = float(called[scol].mean()), float((~called[~scol]).mean())
    row.update(fraiwan_call_balanced_accuracy=round((sens + spec) / 2, 4), fraiwan_sensitivity=round(sens, 4),
               fraiwan_specificity=round(spec, 4))
    return row


def main(argv: list[str] | None = None) -> int:
    from spine_models.data.adapters import load_dataset
    from spine_models.models.cards import store_choice
    from spine_models.models.hub import resolve_card
    from spine_models.report.evaluation import corner_tuning_args, outside_test_parts, split_part

    args = corner_tuning_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "column_gaps").parse_args(argv)

    card = resolve_card(args.model)
    ds = load_dataset(args.aasce, task="segment")
    aasce = {part: [s for s in split_part(card, ds, part).samples if s.meta.get("cobb_deg") is not None]
             for part in ("val", "train")}
    tune = outside_test_parts(load_dataset(args.fraiwan, task="classify"), card, resolve_card(args.classifier))
    rows = []
    for gaps in ("withhold", "note"):
        rows.append(_score(card, gaps, aasce, tune))
        print(json.dumps(rows[-1]), flush=True)
    held, note = rows
    ok = (note["pooled_cobb_mae_deg"] < held["pooled_cobb_mae_deg"]
          and note["fraiwan_call_balanced_accuracy"] >= held["fraiwan_call_balanced_accuracy"] - MAX_CALL_LOSS)
    best = note if ok else held
    out = {"model": card.id, "sha256": card.sha256, "command": "python docs/tune_column_gaps.py " + " ".join(
               sys.argv[1:] if argv is None else argv),
           "rule": __doc__.split("Rule (fixed before the first run): ")[1].split(" ``--write")[0],
           "max_call_loss": MAX_CALL_LOSS,
           "films": {**{f"aasce-ap {part} part": {"n": len(f), "n_patients": len({s.patient_id for s in f})}
                        for part, f in aasce.items()},
                     "fraiwan-ap outside both test parts": {"n": len(tune), "scoliosis": sum(s.label == "scoliosis" for s in tune)}},
           "best": best["column_gaps"], "rows": rows}
    print(f"best {best['column_gaps']}")
    store_choice(args.out, out, args.write, {"column_gaps": best["column_gaps"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
