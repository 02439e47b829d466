"""Compare retrained corner networks with the shipped one, behind the shipped card's read-out, on validation films only.

    .venv/bin/python docs/compare_corner_runs.py --model seg_vertebra_corners_aasce \
        --aasce ../shared/data/aasce-ap --cadma ../shared/data/cadma-vertebra --fraiwan ../shared/data/fraiwan-ap \
        --classifier ap_scoliosis_mobilenet_v2_fraiwan --run RUN [--run RUN ...] --out docs/corner_network_runs

Why: a corner network is cheap to retrain (16 epochs take minutes once the U-Net's bodies are cached), and its
training metric — each validation body's endplate-angle error, on patches cut once along the U-Net's tilt — is
not what the page shows. Each row here puts one network behind the shipped card's whole read-out (corner
passes, column zoom, level reader, box convention, Cobb read-out: everything but the weights, width, patch and
patch side), and scores it as the read-out tuning scripts do: AASCE validation Cobb (a film without an angle
counts 0 deg), cadma-vertebra validation AP50, the Fraiwan scoliosis call on films outside both test parts.
Test films are never read.

Beside them, two figures with more power than 40 films' mean Cobb error: each matched body's tilt error after the
whole read-out (~600 validation bodies; matched to the experts' by box overlap, ``metrics.landmarks.match_vertebrae``)
and, per film, the paired difference of the absolute Cobb error against the shipped network with a 95 % CI over
patients (``metrics.bootstrap.bootstrap_ci``); the median absolute error shows whether a mean moved by one film.

Caution written into the output: the shipped read-out was chosen on these same validation films *with the shipped
network*, so the shipped row is optimistic against the others; a run that beats it anyway is worth its own
read-out tuning and one test measurement.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

__all__ = ["main"]

SHIPPED = "shipped"
SEVERE_DEG = 40.0  # experts' Cobb angle from which a curve counts as severe for the bias column


def _with_run(card: Any, run: str) -> tuple[Any, str]:
    """The shipped card with a run's network in it (weights, width, patch, patch side), and that run's command."""
    from spine_models.models.cards import ModelCard

    if run == SHIPPED:
        return card, card.train_command
    rc = ModelCard.from_json(Path(run) / "card.json")
    kw = {**card.arch_kwargs, **{k: rc.arch_kwargs[k] for k in ("width", "patch") if k in rc.arch_kwargs}}
    pre = {**card.preprocessing, "patch_side": (rc.preprocessing or {}).get("patch_side", card.preprocessing.get("patch_side"))}
    # torch: the run has no ONNX Runtime record of its own (the shipped card's would name other weights)
    return dataclasses.replace(card, weights=str(rc.weights_path()), sha256=rc.sha256, arch_kwargs=kw,
                               preprocessing=pre, runtime={}), rc.train_command


def _per_body(card: Any, aasce: str) -> dict[str, float]:
    """The training metric of the card's network: validation bodies' endplate-angle and corner errors (one patch
    cut along the U-Net's tilt), as ``spine-models train`` reports it per epoch."""
    from spine_models.engine.landmarks import ARCH, CornerTrainer
    from spine_models.models.cards import load_state
    from spine_models.models.registry import create_model

    sd, kw = load_state(card)
    split = (card.data or {}).get("split") or {}
    cfg = {"data": aasce, "locator": card.arch_kwargs["locator"], "split": ":".join(str(round(r * 10)) for r in split["ratios"]),
           "split_method": split["method"], "seed": int(split["seed"]), "corner_patch": int(kw.get("patch", 64)),
           "corner_width": int(kw.get("width", 16)), "corner_side": float(card.preprocessing["patch_side"]), "workers": 0}
    trainer = CornerTrainer(cfg, Path("/tmp") / "compare_corner_runs", quiet=True)
    trainer.get_dataset()
    model = create_model(ARCH, task="segment", width=cfg["corner_width"], patch=cfg["corner_patch"])
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    return {k: round(float(v), 3) for k, v in trainer.validate(model.eval()).items()}


def _read_out(card: Any, aasce: list[Any]) -> dict[str, Any]:
    """Per validation film: the shown Cobb angle's signed error (0 deg shown when none is, as the tuning scripts
    count) and (expert tilt, model tilt) of each body matched to an expert's, after the card's whole read-out."""
    from spine_models.engine.landmarks import VertebraCornerPredictor
    from spine_models.measure import cobb_read
    from tune_corner_passes import _tilts

    pred = VertebraCornerPredictor(card)
    errors, tilts = [], []
    for s in aasce:
        res = pred.predict(s.path)
        r = cobb_read(res.measurements.get("cobb"))
        errors.append((float(r.value) if r.ok else 0.0) - float(s.meta["cobb_deg"]))
        tilts += _tilts({v["name"]: np.asarray(v["corners"], float) for v in res.vertebrae}, s.landmarks or {})
    return {"errors": errors, "truth": [float(s.meta["cobb_deg"]) for s in aasce],
            "patients": [s.patient_id for s in aasce], "tilts": tilts}


def _paired(rows: list[dict[str, Any]], reads: list[dict[str, Any]], n_resamples: int) -> None:
    """Each row's body tilt error, median Cobb error and paired Cobb difference against the first (shipped) row."""
    from spine_models.metrics.bootstrap import bootstrap_ci
    from tune_corner_passes import tilt_slope

    base = np.abs(reads[0]["errors"])
    for row, rd in zip(rows, reads):
        signed, pairs = np.asarray(rd["errors"]), np.asarray(rd["tilts"], float).reshape(-1, 2)
        err, severe = np.abs(signed), np.asarray(rd["truth"]) >= SEVERE_DEG
        row["read_out"] = {"bodies_matched": int(len(pairs)),
                           "body_tilt_mae_deg": round(float(np.abs(pairs[:, 1] - pairs[:, 0]).mean()), 3),
                           "tilt_slope": round(tilt_slope(pairs.tolist()), 3),
                           "cobb_median_abs_error_deg": round(float(np.median(err)), 3),
                           "severe_n": int(severe.sum()),
                           "severe_bias_deg": round(float(signed[severe].mean()), 3) if severe.any() else None}
        ci = bootstrap_ci(lambda a, b: float(np.mean(a - b)), err, base, groups=rd["patients"], n_resamples=n_resamples)
        row["read_out"]["cobb_abs_error_minus_shipped_deg"] = {"value": round(ci["value"], 3),
                                                              "ci95": [round(x, 3) for x in ci["ci95"]]}


def _markdown(out: dict[str, Any], argv: list[str]) -> str:
    lines = ["# Corner networks behind the shipped read-out (validation films only)", "",
             f"Generated by `python docs/compare_corner_runs.py {' '.join(argv)}`.", "",
             f"Films: {out['films']}. Test films are never read. " + out["caution"], "",
             "| network | per-body endplate error (deg) | corner error (px of its own patch) | AASCE Cobb MAE (deg) | SMAPE (%) "
             "| within 5 deg | cadma-vertebra AP50 | Fraiwan call (balanced accuracy) | body tilt error after the read-out "
             "(deg) | tilt slope | median Cobb error (deg) | mean signed Cobb error on curves >= 40 deg | Cobb error minus the shipped one's, per film (deg) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        ap, ro = r["cadma_vertebra_ap50"], r["read_out"]
        d = ro["cobb_abs_error_minus_shipped_deg"]
        lines.append(f"| {r['run']} | {r['per_body']['val_angle_mae_deg']} | {r['per_body']['val_corner_error_patch_px']} "
                     f"| {r['aasce_cobb_mae_deg']} | {r['aasce_cobb_smape_percent']} | {r['aasce_cobb_within_5deg']} "
                     f"| {ap['value']} [{ap['ci95'][0]}, {ap['ci95'][1]}] | {r['fraiwan_call_balanced_accuracy']} "
                     f"| {ro['body_tilt_mae_deg']} ({ro['bodies_matched']} bodies) | {ro['tilt_slope']} | {ro['cobb_median_abs_error_deg']} "
                     f"| {ro['severe_bias_deg']} ({ro['severe_n']} films) "
                     f"| {d['value']} [{d['ci95'][0]}, {d['ci95'][1]}] |")
    lines += ["", "Per-body errors: the training metric (validation bodies, one patch cut along the U-Net's tilt); corner "
              "errors are in pixels of each network's own patch, so they compare only between equal patch sides. Tilt slope: "
              "model tilt against the experts' over matched bodies (1: no shrinkage towards level). "
              "The other columns: the whole read-out on validation films (a film without an angle counts 0 deg).",
              "", "Training commands:", ""]
    lines += [f"- {r['run']}: `{r['train_command']}`" for r in out["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from spine_models.data.adapters import load_dataset
    from spine_models.models.hub import resolve_card
    from spine_models.report.evaluation import corner_tuning_args, outside_test_parts, split_part
    from tune_column_zoom import _score

    argv = list(sys.argv[1:] if argv is None else argv)
    ap = corner_tuning_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "nothing (no --write)", cadma=True)
    ap.add_argument("--run", action="append", default=[], help="a corner-network run folder (card.json + model.pt); repeat")
    ap.add_argument("--resamples", type=int, default=200, help="bootstrap resamples for the AP50 CI")
    args = ap.parse_args(argv)
    if args.write:
        ap.error("--write: this script compares networks; it stores no choice in a card")

    card = resolve_card(args.model)
    cadma = split_part(card, load_dataset(args.cadma, task="segment"), "val")
    aasce = [s for s in split_part(card, load_dataset(args.aasce, task="segment"), "val").samples
             if s.meta.get("cobb_deg") is not None]
    tune = outside_test_parts(load_dataset(args.fraiwan, task="classify"), card, resolve_card(args.classifier))
    rows, reads = [], []
    for run in [SHIPPED, *args.run]:
        c, command = _with_run(card, run)
        row = {"run": run, "train_command": command, "per_body": _per_body(c, args.aasce),
               **_score(c, card.preprocessing.get("column_zoom"), cadma, aasce, tune, args.resamples)}
        row.pop("column_zoom")
        rows.append(row)
        reads.append(_read_out(c, aasce))
        print(json.dumps(row), flush=True)
    _paired(rows, reads, args.resamples)
    out = {"model": card.id, "sha256": card.sha256,
           "films": {"aasce-ap validation part": len(aasce), "cadma-vertebra validation part": len(cadma.samples),
                     "fraiwan-ap outside both test parts": len(tune)},
           "caution": "The shipped read-out (corner passes, column zoom, box convention, level decode, Cobb read-out) was "
                      "chosen on these validation films with the shipped network: its row is optimistic against the "
                      "others, which run behind a read-out not tuned for them.",
           "rows": rows}
    base = Path(args.out)
    base.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    base.with_suffix(".md").write_text(_markdown(out, argv))
    print(f"{base.with_suffix('.md')} + .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
