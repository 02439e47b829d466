"""Batch inference: films/s and peak memory of `spine-models predict DIR --out results.csv` for a small and a large
folder of real AP films. Prints figures; not a test.

    .venv/bin/python bench/bench_batch.py                                   # 10 and 200 films, the Fraiwan classifier
    .venv/bin/python bench/bench_batch.py --n 10 --n 1000 --workers 2
    .venv/bin/python bench/bench_batch.py --model seg_vertebra_corners_aasce --n 10 --n 50
    .venv/bin/python bench/bench_batch.py --n 10 --n 1000 --held   # + what one process holds after each size

Why: issue 18's targets: >= 10 films/s for the real-film AP models on 2 cores, and 1,000 films must not hold more
memory than 10 (results are streamed to the CSV, films read ahead by a bounded DataLoader). Each run is a fresh
`spine-models predict` process (model loading included in its wall time); its peak memory is the largest sum of
proportional set size (PSS: shared pages split between the processes that share them) over the process and its
reader workers, sampled every 0.1 s; beside it what the run holds at its end (the median of the last fifth of the
samples): a peak is one film's transient and grows with the largest film in the folder. Both are sampled while films
are in flight, so they also depend on what the last samples caught; ``--held`` adds the clean check of whether
anything piles up with the number of films: one process runs predict on each folder size in turn and reports what
it holds after each run (``held_after_runs``). The steady rate,
(N_large - N_small) / (T_large - T_small), leaves the start-up (imports, model loading, workers) out; so does the
CPU time per film (user + system of the process and its readers, the same difference), which says what the run
would reach on cores nobody else uses: cores / CPU per film, an upper bound.
Films: ../shared/data/fraiwan-ap (largest first, cycled to reach N; a film seen again is read and run again: the
per-film memo holds only a few films), else phantom AP films made with `spine-models synth`. Largest first: a process
keeps the pages of the largest film it has read, so a 10-film folder of small films would hold less for that reason
alone; every folder starts with the same largest films.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

__all__ = ["main"]


def _largest_first(paths: list[Path]) -> list[Path]:
    """The films by pixel count, largest first (names break ties): every folder, the smallest too, starts with the
    sources' largest films, so a small and a large run meet the same largest film and what the large one holds
    beyond the small one is what piles up with the number of films, not a larger film's pages."""
    from PIL import Image

    def pixels(p: Path) -> int:
        with Image.open(p) as im:  # the header only
            return im.width * im.height

    return sorted(paths, key=lambda p: (-pixels(p), p.name))


