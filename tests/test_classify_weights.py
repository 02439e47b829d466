"""Shipped classification weights: cards complete and loadable; predict == evaluate preprocessing."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from spine_models.data.records import Sample, SpineDataset
from spine_models.engine.classify import Predictor, evaluate
from spine_models.models import create_model
from spine_models.models.cards import REPO_ROOT, ModelCard, list_cards, save_checkpoint_file, sha256_file

SPEC_KEYS = ("id", "task", "arch", "classes", "view", "trained_on", "weights", "sha256", "input_size",
             "train_command", "metrics", "license")


def _random_card(tmp_path: Path) -> ModelCard:
    torch.manual_seed(0)
    kw = {"num_classes": 2, "in_chans": 1, "dropout": 0.0}
    model = create_model("resnet18", task="classify", **kw)
    sha = save_checkpoint_file(tmp_path / "m.pt", arch="resnet18", task="classify", state_dict=model.state_dict(),
                               arch_kwargs=kw, half=False)
    return ModelCard(id="t", task="classify", arch="resnet18", view="ap", trained_on="x", weights=str(tmp_path / "m.pt"),
                     sha256=sha, input_size=64, train_command="", license="x", classes=["a", "b"], arch_kwargs=kw)


def test_predict_uses_the_same_preprocessing_as_evaluate(tmp_path: Path):
    """Large tall films: Predictor must see the same 2-step downscale as training/evaluation."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(3):
        img = (rng.random((900, 310)) * 255).astype(np.uint8)
        img = cv2.GaussianBlur(img, (0, 0), 1.0)
        cv2.rectangle(img, (120, 50), (190, 850), 255, -1)
        p = tmp_path / f"f{i}.png"
        cv2.imwrite(str(p), img)
        samples.append(Sample(id=p.stem, patient_id=p.stem, path=p, label="ab"[i % 2]))
    card = _random_card(tmp_path)
    ev = evaluate(card, SpineDataset("t", samples, classes=["a", "b"]), quiet=True, n_resamples=10, device="cpu")
    pr = Predictor(card, device="cpu").predict_proba([s.path for s in samples])
    ev_p = np.array([[p["probs"]["a"], p["probs"]["b"]] for p in ev["predictions"]])
    np.testing.assert_allclose(pr, ev_p, atol=1e-4)


SHIPPED = [c for c in list_cards() if c.task == "classify"]


@pytest.mark.parametrize("card", SHIPPED, ids=[c.id for c in SHIPPED])
def test_shipped_classify_card_is_complete(card: ModelCard):
    d = card.to_dict()
    for k in SPEC_KEYS:
        assert d.get(k) not in (None, "", {}), f"{card.id}: card field {k} empty"
    path = card.weights_path()
    assert card.weights == f"weights/{card.id}.pt"
    assert path.stat().st_size <= 50e6
    assert sha256_file(path) == card.sha256
    assert card.train_command.startswith("spine-models train --task classify")
    for key in ("accuracy", "balanced_accuracy", "confusion_matrix"):
        assert key in card.metrics
    lo, hi = card.metrics["balanced_accuracy"]["ci95"]
    assert lo <= card.metrics["balanced_accuracy"]["value"] <= hi
    assert card.limitations, "a shipped model lists its limitations"
    if "fraiwan" in card.id:
        assert "Fraiwan" in card.license or "Fraiwan" in card.trained_on
        assert "shortcut_warning" in card.audit
    from spine_models.engine.predictor import load_predictor

    pred = load_predictor(card, device="cpu")  # the factory: composite cards get the composite Predictor
    res = pred.predict(np.random.default_rng(1).random((400, 160)).astype(np.float32), cam=False)
    if getattr(res, "abstained", False):
        # a measurement-based model on noise finds no spine: it must say so, not guess
        assert not res.probs and res.note and "measurement failed" in res.note
    else:
        assert abs(sum(res.probs) - 1) < 1e-4 and res.top_class in card.classes


def test_docs_arch_comparison_has_three_archs():
    p = REPO_ROOT / "docs" / "arch_comparison.json"
    if not p.is_file():
        pytest.skip("docs/arch_comparison.json not generated")
    rows = json.loads(p.read_text())["rows"]
    assert len({r["arch"] for r in rows}) >= 3
    for r in rows:
        assert r["latency"]["median_ms"] > 0 and r["balanced_accuracy"]["ci95"][0] is not None
