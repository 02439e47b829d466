"""Progress of long loops: a tqdm bar on stderr that ``--quiet`` (or a non-interactive caller) can switch off, and
the same counts delivered to a listener (the Compare page's bar with films/s) while one is installed with
:func:`listen`."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

__all__ = ["progress", "listen", "Tick"]

T = TypeVar("T")


@dataclass(frozen=True)
class Tick:
    """One step of a loop: ``done`` of ``total`` items (None: unknown) after ``seconds``; ``desc`` names the loop."""

    desc: str
    done: int
    total: int | None
    seconds: float

    @property
    def rate(self) -> float:
        """Items per second so far (0 before the first item)."""
        return self.done / self.seconds if self.seconds > 0 and self.done else 0.0


_LISTENER: ContextVar[Callable[[Tick], None] | None] = ContextVar("spine_models_progress_listener", default=None)


@contextmanager
def listen(callback: Callable[[Tick], None]) -> Iterator[None]:
    """Deliver every :func:`progress` step inside this block (this thread/context only) to ``callback``. Why: the
    engines' loops already report through :func:`progress`; a page shows them without the engines knowing of it."""
    token = _LISTENER.set(callback)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def progress(it: Iterable[T], *, total: int | None = None, desc: str = "", quiet: bool = False,
             count: Callable[[T], int] | None = None) -> Iterator[T]:
    """Wrap an iterable in a tqdm bar on stderr unless ``quiet``. ``count``: how many items one element holds (a
    batch of films), so ``total`` and the listener's counts are in items, not steps."""
    listener = _LISTENER.get()
    if not quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
    else:
        bar = None
    t0, done = time.perf_counter(), 0
    try:
        for el in it:
            yield el
            step = int(count(el)) if count is not None else 1
            done += step
            if bar is not None:
                bar.update(step)
            if listener is not None:
                listener(Tick(desc, done, total, time.perf_counter() - t0))
    finally:
        if bar is not None:
            bar.close()
