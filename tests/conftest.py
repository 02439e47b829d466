"""Shared fixtures. Keep area-specific helpers in the area's own test modules."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FRAIWAN = SHARED / "data" / "fraiwan-ap"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fraiwan_dir() -> Path:
    """The real AP films; tests that need them skip on a fresh clone without ../shared."""
    if not FRAIWAN.is_dir():
        pytest.skip(f"../shared/data/fraiwan-ap not present ({FRAIWAN}); real-data test skipped")
    return FRAIWAN


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep tests on the 2 cores we have and deterministic."""
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_num_threads(2)
    yield


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Put back ``sys.modules["__main__"]`` after each test. Why: AppTest runs app.py in-process as ``__main__`` and
    leaves it there; a forkserver started later (the phantom writer's worker pool) then re-imports app.py in its
    children, which fail outside Streamlit ("No module named 'ui'")."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main


@pytest.fixture(autouse=True)
def _fresh_film_memo():
    """Each test starts with an empty per-film memo (``engine.film_memo``). Why: a test that swaps a model's
    weights or stubs its forward pass must not be answered from another test's run on the same film."""
    yield
    import sys

    memo = sys.modules.get("spine_models.engine.film_memo")
    if memo is not None:
        memo.film_memo.clear()
