"""Vertebrae + corners + Cobb per real AP film with a shipped AP vertebra model, end to end. Prints figures; not a test.

    .venv/bin/python bench/bench_vertebrae.py                 # 10 aasce-ap films (phantom films without ../shared)
    .venv/bin/python bench/bench_vertebrae.py --n 20 --tta none
    .venv/bin/python bench/bench_vertebrae.py --model seg_vertebra_corners_aasce   # U-Net + corner network

Why: issue 14's target is <= 300 ms per film for vertebrae + corners + Cobb on 2 CPU cores. This times the
Predictor the app and `spine-models predict` use (decode, resize, network with the card's TTA, masks back at
full size, bodies, corners, Cobb), after one warm-up film; ``--tta none`` shows what the flip average costs.
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


def _films(n: int) -> list[Path]:
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
    args = ap.parse_args(argv)

    import torch

    from spine_models.engine import predictor_class
    from spine_models.models.hub import resolve_card

    card = resolve_card(args.model)
    if args.tta != "card":
        card = dataclasses.replace(card, preprocessing={**(card.preprocessing or {}), "tta": args.tta})
    pred = predictor_class(card)(card)  # the U-Net's own Predictor, or the corner composite's (its U-Net inside)
    films = _films(args.n + 1)
    pred.predict(films[0])  # warm-up: first call pays for lazy imports and allocations
    times, shown = [], 0
    for f in films[1:]:
        t0 = time.perf_counter()
        res = pred.predict(f)
        times.append((time.perf_counter() - t0) * 1000)
        shown += (res.measurements.get("cobb") or {}).get("cobb_deg") is not None
    unet = getattr(pred, "locator", pred)  # a composite's U-Net inside it
    print(f"{card.id} (U-Net tta={unet.tta}) on {len(times)} films "
          f"({films[1].parent.parent.name}), torch threads {torch.get_num_threads()}: "
          f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms per film; Cobb given on {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
