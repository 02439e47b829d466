"""Load any trained model by card, shipped id or path (once per process), and run the models that fit a file.

Why here: the CLI ``predict``, the app and the composites all start from "this model" given in a different
form; the one resolver (``models.hub.resolve_card``, re-exported here) turns it into a card and the one
cache (:func:`shared_predictor`, keyed by ``models.hub.predictor_key``) hands every caller the same loaded
object.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

from spine_models.data.records import VIEW_CLASSES
from spine_models.models.cards import ModelCard
from spine_models.models.hub import ModelRef, predictor_key, resolve_card

__all__ = ["resolve_card", "load_predictor", "shared_predictor", "check_component", "segment_predictor", "segment_component", "loaded_key", "card_fits", "is_view_gate", "infer_view", "VIEW_SURE",
           "predict_file"]

VIEW_SURE = 0.9  # below this a film stays "view unknown" and every X-ray model runs on it


def load_predictor(model: ModelRef, device: str | None = None) -> Any:
    """A new Predictor for a card, id or path (``engine.predictor_class``: the task's, or the composite one).
    Most callers want :func:`shared_predictor`, which loads each weight file once per process."""
    from spine_models.engine import predictor_class

    card = resolve_card(model)
    return predictor_class(card)(card, device=device)


_LOADED: "OrderedDict[tuple[str, ...], Any]" = OrderedDict()
_LOCK = threading.Lock()
_log = logging.getLogger(__name__)
_KEY_LOCKS: dict[tuple[str, ...], threading.Lock] = {}
MAX_LOADED = 32  # more than every shipped model: the app's st.cache_resource entries stay the same objects


def loaded_key(card: ModelCard, device: str | None = None) -> tuple[str, ...]:
    """``models.hub.predictor_key`` (id, sha256, weight file) plus the device the weights sit on."""
    from spine_models._env import get_device

    return (*predictor_key(card), str(get_device(device)))


def shared_predictor(model: ModelRef, device: str | None = None, *, cls: type | None = None) -> Any:
    """The one Predictor per weight file in this process, for every caller: the app (``ui.models.get_predictor``
    keeps this object under ``st.cache_resource``), the CLI and composites' components. Why: inference does not
    change a predictor, so a U-Net used by three models sits in memory once. Keyed by
    ``models.hub.predictor_key`` and the device, so an edited card or a replaced weight file is a new entry.
    ``cls``: another class than the card's own (``engine.predictor_class``), e.g. the plain segment Predictor
    of a disc locator that a disc grader runs; a separate entry."""
    from spine_models.engine import predictor_class

    card = resolve_card(model)
    own = predictor_class(card)
    key = (*loaded_key(card, device), "" if cls is None or cls is own else f"{cls.__module__}.{cls.__qualname__}")
    with _LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
        lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with lock:  # one load per key even when two threads ask at once (the app's warm-up and a page)
        with _LOCK:
            if key in _LOADED:
                return _LOADED[key]
        pred = (cls or own)(card, device=device)
        _log.info("loaded model %s (%s) on %s", card.id, type(pred).__name__, key[-2])  # bench/load_app.py counts these
        with _LOCK:
            _LOADED[key] = pred
            while len(_LOADED) > MAX_LOADED:
                _LOADED.popitem(last=False)
        return pred


def check_component(name: str, card: ModelCard, want: str) -> None:
    """A composite's component must be the weights it was built on (their sha256 is pinned in the composite's
    ``arch_kwargs``): a retrained component under the same id would silently change what the composite means."""
    from spine_models.errors import WeightsNotAvailableError

    if want and card.sha256 and card.sha256 != want:
        raise WeightsNotAvailableError(f"component {name} ({card.id}) has sha256 {card.sha256[:12]}..., this model was "
                                       f"built on {want[:12]}...; retrain it with its train_command")


def segment_predictor(model: ModelRef, device: Any = None) -> Any:
    """A model's plain segment Predictor (masks and probabilities) from the one cache, whatever engine serves its
    card otherwise (a disc locator's own engine answers with discs; a composite wants its masks)."""
    from spine_models.engine.segment import Predictor as SegPredictor

    return shared_predictor(model, None if device is None else str(device), cls=SegPredictor)


def segment_component(arch_kwargs: dict[str, Any], key: str = "locator", device: Any = None) -> Any:
    """The segment Predictor a composite names under ``arch_kwargs[key]`` (a disc locator, an AP U-Net), its sha256
    checked against ``arch_kwargs[key + "_sha256"]``."""
    pred = segment_predictor(arch_kwargs[key], device)
    check_component(key, pred.card, str(arch_kwargs.get(f"{key}_sha256", "")))
    return pred


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
            results.append(shared_predictor(card, device=device).predict(rad, **predict_kwargs))
    return results
