"""Choose the corner model's second look at the column (card key ``column_zoom``) on real validation films, never on
test films.

    .venv/bin/python docs/tune_column_zoom.py --model seg_vertebra_corners_aasce \
        --aasce ../shared/data/aasce-ap --cadma ../shared/data/cadma-vertebra --fraiwan ../shared/data/fraiwan-ap \
        --classifier ap_scoliosis_mobilenet_v2_fraiwan --out docs/column_zoom_tuning.json [--write weights/X.json]

Why: the AP U-Net reads every film stretched to 512x256. On films framed head to pelvis (cadma-vertebra, many
Fraiwan films) the column is a narrow strip of the film: upper thoracic bodies are missed and the boxes of the found
ones are coarse (on cadma-vertebra's validation films 88 % of the experts' boxes had a predicted box at IoU 0.1 but
59 % at IoU 0.5). ``engine.landmarks.column_crop`` cuts the film about the column the first look found and the U-Net
and the corner network look again. Each setting (None: one look) is scored on

- the *validation* part of the model's recorded patient split (the U-Net's, which the corner model must train on)
  of cadma-vertebra: vertebra AP50 (the YOLO layout's ``per_class.vertebra.ap50``, by ``engine.segment.evaluate``) --
  the figure the zoom is for;
- the validation part of aasce-ap: the Cobb MAE the page shows (films already cut to the spine: it must not get worse);
- the fraiwan-ap films in neither test part (the vertebra model's split re-made on fraiwan-ap, and ``--classifier``'s):
  balanced accuracy of the page's scoliosis call (``report.findings.cobb_call``).

Rule (fixed before the first run): the highest cadma AP50 among the settings whose AASCE MAE is at most
``MAX_MAE_LOSS`` deg above one look's and whose Fraiwan balanced accuracy is at most ``MAX_CALL_LOSS`` below it; ties go
to one look, then to the smaller crop. ``--write CARD`` stores the choice in the card's ``preprocessing``; test films
are then measured once by ``spine-models evaluate`` and ``docs/make_real_vertebra_eval.py``.
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

__all__ = ["main", "SETTINGS"]

SETTINGS: tuple[dict[str, float] | None, ...] = (
    None,
    {"up": 0.15, "down": 0.1, "min_width": 1.5},
    {"up": 0.3, "down": 0.1, "min_width": 1.5},
    {"up": 0.5, "down": 0.2, "min_width": 1.5},
    {"up": 0.15, "down": 0.1, "min_width": 2.5},
)
MAX_MAE_LOSS = 0.5  # deg of AASCE validation Cobb MAE a setting may add to one look's
MAX_CALL_LOSS = 0.02  # Fraiwan tuning films' call balanced accuracy a setting may lose against one look's


def _score(card: Any, zoom: dict[str, float] | None, cadma: Any, aasce: list[Any], tune: list[Any],
           n_resamples: int) -> dict[str, Any]:
    from spine_models.engine.landmarks import VertebraCornerPredictor
    from spine_models.engine.segment import evaluate
    from spine_models.measure import cobb_read
    from spine_models.metrics.landmarks import smape_percent
    from spine_models.report.findings import PRESENT, cobb_call

    pre = {k: v for k, v in (card.preprocessing or {}).items() if k != "column_zoom"}
    pred = VertebraCornerPredictor(dataclasses.replace(card, preprocessing={**pre, **({"column_zoom": zoom} if zoom else {})}))
    ap50 = evaluate(pred, cadma, quiet=True, n_resamples=n_resamples)["metrics"]["per_class"]["vertebra"]["ap50"]
    shown = []
    for s in aasce:
        r = cobb_read(pred.predict(s.path).measurements.get("cobb"))
        # a film it shows no angle on counts 0 deg (spine-models evaluate counts a withheld reading at its value and
        # reports the share withheld apart; an angle it could not read at all counts 0 deg there too)
        shown.append(float(r.value) if r.ok else 0.0)
    truth = np.array([float(s.meta["cobb_deg"]) for s in aasce])
    err = np.abs(np.array(shown) - truth)
    called = np.array([cobb_call(pred.predict(s.path).measurements.get("cobb")) == PRESENT for s in tune])
    scol = np.array([s.label == "scoliosis" for s in tune])
    sens, spec = float(called[scol].mean()), float((~called[~scol]).mean())
    return {"column_zoom": zoom, "cadma_vertebra_ap50": {k: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v])
                                                         for k, v in ap50.items()},
            "aasce_cobb_mae_deg": round(float(err.mean()), 3), "aasce_cobb_smape_percent": round(float(smape_percent(shown, truth)), 3),
            "aasce_cobb_within_5deg": round(float(np.mean(err <= 5)), 4),
            "fraiwan_call_balanced_accuracy": round((sens + spec) / 2, 4), "fraiwan_sensitivity": round(sens, 4),
            "fraiwan_specificity": round(spec, 4)}


def main(argv: list[str] | None = None) -> int:
    from spine_models.data.adapters import load_dataset
    from spine_models.models.cards import store_choice
    from spine_models.models.hub import resolve_card
    from spine_models.report.evaluation import corner_tuning_args, outside_test_parts, split_part

    ap = corner_tuning_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "column_zoom", cadma=True)
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args(argv)

    card = resolve_card(args.model)
    cadma = split_part(card, load_dataset(args.cadma, task="segment"), "val")  # spine-models evaluate's own AP50
    aasce = [s for s in split_part(card, load_dataset(args.aasce, task="segment"), "val").samples
             if s.meta.get("cobb_deg") is not None]
    fraiwan = load_dataset(args.fraiwan, task="classify")
    tune = outside_test_parts(fraiwan, card, resolve_card(args.classifier))
    rows = []
    for zoom in SETTINGS:
        rows.append(_score(card, zoom, cadma, aasce, tune, args.resamples))
        print(json.dumps(rows[-1]), flush=True)
    one = rows[0]
    keep = [r for r in rows if r["aasce_cobb_mae_deg"] <= one["aasce_cobb_mae_deg"] + MAX_MAE_LOSS
            and r["fraiwan_call_balanced_accuracy"] >= one["fraiwan_call_balanced_accuracy"] - MAX_CALL_LOSS]
    best = max(keep, key=lambda r: (r["cadma_vertebra_ap50"]["value"], r["column_zoom"] is None,
                                    -sum((r["column_zoom"] or {}).values())))
    out = {"model": card.id, "sha256": card.sha256, "rule": __doc__.split("Rule (fixed before the first run): ")[1].split(" ``--write")[0],
           "max_mae_loss_deg": MAX_MAE_LOSS, "max_call_loss": MAX_CALL_LOSS,
           "films": {"cadma-vertebra validation part": {"n": len(cadma.samples)},
                     "aasce-ap validation part": {"n": len(aasce), "n_patients": len({s.patient_id for s in aasce})},
                     "fraiwan-ap outside both test parts": {"n": len(tune), "scoliosis": sum(s.label == "scoliosis" for s in tune)}},
           "best": best, "rows": rows}
    print(f"best {best['column_zoom']}")
    store_choice(args.out, out, args.write, {"column_zoom": best["column_zoom"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
