"""Training callbacks: how the CLI's progress bar, the app's job runner and tests watch a run.

Every task trainer calls these hooks; none of them may change training results.
"""
from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["Callback", "CallbackList", "StopTraining", "TimeBudget", "with_time_budget", "as_callback_list"]


class StopTraining(Exception):
    """Raised by a trainer when a callback asked to stop (e.g. the job was cancelled)."""


class Callback:
    def on_train_start(self, cfg: dict[str, Any]) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int) -> None: ...
    def on_batch_end(self, step: int, steps: int, loss: float) -> None: ...
    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None: ...
    def on_train_end(self, summary: dict[str, Any]) -> None: ...
    def on_log(self, message: str) -> None: ...
    def should_stop(self) -> bool:
        return False

    def end_epoch(self) -> bool:
        """True ends the current epoch after this batch, and the epoch still counts (validated, saved);
        ``should_stop`` instead throws the unfinished epoch away."""
        return False


class CallbackList(Callback):
    """Fan a hook out to several callbacks; ``should_stop`` if any says so."""

    def __init__(self, callbacks: list[Callback] | None = None) -> None:
        self.callbacks = list(callbacks or [])

    def on_train_start(self, cfg):
        for c in self.callbacks:
            c.on_train_start(cfg)

    def on_epoch_start(self, epoch, epochs):
        for c in self.callbacks:
            c.on_epoch_start(epoch, epochs)

    def on_batch_end(self, step, steps, loss):
        for c in self.callbacks:
            c.on_batch_end(step, steps, loss)

    def on_epoch_end(self, epoch, metrics):
        for c in self.callbacks:
            c.on_epoch_end(epoch, metrics)

    def on_train_end(self, summary):
        for c in self.callbacks:
            c.on_train_end(summary)

    def on_log(self, message):
        for c in self.callbacks:
            c.on_log(message)

    def should_stop(self) -> bool:
        return any(c.should_stop() for c in self.callbacks)

    def end_epoch(self) -> bool:
        return any(c.end_epoch() for c in self.callbacks)


def as_callback_list(callbacks: "Callback | list[Callback] | tuple[Callback, ...] | None") -> CallbackList:
    """One :class:`CallbackList` from what a task's ``train`` was given (a list, one callback or nothing)."""
    if isinstance(callbacks, CallbackList):
        return callbacks
    if isinstance(callbacks, (list, tuple)):
        return CallbackList(list(callbacks))
    return CallbackList([callbacks] if callbacks else [])


class TimeBudget(Callback):
    """Stop after the epoch whose end leaves too little time for another (``max_minutes``; 0 = off).

    Why: training here shares a 2-core CPU; a wall-clock budget keeps runs inside the issue's
    time limits whatever the load, and never cuts an epoch in half (the flag is raised at epoch end).
    The next epoch is expected to take as long as the longest one so far, not counting the first once
    others exist: the first decodes and caches every film (and places crops with a U-Net), 2-4 times a
    later epoch, and counting it stopped a 12-minute run after 2 of its epochs at 8.8 minutes."""

    def __init__(self, minutes: float, say: Any = None, *, cut_epochs: bool = False) -> None:
        self.cut_epochs = cut_epochs  # also end an epoch early once the budget is spent (step-annealed schedules)
        self.say = say or (lambda msg: None)  # a plain printer: never the CallbackList holding this budget
        self.budget = float(minutes) * 60.0
        self.t0 = time.perf_counter()
        self.epoch_t0 = self.t0
        self.durations: list[float] = []
        self.stop = False

    @property
    def longest(self) -> float:
        later = self.durations[1:]
        return max(later) if later else (self.durations[0] if self.durations else 0.0)

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.epoch_t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        now = time.perf_counter()
        self.durations.append(now - self.epoch_t0)
        # with cut_epochs the next epoch ends at the budget anyway: stop only once it is spent (lr annealed to 0 there)
        ahead = 0.0 if self.cut_epochs else self.longest
        if now - self.t0 + ahead > self.budget:
            self.stop = True
            self.say(f"time budget: stopping after epoch {epoch + 1} ({(now - self.t0) / 60:.1f} of "
                        f"{self.budget / 60:.1f} min used; an epoch takes {self.longest / 60:.1f} min)")

    def should_stop(self) -> bool:
        return self.stop

    def end_epoch(self) -> bool:
        """With ``cut_epochs``: the budget is spent, so the epoch ends after this batch. Why: a schedule annealed
        by the budget (Faster R-CNN's warmup + cosine) has reached lr 0 by then; the rest of the epoch learns nothing."""
        return self.cut_epochs and time.perf_counter() - self.t0 >= self.budget


def with_time_budget(cb: CallbackList, max_minutes: Any, quiet: bool, *, cut_epochs: bool = False) -> CallbackList:
    """``cb`` plus a :class:`TimeBudget` when ``max_minutes`` > 0 (the tasks' ``max_minutes`` setting)."""
    if not float(max_minutes or 0) > 0:
        return cb
    budget = TimeBudget(float(max_minutes),  # reports through the callbacks given, not through a list that holds it
                        say=lambda msg: (cb.on_log(msg), None if quiet else print(msg, file=sys.stderr)),
                        cut_epochs=cut_epochs)
    return CallbackList([*cb.callbacks, budget])
