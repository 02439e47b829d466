"""`spine-models models [--json]`: every shipped model (SPEC "Model list")."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = "list the shipped models (weights/ + model cards); --json for the SPEC model list"

__all__ = ["HELP", "add_arguments", "run", "model_list"]

SPEC_KEYS = ("id", "task", "arch", "classes", "structures", "view", "trained_on", "weights", "sha256", "input_size",
             "train_command", "metrics", "license", "validated_on", "sources")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the SPEC JSON array instead of a table")


def model_list() -> list[dict[str, Any]]:
    """SPEC objects for every card in the weights folder whose weight file exists (``[]`` when none)."""
    from spine_models.models.cards import list_cards

    out = []
    for card in list_cards():
        d = card.to_dict()
        out.append({k: d[k] for k in SPEC_KEYS if k in d})
    return out


def _headline(metrics: dict[str, Any]) -> str:
    for key in ("balanced_accuracy", "macro_f1", "map50", "accuracy"):
        v = metrics.get(key)
        if isinstance(v, dict) and v.get("value") is not None:
            return f"{key} {v['value']:.3f}"
    dice = metrics.get("dice")
    if isinstance(dice, dict) and dice:
        vals = [v["value"] for v in dice.values() if isinstance(v, dict) and v.get("value") is not None]
        if vals:
            return f"mean dice {sum(vals) / len(vals):.3f}"
    return "-"


def run(args: argparse.Namespace) -> int:
    models = model_list()
    if args.json:
        sys.stdout.write(json.dumps(models, indent=2) + "\n")
        return 0
    if not models:
        from spine_models.models.cards import weights_dir

        sys.stdout.write(f"no shipped models yet in {weights_dir()}; train one with `spine-models train ...` "
                         "or evaluate a run folder with `spine-models evaluate --model RUNDIR`\n")
        return 0
    from spine_models.models.cards import is_real_validated

    rows = [("id", "task", "arch", "view", "classes/structures", "input", "metric", "validated")]
    for m in models:
        rows.append((m["id"], m["task"], m["arch"], m["view"], ",".join(m.get("classes") or m.get("structures") or []),
                     str(m["input_size"]), _headline(m.get("metrics") or {}),
                     "real films" if is_real_validated(m) else "phantom only"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
    return 0