def _sources() -> list[Path]:
    real = REPO.parent / "shared" / "data" / "fraiwan-ap"
    if real.is_dir():
        return _largest_first([p for p in real.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")])
    out = Path(tempfile.mkdtemp()) / "ap"
    subprocess.run([sys.executable, "-m", "spine_models.cli", "synth", "xray-ap", "--n", "20", "--out", str(out),
                    "--seed", "5", "--quiet"], check=True, capture_output=True, env=_env())
    return _largest_first(list((out / "images").glob("*.png")))


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", NO_ALBUMENTATIONS_UPDATE="1")


def _folder(sources: list[Path], n: int, root: Path) -> Path:
    """``n`` films (symlinks, the sources cycled) in a fresh folder."""
    d = root / f"films_{n}"
    d.mkdir()
    for i in range(n):
        src = sources[i % len(sources)]
        (d / f"{i:05d}{src.suffix.lower()}").symlink_to(src)
    return d


def _tree_rss(proc) -> tuple[int, int]:
    """(PSS, RSS) summed over the process and its children. PSS splits each page shared between the forked readers
    and the main process among them, so the sum is the tree's real footprint; RSS counts shared pages once per
    process (an upper bound)."""
    import psutil

    pss = rss = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                full = p.memory_full_info()
                pss += getattr(full, "pss", full.rss)
                rss += full.rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
    except psutil.NoSuchProcess:
        return 0, 0
    return pss, rss


def _predict_args(out: Path, models: list[str], workers: int | None, batch: int) -> list[str]:
    """``spine-models predict``'s options after the folder, the same for every run here (no --workers: predict's own
    default, data.film_loader.default_workers)."""
    return ["--out", str(out), "--quiet", *([] if workers is None else ["--workers", str(workers)]),
            "--batch-size", str(batch), "--device", "cpu", *[a for m in models for a in ("--model", m)]]


def run_once(folder: Path, n: int, models: list[str], workers: int | None, batch: int, out: Path) -> dict[str, float]:
    """One `spine-models predict` process over ``folder``: wall seconds, films/s and peak tree RSS (MB)."""
    import psutil

    cmd = [sys.executable, "-m", "spine_models.cli", "predict", str(folder), *_predict_args(out, models, workers, batch)]
    import resource

    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    popen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    proc = psutil.Process(popen.pid)
    peak = peak_rss = 0
    held: list[int] = []
    while popen.poll() is None:
        pss, rss = _tree_rss(proc)
        peak, peak_rss = max(peak, pss), max(peak_rss, rss)
        if pss:
            held.append(pss)
        time.sleep(0.1)
    # what the process holds at its end (median of the last fifth of the samples): the peak is one film's transient
    # (the largest film read), this says whether memory accumulates with the number of films
    late = sorted(held[-max(1, len(held) // 5):])[len(held[-max(1, len(held) // 5):]) // 2] if held else 0
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the process and its readers (joined, so counted)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    err = popen.stderr.read().decode("utf-8", "replace") if popen.stderr else ""
    rows = sum(1 for _ in out.open()) - 1 if out.is_file() else 0
    if popen.returncode not in (0, 2) or rows < n:
        raise SystemExit(f"predict failed (exit {popen.returncode}, {rows} rows of {n}):\n{err[-2000:]}")
    return {"n": n, "wall_s": wall, "cpu_s": cpu, "films_per_s": n / wall, "peak_pss_mb": peak / 2**20, "peak_rss_mb": peak_rss / 2**20,
            "late_pss_mb": late / 2**20, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=None,
                    help="model id (repeatable; default ap_scoliosis_mobilenet_v2_fraiwan)")
    ap.add_argument("--n", action="append", type=int, default=None, help="folder sizes (default 10 and 200)")
    ap.add_argument("--workers", type=int, default=None,
                    help="reader processes (default: predict's own choice, data.film_loader.default_workers)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--held", action="store_true",
                    help="also what one process holds after each folder size, run one after another (held_after_runs)")
    args = ap.parse_args(argv)
    models = args.model or ["ap_scoliosis_mobilenet_v2_fraiwan"]
    sizes = sorted(set(args.n or [10, 200]))
    sources = _sources()
    print(f"models {', '.join(models)}; {len(sources)} source films; workers {'predict default' if args.workers is None else args.workers}, batch {args.batch_size}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            folder = _folder(sources, n, Path(tmp))
            r = run_once(folder, n, models, args.workers, args.batch_size, Path(tmp) / f"results_{n}.csv")
            results.append(r)
            print(f"{n:6d} films: {r['wall_s']:7.1f} s wall, {r['cpu_s']:6.1f} s CPU, {r['films_per_s']:6.2f} films/s (start-up included), "
                  f"peak PSS {r['peak_pss_mb']:6.0f} MB (process + readers; RSS sum {r['peak_rss_mb']:.0f}), "
                  f"held at the end {r['late_pss_mb']:.0f} MB, {r['rows']} CSV rows", flush=True)
    if len(results) >= 2:
        a, b = results[0], results[-1]
        steady = (b["n"] - a["n"]) / max(b["wall_s"] - a["wall_s"], 1e-9)
        cpu_per_film = (b["cpu_s"] - a["cpu_s"]) / (b["n"] - a["n"])
        print(f"CPU per film {cpu_per_film * 1000:.0f} ms (process + readers, start-up excluded): "
              f"{(os.cpu_count() or 1) / cpu_per_film:.1f} films/s if all {os.cpu_count()} cores were free for this run")
        print(f"steady rate {steady:.2f} films/s ({a['n']} -> {b['n']} films); peak PSS {b['peak_pss_mb']:.0f} MB for "
              f"{b['n']} films vs {a['peak_pss_mb']:.0f} MB for {a['n']} ({b['peak_pss_mb'] / max(a['peak_pss_mb'], 1):.2f}x); "
              f"held at the end {b['late_pss_mb']:.0f} vs {a['late_pss_mb']:.0f} MB "
              f"({b['late_pss_mb'] / max(a['late_pss_mb'], 1):.2f}x)")
        if args.held:
            held = held_after_runs(sources, sizes, models, args.workers, args.batch_size, Path(tmp))
            print("held between runs, one process (RSS after each run, runs one after another): " + "; ".join(
                f"after {n} more films {mb:.0f} MB" for n, mb in held)
                + f" ({held[-1][1] / max(held[0][1], 1):.2f}x)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


_HELD_CHILD = """
import contextlib, gc, json, os, sys
import psutil
from spine_models.cli import main
from spine_models._memory import give_back_memory
proc = psutil.Process()
for folder, argv in json.loads(sys.argv[1]):
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        main(["predict", folder, *argv])
    gc.collect()
    give_back_memory()
    print(proc.memory_info().rss, flush=True)
"""


def held_after_runs(sources: list[Path], sizes: list[int], models: list[str], workers: int | None, batch: int,
                    root: Path) -> list[tuple[int, float]]:
    """[(films, RSS MB)]: one fresh process runs ``spine-models predict`` (``cli.main``) on a folder of each size in
    turn and reports its RSS after each run, freed pages given back as predict gives them after each batch. Why beside
    the runs above: their memory is sampled while films are in flight, so it depends on what the last samples caught;
    what a process holds after the films are done says whether anything piles up with the number of films."""
    import json

    held = root / "held"
    held.mkdir(parents=True, exist_ok=True)
    runs = [(str(_folder(sources, n, held)), _predict_args(held / f"r_{n}.csv", models, workers, batch)) for n in sizes]
    proc = subprocess.run([sys.executable, "-c", _HELD_CHILD, json.dumps(runs)], env=_env(), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"held-memory run failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    rss = [int(x) for x in proc.stdout.split()]
    return [(n, b / 2**20) for n, b in zip(sizes, rss)]


if __name__ == "__main__":
    raise SystemExit(main())
