"""Choose the corner model's Cobb read-out on real validation films, never on test films.

    .venv/bin/python docs/tune_corner_readout.py --model RUN/card.json --data ../shared/data/aasce-ap \
        --out docs/corner_readout_tuning.json [--write]

Why: the ``vertebra_corners`` composite reads each body's corners again at film resolution; which Cobb rule turns
those corners into the angle best — each endplate's own slope (``endplates``, the clinical rule), each body's mean
tilt (``body_tilt``), or tilts fused with the line through the body centres (``fused``, with its two sigmas) — is an
empirical question about the corners' errors. This script runs the model once per film of the *validation* part of
the card's recorded patient split and scores every rule by the figures ``spine-models evaluate`` reports, stricter: here
a film whose angle is not shown counts 0 deg (evaluate counts a withheld reading at its value). ``--split-long``, ``--tidy`` and ``--fallback`` choose the stage the rules read
(blobs of several bodies cut, duplicate and fragment bodies dropped, the corners' reading standing alone where the
U-Net's failed); each rule also runs with ``min_span`` 1, 3 and 4 (the fewest vertebrae a curve spans). ``--write`` stores the winner (lowest MAE) in the card's
``preprocessing.cobb_angles`` (and ``fusion``); the test part is then measured once with
``spine-models evaluate --split test``.
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

__all__ = ["main", "SETTINGS"]

SETTINGS: list[dict[str, Any]] = [
    {**st, "min_span": span} for span in (1, 3, 4)
    for st in ([{"angles": "endplates"}, {"angles": "body_tilt"}]
               + [{"angles": "fused", "fusion": {"sigma_body": sb, "sigma_axis": sa}}
                  for sb in (1.0, 2.0, 4.0) for sa in (0.5, 1.0, 2.0)])]


def _shown(bodies: dict[str, Any], shape: tuple[int, ...], setting: dict[str, Any]) -> float | None:
    """The angle the page would show with this read-out (None: "cannot measure"), as the U-Net's tuning reads it."""
    from tune_cobb_readout import read_cobb

    return read_cobb(bodies, shape, setting.get("fusion"), angles=setting["angles"], min_span=setting.get("min_span", 1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--write", action="store_true", help="store the winning read-out in the card (a run folder's card)")
    ap.add_argument("--split-long", action="store_true",
                    help="cut the U-Net's blobs of several bodies before the corners' stage (card key split_long)")
    ap.add_argument("--tidy", nargs=2, type=float, metavar=("CLOSE", "FRAGMENT"),
                    help="drop duplicate and fragment bodies after it (card key tidy; measure.tidy_bodies)")
    ap.add_argument("--fallback", action="store_true",
                    help="a mean with the U-Net's reading falls back to the corners' own where the U-Net's fails "
                         "(card key locator_fallback; it fails where one blob covers several bodies, which --split-long cuts)")
    args = ap.parse_args(argv)
    from spine_models.models.cards import card_file

    try:  # before the validation run, not after it
        path = card_file(args.model) if args.write else None
    except ValueError as e:
        ap.error(str(e))

    from spine_models.data.adapters import load_dataset
    from spine_models.engine.landmarks import VertebraCornerPredictor
    from spine_models.metrics.landmarks import smape_percent
    from spine_models.models.hub import resolve_card
    from spine_models.report.evaluation import split_part

    import dataclasses

    card = resolve_card(args.model)
    stage = {"split_long": bool(args.split_long), "tidy": {"close": args.tidy[0], "fragment": args.tidy[1]} if args.tidy else None}
    card = dataclasses.replace(card, preprocessing={**(card.preprocessing or {}), **stage})
    pred = VertebraCornerPredictor(card)
    val = split_part(card, load_dataset(args.data, task="segment"), "val")
    films = [s for s in val.samples if s.landmarks and s.meta.get("cobb_deg") is not None]
    from spine_models.measure import cobb_read

    reads, truths, alone = [], [], []
    for s in films:
        res = pred.predict(s.path)
        reads.append(({v["name"]: np.asarray(v["corners"], float) for v in res.vertebrae}, res.image_size))
        truths.append(float(s.meta["cobb_deg"]))
        r = cobb_read(pred.locator.predict(s.path).measurements.get("cobb"))  # the U-Net's own read (film memo)
        alone.append(r.value if r.ok else None)
    t = np.asarray(truths)
    rows = []

    def score(st: dict[str, Any], got: list[float | None]) -> None:
        v = np.array([0.0 if g is None else g for g in got])
        e = np.abs(v - t)
        rows.append({**st, "cobb_mae_deg": round(float(e.mean()), 3), "cobb_smape_percent": round(float(smape_percent(v, t)), 3),
                     "cobb_within_5deg": round(float(np.mean(e <= 5)), 4), "bias_deg": round(float(np.mean(v - t)), 3),
                     "shown": round(float(np.mean([g is not None for g in got])), 4)})
        print(json.dumps(rows[-1]), flush=True)

    score({"angles": "locator alone (reference, not a setting)"}, alone)
    for st in SETTINGS:
        got = [_shown(b, shape, st) for b, shape in reads]
        score(st, got)
        # the mean of this read and the U-Net's own: their errors are partly independent
        if not args.fallback:
            score({**st, "mean_with_locator": True}, [None if a is None or g is None else (a + g) / 2
                                                      for a, g in zip(alone, got)])
        if args.fallback:  # ... and the corners' read alone where the U-Net's own read failed
            score({**st, "mean_with_locator": True, "locator_fallback": True},
                  [g if a is None else None if g is None else (a + g) / 2 for a, g in zip(alone, got)])
    best = min((r for r in rows if r["angles"] in ("endplates", "body_tilt", "fused")), key=lambda r: r["cobb_mae_deg"])
    Path(args.out).write_text(json.dumps({"model": card.id, "sha256": card.sha256, "part": "val", "n_films": len(films),
                                          "stage": stage,
                                          "n_patients": len({s.patient_id for s in films}), "best": best, "rows": rows},
                                         indent=1) + "\n")
    print(f"{len(films)} validation films; best {best}")
    if args.write:
        from spine_models.models.cards import write_preprocessing

        write_preprocessing(path, {"cobb_angles": best["angles"], "mean_with_locator": bool(best.get("mean_with_locator")),
                                   "locator_fallback": bool(best.get("locator_fallback")),
                                   "min_span": int(best.get("min_span", 1)), "split_long": stage["split_long"],
                                   "tidy": stage["tidy"] or None, "fusion": best.get("fusion") or None})  # None: removed
        print(f"wrote the read-out into {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
