"""`spine-models evaluate`: the SPEC evaluation report for a model on a dataset."""
from __future__ import annotations

import argparse
import sys

HELP = "evaluate a model on data: metrics with bootstrap CIs, calibration, shortcut audit -> REPORT.json"

__all__ = ["HELP", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="ID_OR_PATH",
                        help="shipped model id (see `spine-models models`), a run folder, card.json or model.pt")
    parser.add_argument("--data", required=True, action="append", metavar="DIR",
                        help="dataset (class folders, synth layout, YOLO, COCO, two-view, DICOM, ZIP); repeat to concatenate")
    parser.add_argument("--out", required=True, metavar="REPORT.json", help="where to write the report")
    parser.add_argument("--split", choices=("all", "test"), default="all",
                        help="'test': only the test part of the split recorded in the model card (default: all)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the 95%% CIs (default 1000)")
    parser.add_argument("--compare-with", metavar="ID_OR_PATH", default=None,
                        help="a second model of the same task: adds McNemar's paired test on the same images")
    parser.add_argument("--no-audit", action="store_true", help="skip the metadata shortcut audit (not recommended)")


def _headline(report: dict) -> str:
    m = report["metrics"]
    parts = []
    for key in ("balanced_accuracy", "accuracy", "macro_f1", "auc_macro", "map50", "map50_95", "cobb_mae_deg"):
        v = m.get(key)
        if isinstance(v, dict) and v.get("value") is not None:
            lo, hi = v["ci95"]
            ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
            parts.append(f"{key} {v['value']:.3f}{ci}")
    call = m.get("scoliosis_call")
    if isinstance(call, dict) and (call.get("balanced_accuracy") or {}).get("value") is not None:
        lo, hi = call["balanced_accuracy"]["ci95"]
        parts.append(f"scoliosis call balanced_accuracy {call['balanced_accuracy']['value']:.3f} [{lo:.3f}, {hi:.3f}]")
    for key in ("dice",):
        if isinstance(m.get(key), dict):
            parts += [f"dice[{s}] {v['value']:.3f}" for s, v in m[key].items() if v.get("value") is not None]
    audit = report["audit"]
    ba = audit["metadata_baseline"]["balanced_accuracy"]["value"]
    parts.append("audit: SHORTCUT WARNING (metadata alone predicts the label"
                 + (f", balanced accuracy {ba:.2f})" if ba is not None else ")") if audit["shortcut_warning"]
                 else "audit: no metadata shortcut found")
    if "mcnemar" in report:
        mc = report["mcnemar"]
        parts.append(f"McNemar vs {mc['other_model']}: b={mc['b']} c={mc['c']} p={mc['p_value']:.4g}")
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    from spine_models.report.evaluation import evaluate_command

    report = evaluate_command(args.model, args.data, args.out, split=args.split, n_resamples=args.resamples,
                              compare_with=args.compare_with, quiet=args.quiet, audit=not args.no_audit)
    if not args.quiet:
        sys.stderr.write(f"{report['model']} on {report['data']['n']} images ({report['data']['n_patients']} patients): "
                         f"{_headline(report)}\nreport written to {args.out}\n")
    return 0
