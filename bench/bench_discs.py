"""Discs found + named + graded per real sagittal MR slice with a shipped disc model, end to end. Prints figures; not a test.

    .venv/bin/python bench/bench_discs.py                  # 10 spider-mri slices (made slices without ../shared)
    .venv/bin/python bench/bench_discs.py --n 20 --model mri_disc_locator_spider

Why: issue 15's target is <= 200 ms per slice for detection + grading on 2 CPU cores. This times the Predictor the
MRI page and `spine-models predict` use (decode, locator U-Net, disc boxes and levels, crops, grader with its mirror
average; Grad-CAM off as on the page's default table), after one warm-up slice.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--model", default="mri_disc_grader_spider")
    ap.add_argument("--cam", action="store_true", help="also compute Grad-CAM per disc")
    args = ap.parse_args(argv)

    from spine_models.engine.predictor import load_predictor

    real = REPO.parent / "shared" / "data" / "spider-mri" / "images"
    if not real.is_dir():
        print(f"{real} not present: nothing to time (the benchmark needs real slices)")
        return 0
    slices = sorted(real.glob("*.png"))
    slices = slices[:: max(1, len(slices) // (args.n + 1))][: args.n + 1]
    pred = load_predictor(args.model)
    pred.predict(slices[0], cam=args.cam)
    times, discs = [], []
    for f in slices[1:]:
        t0 = time.perf_counter()
        r = pred.predict(f, cam=args.cam)
        times.append((time.perf_counter() - t0) * 1000)
        discs.append(len(r.discs))
    import torch

    print(f"{args.model}: {len(times)} slices, median {statistics.median(times):.0f} ms, max {max(times):.0f} ms per slice "
          f"(torch threads {torch.get_num_threads()}, discs per slice median {statistics.median(discs):.0f}; target <= 200 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
