"""Load any trained model by card, shipped id or path, and run the models that fit a file.

Why here: the CLI ``predict``, the app and ``evaluate`` all start from "this model" given in a different
form; one resolver means a moved run folder or a shipped id behave the same everywhere.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Sequence

from spine_models.data.records import VIEW_CLASSES
from spine_models.errors import WeightsNotAvailableError
from spine_models.models.cards import ModelCard, find_card

__all__ = ["resolve_card", "load_predictor", "shared_predictor", "card_fits", "is_view_gate", "infer_view", "VIEW_SURE",
           "predict_file"]

VIEW_SURE = 0.9  # below this a film stays "view unknown" and every X-ray model runs on it


def _card_from_file(path: Path) -> ModelCard:
    card = ModelCard.from_json(path)
    if not card.weights_path().exists():
        # a run folder or a weights folder that moved: the weight file sits next to the card
        for cand in (path.parent / Path(card.weights).name, path.parent / "model.pt", path.with_suffix(".pt")):
            if cand.is_file():
                return dataclasses.replace(card, weights=str(cand.resolve()))
    return card


def resolve_card(model: ModelCard | str | Path) -> ModelCard:
    """A card from: a ModelCard; a run folder; a ``card.json``/``<id>.json``; a ``model.pt`` with its card beside it; a shipped id."""
    if isinstance(model, ModelCard):
        return model
    p = Path(model)
    if p.is_dir():
        if (p / "card.json").is_file():
            return _card_from_file(p / "card.json")
        raise WeightsNotAvailableError(f"{p}: no card.json in this folder; pass a run folder written by `spine-models train`")
    if p.is_file():
        if p.suffix == ".json":
            return _card_from_file(p)
        for cand in (p.with_suffix(".json"), p.parent / "card.json"):
            if cand.is_file():
                card = _card_from_file(cand)
                return dataclasses.replace(card, weights=str(p.resolve()), sha256="") if card.weights_path().resolve() != p.resolve() else card
        raise WeightsNotAvailableError(f"{p}: no model card next to this weight file (card.json or {p.with_suffix('.json').name})")
    return find_card(str(model))


def load_predictor(model: ModelCard | str | Path, device: str | None = None) -> Any:
    """The task's Predictor (``spine_models.engine.<task>.Predictor``) for a card, id or path."""
    from spine_models.engine import card_engine

    card = resolve_card(model)
    return card_engine(card).Predictor(card, device=device)


@functools.lru_cache(maxsize=16)
def _shared(key: tuple[str, str, str]) -> Any:
    return load_predictor(key[0]) if not key[1] else load_predictor(_CARDS[key])


_CARDS: dict[tuple[str, str, str], ModelCard] = {}


def shared_predictor(model: ModelCard | str | Path) -> Any:
    """One Predictor per model in this process, for components other models run (the U-Net that places a
    crop, a composite's experts, the view gate): inference does not change a predictor, so composites that
    share a component load it once. A reference (id / path) or a card, keyed on (id, weights, sha256) so an
    edited card is a new entry. Callers that need their own device use ``load_predictor``."""
    if isinstance(model, ModelCard):
        key = (model.id, str(model.weights), str(model.sha256 or ""))
        _CARDS.setdefault(key, model)
        return _shared(key)
    return _shared((str(model), "", ""))


def card_fits(card: ModelCard, radiograph: Any) -> bool:
    """Does a model's view fit the image? ``mri`` fits MR; ``any`` fits an X-ray of either view (an MR
    image goes to the ``mri`` models: an X-ray model's classes mean nothing on it); ``ap``/``lat`` fit
    X-rays (the film's own view, when known, must match)."""
    kind = "mri" if str(getattr(radiograph, "modality", "") or "").upper() == "MR" else "xray"
    if card.view == "any":
        return kind == "xray"
    if card.view == "mri":
        return kind == "mri"
    if kind == "mri":
        return False
    view = str(getattr(radiograph, "view", "") or "").lower()
    return not view or view == card.view


def is_view_gate(card: ModelCard) -> bool:
    """A view model: a classifier whose classes are exactly ``ap``, ``lat`` (what routes films to AP or lateral models)."""
    return card.task == "classify" and list(card.classes or []) == list(VIEW_CLASSES)


def infer_view(image: Any, cards: Sequence[ModelCard], *, get: Any = None, sure: float = VIEW_SURE) -> tuple[str | None, str]:
    """(view, note) for an X-ray without a view tag, from the first view model among ``cards`` (a classify
    card with classes ap, lat) when it is at least ``sure``; else (None, note). Why: AP-only models must
    skip lateral films and the reverse (a slip read off an AP film means nothing). A film's own view
    (DICOM ViewPosition), an MR image or no view model: (its view or None, "")."""
    own = str(getattr(image, "view", "") or "").lower() or None
    if own or str(getattr(image, "modality", "") or "").upper() == "MR":
        return own, ""
    gates = [c for c in cards if is_view_gate(c)]
    if not gates:
        return None, ""
    import numpy as np

    probs = (get or shared_predictor)(gates[0]).predict_proba([image])[0]
    k = int(np.argmax(probs))
    view, p = str(gates[0].classes[k]), float(probs[k])
    if p < sure:
        return None, f"view unsure ({gates[0].id}: {view.upper()} {p * 100:.0f}%): every X-ray model runs"
    return view, f"view {view.upper()} by {gates[0].id} ({p * 100:.1f}%)"


def predict_file(path: str | Path, cards: Sequence[ModelCard | str | Path], *, device: str | None = None,
                 **predict_kwargs: Any) -> list[Any]:
    """Read ``path`` once and run every given model that fits it; returns their typed results."""
    from spine_models.io import read_image

    rad = read_image(path)
    results = []
    for c in cards:
        card = resolve_card(c)
        if card_fits(card, rad):
            results.append(load_predictor(card, device=device).predict(rad, **predict_kwargs))
    return results
