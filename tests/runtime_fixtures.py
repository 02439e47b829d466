"""Fixtures of the runtime tests (tests/test_runtime.py, tests/test_runtime_int8.py): the tiny shipped-layout weights,
a private export cache per test, and a film with a bright column."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from spine_models.models.cards import ModelCard

sys.path.insert(0, str(Path(__file__).parent))
from app_fixtures import make_weights  # noqa: E402

__all__ = ["weights", "private_cache", "column_film", "card_with"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_weights(tmp_path_factory.mktemp("w"), detect=False)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> None:
    """Exports and int8 models go to this test's own cache; the runtime is the card's unless a test sets it."""
    monkeypatch.setenv("SPINE_MODELS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPINE_MODELS_RUNTIME", raising=False)


def column_film(seed: int = 3, column: int = 40) -> np.ndarray:
    """A 200x100 noise film with a bright 20-pixel column starting at ``column``."""
    rng = np.random.default_rng(seed)
    a = rng.random((200, 100)).astype(np.float32) * 0.4
    a[:, column:column + 20] = 0.9
    return a


def card_with(weights: Path, mid: str, **changes) -> ModelCard:
    """The tiny card ``mid`` with attributes changed (e.g. ``runtime={"path": "onnxruntime"}``)."""
    card = ModelCard.from_json(weights / f"{mid}.json")
    for k, v in changes.items():
        setattr(card, k, v)
    return card
