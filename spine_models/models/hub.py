"""The model hub's card side: any model reference -> its ModelCard, and the key a loaded model is cached by.

Why one resolver: the CLI ``predict`` and ``evaluate``, the app and the composites all start from "this
model" given in a different form (a shipped id, a run folder, a card ``.json``, a ``model.pt``); one
function means a moved run folder or a shipped id behave the same everywhere. It lives below the engine
(no inference here): the engine builds Predictors from the card this returns and caches them by
:func:`predictor_key`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from spine_models.errors import SpineInputError, WeightsNotAvailableError
from spine_models.models.cards import ModelCard, find_card

__all__ = ["resolve_card", "predictor_key", "ModelRef"]

ModelRef = ModelCard | str | Path


def _card_from_file(path: Path) -> ModelCard:
    """A card file; a run or weights folder that moved finds its weight file next to the card."""
    try:
        card = ModelCard.from_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise SpineInputError(f"not a model card ({exc.__class__.__name__}); pass a card.json written by "
                              "`spine-models train` or a shipped <id>.json", path) from None
    if not card.weights_path().exists():
        for cand in (path.parent / Path(card.weights).name, path.parent / "model.pt", path.with_suffix(".pt")):
            if cand.is_file():
                return dataclasses.replace(card, weights=str(cand.resolve()))
    return card


def resolve_card(model: ModelRef) -> ModelCard:
    """A card from: a ModelCard (as it is); a run folder (its ``card.json``); a ``card.json``/``<id>.json``;
    a weight file with its card beside it (``card.json`` or the same name ``.json``; a weight file other
    than the card's own is used, with the sha256 check off); a shipped id. Bad references raise a
    SpineInputError naming the reference and what to pass instead."""
    if isinstance(model, ModelCard):
        return model
    p = Path(model)
    if p.is_dir():
        if (p / "card.json").is_file():
            return _card_from_file(p / "card.json")
        raise WeightsNotAvailableError("run folder has no card.json; pass a folder written by `spine-models train`", p)
    if p.is_file():
        if p.suffix.lower() == ".json":
            return _card_from_file(p)
        for cand in (p.with_suffix(".json"), p.parent / "card.json"):
            if cand.is_file():
                card = _card_from_file(cand)
                if card.weights_path().resolve() == p.resolve():
                    return card
                return dataclasses.replace(card, weights=str(p.resolve()), sha256="")
        raise WeightsNotAvailableError(f"no model card next to this weight file (card.json or {p.with_suffix('.json').name})", p)
    if any(ch in str(model) for ch in "/\\") or p.suffix in (".pt", ".json"):
        raise SpineInputError("no such model file or folder; pass a shipped model id (see `spine-models models`) "
                              "or a run folder", p)
    return find_card(str(model))


def predictor_key(card: ModelCard) -> tuple[str, str, str]:
    """(id, weights sha256, weight file): what a loaded model is cached by. The id is part of it because a
    Predictor answers with its card's id, classes and thresholds; the sha256 and the path make a
    retrained or replaced weight file a new entry (a weight file given without its card's hash has "")."""
    return card.id, card.sha256 or "", str(card.weights_path())
