"""int8 static quantisation (ONNX Runtime) against fp32 ONNX Runtime and torch, for each network whose card runs it on
ONNX Runtime: latency, the largest output difference on real films, and (``--heldout``) the card's held-out metrics.
Prints figures and, with ``--doc``, writes them to a generated doc; edits a card only with ``--ship``.

    nice -n 15 .venv/bin/python bench/bench_int8.py --heldout --doc docs/int8_check     # the doc (tens of minutes)
    nice -n 15 .venv/bin/python bench/bench_int8.py --model seg_unet_ap                  # latency + differences only

Why: the issue allows int8 "where the card's metrics hold within their CI". Each network's fp32 export
(models.onnx_runtime.export_onnx) is quantised statically (quantize_int8: QDQ, per-channel int8 weights, uint8
activations) with activation ranges calibrated on real films of the TRAINING part of the card's own recorded split
(report.evaluation.split_part), never its test part; the outputs are compared with torch on films of the validation
part (not used for calibration); the held-out check runs ``spine-models evaluate --split test`` on torch and on
``SPINE_MODELS_RUNTIME=onnxruntime-int8`` in separate processes (bench/runtime_heldout.py), with the calibration of
that one network alone in a cache folder of its own (so a composite's other network stays torch). The rule applied:
int8 only where it is faster than fp32 ONNX Runtime AND every metric of the int8 run lies inside the 95 % CI of the torch
run and of the card (AND every classifier prediction on the held-out films is the same class). Latencies on a shared machine are noisy:
the load average is printed beside each; re-measure on a quiet machine before quoting.

``--ship`` (one network, with ``--heldout``): calibrates on the inputs as they are shipped (uint8,
engine.runtime.save_calibration) and, where the rule says int8 AND no headline figure (models.provenance.
headline_metrics) of the card, nor of any shipped composite that runs the network (measured with the card switched),
gets worse on the held-out films by more than 5 % of torch's value, writes them beside the weights
(``weights/<id>.calib.npz``) and switches the card's ``runtime`` to ``onnxruntime-int8`` with the figures measured
here (``runtime.calibration``, ``runtime.int8``); the fp32 export's own check stays in the field. Then re-record the
held-out comparison of this card and of its composites (bench/runtime_heldout.py --runtime card --record).
Measured this way and not shipped: seg_unet_ap (int8 78 ms against fp32 ONNX Runtime 181 ms and torch 245 ms per
film on a loaded machine, its own 11 held-out metrics inside their CIs, but within 5 deg 0.44 -> 0.41, and inside
seg_vertebra_corners_aasce Cobb MAE 5.64 -> 6.46 deg on the same 118 test films).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

__all__ = ["main", "NETWORKS", "ci_check"]

DATA = ROOT.parent / "shared" / "data"
# network -> (its held-out data folder under ../shared/data, the load_dataset task); the view gate is handled apart:
# its own split's training films are synthetic (/tmp/w/view_ap, view_lat, not kept) and so is its held-out set
NETWORKS = {"ap_scoliosis_mobilenet_v2_fraiwan": ("fraiwan-ap", "classify"),
            "seg_unet_ap": ("aasce-ap", "segment"),
            "seg_vertebra_corners_aasce": ("aasce-ap", "segment")}
NOT_REAL = {"xray_view_mobilenet_v2_synth": "its recorded split is of synthetic films (view_ap + view_lat under /tmp/w, "
                                            "not kept) and so is its held-out set: no real training films to calibrate "
                                            "on and no held-out set here to decide with"}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _median_ms(fn: Any, reps: int) -> float:
    from bench.bench_classify import time_ms

    return time_ms(fn, reps)[0]


def _predictor(card: Any) -> tuple[Any, bool]:
    """(the Predictor whose ``.model`` is the network, is it the corner network) — as bench_onnx.py builds them."""
    from spine_models.engine import predictor_class

    corner = card.arch == "vertebra_corners"
    if card.task == "segment" and not corner:
        from spine_models.engine.segment import Predictor as UNetPredictor

        return UNetPredictor(card, device="cpu"), False
    return predictor_class(card)(card, device="cpu"), corner


def _inputs(pred: Any, corner: bool, path: Path) -> tuple[torch.Tensor | None, Any]:
    """The network's input(s) for one film, through the Predictor's own preprocessing: (N, C, H, W) and, for the
    corner network, the patches' frames (matrices, scale) to put corners back on the film."""
    from bench.bench_onnx import _corner_patches

    if corner:
        got = _corner_patches(pred, path)
        return (None, None) if got is None else (got[0].float(), got[1:])
    x = pred.preprocess(pred.read(str(path)))
    x = x[0] if isinstance(x, tuple) else x
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)[:1].float().cpu(), None


