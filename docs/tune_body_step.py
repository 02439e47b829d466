"""Whether the corner model leaves a body read at an impossible tilt out of its Cobb curves (card key
``max_body_step_deg``), checked on real films outside the test parts, never on test films.

    .venv/bin/python docs/tune_body_step.py --model seg_vertebra_corners_aasce --aasce ../shared/data/aasce-ap \
        --fraiwan ../shared/data/fraiwan-ap --classifier ap_scoliosis_mobilenet_v2_fraiwan \
        --out docs/body_step_tuning.json [--write weights/X.json]

Why: seen in the app on a Fraiwan film (right thoracic scoliosis): one lumbar body's corners read a quarter turn off
(tilt -88.7 deg between neighbours at 13.8 and 14.7 deg), and the page showed "Cobb 84.8 deg, L3-L5" — a number no
spine has. Neighbouring bodies never differ that much: this script first measures, on the experts' corners of the
training films, how far a body's tilt lies from its nearer neighbour's and from the next body's (the figures behind
``measure.MAX_BODY_STEP_DEG``, 35 deg); ``measure.crooked_bodies`` then names bodies further than that from every
neighbour, and the read-out leaves them out of the curves with a note. The bound is anatomy, not a tuned number, so
only one setting is compared with none, scored as ``docs/tune_column_gaps.py`` scores its key: pooled AASCE training +
validation Cobb (a withheld film counts 0 deg), films where a body was left out, and the Fraiwan call.

Rule (fixed before the first run): ``MAX_BODY_STEP_DEG`` when its pooled AASCE MAE is not above the reading without it
and its Fraiwan balanced accuracy is at most ``MAX_CALL_LOSS`` below; else none. ``--write CARD`` stores the choice in the
card's ``preprocessing``; test films are then measured once by ``spine-models evaluate`` and
``docs/make_real_vertebra_eval.py``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "docs"))

__all__ = ["main", "expert_steps"]

MAX_CALL_LOSS = 0.02  # Fraiwan tuning films' call balanced accuracy the bound may lose
KEY = "max_body_step_deg"


def expert_steps(films: list[Any]) -> dict[str, Any]:
    """How far each expert-marked body's tilt lies from its nearer neighbour's (``nearer``) and from the next body's
    (``adjacent``), in degrees: the anatomy a bound on misread bodies must stay above."""
    from spine_models.measure import neighbour_steps

    nearer, adjacent = [], []
    for s in films:
        steps = [st for _, st in neighbour_steps(s.landmarks or {}) if st]
        nearer += [min(st) for st in steps]
        adjacent += [st[-1] for st in steps[:-1]]  # each body's step to the one below it
    out: dict[str, Any] = {"films": len(films), "bodies": len(nearer)}
    for name, v in (("nearer", np.array(nearer)), ("adjacent", np.array(adjacent))):
        out[name] = {"p99": round(float(np.percentile(v, 99)), 1), "p99_9": round(float(np.percentile(v, 99.9)), 1),
                     "max": round(float(v.max()), 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    from spine_models.data.adapters import load_dataset
    from spine_models.measure import MAX_BODY_STEP_DEG
    from spine_models.models.cards import store_choice
    from spine_models.models.hub import resolve_card
    from spine_models.report.evaluation import corner_tuning_args, outside_test_parts, split_part
    from tune_column_gaps import _score

    args = corner_tuning_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), KEY).parse_args(argv)
    card = resolve_card(args.model)
    ds = load_dataset(args.aasce, task="segment")
    aasce = {part: [s for s in split_part(card, ds, part).samples if s.meta.get("cobb_deg") is not None]
             for part in ("val", "train")}
    steps = expert_steps([s for s in split_part(card, ds, "train").samples if s.landmarks])
    print(json.dumps({"expert_steps": steps}), flush=True)
    if steps["nearer"]["max"] >= MAX_BODY_STEP_DEG:
        raise SystemExit(f"experts' bodies lie up to {steps['nearer']['max']} deg from their nearer neighbour: "
                         f"MAX_BODY_STEP_DEG ({MAX_BODY_STEP_DEG}) is no bound here")
    tune = outside_test_parts(load_dataset(args.fraiwan, task="classify"), card, resolve_card(args.classifier))
    rows = []
    for value in (None, MAX_BODY_STEP_DEG):
        rows.append(_score(card, value, aasce, tune, key=KEY))
        print(json.dumps(rows[-1]), flush=True)
    off, on = rows
    ok = (on["pooled_cobb_mae_deg"] <= off["pooled_cobb_mae_deg"]
          and on["fraiwan_call_balanced_accuracy"] >= off["fraiwan_call_balanced_accuracy"] - MAX_CALL_LOSS)
    best = on if ok else off
    out = {"model": card.id, "sha256": card.sha256, "command": "python docs/tune_body_step.py " + " ".join(
               sys.argv[1:] if argv is None else argv),
           "rule": __doc__.split("Rule (fixed before the first run): ")[1].split(" ``--write")[0],
           "max_call_loss": MAX_CALL_LOSS, "expert_steps": steps,
           "films": {**{f"aasce-ap {part} part": {"n": len(f), "n_patients": len({s.patient_id for s in f})}
                        for part, f in aasce.items()},
                     "fraiwan-ap outside both test parts": {"n": len(tune), "scoliosis": sum(s.label == "scoliosis" for s in tune)}},
           "best": best[KEY], "rows": rows}
    print(f"best {best[KEY]}")
    store_choice(args.out, out, args.write, {KEY: best[KEY]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
