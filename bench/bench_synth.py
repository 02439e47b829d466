"""Phantom speed: AP films of 1024x512 per second (target >= 10 on 2 cores). Prints figures; not a test.

    .venv/bin/python bench/bench_synth.py [--n 100] [--workers 2]

Wall-clock figures depend on what else runs on the machine, so the CPU time per film is printed too
(load-independent): with N free cores, throughput is about N / (CPU seconds per film).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from spine_models.data.phantom.writer import generate_xray
from spine_models.data.phantom.xray import make_patient, render_film


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="phantom generation speed")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    render_film(make_patient(0, 0), "ap")  # warm-up (imports, scipy)
    t, c = time.perf_counter(), time.process_time()
    for i in range(20):
        render_film(make_patient(0, i), "ap")
    print(f"render only (1 process): {(time.perf_counter() - t) / 20 * 1000:.1f} ms wall, "
          f"{(time.process_time() - c) / 20 * 1000:.1f} ms CPU per AP film 1024x512")
    with tempfile.TemporaryDirectory() as tmp:
        c = time.process_time()
        generate_xray(Path(tmp) / "one", "ap", 20, 0, workers=1, quiet=True)
        cpu = (time.process_time() - c) / 20
    print(f"render + write (masks, YOLO, COCO, MANIFEST), 1 process: {cpu * 1000:.1f} ms CPU per film "
          f"-> about {2 / cpu:.1f} films/s on 2 free cores")
    for view in ("ap", "lat"):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            generate_xray(Path(tmp) / "set", view, args.n, 0, workers=args.workers, quiet=True)
            dt = time.perf_counter() - t
        print(f"spine-models synth xray-{view}: {args.n} films 1024x512 in {dt:.1f} s wall = {args.n / dt:.1f} films/s "
              f"({args.workers} workers, load average now {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
