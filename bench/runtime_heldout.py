"""A card's held-out figures on torch and on ONNX Runtime, side by side: which metrics and predictions change when the
card's ``runtime`` switches ONNX Runtime on, and by how much. Prints figures; not a test.

    nice -n 15 .venv/bin/python bench/runtime_heldout.py --model seg_unet_ap --data ../shared/data/aasce-ap --split test
    .venv/bin/python bench/runtime_heldout.py --model xray_view_mobilenet_v2_synth --data AP_DIR --data LAT_DIR --record

Why: bench/bench_onnx.py checks the networks' outputs on a few real films; a card's own figures come from its held-out
evaluation. Here ``spine-models evaluate`` runs twice on the same data, with ``SPINE_MODELS_RUNTIME=torch`` (the
reference: the card's figures) and ``=onnxruntime`` (each in its own process: a loaded model keeps its runtime), and
every metric (values and CI bounds) and every per-film prediction is compared. ``--record`` adds the comparison to the
card's ``runtime`` field as ``held_out`` (run bench_onnx.py --record first: it rewrites the whole field).
``--runtime onnxruntime-int8`` compares the int8 network instead (its calibration must sit in the cache folder given by
``--cache``: bench/bench_int8.py makes it and calls :func:`heldout` itself). ``--runtime card`` compares each network
on the runtime its own card names (no environment override: each network as the app runs it, e.g. a U-Net on int8
beside a corner network on fp32 ONNX Runtime); ``--record`` with it records what the card really serves.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

__all__ = ["main", "flat_metrics", "heldout"]


def flat_metrics(d: Any, pre: str = "") -> dict[str, float | None]:
    """``{"dice.vertebra": value, "dice.vertebra.ci95[0]": low, ...}``: every number of a report's metrics."""
    out: dict[str, float | None] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flat_metrics(v, f"{pre}.{k}" if pre else str(k)))
    elif isinstance(d, (list, tuple)):
        for i, v in enumerate(d):
            out.update(flat_metrics(v, f"{pre}[{i}]"))
    elif isinstance(d, bool) or d is None:
        out[pre] = None if d is None else float(d)
    elif isinstance(d, (int, float)):
        out[pre] = float(d)
    return out


def _evaluate(runtime: str, args: argparse.Namespace, out: Path, cache: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "spine_models.cli", "evaluate", "--quiet", "--model", args.model, "--split", args.split,
           "--out", str(out), *[a for d in args.data for a in ("--data", d)]]
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", NO_ALBUMENTATIONS_UPDATE="1",
               SPINE_MODELS_RUNTIME=runtime)
    if runtime == "card":  # every network on its own card's runtime
        env.pop("SPINE_MODELS_RUNTIME")
    if cache:  # the int8 calibration of this one network lives there, so no other network of the model turns int8
        env["SPINE_MODELS_CACHE"] = str(cache)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"evaluate on {runtime} failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    return json.loads(out.read_text())


def heldout(model: str, data: list[str], split: str, runtime: str = "onnxruntime", cache: str | None = None
            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(torch report, ``runtime`` report) of ``spine-models evaluate`` on the same data, each in its own process."""
    args = argparse.Namespace(model=model, data=data, split=split)
    with tempfile.TemporaryDirectory() as tmp:
        return (_evaluate("torch", args, Path(tmp) / "torch.json"),
                _evaluate(runtime, args, Path(tmp) / "other.json", cache))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="shipped model id")
    ap.add_argument("--data", action="append", required=True, help="the card's evaluation data (repeatable)")
    ap.add_argument("--split", default="all", choices=("all", "test"), help="as `spine-models evaluate --split`")
    ap.add_argument("--record", action="store_true", help="add the comparison to the card's runtime field (held_out)")
    ap.add_argument("--runtime", default="onnxruntime", choices=("onnxruntime", "onnxruntime-int8", "card"),
                    help="the runtime compared with torch (int8: see bench/bench_int8.py; card: each network's own)")
    ap.add_argument("--cache", help="SPINE_MODELS_CACHE for the compared run (where the int8 calibration is)")
    args = ap.parse_args(argv)
    if args.record and args.runtime == "onnxruntime-int8":
        raise SystemExit("--record writes what a card serves: --runtime onnxruntime or card (int8 measurements go to "
                         "docs/int8_check.md; bench/bench_int8.py --ship switches a card)")
    ref, ort = heldout(args.model, args.data, args.split, args.runtime, args.cache)
    a, b = flat_metrics(ref["metrics"]), flat_metrics(ort["metrics"])
    keys = sorted(set(a) | set(b))
    diff = {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}
    pa, pb = ref.get("predictions") or [], ort.get("predictions") or []
    same = sum(x == y for x, y in zip(pa, pb))
    print(f"{args.model}: {ref['data']['n']} films ({args.split}), {len(keys)} metric numbers, {len(keys) - len(diff)} equal; "
          f"per-film predictions identical {same}/{len(pa)}")
    worst: dict[str, float] = {}
    for k, (x, y) in diff.items():
        d = abs(x - y) if x is not None and y is not None else float("inf")
        worst[k] = d
        print(f"  {k:45s} torch {x!s:>22s}  {args.runtime} {y!s:>22s}  |diff| {d:.3g}")
    for x, y in zip(pa, pb):
        if x != y:
            print("  first differing prediction:", {k: (x.get(k), y.get(k)) for k in x if x.get(k) != y.get(k)})
            break
    if args.record:
        from spine_models.models.cards import ModelCard, weights_dir

        path = weights_dir() / f"{args.model}.json"
        card = ModelCard.from_json(path)
        if args.runtime == "onnxruntime" and (card.runtime or {}).get("path") != "onnxruntime":
            raise SystemExit(f"{args.model}: its card's runtime is not onnxruntime; run bench/bench_onnx.py --record "
                             "first, or compare with --runtime card")
        card.runtime = {**(card.runtime or {}), "held_out": {
            "compared": "torch against " + ("each network on its card's runtime" if args.runtime == "card" else args.runtime),
            "data": [Path(d).name for d in args.data], "split": args.split, "n": ref["data"]["n"],
            "metric_numbers": len(keys), "metric_numbers_equal": len(keys) - len(diff),
            "largest_differences": dict(sorted(worst.items(), key=lambda kv: -kv[1])[:6]),
            "predictions_identical": f"{same}/{len(pa)}",
            "command": "python bench/runtime_heldout.py " + " ".join(sys.argv[1:] if argv is None else argv)}}
        card.to_json(path)
        print(f"recorded in {path.name}: runtime.held_out")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
