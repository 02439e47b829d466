"""Model and job-store loaders: the app's only ``st.cache_resource`` objects.

Why here: a predictor is built once per (card id, weights sha256, weights path) and reused across
reruns and sessions; a retrained file with a new hash gets a new entry. CUDA is used automatically
when present (``get_device()`` inside each Predictor).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Sequence

import streamlit as st

from spine_models._memory import give_back_memory  # noqa: F401 - re-exported: the slots call it, tests patch it here

__all__ = ["warm_up", "shipped_cards", "get_predictor", "device_label", "job_store", "run_cards",
           "all_cards", "NO_MODELS_HINT", "max_upload_mb", "architectures", "analysis_slot", "max_analyses",
           "give_back_memory"]

NO_MODELS_HINT = ("no shipped models yet — train one on the Train page or run "
                  "`spine-models train --task classify --model resnet18 --data DIR --out runs/NAME`, "
                  "then promote it to weights/")


def max_upload_mb() -> int:
    """server.maxUploadSize from .streamlit/config.toml (what the uploader help text states)."""
    try:
        return int(st.get_option("server.maxUploadSize"))
    except (RuntimeError, ValueError, TypeError):
        return 200


def max_analyses() -> int:
    """How many sessions may run models at once: ``$SPINE_MODELS_MAX_ANALYSES`` (default 1)."""
    raw = os.environ.get("SPINE_MODELS_MAX_ANALYSES", "1")
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"SPINE_MODELS_MAX_ANALYSES={raw!r}: use a whole number >= 1 (sessions that run models at once)")
    return n


class _Slots(threading.BoundedSemaphore):
    """The server's analysis slots; leaving one gives the freed memory back (:func:`give_back_memory`)."""

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        give_back_memory()  # after the release: the next session does not wait for it


@st.cache_resource(show_spinner=False)
def _slots(n: int) -> Any:
    return _Slots(n)


def analysis_slot() -> Any:
    """A server-wide slot to run models in (a context manager): sessions beyond ``max_analyses`` wait their turn.

    Why: each session's script runs in its own thread and every network uses all cores; 20 sessions analysing at
    once on 2 cores thrash (40 compute threads), none finishes within minutes and each holds its film's
    intermediate arrays. One at a time, each analysis takes its single-session time and memory stays bounded;
    the others queue behind it (bench/load_app.py). Leaving the slot returns the analysis' freed memory."""
    return _slots(max_analyses())


def shipped_cards() -> list[Any]:
    """Cards in weights/ whose weight file exists (cheap: a few small JSON files, read each rerun)."""
    from spine_models.models.cards import list_cards

    return list_cards()


def run_cards() -> list[Any]:
    """Cards of finished training jobs (from the job store), ids prefixed with ``run:``."""
    import dataclasses

    from spine_models.models.hub import resolve_card

    out = []
    for job, card_path in job_store().finished_runs():
        try:
            card = resolve_card(card_path)
        except (OSError, ValueError) as exc:  # a run folder removed by hand: leave it out, say why in the log
            print(f"spine lab: skipping run {job.id}: {exc}")
            continue
        out.append(dataclasses.replace(card, id=f"run:{job.id}"))
    return out


def all_cards(include_runs: bool = True) -> list[Any]:
    return shipped_cards() + (run_cards() if include_runs else [])


@st.cache_resource(show_spinner=False, max_entries=16)  # callers show their own progress (a spinner needs a session)
def _predictor(card_id: str, sha256: str, weights: str, _card: Any) -> Any:
    from spine_models.engine.predictor import shared_predictor

    return shared_predictor(_card)  # the engine's one cache: composites using this model get the same object


def get_predictor(card: Any) -> Any:
    """The card's Predictor, cached by ``models.hub.predictor_key`` (id, sha256, weights path)."""
    from spine_models.models.hub import predictor_key

    return _predictor(*predictor_key(card), card)


@st.cache_resource(show_spinner=False)
def _warm_thread(ids: tuple[str, ...], _cards: tuple[Any, ...]) -> Any:
    """One background loader per server process and set of default models (cache_resource keeps it unique)."""
    import threading

    def load() -> None:
        import numpy as np

        from spine_models.errors import SpineInputError

        blank = np.zeros((256, 128), np.float32)
        for c in _cards:
            pred = get_predictor(c)  # the same st.cache_resource entry the pages use: loaded once, found there later
            try:  # one call on a blank film pays the lazy costs (Grad-CAM's import ~3 s, first allocations) now
                pred.predict(blank, cam=True)  # one call shape for every task (engine.base)
            except (SpineInputError, ValueError):
                pass  # a model that refuses a blank film is still loaded; the page shows its errors on real films

    t = threading.Thread(target=load, name="spine-lab-warm-up", daemon=True)
    t.start()
    return t


def warm_up(cards: Sequence[Any]) -> bool:
    """Start loading the models an uploaded film runs by default (real-validated ones and the view gate) in the
    background, once per server process; True while it is still loading. Why: the first analysis after a start
    waited ~30 s for the models loading on the click; now they load while the reader opens the page."""
    from spine_models.engine.predictor import is_view_gate
    from spine_models.models.cards import is_real_validated

    wanted = tuple(c for c in cards if is_real_validated(c) or is_view_gate(c))
    return _warm_thread(tuple(c.id for c in wanted), wanted).is_alive() if wanted else False


DEFAULT_ARCH = {"classify": "resnet18", "detect": "yolov8n", "segment": "unet_resnet18"}


@st.cache_data(show_spinner=False)
def architectures(task: str) -> list[str]:
    """Registered architectures of a task (the registry is the one list), the task's default first."""
    from spine_models.models.registry import list_models

    names = list_models(task)
    first = DEFAULT_ARCH.get(task)
    return ([first] if first in names else []) + [n for n in names if n != first]


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    """"CUDA (<name>)" or "CPU (<n> threads)" for the sidebar."""
    from spine_models._env import get_device

    dev = get_device()
    if dev.type == "cuda":
        import torch

        return f"CUDA ({torch.cuda.get_device_name(dev)})"
    import torch

    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"


@st.cache_resource(show_spinner=False)
def _store(runs_dir: str, max_concurrent: int) -> Any:
    from spine_models.engine.jobs import JobStore

    return JobStore(runs_dir, max_concurrent=max_concurrent)


def job_store() -> Any:
    """The persistent job store (``$SPINE_MODELS_RUNS`` or ./runs; ``$SPINE_MODELS_MAX_JOBS`` concurrent, default 1)."""
    from spine_models.engine.jobs import default_runs_dir

    return _store(str(default_runs_dir().resolve()), int(os.environ.get("SPINE_MODELS_MAX_JOBS", "1")))
