"""The Predictor contract every task implements: built from a card, ``predict(image, **options) -> Result``.

Why one base (Ultralytics' ``BasePredictor`` is the model): the CLI, the app, ``evaluate`` and the composites
call every model the same way, so the things each task used to do its own way live here once — the device,
the options a call may pass (one table, ``TASK_OPTIONS``; an option another task takes is ignored, so the app
calls every model with ``cam=``; a typo raises naming the closest option), reading the film, the timing and
the per-film memo (``engine.film_memo``: a network runs once per film however many models read it). A task
overrides only what differs: ``preprocess`` (film -> model input), ``infer`` (the network) and
``postprocess`` (raw output -> the task's typed Result at the film's own resolution).

Batching (``predict_batch``, for ``spine-models predict DIR`` and the Compare page): a task whose network takes a
stacked tensor overrides ``forward`` (a batch of input rows -> output rows) and ``collect`` (one input's output
rows -> its raw output, e.g. TTA averaging) instead of ``infer``; the base then runs one forward per batch of
films. Other tasks (composites, two-view inputs, detectors) keep ``infer`` and run film by film, same results.
"""
from __future__ import annotations

import difflib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Hashable, Mapping, Sequence

import numpy as np

from spine_models.errors import ConfigError
from spine_models.models.cards import ModelCard

__all__ = ["BasePredictor", "Film", "TASK_OPTIONS", "ALL_OPTIONS", "resolve_device", "predict_options", "card_digest"]


@dataclass
class Film:
    """One decoded input: grayscale pixels in [0, 1] (None when a task reads something else, e.g. two views),
    its de-identified name, pixel spacing (row, col) in mm or None, and task-specific extras."""

    pixels: np.ndarray | None
    name: str = ""
    spacing: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_device(device: Any = None) -> Any:
    """A ``torch.device``: the one given (a device, or "cpu" / "cuda" / "cuda:1"), else CUDA when present, else CPU."""
    import torch

    from spine_models._env import get_device

    return device if isinstance(device, torch.device) else get_device(None if device is None else str(device))


# The one table of what ``predict`` takes per task (name -> default). Here, not in each task module, so that every
# option is known before any task is imported: the app calls a segmenter with ``cam=`` before a classifier loads.
TASK_OPTIONS: dict[str, dict[str, Any]] = {
    "classify": {"cam": True, "shap": False, "shap_evals": 300, "shap_progress": None},
    "detect": {},
    "segment": {"pixel_spacing_mm": None, "measure": True, "threshold": None},
    "discs": {"cam": False},  # disc locators and graders (engine.discs): Grad-CAM per disc crop only when asked
}
ALL_OPTIONS: frozenset[str] = frozenset(name for opts in TASK_OPTIONS.values() for name in opts)


_LOCK_GUARD = threading.Lock()  # makes a predictor's run lock once when __init__ did not