def _films(card: Any, folder: str, task: str, part: str, n: int, seed: int) -> list[Path]:
    """``n`` films (seeded draw) of one part of the card's recorded split, re-made on ``../shared/data/folder``."""
    from spine_models.data.adapters import load_dataset
    from spine_models.report.evaluation import split_part

    ds = split_part(card, load_dataset([str(DATA / folder)], task=task), part)
    paths = sorted(str(s.path) for s in ds.samples if s.path is not None)
    rng = np.random.default_rng(seed)
    return [Path(paths[i]) for i in sorted(rng.choice(len(paths), size=min(n, len(paths)), replace=False))]


def _corner_px(a: np.ndarray, b: np.ndarray, frames: Any, size: int) -> list[float]:
    """Per body: the largest corner displacement on the film (px) between two corner-network outputs."""
    from spine_models.data.vertebra_patches import decode_outputs, to_film

    mats, scale = frames
    film = [[to_film(decode_outputs(o, size)[0], m) / scale for o, m in zip(out, mats)] for out in (a, b)]
    return [float(np.abs(p - q).max()) for p, q in zip(*film)]


_SERVED = """
import json, sys
from spine_models.engine import predictor_class
from spine_models.models.cards import list_cards
card = {c.id: c for c in list_cards()}[sys.argv[1]]
pred = predictor_class(card)(card, device="cpu")
out = {"network": pred.net.path, "why": pred.net.why}
loc = getattr(pred, "locator", None)
if loc is not None and hasattr(loc, "net"):
    out.update(locator=loc.net.path, locator_why=loc.net.why)
print(json.dumps(out))
"""


def _served_by(card: Any, cache: Path) -> dict[str, str]:
    """Which runtime a fresh Predictor gets under ``SPINE_MODELS_RUNTIME=onnxruntime-int8`` with ``cache``, and why
    when not int8 (a composite's locator network too), in a process of its own as the held-out evaluate runs."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", NO_ALBUMENTATIONS_UPDATE="1",
               SPINE_MODELS_CACHE=str(cache), SPINE_MODELS_RUNTIME="onnxruntime-int8")
    proc = subprocess.run([sys.executable, "-c", _SERVED, card.id], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{card.id}: loading it on int8 failed: {proc.stderr.strip()[-300:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  served by: {out}", flush=True)
    return out


def _metric_values(d: Any, pre: str = "") -> dict[str, dict[str, Any]]:
    """Every ``{"value", "ci95"}`` of a report's metrics by its dotted name."""
    out: dict[str, dict[str, Any]] = {}
    if isinstance(d, dict):
        if "value" in d and "ci95" in d:
            return {pre: d}
        for k, v in d.items():
            out.update(_metric_values(v, f"{pre}.{k}" if pre else str(k)))
    return out


def _inside(v: Any, ci: Any, w: Any) -> bool:
    if v is None or w is None or not ci or ci[0] is None:
        return v == w
    return float(ci[0]) - 1e-12 <= float(w) <= float(ci[1]) + 1e-12


