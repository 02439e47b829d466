"""Choose the level reader's decode on real validation films, never on test films; compare it with counting.

    .venv/bin/python docs/tune_level_reader.py --model RUN --data ../shared/data/aasce-ap \
        --out docs/level_reader_tuning.json [--write]

Why: a ``vertebra_levels`` run (``engine.levels``) names the bodies its corner model finds. How much a level skipped
between two bodies should cost in the decode (``skip_log_prob``: a missed body) and whether the mirrored patches'
answers help (``tta``) are empirical questions; and the reader must name the validation films' bodies better than the
corner model's own count from the bottom, without making its Cobb angle worse (a body named C7 or S1 leaves the
curves). This script runs the corner model alone and with the reader under each setting on the *validation* part of
the reader's recorded patient split (the corner model's, so no stage has seen those patients), with the figures
``spine-models evaluate`` reports, and picks the highest level accuracy. ``--write`` stores the winner in the run's
card; the test part is then measured once with ``spine-models evaluate --split test`` on the corner card that ships it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

__all__ = ["main", "SETTINGS"]

SETTINGS: list[dict[str, Any]] = [{"skip_log_prob": s, "tta": t} for t in ("none", "hflip") for s in (-1.5, -3.0, -6.0)]
KEYS = ("vertebra_level_accuracy", "cobb_mae_deg", "cobb_smape_percent", "cobb_within_5deg", "cobb_failed_fraction")


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    m = report["metrics"]
    return {k: round(float(m[k]["value"]), 4) for k in KEYS if isinstance(m.get(k), dict)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a vertebra_levels run folder or card")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--write", action="store_true", help="store the winning decode in the run's card")
    args = ap.parse_args(argv)

    from spine_models.data.adapters import load_dataset
    from spine_models.engine.landmarks import VertebraCornerPredictor, without_level_reader
    from spine_models.engine.levels import Predictor
    from spine_models.engine.segment import evaluate
    from spine_models.models.cards import card_file
    from spine_models.models.hub import resolve_card
    from spine_models.report.evaluation import split_part

    card = resolve_card(args.model)
    if card.arch != "vertebra_levels":
        ap.error(f"--model {args.model}: a {card.arch!r} model; pass a vertebra_levels run folder")
    try:  # before the validation runs, not after them
        path = card_file(args.model) if args.write else None
    except ValueError as e:
        ap.error(str(e))
    val = split_part(card, load_dataset(args.data, task="segment"), "val")
    val = dataclasses.replace(val, samples=[s for s in val.samples if s.landmarks])
    corner = resolve_card(card.arch_kwargs["locator"])
    rows = [{"setting": "counted from the lowest body (the corner model alone)",
             **_figures(evaluate(VertebraCornerPredictor(without_level_reader(corner)), val, quiet=True, n_resamples=200))}]
    print(json.dumps(rows[-1]), flush=True)
    for st in SETTINGS:
        c = dataclasses.replace(card, preprocessing={**(card.preprocessing or {}), **st})
        rows.append({"setting": st, **_figures(evaluate(Predictor(c), val, quiet=True, n_resamples=200))})
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows[1:], key=lambda r: (r.get("vertebra_level_accuracy", 0.0), -r.get("cobb_mae_deg", 0.0)))
    Path(args.out).write_text(json.dumps({
        "command": "python docs/tune_level_reader.py --model RUN --data " + args.data + " --out " + args.out,
        "model": card.id, "sha256": card.sha256, "corner_model": corner.id, "part": "val",
        "n_films": len(val.samples), "n_patients": len({s.patient_id for s in val.samples}),
        "rule": "highest vertebra_level_accuracy (ties: lower Cobb MAE)", "best": best, "rows": rows}, indent=1) + "\n")
    print(f"{len(val.samples)} validation films; best {best}")
    if args.write:
        from spine_models.models.cards import write_preprocessing

        write_preprocessing(path, dict(best["setting"]))
        print(f"wrote {best['setting']} into {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
