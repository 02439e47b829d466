"""Synthetic three-class X-ray task: shipped classifiers against the measurement rule, on the same films.

    .venv/bin/python docs/make_three_class_synth.py --model xray_3class_mobilenet_v2_synth \
        --model xray_3class_routed_synth --ap AP_TEST --lat LAT_TEST [--report REPORT.json ...]

AP_TEST / LAT_TEST are phantom sets from seeds never used in training
(`spine-models synth xray-ap --n 150 --out AP_TEST --seed 4301`, `... xray-lat ... --seed 4302`; the shipped
docs page uses these fresh seeds, never used to train or choose anything).
Writes docs/three_class_synth.md and docs/three_class_synth.json.

Why: a classifier that says "scoliosis" decides a measured quantity (Cobb >= 10 deg on the AP film,
Meyerding grade >= I on the lateral film). The product also measures those quantities from its U-Nets
(`seg_unet_ap`, `seg_unet_lat`), so a reader should see both answers to the same question side by side,
where each fails (by Cobb / slip band), and whether they differ beyond chance (McNemar, same films).
Each classifier's predictions come from `spine-models evaluate` (run here unless --report is given).
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "measurement_class", "band_errors"]

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
CLASSES = ["normal", "scoliosis", "spondylolisthesis"]
COBB_BANDS = [(0, 8), (8, 10), (10, 12), (12, 16), (16, 90)]
SLIP_BANDS = [(0, 5), (5, 15), (15, 25), (25, 100)]


def measurement_class(view: str, measurements: dict[str, Any]) -> str:
    """The rule the phantom's labels follow, applied to what the U-Nets measured."""
    if view == "ap":
        cobb = (measurements.get("cobb") or {}).get("cobb_deg")
        return "scoliosis" if cobb is not None and float(cobb) >= 10.0 else "normal"
    grade = (measurements.get("slip") or {}).get("meyerding_grade")
    return "spondylolisthesis" if grade is not None and int(grade) >= 1 else "normal"


def band_errors(rows: list[dict[str, Any]], key: str, bands: list[tuple[float, float]], pred_key: str) -> list[dict]:
    """Error count per truth band (Cobb deg or slip %) for one predictor."""
    out = []
    for lo, hi in bands:
        sel = [r for r in rows if r[key] is not None and lo <= r[key] < hi]
        out.append({"band": f"{lo}-{hi}", "n": len(sel), "errors": sum(r[pred_key] != r["truth"] for r in sel)})
    return out


