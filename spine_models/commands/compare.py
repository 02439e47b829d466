"""`spine-models compare A.json B.json`: McNemar's paired test and metric deltas between two reports."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HELP = "compare two evaluation reports of the same images: McNemar's test and metric differences"

__all__ = ["HELP", "add_arguments", "run", "compare_reports"]

_SCALARS = ("accuracy", "balanced_accuracy", "macro_f1", "auc_macro", "map50", "map50_95", "cobb_mae_deg",
            "slip_mae_percent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report_a", metavar="A.json", help="report of model A (from `spine-models evaluate`)")
    parser.add_argument("report_b", metavar="B.json", help="report of model B on the same data")
    parser.add_argument("--out", metavar="FILE.json", default=None, help="write the comparison here instead of stdout")


def _value(m: Any) -> float | None:
    return m.get("value") if isinstance(m, dict) else None


def compare_reports(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """McNemar on per-image correctness (matched by id) + B − A for every headline metric."""
    from spine_models.errors import SpineInputError
    from spine_models.metrics.paired import mcnemar
    from spine_models.report.evaluation import paired_table

    if a["task"] != b["task"]:
        raise SpineInputError(f"reports are of different tasks ({a['task']} vs {b['task']}); compare like with like")
    if a["data"].get("classes") != b["data"].get("classes"):
        raise SpineInputError(f"reports use different classes ({a['data'].get('classes')} vs {b['data'].get('classes')})")
    out: dict[str, Any] = {"task": a["task"], "model_a": a["model"], "model_b": b["model"],
                           "data_a": a["data"], "data_b": b["data"]}
    deltas: dict[str, Any] = {}
    keys = list(_SCALARS) + [f"{k}.{s}" for k in ("dice", "iou") for s in (a["metrics"].get(k) or {})]
    for key in keys:
        if "." in key:
            k, s = key.split(".", 1)
            va, vb = _value(a["metrics"].get(k, {}).get(s)), _value((b["metrics"].get(k) or {}).get(s))
        else:
            va, vb = _value(a["metrics"].get(key)), _value(b["metrics"].get(key))
        if va is None and vb is None:
            continue
        deltas[key] = {"a": va, "b": vb, "b_minus_a": None if va is None or vb is None else vb - va}
    out["deltas"] = deltas
    pa, pb = a.get("predictions") or [], b.get("predictions") or []
    if pa and pb:
        out["mcnemar"] = mcnemar(paired_table(pa, pb))
    else:
        out["mcnemar"] = None
        out["note"] = "no per-image predictions in one of the reports: McNemar needs them (re-run evaluate)"
    return out


def run(args: argparse.Namespace) -> int:
    from spine_models.report.evaluation import read_report

    res = compare_reports(read_report(args.report_a), read_report(args.report_b))
    text = json.dumps(res, indent=2, allow_nan=False)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    if not args.quiet and args.out:
        mc = res["mcnemar"]
        sys.stderr.write(f"{res['model_a']} vs {res['model_b']}: "
                         + (f"McNemar b={mc['b']} c={mc['c']} p={mc['p_value']:.4g} ({mc['method']})" if mc else res["note"])
                         + "\n")
    return 0
