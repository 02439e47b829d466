"""Engine loop progress reaches a listener (the Compare page's films/s) in items, not batches, only while listened."""
from __future__ import annotations

import time

import pytest
import torch

from spine_models._progress import Tick, listen, progress


def test_a_listener_gets_item_counts_of_batches_and_only_inside_its_block() -> None:
    ticks: list[Tick] = []
    batches = [[1, 2, 3], [4, 5, 6], [7]]
    with listen(ticks.append):
        assert [len(b) for b in progress(batches, total=7, desc="evaluate", quiet=True, count=len)] == [3, 3, 1]
    list(progress(batches, total=7, quiet=True, count=len))  # no listener any more
    assert [(t.desc, t.done, t.total) for t in ticks] == [("evaluate", 3, 7), ("evaluate", 6, 7), ("evaluate", 7, 7)]
    assert ticks[-1].rate > 0 and ticks[-1].seconds >= ticks[0].seconds


def test_predict_loader_reports_samples() -> None:
    from spine_models.engine.trainer import predict_loader

    ds = torch.utils.data.TensorDataset(torch.zeros(10, 3), torch.zeros(10))
    ticks: list[Tick] = []
    with listen(ticks.append):
        out, y = predict_loader(torch.nn.Linear(3, 2), torch.utils.data.DataLoader(ds, batch_size=4), torch.device("cpu"))
    assert out.shape == (10, 2) and [(t.done, t.total) for t in ticks] == [(4, 10), (8, 10), (10, 10)]


def test_the_compare_bar_reads_films_and_films_per_second() -> None:
    from ui.render import evaluation_progress

    frac, text = evaluation_progress(Tick("evaluate", 40, 160, 4.0), "m2", 1, 2)
    assert frac == pytest.approx(0.625) and text == "Evaluating m2 (2/2) · evaluate 40/160 films · 10.0 films/s"
    assert evaluation_progress(Tick("measure", 0, None, 0.0), "m1", 0, 2) == (0.0, "Evaluating m1 (1/2) · measure 0 films")


def test_evaluate_watched_shows_progress_on_the_callers_thread_and_raises_the_workers_error(monkeypatch) -> None:
    import threading

    from ui import analysis

    def slow(n: int, fail: bool) -> dict:
        for _ in progress(range(n), total=n, desc="evaluate", quiet=True):
            time.sleep(0.05)
        if fail:
            raise ValueError("bad data")
        return {"n": n}

    monkeypatch.setattr(analysis, "evaluate_cached", slow)
    seen: list[tuple[int, bool]] = []
    report = analysis.evaluate_watched(lambda t: seen.append((t.done, threading.current_thread() is threading.main_thread())),
                                       8, False, poll_s=0.02)
    assert report == {"n": 8} and seen and all(main for _, main in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] <= 8
    with pytest.raises(ValueError, match="bad data"):
        analysis.evaluate_watched(lambda t: None, 2, True, poll_s=0.02)