def _labels(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "labels.csv", newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def _metrics(truth: list[str], pred: list[str]) -> dict[str, Any]:
    from spine_models.metrics.classification import classification_metrics

    yt = [CLASSES.index(t) for t in truth]
    onehot = np.eye(len(CLASSES))[[CLASSES.index(p) for p in pred]]
    m = classification_metrics(yt, onehot, CLASSES, n_resamples=1000, seed=0)
    return {k: m[k] for k in ("confusion_matrix", "accuracy", "balanced_accuracy", "macro_f1")}


def _fmt(m: dict[str, Any]) -> str:
    return f"{m['value']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="a classifier: shipped id or run folder (repeatable; "
                    "default: xray_3class_mobilenet_v2_synth)")
    ap.add_argument("--ap", required=True, type=Path, help="phantom AP test set (synth layout)")
    ap.add_argument("--lat", required=True, type=Path, help="phantom lateral test set (synth layout)")
    ap.add_argument("--report", type=Path, action="append", default=[],
                    help="a model's `spine-models evaluate` report on the same two folders (in --model order)")
    ap.add_argument("--out", type=Path, default=DOCS / "three_class_synth.md")
    args = ap.parse_args(argv)
    models = args.model or ["xray_3class_mobilenet_v2_synth"]

    from spine_models.engine.predictor import load_predictor
    from spine_models.metrics.paired import mcnemar_test

    preds: dict[str, dict[str, str]] = {}
    reports: dict[str, str] = {}
    for k, model in enumerate(models):
        report_path = args.report[k] if k < len(args.report) else None
        if report_path is None:
            report_path = Path(tempfile.mkdtemp()) / "report.json"
            subprocess.run([sys.executable, "-m", "spine_models.cli", "evaluate", "--model", model, "--data",
                            str(args.ap), "--data", str(args.lat), "--out", str(report_path), "--quiet"], check=True)
        report = json.loads(Path(report_path).read_text())
        preds[model] = {p["id"]: p["pred"] for p in report["predictions"]}
        reports[model] = str(report_path)

    seg = {"ap": load_predictor("seg_unet_ap"), "lat": load_predictor("seg_unet_lat")}
    rows: list[dict[str, Any]] = []
    for view, folder in (("ap", args.ap), ("lat", args.lat)):
        for sid, lab in _labels(folder).items():
            res = seg[view].predict(folder / "images" / f"{sid}.png")
            rows.append({"id": sid, "view": view, "truth": lab["class"], "rule": measurement_class(view, res.measurements),
                         **{m: preds[m][sid] for m in models},
                         "cobb": float(lab["cobb_deg"]) if lab["cobb_deg"] else None,
                         "slip": float(lab["slip_percent"]) if lab["slip_percent"] else None})
    truth = np.array([r["truth"] for r in rows])
    keys = [*models, "rule"]
    names = {**{m: f"`{m}`" for m in models}, "rule": "measurement rule (U-Nets, fixed cut-offs)"}
    pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]]
    out = {"models": models, "reports": reports, "n": len(rows), "classes": CLASSES,
           "data": {"ap": str(args.ap), "lat": str(args.lat)},
           "metrics": {k: _metrics(list(truth), [r[k] for r in rows]) for k in keys},
           "mcnemar": [{"first": a, "second": b, **mcnemar_test(truth, np.array([r[a] for r in rows]),
                                                                np.array([r[b] for r in rows]))} for a, b in pairs],
           "errors_by_cobb": {k: band_errors([r for r in rows if r["view"] == "ap"], "cobb", COBB_BANDS, k) for k in keys},
           "errors_by_slip": {k: band_errors([r for r in rows if r["view"] == "lat"], "slip", SLIP_BANDS, k) for k in keys}}
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1, default=float) + "\n")

    def cm_table(cm: list[list[int]]) -> list[str]:
        lines = ["| true \\ predicted | " + " | ".join(CLASSES) + " |", "|---|" + "---|" * len(CLASSES)]
        return lines + [f"| {c} | " + " | ".join(str(v) for v in row) + " |" for c, row in zip(CLASSES, cm)]

    cmd = " ".join(f"--model {m}" for m in models)
    md = ["# Synthetic three-class X-ray task: classifiers vs the measurement rule", "",
          f"Generated by `python docs/make_three_class_synth.py {cmd} --ap AP_TEST --lat LAT_TEST` "
          f"on {len(rows)} phantom films from seeds never used in training (AP: `{args.ap.name}`, lateral: "
          f"`{args.lat.name}`). The labels follow measured truth: AP `scoliosis` when Cobb >= 10 deg, lateral "
          "`spondylolisthesis` when the Meyerding grade is >= I (slip >= 5 %). The measurement rule applies the "
          "same cut-offs to what the shipped U-Nets measure (`seg_unet_ap` Cobb, `seg_unet_lat` slip). "
          "Every predictor sees PNG films without a view tag.", "",
          "| predictor | balanced accuracy | macro-F1 | accuracy |", "|---|---|---|---|"]
    for k in keys:
        m = out["metrics"][k]
        md.append(f"| {names[k]} | {_fmt(m['balanced_accuracy'])} | {_fmt(m['macro_f1'])} | {_fmt(m['accuracy'])} |")
    md += ["", "McNemar on the same films (b: first right / second wrong, c: the reverse):", ""]
    for mc in out["mcnemar"]:
        md.append(f"- {names[mc['first']]} vs {names[mc['second']]}: b = {mc['table'][0][1]}, c = {mc['table'][1][0]}, "
                  f"p = {mc['p_value']:.3g}")
    md.append("")
    for k in keys:
        md += [f"## {names[k]}: confusion matrix", "", *cm_table(out["metrics"][k]["confusion_matrix"]), ""]
    md += ["## Where each fails", "", "| AP films, true Cobb (deg) | n | " + " | ".join(f"{names[k]} errors" for k in keys) + " |",
           "|---|---|" + "---|" * len(keys)]
    for i, band in enumerate(out["errors_by_cobb"]["rule"]):
        md.append(f"| {band['band']} | {band['n']} | " + " | ".join(str(out["errors_by_cobb"][k][i]["errors"]) for k in keys) + " |")
    md += ["", "| lateral films, true slip (%) | n | " + " | ".join(f"{names[k]} errors" for k in keys) + " |",
           "|---|---|" + "---|" * len(keys)]
    for i, band in enumerate(out["errors_by_slip"]["rule"]):
        md.append(f"| {band['band']} | {band['n']} | " + " | ".join(str(out["errors_by_slip"][k][i]["errors"]) for k in keys) + " |")
    args.out.write_text("\n".join(md) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
