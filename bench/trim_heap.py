"""What one analysis leaves in the app server's memory: ``python bench/trim_heap.py [--films 12]``. Prints figures.

Why: issue 17 item 7 -- 20 sessions within 2 GB. Per film it runs the models an uploaded film runs by default (as
the Analyse page: view model, then the real-validated models) and prints (a) what a session keeps for it: the result
arrays in ``st.session_state`` plus the PNGs the page shows (film, heat maps, overlays; Streamlit keeps them per
session), and (b) what glibc's ``malloc_trim(0)`` (``ui.models.give_back_memory``, run when an analysis leaves its
slot) hands back to the system after the analysis, and how long it takes. Films: the load test's own
(``bench/load_app.py``: ../shared/data/fraiwan-ap), else phantom films. It also prints what each film's analysis
stores in the film memo (``engine.film_memo``, cleared before each film). Run it with ``MALLOC_ARENA_MAX=2`` as the
server runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--films", type=int, default=12, help="films to analyse (default 12)")
    args = ap.parse_args(argv)
    import psutil

    from bench.load_app import _films
    from spine_models._env import configure_offline
    from spine_models.engine.film_memo import _arrays, film_memo
    from spine_models.engine.predictor import card_fits, infer_view, shared_predictor
    from spine_models.io import read_image
    from spine_models.models.cards import list_cards
    from ui import render
    from ui.analysis import default_models
    from ui.models import give_back_memory

    configure_offline()
    proc = psutil.Process()
    cards = list_cards()
    kept, freed, took = [], [], []
    with tempfile.TemporaryDirectory() as d:
        films = _films(args.films, Path(d))
        for path in films:
            film_memo.clear()  # so what the memo holds afterwards is this film's analysis alone
            rad = read_image(path)
            view, _note = infer_view(rad, cards, get=shared_predictor)
            rad = dataclasses.replace(rad, view=view) if view and view != rad.view else rad
            fitting = [c for c in cards if card_fits(c, rad) and not c.arch.startswith("twoview")]
            ids, _ = default_models(fitting, uploaded=True)
            results = [shared_predictor(c).predict(rad, cam=True) for c in fitting if c.id in ids]
            shown = [render.png_bytes(rad.pixels)] + [render.png_bytes(r.plot(rad.pixels)) for r in results]
            kept.append((sum(a.nbytes for r in results for a in _arrays(r)) + sum(map(len, shown))) / 2**20)
            memo = film_memo._bytes / 2**20  # what this film's analysis stored in the film memo
            before = proc.memory_info().rss
            t0 = time.perf_counter()
            trimmed = give_back_memory()
            took.append((time.perf_counter() - t0) * 1000)
            freed.append((before - proc.memory_info().rss) / 2**20)
            print(f"{rad.width}x{rad.height}: session keeps {kept[-1]:.1f} MB, film memo {memo:.1f} MB; trim {'gave back' if trimmed else 'unavailable,'} "
                  f"{freed[-1]:.0f} MB in {took[-1]:.1f} ms; RSS {proc.memory_info().rss / 2**20:.0f} MB", flush=True)
    print(f"{len(films)} films: a session keeps median {statistics.median(kept):.1f} MB (mean {statistics.mean(kept):.1f}, "
          f"max {max(kept):.1f}); malloc_trim gave back median {statistics.median(freed):.0f} MB "
          f"(range {min(freed):.0f}-{max(freed):.0f}) in median {statistics.median(took):.1f} ms (max {max(took):.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
