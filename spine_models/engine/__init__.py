"""Per-task engines. Each of ``classify``, ``detect``, ``segment`` exposes the same three things:

- ``train(cfg: dict, out_dir: Path, *, callbacks=None, quiet=False) -> Path`` — runs the task's Trainer (a
  subclass of ``engine.trainer.BaseTrainer`` around the one ``fit`` loop: ``ClassifyTrainer``, ``SegmentTrainer``,
  ``DetectTrainer``, ``discs.DiscGraderTrainer``, ``composite.CompositeTrainer``), which writes ``last.pt`` (full
  checkpoint for resume), ``model.pt`` (shipped format, see ``models/cards.py``), ``history.json`` (a list of
  per-epoch dicts, every task), ``summary.json`` and ``card.json`` (``trainer.new_card`` / ``write_card``) into
  ``out_dir``; returns the card path.
- ``Predictor(card: ModelCard, device=None).predict(image, **options) -> Result`` — a subclass of
  ``engine.base.BasePredictor`` (read -> preprocess -> infer -> postprocess; options declared per task);
  ``image`` is a ``spine_models.io`` Radiograph, a path or a 2-D float array in [0, 1]; boxes/masks at
  original resolution. ``predictor_class(card)`` picks the class (composites: ``composite.CompositePredictor``).
- ``evaluate(card, dataset: SpineDataset, *, quiet=False, n_resamples=1000) -> dict`` —
  ``{"metrics": <SPEC task metrics>, "predictions": [per-sample dicts]}``.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from spine_models.errors import ConfigError

__all__ = ["task_module", "card_engine", "predictor_class", "trains_distributed", "TASKS", "ARCH_ENGINES"]

TASKS = ("classify", "detect", "segment")
# architectures with an engine module of their own (trained and run there; their cards keep a SPEC task)
ARCH_ENGINES = {"disc_grading": "spine_models.engine.discs", "vertebra_corners": "spine_models.engine.landmarks",
                "vertebra_levels": "spine_models.engine.levels"}


def task_module(task: str, arch: str | None = None) -> ModuleType:
    """The engine module that trains ``task``; an architecture listed in ARCH_ENGINES gets its own."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    if arch in ARCH_ENGINES:
        return importlib.import_module(ARCH_ENGINES[arch])
    return importlib.import_module(f"spine_models.engine.{task}")


def card_engine(card: Any) -> ModuleType:
    """The engine module whose ``Predictor`` and ``evaluate`` serve a card: disc models (the ``disc_grading``
    composite and any segment model with a ``disc`` structure) answer with disc boxes, levels and grades; the
    ``vertebra_corners`` composite (engine.landmarks) with the AP U-Net's bodies read again at film resolution."""
    if card.arch in ARCH_ENGINES:
        return importlib.import_module(ARCH_ENGINES[card.arch])
    if card.task == "segment" and "disc" in (card.structures or []):
        return importlib.import_module("spine_models.engine.discs")
    return task_module(card.task)


def predictor_class(card: Any) -> type:
    """The Predictor class that runs a card: ``composite.CompositePredictor`` for a composite classifier
    (``measure_cobb``, ``measure_slip``, ``view_routed``), else its engine module's ``Predictor``
    (:func:`card_engine`). Why a factory: a class that returned another class's object from ``__new__`` hid
    which code ran a model."""
    composite = importlib.import_module("spine_models.engine.composite")
    if card.task == "classify" and composite.is_composite(card.arch):
        return composite.CompositePredictor
    return card_engine(card).Predictor


def trains_distributed(task: str, arch: str | None) -> bool:
    """Whether ``task``/``arch`` trains under torchrun (its Trainer's ``distributed``: the classify and segment
    networks); detectors, composites and the engines of their own (disc grader, corner model) train in one
    process. Asked before launching a group, so a refusal is one line instead of N failed ranks."""
    if task not in ("classify", "segment") or arch in ARCH_ENGINES:
        return False
    if task == "classify":
        return not importlib.import_module("spine_models.engine.composite").is_composite(arch or "")
    return True
