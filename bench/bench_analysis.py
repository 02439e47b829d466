"""The full analysis of one real-size film, models only: what the Analyse page runs by default on an uploaded film.
Prints figures; not a test.

    .venv/bin/python bench/bench_analysis.py                              # real AP films from ../shared, else made ones
    .venv/bin/python bench/bench_analysis.py --film a.jpg --film b.png --n 3
    .venv/bin/python bench/bench_analysis.py --n 12 --concurrent          # + the models of a film in two threads
    SPINE_MODELS_RUNTIME=torch .venv/bin/python bench/bench_analysis.py   # every network on torch (the cards' runtime off)

Why apart from bench_app.py: that one times the page (AppTest: upload, every model, drawing); this one times the
analysis the issue's target names — a 2048x1024 film, every model the page runs by default on it, Grad-CAM included,
SHAP excluded — through the page's own calls (``ui.analysis``: view, fitting models, defaults, ``run_models``), with
each model's share. Each timed film is a new film (no per-film memo hit from an earlier one); the first film warms
the models up and is not counted. Quote figures from a quiet machine: another process on the 2 cores doubles them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

__all__ = ["main"]

SHARED_AP = ROOT.parent / "shared" / "data" / "fraiwan-ap"


def _films(paths: list[Path], n: int) -> list[tuple[str, bytes]]:
    """``n + 1`` films as (name, bytes): the given files, else real AP films resized to 2048x1024, else made ones."""
    import io

    from PIL import Image

    if paths:
        files = [(p.name, p.read_bytes()) for p in paths]
        return [files[i % len(files)] for i in range(n + 1)]
    real = sorted(SHARED_AP.rglob("*.jp*g"))[: n + 1] if SHARED_AP.is_dir() else []
    out = []
    for i in range(n + 1):
        if real:
            im = Image.open(real[i % len(real)]).convert("L").resize((1024, 2048))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            out.append((f"real{i}.png", buf.getvalue()))
        else:
            from bench_app import film_png

            out.append((f"made{i}.png", film_png(i, h=2048, w=1024)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--film", type=Path, action="append", default=[], help="a film to analyse (repeatable)")
    ap.add_argument("--n", type=int, default=6, help="films timed (after one warm-up film)")
    ap.add_argument("--concurrent", action="store_true",
                    help="also run each film's default models in two threads instead of one after another (compare)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from ui import analysis
    from ui.models import shipped_cards

    cards = shipped_cards()
    if not cards:
        raise SystemExit("no shipped models in weights/")
    films = _films(args.film, args.n)
    print(f"torch threads {torch.get_num_threads()}, {len(films) - 1} films timed after one warm-up", flush=True)
    totals: list[float] = []
    per_model: dict[str, list[float]] = {}
    for i, (name, data) in enumerate(films):
        t0 = time.perf_counter()
        rad, run = _prepared(data, name, cards)
        _, timings = analysis.run_models(rad, run)
        took = time.perf_counter() - t0
        if i == 0:
            print(f"warm-up {rad.width}x{rad.height}, view {rad.view}: {took:.2f} s; models {', '.join(timings)}", flush=True)
            continue
        totals.append(took)
        for mid, ms in timings.items():
            per_model.setdefault(mid, []).append(ms)
        print(f"{name} {rad.width}x{rad.height} view {rad.view}: {took * 1000:.0f} ms "
              + " ".join(f"{m}={v:.0f}" for m, v in timings.items()), flush=True)
    print(f"full analysis (read, view, every default model, Grad-CAM; no SHAP, no drawing): median "
          f"{statistics.median(totals) * 1000:.0f} ms, max {max(totals) * 1000:.0f} ms (target <= 500 ms)")
    for mid, v in sorted(per_model.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {mid:40s} median {statistics.median(v):7.0f} ms")
    if args.concurrent:
        concurrent_models(films[1:], cards)
    return 0


def _prepared(data: bytes, name: str, cards: list) -> tuple:
    """(the upload read and its view inferred, the models the page runs on it by default), as ``ui.analysis`` does."""
    from ui import analysis

    rad = analysis.read_upload(data, name)
    rad, _ = analysis.infer_view(rad, cards)
    fitting = analysis.fitting_cards(cards, rad)
    ids, _ = analysis.default_models(fitting, uploaded=True)
    return rad, [c for c in fitting if c.id in ids]


def concurrent_models(films: list[tuple[str, bytes]], cards: list) -> None:
    """Each film's default models one after another (as ``ui.analysis.run_models`` runs them) and in two threads,
    in alternating order, each under a new name (the per-film memo keys on it, so neither answers from the other).
    Why: the issue asks the models that do not depend on each other to run without waiting on each other where that
    helps; whether it helps depends on the cores the networks' own threads leave idle."""
    from concurrent.futures import ThreadPoolExecutor

    from ui.models import get_predictor

    pool = ThreadPoolExecutor(2)
    ways = {"one after another": lambda rad, cs: [get_predictor(c).predict(rad, cam=True) for c in cs],
            "two threads": lambda rad, cs: list(pool.map(lambda c: get_predictor(c).predict(rad, cam=True), cs))}
    took: dict[str, list[float]] = {k: [] for k in ways}
    for i, (name, data) in enumerate(films):
        for way in (list(ways) if i % 2 else list(ways)[::-1]):
            rad, run = _prepared(data, f"{way[:3]}-{name}", cards)
            t0 = time.perf_counter()
            ways[way](rad, run)
            took[way].append(time.perf_counter() - t0)
    pool.shutdown()
    print("default models of a film, " + "; ".join(
        f"{k}: median {statistics.median(v) * 1000:.0f} ms, max {max(v) * 1000:.0f} ms" for k, v in took.items())
        + f" ({len(films)} films, alternating order)")


if __name__ == "__main__":
    raise SystemExit(main())
