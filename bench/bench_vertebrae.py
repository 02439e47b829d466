"""Vertebrae + corners + Cobb per real AP film with a shipped AP vertebra model, end to end. Prints figures; not a test.

    .venv/bin/python bench/bench_vertebrae.py                 # 10 aasce-ap films (phantom films without ../shared)
    .venv/bin/python bench/bench_vertebrae.py --n 20 --tta none
    .venv/bin/python bench/bench_vertebrae.py --model seg_vertebra_corners_aasce   # U-Net + corner network
    .venv/bin/python bench/bench_vertebrae.py --model seg_vertebra_corners_aasce --data ../shared/data/fraiwan-ap

Why: issue 14's target is <= 300 ms per film for vertebrae + corners + Cobb on 2 CPU cores. This times the
Predictor the app and `spine-models predict` use (decode, resize, network with the card's TTA, masks back at
full size, bodies, corners, Cobb), after one warm-up film; ``--tta none`` shows what the flip average costs.
``--data`` times films of another folder (any *.jpg / *.png below it): full-trunk films (fraiwan-ap) take the corner
model's second look at the column (card key ``column_zoom``), which AASCE's films, already cut to the spine, do not.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

__all__ = ["main"]


def _films(n: int, data: str | None = None) -> list[Path]:
    if data:
        found = sorted(p for p in Path(data).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not found:
            raise SystemExit(f"--data {data}: no .jpg or .png films below it; give a folder of AP films")
        return found[:: max(1, len(found) // n)][:n]
    real = REPO.parent / "shared" / "data" / "aasce-ap" / "images"
    if real.is_dir():
        return sorted(real.glob("*.jpg"))[:: max(1, len(list(real.glob("*.jpg"))) // n)][:n]
    import subprocess

    out = Path(tempfile.mkdtemp()) / "ap"
    subprocess.run([str(Path(sys.executable).with_name("spine-models")), "synth", "xray-ap", "--n", str(n),
                    "--out", str(out), "--seed", "5"], check=True, capture_output=True)
    return sorted((out / "images").glob("*.png"))[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--model", default="seg_unet_ap")
    ap.add_argument("--tta", choices=("card", "none", "hflip"), default="card")
    ap.add_argument("--data", help="a folder of AP films to time instead of aasce-ap's (e.g. ../shared/data/fraiwan-ap)")
    args = ap.parse_args(argv)

    import torch

    from spine_models.engine import predictor_class
    from spine_models.models.hub import resolve_card

    card = resolve_card(args.model)
    if args.tta != "card":
        card = dataclasses.replace(card, preprocessing={**(card.preprocessing or {}), "tta": args.tta})
    pred = predictor_class(card)(card)  # the U-Net's own Predictor, or the corner composite's (its U-Net inside)
    films = _films(args.n + 1, args.data)
    pred.predict(films[0])  # warm-up: first call pays for lazy imports and allocations
    times, shown, zoomed = [], 0, 0
    look = getattr(pred, "_zoomed", None)
    if look is not None:  # count the films the corner model takes a second look at
        def counted(*a, **k):
            nonlocal zoomed
            zoomed += 1
            return look(*a, **k)
        pred._zoomed = counted
    for f in films[1:]:
        t0 = time.perf_counter()
        res = pred.predict(f)
        times.append((time.perf_counter() - t0) * 1000)
        shown += (res.measurements.get("cobb") or {}).get("cobb_deg") is not None
    unet = getattr(pred, "locator", pred)  # a composite's U-Net inside it
    print(f"{card.id} (U-Net tta={unet.tta}) on {len(times)} films "
          f"({films[1].parent.parent.name}), torch threads {torch.get_num_threads()}: "
          f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms per film; Cobb given on {shown}"
          + (f"; second look at the column on {zoomed}" if look is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