class BasePredictor:
    """A model ready to run on films; subclasses set ``task`` and ``OPTIONS`` and override the stages.

    ``predict(image, **options)``: ``image`` is a ``spine_models.io`` Radiograph, a file path or a 2-D array
    in [0, 1] (tasks may take more, e.g. two views); ``options`` are checked against ``OPTIONS`` (name ->
    default) and filled with the defaults."""

    task: ClassVar[str] = ""
    OPTIONS: ClassVar[Mapping[str, Any]] = {}  # a task's row of TASK_OPTIONS
    memo: ClassVar[bool] = True  # results kept per film in engine.film_memo (off for models that only combine others)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        extra = sorted(set(cls.OPTIONS) - ALL_OPTIONS)
        if extra:
            raise TypeError(f"{cls.__name__} declares predict options {extra} that engine.base.TASK_OPTIONS lacks; add them there")

    def __init__(self, card: ModelCard, device: Any = None) -> None:
        if self.task and card.task != self.task:
            raise ConfigError(f"model {card.id!r} is a {card.task} model; the {self.task} Predictor needs a {self.task} card")
        self.card = card
        self.device = resolve_device(device)
        # one call at a time runs this predictor's networks: the app shares one predictor between sessions and its
        # warm-up thread, and Grad-CAM hooks the shared network, so another call's forward would land in its hooks
        self._run_lock = threading.RLock()

    # ------------------------------------------------------------------ the call
    def run_lock(self) -> Any:
        """The lock one call holds while this predictor's networks run (made here for a predictor built without
        ``__init__``, e.g. a test's stand-in)."""
        lock = self.__dict__.get("_run_lock")
        if lock is None:
            with _LOCK_GUARD:
                lock = self.__dict__.setdefault("_run_lock", threading.RLock())
        return lock

    def options(self, **options: Any) -> dict[str, Any]:
        """``OPTIONS`` with the given values; an option of another task is ignored, an unknown one raises."""
        return predict_options(type(self), options)

    def predict_batch(self, images: Sequence[Any], *, batch_size: int = 16, **options: Any) -> list[Any]:
        """``[predict(image, **options) for image in images]``, with the network run on stacked batches of up to
        ``batch_size`` input rows when the task defines ``forward`` (same results, fewer forward calls).

        ``elapsed_ms`` of each result is its share of the batch (the batch's time / its films)."""
        from spine_models.engine.film_memo import film_memo

        opts = self.options(**options)
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: use 1 or more")
        if not self.batches:
            return [self.predict(image, **opts) for image in images]
        t0 = time.perf_counter()
        out: list[Any] = [None] * len(images)
        todo: list[tuple[int, Any, Any, Any]] = []  # (position, film, memo key, model input)
        for i, image in enumerate(images):
            film = self.read(image, **opts)
            key = self.memo_key(film, opts) if self.memo else None
            hit = film_memo.get(key) if key is not None else None
            if hit is not None:
                out[i] = hit
                continue
            todo.append((i, film, key, self.preprocess(film, **opts)))
        with self.run_lock():
            raws = self.infer_many([x for *_, x in todo], batch_size=batch_size, **opts)
            done = [self.postprocess(raw, film, x, **opts) for (_, film, _, x), raw in zip(todo, raws)]
        for (i, _, key, _), res in zip(todo, done):
            out[i] = res
            if key is not None:
                film_memo.put(key, res)
        share = (time.perf_counter() - t0) * 1000 / max(1, len(todo))
        for i, *_ in todo:
            out[i].elapsed_ms = share
        return out

    @property
    def batches(self) -> bool:
        """True when the task runs its network on stacked batches (it overrides ``forward``)."""
        return type(self).forward is not BasePredictor.forward

    def infer_many(self, xs: Sequence[Any], *, batch_size: int = 16, **options: Any) -> list[Any]:
        """Raw outputs of several model inputs: tensors of one shape go through ``forward`` in stacked chunks of up to
        ``batch_size`` rows, each input's rows then through ``collect``; anything else one ``infer`` at a time."""
        import torch

        if not xs:
            return []
        if not (self.batches and all(isinstance(x, torch.Tensor) for x in xs)
                and len({tuple(x.shape[1:]) for x in xs}) == 1):
            return [self.infer(x, **options) for x in xs]
        out: list[Any] = []
        chunk: list[Any] = []

        def flush() -> None:
            rows = self.forward(torch.cat(chunk), **options)
            start = 0
            for x in chunk:
                out.append(self.collect(rows[start:start + x.shape[0]], **options))
                start += x.shape[0]
            chunk.clear()

        for x in xs:
            if chunk and sum(c.shape[0] for c in chunk) + x.shape[0] > batch_size:
                flush()
            chunk.append(x)
        flush()
        return out

    def predict(self, image: Any, **options: Any) -> Any:
        """read -> (per-film memo) -> preprocess -> infer -> postprocess; ``elapsed_ms`` covers all of it."""
        from spine_models.engine.film_memo import film_memo

        opts = self.options(**options)
        t0 = time.perf_counter()
        film = self.read(image, **opts)
        key = self.memo_key(film, opts) if self.memo else None
        if key is not None:
            hit = film_memo.get(key)
            if hit is not None:
                return hit
        x = self.preprocess(film, **opts)
        with self.run_lock():
            raw = self.infer(x, **opts)
            res = self.postprocess(raw, film, x, **opts)
        res.elapsed_ms = (time.perf_counter() - t0) * 1000
        if key is not None:
            film_memo.put(key, res)
        return res

    # ------------------------------------------------------------------ stages a task overrides
    def read(self, image: Any, **options: Any) -> Any:
        """The decoded film (``io.pixels.as_pixels``: RGB averaged, values outside [0, 1] rescaled)."""
        from spine_models.io.pixels import as_pixels

        pixels, name, spacing = as_pixels(image)
        return Film(pixels, name, spacing)

    def preprocess(self, film: Any, **options: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define preprocess (film -> model input)")

    def infer(self, x: Any, **options: Any) -> Any:
        """The network on one model input; a task that defines ``forward`` gets ``collect(forward(x))``."""
        if self.batches:
            return self.collect(self.forward(x, **options), **options)
        raise NotImplementedError(f"{type(self).__name__} must define infer (model input -> raw output) or forward + collect")

    def forward(self, xb: Any, **options: Any) -> Any:
        """The network on a stacked batch of input rows -> its output rows (a task that batches overrides it)."""
        raise NotImplementedError(f"{type(self).__name__} does not batch; it defines infer")

    def collect(self, rows: Any, **options: Any) -> Any:
        """One input's output rows -> its raw output (default: the first row)."""
        return rows[0]

    def postprocess(self, raw: Any, film: Any, x: Any, **options: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define postprocess (raw output -> Result)")

    # ------------------------------------------------------------------ per-film memo
    def memo_settings(self) -> tuple:
        """What besides the weights decides a result (e.g. a segmenter's TTA or mask threshold)."""
        return ()

    def memo_key(self, film: Any, options: Mapping[str, Any], *parts: Hashable) -> tuple | None:
        """The memo key of a call, or None when it cannot be kept (no single film, unhashable options)."""
        from spine_models.engine.film_memo import film_memo
        from spine_models.models.hub import predictor_key

        if not isinstance(film, Film) or film.pixels is None:
            return None
        opts = tuple(sorted(options.items()))
        try:
            hash(opts)
        except TypeError:
            return None
        return film_memo.key((predictor_key(self.card), card_digest(self.card), self.memo_settings()), film.pixels,
                             film.name, film.spacing, opts, *parts)


def card_digest(card: ModelCard) -> str:
    """sha256 of the whole card: a card edited in memory (another input size, threshold, crop) with the same id and
    weights is another model for the memo."""
    import dataclasses
    import hashlib
    import json

    text = json.dumps(dataclasses.asdict(card), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def predict_options(cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """A task's options filled from ``options``: its own are taken, other tasks' ignored (one call shape for every
    model), unknown names raise with the closest valid one."""
    own = dict(cls.OPTIONS)
    for name, value in options.items():
        if name in own:
            own[name] = value
        elif name not in ALL_OPTIONS:
            valid = sorted(ALL_OPTIONS)
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"predict option {name!r} is not known; {hint}valid options: {', '.join(valid)}")
    return own
