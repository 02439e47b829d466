"""Per-task engines. Each of ``classify``, ``detect``, ``segment`` exposes the same three things:

- ``train(cfg: dict, out_dir: Path, *, callbacks=None, quiet=False) -> Path`` — writes ``last.pt``
  (full checkpoint for resume), ``model.pt`` (shipped format, see ``models/cards.py``),
  ``history.json`` and ``card.json`` into ``out_dir``; returns the card path.
- ``Predictor(card: ModelCard, device=None).predict(image) -> Result`` — ``image`` is a
  ``spine_models.io`` Radiograph or a 2-D float array in [0, 1]; boxes/masks at original resolution.
- ``evaluate(card, dataset: SpineDataset, *, quiet=False, n_resamples=1000) -> dict`` —
  ``{"metrics": <SPEC task metrics>, "predictions": [per-sample dicts]}``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from spine_models.errors import ConfigError

__all__ = ["task_module", "TASKS"]

TASKS = ("classify", "detect", "segment")


def task_module(task: str) -> ModuleType:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return importlib.import_module(f"spine_models.engine.{task}")
