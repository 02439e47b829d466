"""Choose the AP U-Net's Cobb read-out (mask threshold, tilt fusion) on real validation films, never on test films.

    .venv/bin/python docs/tune_cobb_readout.py --model seg_unet_ap --data ../shared/data/aasce-ap \
        --cache /tmp/cobb_val_probs --out docs/cobb_readout_tuning.json

Why: the read-out after the network (threshold the vertebra map, cut bodies, fuse their tilts with the column
line, drop fragments) was tuned on phantom masks, whose errors differ from a real film's. This script runs the
network once per film of the *validation* part of the card's recorded patient split (the part that chose the
epoch; the test part stays untouched), caches the vertebra probability maps, and scores each read-out setting
by the Cobb figures ``spine-models evaluate`` reports, stricter: here a film whose angle is not shown counts 0 deg
(evaluate counts a withheld reading at its value and reports the share withheld apart). The
winning setting is then checked once on the test part with ``spine-models evaluate --split test``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

__all__ = ["main", "bodies", "read_cobb"]


def bodies(prob: np.ndarray, threshold: float) -> dict[str, Any]:
    """The bodies the Predictor cuts from a vertebra probability map at mask ``threshold`` (corners per body)."""
    from spine_models.measure import vertebrae_from_mask

    mask = prob > threshold
    return vertebrae_from_mask(mask, orientation="moments") if mask.any() else {}


def read_cobb(lm: dict[str, Any], shape: tuple[int, ...], fuse: dict[str, float] | None,
              angles: str = "fused", min_span: int = 1) -> float | None:
    """The shown Cobb angle (None when the page would say "cannot measure") from the bodies, as the Predictor
    reads it but with the given :func:`spine_models.measure.cobb.fuse_tilts` keywords (and Cobb rule ``angles``)."""
    from spine_models.engine.segment import MIN_BODIES_COBB, _plausibility
    from spine_models.measure import cobb_angle, cobb_read

    if len(lm) < MIN_BODIES_COBB:
        return None
    res = cobb_angle(lm, angles=angles, fusion=fuse, min_span=min_span)
    r = cobb_read({**res.to_dict(), **_plausibility(lm, res.max_angle, shape)})
    return r.value if r.ok else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--cache", required=True, help="folder for the validation films' vertebra maps (uint8 .npy)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--part", default="val", choices=["val"], help="only the validation part: test films stay unseen")
    args = ap.parse_args(argv)

    from spine_models.data.adapters import load_dataset
    from spine_models.engine.segment import Predictor, read_pixels
    from spine_models.measure import cobb_angle
    from spine_models.metrics.landmarks import smape_percent
    from spine_models.models.hub import resolve_card
    from spine_models.report.evaluation import split_part

    card = resolve_card(args.model)
    ds = load_dataset(args.data, task="segment")
    val = split_part(card, ds, "val")
    films = [s for s in val.samples if s.landmarks]
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    pred = Predictor(card)
    k = pred.structures.index("vertebra")
    probs, truths = [], []
    for s in films:
        f = cache / f"{card.sha256[:12]}_{Path(str(s.path)).stem}.npy"
        if not f.is_file():
            px, _, _ = read_pixels(s.path)
            np.save(f, (pred.probabilities(px)[k] * 255).round().astype(np.uint8))
        probs.append(np.load(f).astype(np.float32) / 255)
        truths.append(cobb_angle(s.landmarks).max_angle)
    truths_a = np.asarray(truths)
    grid = {"threshold": [0.3, 0.4, 0.5, 0.6], "sigma_body": [1.0, 2.0, 4.0], "sigma_axis": [0.5, 1.0, 2.0]}
    rows = []
    cut = {thr: [bodies(p, thr) for p in probs] for thr in grid["threshold"]}
    for thr, sb, sa in itertools.product(*grid.values()):
        got = [read_cobb(lm, p.shape, {"sigma_body": sb, "sigma_axis": sa}) for lm, p in zip(cut[thr], probs)]
        shown = np.array([g is not None for g in got])
        vals = np.array([0.0 if g is None else g for g in got])
        err = np.abs(vals - truths_a)
        rows.append({"threshold": thr, "sigma_body": sb, "sigma_axis": sa, "cobb_mae_deg": round(float(err.mean()), 3),
                     "cobb_smape_percent": round(float(smape_percent(vals, truths_a)), 3),
                     "cobb_within_5deg": round(float(np.mean(err <= 5)), 4), "shown": round(float(shown.mean()), 4)})
        print(json.dumps(rows[-1]), flush=True)
    rows.sort(key=lambda r: r["cobb_mae_deg"])
    shipped = next(r for r in rows if (r["threshold"], r["sigma_body"], r["sigma_axis"]) ==
                   (float(card.thresholds.get("mask", 0.5)), 2.0, 1.0))
    Path(args.out).write_text(json.dumps({"model": card.id, "sha256": card.sha256, "part": "val", "n_films": len(films),
                                          "n_patients": len({s.patient_id for s in films}), "grid": grid,
                                          "shipped_setting": shipped, "best": rows[0], "rows": rows}, indent=1))
    print(f"{len(films)} validation films; shipped setting {shipped}; best {rows[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