def ci_check(ref: dict[str, Any], other: dict[str, Any], card: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per metric of the torch report: its value and 95 % CI, the other run's value, and whether it lies inside; with
    ``card`` (the card's stored metrics) also the card's value and CI and whether the other run lies inside those
    (``inside_ci`` needs both: the torch run re-made here may drift from the card while the code changes)."""
    a, b, c = _metric_values(ref), _metric_values(other), _metric_values(card or {})
    rows = []
    for k, m in sorted(a.items()):
        v, ci = m.get("value"), m.get("ci95")
        w = (b.get(k) or {}).get("value")
        row = {"metric": k, "torch": v, "ci95": ci, "int8": w,
               "delta": None if v is None or w is None else float(w) - float(v), "inside_ci": _inside(v, ci, w)}
        if k in c:
            row.update(card=c[k].get("value"), card_ci95=c[k].get("ci95"),
                       inside_card_ci=_inside(c[k].get("value"), c[k].get("ci95"), w))
            row["inside_ci"] = row["inside_ci"] and row["inside_card_ci"]
        rows.append(row)
    return rows


def _prediction_agreement(ref: dict[str, Any], other: dict[str, Any]) -> tuple[int, int]:
    """(films whose predicted class is the same, films) for a classifier's per-film predictions."""
    pa, pb = ref.get("predictions") or [], other.get("predictions") or []
    return sum(x.get("pred") == y.get("pred") for x, y in zip(pa, pb)), len(pa)


def measure(mid: str, args: argparse.Namespace, cache_root: Path) -> dict[str, Any]:
    """One network: calibrate, quantise, time, compare outputs; with ``args.heldout`` the held-out metrics too."""
    from spine_models.engine.runtime import INT8, calibration_file, int8_file, onnx_file, stored_calibration
    from spine_models.models.cards import list_cards
    from spine_models.models.onnx_runtime import OrtNetwork, export_onnx, quantize_int8

    card = {c.id: c for c in list_cards()}[mid]
    folder, task = NETWORKS[mid]
    pred, corner = _predictor(card)
    net = pred.model.float().eval()
    calib_films = _films(card, folder, task, "train", args.calib, args.seed)
    check_films = _films(card, folder, task, "val", args.films, args.seed)
    calib = [x for x, _ in (_inputs(pred, corner, f) for f in calib_films) if x is not None]
    checks = [(x, fr) for x, fr in (_inputs(pred, corner, f) for f in check_films) if x is not None]
    calib_x = torch.cat(calib).numpy()
    if args.ship:  # calibrate on exactly what is shipped: the inputs as uint8 (engine.runtime.stored_calibration)
        calib_x = stored_calibration(calib_x)
    in_shape = (1, *calib_x.shape[1:])
    cache = cache_root / mid  # this network's calibration alone: the held-out run turns no other network int8
    old = os.environ.get("SPINE_MODELS_CACHE")
    os.environ["SPINE_MODELS_CACHE"] = str(cache)
    try:
        fp32, cal, q8 = onnx_file(card, in_shape), calibration_file(card, in_shape), int8_file(card, in_shape)
    finally:
        os.environ.pop("SPINE_MODELS_CACHE") if old is None else os.environ.__setitem__("SPINE_MODELS_CACHE", old)
    for p in (q8, cal):
        p.unlink(missing_ok=True)  # a new calibration makes a new int8 model
    if not fp32.is_file():
        export_onnx(net, torch.from_numpy(calib_x[:1]), fp32)
    np.save(cal, calib_x)
    quantize_int8(fp32, q8, calib_x, method=args.method)
    o32, o8 = OrtNetwork(fp32, threads=args.threads), OrtNetwork(q8, threads=args.threads)
    squash = (lambda t: torch.softmax(t.float(), 1)) if card.task == "classify" else \
        (lambda t: t.float()) if corner else (lambda t: torch.sigmoid(t.float()))
    d32, d8, agree, px = 0.0, 0.0, [], []
    for x, frames in checks:
        with torch.inference_mode():
            pt = squash(net(x))
        p32, p8 = squash(o32(x)), squash(o8(x))
        d32, d8 = max(d32, float((pt - p32).abs().max())), max(d8, float((pt - p8).abs().max()))
        if card.task == "classify":
            agree.append(float(pt.argmax(1).eq(p8.argmax(1)).float().mean()))
        elif corner:
            px += _corner_px(pt.numpy(), p8.numpy(), frames, pred.patch)
        else:
            thr = float((card.thresholds or {}).get("mask", 0.5))
            agree.append(float(((pt > thr) == (p8 > thr)).float().mean()))
    x0 = checks[0][0][:1]
    load0 = _load()
    with torch.inference_mode():
        t_ms = _median_ms(lambda: net(x0), args.reps)
    f_ms = _median_ms(lambda: o32(x0), args.reps)
    i_ms = _median_ms(lambda: o8(x0), args.reps)
    f2_ms = _median_ms(lambda: o32(x0), args.reps)  # fp32 again after int8: drift of the machine's load shows here
    batch: dict[str, Any] = {}
    if corner:  # the corner network runs one film's patches as one batch: time that too
        xb = checks[0][0]
        batch = {"film_batch": int(len(xb)), "fp32_onnx_ms_film_batch": round(_median_ms(lambda: o32(xb), args.reps), 2),
                 "int8_ms_film_batch": round(_median_ms(lambda: o8(xb), args.reps), 2)}
    row: dict[str, Any] = {
        "model": mid, "compared": "softmax probabilities" if card.task == "classify" else
        "corner-network outputs" if corner else "sigmoid probabilities",
        "calibration": {"part": "train", "films": len(calib_films), "inputs": int(len(calib_x)), "method": args.method,
                        "data": folder, "seed": args.seed},
        "checked_on": {"part": "val", "films": len(check_films), "inputs": int(sum(len(x) for x, _ in checks))},
        "max_abs_diff_fp32_vs_torch": d32, "max_abs_diff_int8_vs_torch": d8,
        "torch_ms": round(t_ms, 2), "fp32_onnx_ms": round(min(f_ms, f2_ms), 2), "fp32_onnx_ms_runs": [round(f_ms, 2),
        round(f2_ms, 2)], "int8_ms": round(i_ms, 2), "load_average": [load0, _load()],
        "int8_file_mb": round(q8.stat().st_size / 2**20, 2), "fp32_file_mb": round(fp32.stat().st_size / 2**20, 2),
        **batch}
    if card.task == "classify":
        row["top_class_agree"] = float(np.mean(agree))
    elif corner:
        row["corner_px_max"], row["corner_px_mean"] = float(np.max(px)), float(np.mean(px))
    else:
        row["mask_pixels_agree"] = float(np.mean(agree))
    print(f"{mid:36s} fp32 ort {row['fp32_onnx_ms']:7.1f} ms  int8 {i_ms:7.1f} ms  torch {t_ms:7.1f} ms  "
          f"max|d| fp32 {d32:.1e} int8 {d8:.1e}  load {load0:.2f}->{_load():.2f}", flush=True)
    row["runtime_check"] = _served_by(card, cache)
    if args.heldout:
        from bench.runtime_heldout import heldout

        if row["runtime_check"]["network"] != INT8:
            raise SystemExit(f"{mid}: the evaluate run would not use int8 ({row['runtime_check']}); nothing to compare")
        ref, other = heldout(mid, [str(DATA / folder)], "test", INT8, str(cache))
        rows = ci_check(ref["metrics"], other["metrics"], card.metrics)
        same, n = _prediction_agreement(ref, other)
        if args.ship:  # the reports themselves, for ship()'s headline check (not kept in the doc)
            row["_reports"] = (ref["metrics"], other["metrics"])
        row["held_out"] = {"data": folder, "split": "test", "n": ref["data"]["n"], "metrics": rows,
                           "all_inside_ci": all(r["inside_ci"] for r in rows),
                           "outside_ci": [r["metric"] for r in rows if not r["inside_ci"]]}
        if card.task == "classify":
            row["held_out"]["predictions_same_class"] = f"{same}/{n}"
            row["held_out"]["predictions_agree"] = same == n
        print(f"  held out ({ref['data']['n']} films): {sum(r['inside_ci'] for r in rows)}/{len(rows)} metrics inside "
              f"the torch and card CIs" + (f"; same class {same}/{n}" if card.task == "classify" else ""), flush=True)
    decide(row)
    print(f"  decision: {row['decision']} ({row['why']})", flush=True)
    if args.ship:
        row["_calibration"] = calib_x
    return row


LOWER_IS_BETTER = ("mae", "smape", "mre", "not_shown", "ece")  # metric-name parts whose smaller value is the better
HEADLINE_SLACK = 0.05  # --ship: no headline figure may get worse by more than this share of torch's value


def headline_losses(ref: dict[str, Any], other: dict[str, Any], slack: float = HEADLINE_SLACK) -> list[str]:
    """The headline figures (models.provenance.headline_metrics) of a torch report that ``other`` makes worse by more
    than ``slack`` of torch's value, as "name torch -> other". Why beside the CI rule: a held-out CI of 26-118 films is
    wide enough to hold a change a clinician would not accept on the figure the card leads with."""
    from spine_models.models.provenance import headline_metrics

    a, b = headline_metrics(ref), headline_metrics(other)
    out = []
    for k, m in a.items():
        v, w = float(m["value"]), (b.get(k) or {}).get("value")
        if w is None:
            out.append(f"{k} {v:.4g} -> not reported")
            continue
        loss = (float(w) - v) if any(t in k for t in LOWER_IS_BETTER) else (v - float(w))
        if loss > slack * abs(v):
            out.append(f"{k} {v:.4g} -> {float(w):.4g}")
    return out


def ship(row: dict[str, Any], args: argparse.Namespace, command: str) -> None:
    """Where the rule said int8 and no headline figure of the card, or of a shipped composite that runs the network,
    gets worse on held-out films by more than HEADLINE_SLACK: the calibration beside the weights and the card's
    runtime switched (see --ship). A composite is measured with the card switched (each network on its own card's
    runtime, as the app runs it); when it loses, the card and the calibration file are put back."""
    from bench.runtime_heldout import heldout
    from spine_models.engine.runtime import INT8, save_calibration
    from spine_models.models.cards import ModelCard, list_cards, weights_dir

    calib, (torch_metrics, int8_metrics) = row.pop("_calibration"), row.pop("_reports")
    if row["decision"] != "int8":
        print(f"{row['model']}: not shipped ({row['decision']}: {row['why']})")
        return
    lost = headline_losses(torch_metrics, int8_metrics)
    if lost:
        row["ship"] = f"not shipped: headline figures worse by more than {HEADLINE_SLACK:.0%}: " + "; ".join(lost)
        print(f"{row['model']}: {row['ship']}")
        return
    path = weights_dir() / f"{row['model']}.json"
    before = path.read_text()
    card = ModelCard.from_json(path)
    name = f"{row['model']}.calib.npz"
    sha = save_calibration(calib, weights_dir() / name)
    ho = row["held_out"]
    card.runtime = {**(card.runtime or {}), "path": INT8,
                    "calibration": {"file": name, "sha256": sha, **row["calibration"], "inputs": int(len(calib)),
                                    "stored": "the network's [0, 1] inputs as uint8"},
                    "int8": {k: row[k] for k in ("compared", "max_abs_diff_int8_vs_torch", "torch_ms", "fp32_onnx_ms",
                                                 "int8_ms", "load_average", "int8_file_mb", "mask_pixels_agree",
                                                 "top_class_agree", "corner_px_max") if k in row}
                    | {"held_out": {"data": ho["data"], "split": ho["split"], "n": ho["n"],
                                    "metrics_inside_ci": f"{sum(r['inside_ci'] for r in ho['metrics'])}/{len(ho['metrics'])}"},
                       "decision": row["why"], "command": command}}
    card.to_json(path)
    for comp in [c for c in list_cards() if (c.arch_kwargs or {}).get("locator") == row["model"]]:
        ref, other = heldout(comp.id, [str(DATA / NETWORKS.get(comp.id, (row["held_out"]["data"],))[0])], "test", "card")
        lost = headline_losses(ref["metrics"], other["metrics"])
        row.setdefault("composites", {})[comp.id] = {"n": ref["data"]["n"], "worse": lost, "rows": ci_check(
            ref["metrics"], other["metrics"])}
        if lost:
            path.write_text(before)
            (weights_dir() / name).unlink()
            row["ship"] = (f"not shipped: composite {comp.id} on held-out films, headline figures worse by more than "
                           f"{HEADLINE_SLACK:.0%}: " + "; ".join(lost) + " (card and calibration put back)")
            print(f"{row['model']}: {row['ship']}")
            return
    row["ship"] = f"shipped {name}; card switched to {INT8}"
    print(f"shipped {name} (sha256 {sha[:12]}…) and switched {path.name} to {INT8}")


def decide(row: dict[str, Any]) -> dict[str, Any]:
    """The rule, on one network's measured figures: int8 only where it is faster than fp32 ONNX Runtime at batch 1
    AND at the batch it runs on a film (the corner network: one film's patches at once), AND every held-out metric lies
    inside both CIs, AND (classifiers) every held-out film keeps its class. Sets ``faster``, ``decision``, ``why``."""
    slow = []
    if row["int8_ms"] >= row["fp32_onnx_ms"]:
        slow.append(f"int8 not faster at batch 1 ({row['int8_ms']} vs {row['fp32_onnx_ms']} ms)")
    if "film_batch" in row and row["int8_ms_film_batch"] >= row["fp32_onnx_ms_film_batch"]:
        slow.append(f"int8 not faster on a film's {row['film_batch']} patches, the batch it runs "
                    f"({row['int8_ms_film_batch']} vs {row['fp32_onnx_ms_film_batch']} ms)")
    row["faster"] = not slow
    ho = row.get("held_out")
    if not ho:
        row["decision"], row["why"] = "not decided", "no held-out run (--heldout)"
        return row
    bad = slow + ([] if ho["all_inside_ci"] else ["outside the CI: " + ", ".join(ho["outside_ci"])]) + \
        ([] if ho.get("predictions_agree", True) else [f"held-out classes differ ({ho['predictions_same_class']} same)"])
    row["decision"] = "stay on fp32 onnxruntime" if bad else "int8"
    row["why"] = "; ".join(bad) or "faster, every metric inside its CI" + (", same classes" if "predictions_agree" in ho
                                                                           else "")
    return row


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _int8_cards() -> str:
    """Which shipped cards run int8 now, read from the cards when the doc is written."""
    from spine_models.models.cards import list_cards

    on = [c for c in list_cards() if (c.runtime or {}).get("path") == "onnxruntime-int8"]
    if not on:
        return "No shipped card runs int8 today."
    return "Shipped cards running int8 today: " + "; ".join(
        f"`{c.id}` (its card's `runtime.int8` and `runtime.calibration`: "
        f"`{(c.runtime.get('int8') or {}).get('command', '?')}`)" for c in on) + "."


def write_doc(stem: Path, rows: list[dict[str, Any]], env: dict[str, Any]) -> None:
    """``stem``.json (every figure) and ``stem``.md (the tables a reader wants), both from this run."""
    stem.with_suffix(".json").write_text(json.dumps({"environment": env, "networks": rows}, indent=1) + "\n")
    out = ["# int8 static quantisation: measured, per network", "",
           f"Generated by `{env['command']}` on {env['date']} (do not edit by hand). torch {env['torch']}, "
           f"onnxruntime {env['onnxruntime']}, {env['threads']} threads, batch 1, median of {env['reps']} runs"
           + (f"; decisions re-applied to these figures by `python bench/bench_int8.py --render --doc STEM`."
              if env.get("rendered") else "."), "",
           f"CPU: {env['cpu']}; int8 instruction flags: {env['int8_flags'] or 'none'}.", "",
           "**Timings come from a shared 2-core machine (load average beside each): re-measure on a quiet machine "
           "before quoting them.**", "",
           "Rule: int8 only where it is faster than fp32 ONNX Runtime AND every held-out metric of the int8 run lies "
           "inside the 95 % CI of the torch run made here and of the card's stored metric AND (classifiers) every "
           "held-out film keeps its class. Calibration: real films of the training part of the card's own split; "
           "output differences: films of its validation part (not used for calibration); held out: its test part "
           "(`spine-models evaluate --split test`, torch and `SPINE_MODELS_RUNTIME=onnxruntime-int8` in separate "
           "processes, with only this network calibrated, so a composite's U-Net stays on torch in both). "
           "This measurement changes no card.", "",
           "Switching int8 on for a card (its `runtime.path` = `onnxruntime-int8`) also needs its calibration inputs "
           "where engine/runtime.py looks: `python bench/bench_int8.py --model ID --heldout --ship` measures one "
           "network again on the inputs as shipped (uint8) and, where the rule says int8, writes them beside the "
           "weights and switches the card. " + _int8_cards(), "",
           "Read with care: the CIs of a 26- or 118-film test part are wide, so \"inside the CI\" is a permissive bar; "
           "the deltas below are the figures to weigh. torch ms is the eager reference measured in the same run; "
           "under a load average above the core count torch's intra-op threads wait on each other far more than "
           "ONNX Runtime's (see bench/bench_onnx.py), so it can read far slower than on a quiet machine.", "",
           "| network | torch ms | fp32 ORT ms | int8 ms | load avg | max abs diff vs torch: fp32 / int8 | agreement | "
           "held-out metrics inside CI | decision |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            out.append(f"| {r['model']} | | | | | | | | not measured: {r['skipped']} |")
            continue
        agree = (f"top class {100 * r['top_class_agree']:.1f} %" if "top_class_agree" in r else
                 f"mask pixels {100 * r['mask_pixels_agree']:.3f} %" if "mask_pixels_agree" in r else
                 f"corners max {r['corner_px_max']:.2f} px, mean {r['corner_px_mean']:.3f} px")
        ho = r.get("held_out")
        inside = "not run" if not ho else (f"{sum(m['inside_ci'] for m in ho['metrics'])}/{len(ho['metrics'])}" +
                                           (f", classes {ho['predictions_same_class']}" if "predictions_same_class" in ho
                                            else ""))
        if "film_batch" in r:
            agree += (f"; one film's {r['film_batch']} patches as one batch: fp32 {r['fp32_onnx_ms_film_batch']} ms, "
                      f"int8 {r['int8_ms_film_batch']} ms")
        out.append(f"| {r['model']} | {r['torch_ms']} | {r['fp32_onnx_ms']} | {r['int8_ms']} | "
                   f"{r['load_average'][0]}–{r['load_average'][1]} | {r['max_abs_diff_fp32_vs_torch']:.1e} / "
                   f"{r['max_abs_diff_int8_vs_torch']:.1e} | {agree} | {inside} | "
                   f"{r.get('decision', 'not decided (no held-out run)')}: {r.get('why', '')} |")
    for r in rows:
        ho = r.get("held_out")
        if not ho:
            continue
        out += ["", f"## {r['model']}: held-out metrics ({ho['data']}, split {ho['split']}, {ho['n']} films)", "",
                "| metric | card (95 % CI) | torch here (95 % CI) | int8 | int8 − torch | inside both CIs |",
                "|---|---|---|---|---|---|"]
        for m in ho["metrics"]:
            ci = "—" if not m["ci95"] else f"[{_fmt(m['ci95'][0])}, {_fmt(m['ci95'][1])}]"
            cc = "not on the card" if "card" not in m else \
                f"{_fmt(m['card'])} " + ("" if not m["card_ci95"] else
                                         f"[{_fmt(m['card_ci95'][0])}, {_fmt(m['card_ci95'][1])}]")
            out.append(f"| {m['metric']} | {cc} | {_fmt(m['torch'])} {ci} | {_fmt(m['int8'])} | {_fmt(m['delta'])} | "
                       f"{'yes' if m['inside_ci'] else '**no**'} |")
    stem.with_suffix(".md").write_text("\n".join(out) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help=f"network (repeatable; default {', '.join(NETWORKS)})")
    ap.add_argument("--calib", type=int, default=32, help="training-part films to calibrate on")
    ap.add_argument("--films", type=int, default=8, help="validation-part films to compare outputs on")
    ap.add_argument("--method", default="minmax", help="calibration: minmax, percentile or entropy")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heldout", action="store_true", help="also the card's held-out metrics, torch vs int8 (slow)")
    ap.add_argument("--doc", type=Path, help="write STEM.md and STEM.json (e.g. docs/int8_check)")
    ap.add_argument("--cache", type=Path, help="folder for the per-network int8 caches (default: a temporary one)")
    ap.add_argument("--render", action="store_true",
                    help="measure nothing: re-apply the rule (decide) to the figures in --doc STEM.json and rewrite STEM.md")
    ap.add_argument("--ship", action="store_true",
                    help="one --model with --heldout: where the rule says int8, ship its calibration and switch its card")
    args = ap.parse_args(argv)
    if args.ship and (not args.heldout or len(args.model or []) != 1):
        raise SystemExit("--ship needs --heldout and exactly one --model (the decision rests on its held-out figures)")
    if args.render:
        if not args.doc:
            raise SystemExit("--render needs --doc STEM (the STEM.json of an earlier run)")
        stored = json.loads(args.doc.with_suffix(".json").read_text())
        rows = [r if "skipped" in r else decide(r) for r in stored["networks"]]
        stored["environment"]["rendered"] = True
        write_doc(args.doc, rows, stored["environment"])
        print(f"rewrote {args.doc.with_suffix('.md')} and .json from the stored figures")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    import onnxruntime

    flags = sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f in
                    ("avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "amx_bf16")}) \
        if Path("/proc/cpuinfo").is_file() else []
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown") if Path("/proc/cpuinfo").is_file() else "unknown"
    cmd = "python bench/bench_int8.py " + " ".join(sys.argv[1:] if argv is None else argv)
    env = {"command": cmd, "date": subprocess.run(["date", "-u", "+%Y-%m-%d %H:%M UTC"], capture_output=True,
                                                  text=True).stdout.strip(),
           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "threads": args.threads,
           "reps": args.reps, "cpu": cpu, "int8_flags": " ".join(flags), "load_average_start": _load()}
    print(f"threads {args.threads}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, CPU {cpu}, "
          f"int8 flags: {' '.join(flags) or 'none'}, load average {_load():.2f} (shared machine: timings noisy)")
    rows: list[dict[str, Any]] = []
    tmp = None if args.cache else tempfile.mkdtemp(prefix="int8_")
    cache_root = args.cache or Path(tmp)
    try:
        for mid in args.model or [*NOT_REAL, *NETWORKS]:
            if mid in NOT_REAL:
                rows.append({"model": mid, "skipped": NOT_REAL[mid]})
                print(f"{mid:36s} skipped: {NOT_REAL[mid]}")
            elif mid not in NETWORKS:
                raise SystemExit(f"--model {mid!r}: not one of the networks measured here ({', '.join(NETWORKS)})")
            elif not (DATA / NETWORKS[mid][0]).is_dir():
                rows.append({"model": mid, "skipped": f"no {DATA / NETWORKS[mid][0]}"})
                print(f"{mid:36s} skipped: no {DATA / NETWORKS[mid][0]}")
            else:
                rows.append(measure(mid, args, cache_root))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    env["load_average_end"] = _load()
    for row in rows:
        if "_calibration" in row:  # the card records the command that remakes its figures (no --doc, --cache)
            ship(row, args, f"python bench/bench_int8.py --model {row['model']} --heldout --ship --calib {args.calib} "
                            f"--films {args.films} --method {args.method} --reps {args.reps} --seed {args.seed}")
    if args.doc:
        write_doc(args.doc, rows, env)
        print(f"wrote {args.doc.with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
