"""Phantom speed: AP films of 1024x512 per second (target >= 10 on 2 cores). Prints figures; not a test.

    .venv/bin/python bench/bench_synth.py [--n 100] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from spine_models.data.phantom.xray import make_patient, render_film
from spine_models.data.phantom.writer import generate_xray


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="phantom generation speed")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    t = time.perf_counter()
    for i in range(20):
        render_film(make_patient(0, i), "ap")
    render_ms = (time.perf_counter() - t) / 20 * 1000
    print(f"render only (1 process): {render_ms:.1f} ms per AP film 1024x512")
    for view in ("ap", "lat"):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            generate_xray(Path(tmp) / "set", view, args.n, 0, workers=args.workers, quiet=True)
            dt = time.perf_counter() - t
        print(f"spine-models synth xray-{view}: {args.n} films 1024x512 with masks, YOLO, COCO and MANIFEST "
              f"in {dt:.1f} s = {args.n / dt:.1f} films/s ({args.workers} workers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
