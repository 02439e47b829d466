"""Per-film memo of model results: a network runs once per film however many models read its output.

Why: on one AP film the app's full analysis asks the AP U-Net three times — its own section, the Cobb-measure
classifier and the routed three-class model's AP expert (both read its masks) — about 360 ms each on 2 cores.
Each Predictor looks its answer up here first, keyed by what decides it: the model (``models.hub.predictor_key``
and the predictor's own settings), the film's pixels (sha256 of their bytes, so a copy of the same film hits and
an edited one misses), its name and pixel spacing, and the call's options. A hit returns a copy of the stored
result whose dicts and lists are fresh and whose arrays (masks, maps) are shared, so callers cannot change each
other's numbers through the containers. Bounded by entries and bytes: a few films' worth, least recently used
dropped first. The stored ``elapsed_ms`` is the time the model took on the film when it ran.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import threading
from collections import OrderedDict
from typing import Any, Hashable, Iterator

import numpy as np

__all__ = ["FilmMemo", "film_memo", "film_digest"]


def film_digest(pixels: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and bytes (a 2614x1141 float32 film: ~8 ms)."""
    a = np.ascontiguousarray(pixels)
    h = hashlib.sha256(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _arrays(obj: Any, depth: int = 0) -> Iterator[np.ndarray]:
    """Every ndarray inside a result (dataclass fields, dicts, lists, tuples)."""
    if depth > 6:
        return
    if isinstance(obj, np.ndarray):
        yield obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _arrays(getattr(obj, f.name), depth + 1)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _arrays(v, depth + 1)


def _copy(result: Any) -> Any:
    """A deep copy that shares the arrays (the large, never-edited part) with the stored result."""
    return copy.deepcopy(result, {id(a): a for a in _arrays(result)})


def _nbytes(result: Any) -> int:
    return sum(int(a.nbytes) for a in _arrays(result))


class FilmMemo:
    """A small thread-safe LRU of results keyed per (model, film, options); see the module doc."""

    # 128 MB: one analysis of the load test's largest real film (1934x3215) stores 59 MB here (bench/trim_heap.py's
    # films, counted with FilmMemo._bytes), so the memo still serves every model of the film being analysed; 256 MB
    # held the results of films whose sessions had ended, which the app server's memory could not spare
    def __init__(self, max_entries: int = 24, max_bytes: int = 128 * 2 ** 20) -> None:
        self.max_entries, self.max_bytes = int(max_entries), int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(model: Hashable, pixels: np.ndarray, *parts: Hashable) -> tuple:
        """The memo key of one call: the model's key, the film's digest and whatever else decides the result."""
        return (model, film_digest(pixels), *parts)

    def get(self, key: Hashable) -> Any | None:
        """A copy of the stored result, or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
        return _copy(item[0])

    def put(self, key: Hashable, result: Any) -> None:
        """Store a copy of ``result`` (the caller keeps its own); results larger than the byte budget are not kept."""
        size = _nbytes(result)
        if size > self.max_bytes or self.max_entries <= 0:
            return
        stored = _copy(result)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (stored, size)
            self._bytes += size
            while self._items and (len(self._items) > self.max_entries or self._bytes > self.max_bytes):
                self._bytes -= self._items.popitem(last=False)[1][1]

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Nothing kept or found inside the block (benchmarks time the model, not the memo)."""
        entries = self.max_entries
        self.max_entries = 0
        self.clear()
        try:
            yield
        finally:
            self.max_entries = entries

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)


film_memo = FilmMemo()  # the process's one memo: the app's sections, the CLI and composites share it
