"""The inference path (engine.runtime): torch by default, ONNX Runtime when the card or SPINE_MODELS_RUNTIME asks,
with the same probabilities within the tolerance bench/bench_onnx.py uses; torch whenever ONNX Runtime cannot serve."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from spine_models.errors import ConfigError
from spine_models.models.cards import ModelCard

sys.path.insert(0, str(Path(__file__).parent))
from runtime_fixtures import card_with as _card, column_film as _film  # noqa: E402
from runtime_fixtures import private_cache, weights  # noqa: E402,F401 - fixtures used by name

TOL = 1e-4  # the match tolerance of bench/bench_onnx.py (probabilities)


def test_torch_is_the_default_and_a_card_without_runtime_reads_as_torch(weights: Path) -> None:
    import json

    from spine_models.engine.classify import Predictor

    raw = json.loads((weights / "tiny-cls.json").read_text())
    raw.pop("runtime", None)  # every card written before the field existed (the shipped ones)
    card = ModelCard.from_dict(raw)
    assert card.runtime == {} and card.to_dict()["runtime"] == {}
    assert Predictor(card, device="cpu").net.path == "torch"
    card.runtime = {"path": "onnxruntime", "tolerance": TOL}
    assert ModelCard.from_dict(card.to_dict()).runtime == card.runtime


@pytest.mark.parametrize("mid", ["tiny-cls", "tiny-seg"])
def test_onnxruntime_from_the_card_matches_torch(weights: Path, mid: str) -> None:
    pytest.importorskip("onnxruntime")
    from spine_models.engine import predictor_class

    card = _card(weights, mid)
    ref = predictor_class(card)(card, device="cpu")
    fast = predictor_class(card)(_card(weights, mid, runtime={"path": "onnxruntime"}), device="cpu")
    assert ref.net.path == "torch" and fast.net.path == "onnxruntime", fast.net.why
    a, b = (p.infer(p.preprocess(p.read(_film()))) for p in (ref, fast))
    assert a.shape == b.shape and float(np.abs(a - b).max()) < TOL
    assert not np.allclose(a, a.mean())  # a real output, not a constant both runtimes agree on


def test_a_disc_grader_ensemble_on_onnxruntime_grades_as_torch(tmp_path: Path) -> None:
    """The disc grader (here a tiny ensemble of two) on ONNX Runtime when its card asks: the crops' Pfirrmann and
    finding probabilities are torch's within TOL; Grad-CAM still runs on torch."""
    pytest.importorskip("onnxruntime")
    from app_fixtures import make_disc_weights

    from spine_models.engine.discs import DiscGradingPredictor

    w = make_disc_weights(tmp_path / "w", members=2)
    ref = DiscGradingPredictor(ModelCard.from_json(w / "tiny-disc-grader.json"), device="cpu")
    fast = DiscGradingPredictor(_card(w, "tiny-disc-grader", runtime={"path": "onnxruntime"}), device="cpu")
    assert (ref.net.path, fast.net.path) == ("torch", "onnxruntime"), fast.net.why
    crops = np.random.default_rng(2).random((3, *fast.size)).astype(np.float32)
    a, b = (np.concatenate(p.grade_crops(crops), 1) for p in (ref, fast))
    assert a.shape == b.shape == (3, 8) and float(np.abs(a - b).max()) < TOL and not np.allclose(a, a.mean())
    assert fast._cams(crops[:1], a[:1, :5].argmax(1))[0].shape == fast.size


def test_the_environment_overrides_the_card(weights: Path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    from spine_models.engine.classify import Predictor

    monkeypatch.setenv("SPINE_MODELS_RUNTIME", "onnxruntime")
    assert Predictor(_card(weights, "tiny-cls"), device="cpu").net.path == "onnxruntime"
    monkeypatch.setenv("SPINE_MODELS_RUNTIME", "torch")
    assert Predictor(_card(weights, "tiny-cls", runtime={"path": "onnxruntime"}), device="cpu").net.path == "torch"


def test_an_unknown_runtime_is_named_with_the_valid_ones(weights: Path, monkeypatch) -> None:
    from spine_models.engine.classify import Predictor

    with pytest.raises(ConfigError, match="runtime.path='tensorrt'; valid: torch, onnxruntime, onnxruntime-int8$"):
        Predictor(_card(weights, "tiny-cls", runtime={"path": "tensorrt"}), device="cpu")
    monkeypatch.setenv("SPINE_MODELS_RUNTIME", "fast")
    with pytest.raises(ConfigError, match="SPINE_MODELS_RUNTIME='fast'.*onnxruntime-int8"):
        Predictor(_card(weights, "tiny-cls"), device="cpu")


def test_torch_serves_when_onnxruntime_is_missing(weights: Path, monkeypatch) -> None:
    import spine_models.models.onnx_runtime as O
    from spine_models.engine.classify import Predictor

    monkeypatch.setattr(O, "ort_available", lambda: False)
    p = Predictor(_card(weights, "tiny-cls", runtime={"path": "onnxruntime"}), device="cpu")
    assert p.net.path == "torch" and "not installed" in p.net.why
    assert p.predict(_film(), cam=False).probs


SHIPPED = Path(__file__).resolve().parents[1] / "weights"
# what the Analyse page runs by default on a real AP film: the view gate, the real AP classifier, the corner composite
# and its AP U-Net (bench/bench_analysis.py); their cards switch ONNX Runtime on (bench/bench_onnx.py --record)
ON_ORT = ("xray_view_mobilenet_v2_synth", "ap_scoliosis_mobilenet_v2_fraiwan", "seg_unet_ap", "seg_vertebra_corners_aasce",
          "mri_disc_grader_spider")


def test_the_shipped_cards_that_switch_onnxruntime_on_say_how_it_was_validated() -> None:
    from spine_models.models.cards import list_cards

    cards = {c.id: c for c in list_cards(SHIPPED)}
    if not set(ON_ORT) <= set(cards):
        pytest.skip("the shipped weights/ folder is not complete here")
    for mid in ON_ORT:
        rt = cards[mid].runtime
        assert rt.get("path") == "onnxruntime", mid
        assert float(rt["max_abs_diff"]) <= float(rt["tolerance"]) <= TOL, mid  # within bench_onnx's match tolerance
        assert rt["films"] and rt["compared"] and "bench/bench_onnx.py" in rt["command"], mid
        assert float(rt["onnxruntime_ms"]) < float(rt["torch_ms"]), mid


@pytest.mark.parametrize("mid", ON_ORT)
def test_a_shipped_card_with_the_runtime_field_runs_on_onnxruntime_and_matches_torch(mid: str, monkeypatch) -> None:
    """The card alone (no environment switch) puts the network on ONNX Runtime; the answer is torch's within TOL."""
    pytest.importorskip("onnxruntime")
    import torch

    from spine_models.engine import predictor_class

    path = SHIPPED / f"{mid}.json"
    if not path.is_file() or not Path(str(path).replace(".json", ".pt")).is_file():
        pytest.skip(f"{mid} is not shipped here")
    card = ModelCard.from_json(path)
    fast = predictor_class(card)(card, device="cpu")
    monkeypatch.setenv("SPINE_MODELS_RUNTIME", "torch")
    ref = predictor_class(card)(card, device="cpu")
    assert fast.net.path == "onnxruntime" and ref.net.path == "torch", fast.net.why
    if card.arch == "vertebra_corners":  # the corner network on a batch of patches (the U-Net has its own card)
        x = torch.rand(5, 1, fast.patch, fast.patch)
        with torch.inference_mode():
            a = ref.net(x).numpy()
        b = fast.net(x).numpy()
    elif card.arch == "disc_grading":  # the grader on disc crops (its locator has its own card)
        crops = np.random.default_rng(5).random((4, *fast.size)).astype(np.float32)
        a, b = (np.concatenate(p.grade_crops(crops), 1) for p in (ref, fast))
    else:
        film = np.random.default_rng(5).random((160, 80)).astype(np.float32)
        film[20:140, 30:50] += 0.5  # a bright column: a spine-like band, not noise only
        a, b = (p.infer(p.preprocess(p.read(np.clip(film, 0, 1)))) for p in (ref, fast))
    assert a.shape == b.shape and float(np.abs(a - b).max()) < TOL
    assert not np.allclose(a, a.mean())  # a real output, not a constant both runtimes agree on


def test_the_shipped_level_reader_runs_on_onnxruntime_as_its_card_records_and_matches_torch(monkeypatch) -> None:
    """The corner card's level reader (a component) carries its own runtime record (bench/bench_onnx.py --model
    vertebra_levels_aasce --record) and runs on ONNX Runtime with torch's log-probabilities."""
    pytest.importorskip("onnxruntime")
    import torch

    from spine_models.engine.landmarks import LevelReader, level_reader_file

    path = SHIPPED / "seg_vertebra_corners_aasce.json"
    if not path.is_file():
        pytest.skip("the corner model is not shipped here")
    ref = (ModelCard.from_json(path).preprocessing or {}).get("level_reader")
    if not ref:
        pytest.skip("the shipped corner model carries no level reader")
    card = ModelCard.from_json(level_reader_file(ref, "seg_vertebra_corners_aasce"))
    rt = card.runtime
    assert rt.get("path") == "onnxruntime" and float(rt["max_abs_diff"]) <= float(rt["tolerance"]) <= TOL
    assert rt["films"] and float(rt["agree"]) == 1.0 and "bench/bench_onnx.py" in rt["command"]
    assert float(rt["onnxruntime_ms"]) < float(rt["torch_ms"])
    fast = LevelReader(card)
    monkeypatch.setenv("SPINE_MODELS_RUNTIME", "torch")
    slow = LevelReader(card)
    assert (fast.net.path, slow.net.path) == ("onnxruntime", "torch"), fast.net.why
    x = torch.rand(6, 1, fast.size, fast.size)
    with torch.inference_mode():
        a = slow.net(x).numpy()
    b = fast.net(x).numpy()
    assert a.shape == b.shape and float(np.abs(a - b).max()) < TOL and not np.allclose(a, a.mean())


def test_torch_serves_when_the_onnx_cache_folder_cannot_be_made(weights: Path, monkeypatch) -> None:
    """A card that asks for ONNX Runtime still loads where the cache folder is not writable: torch runs, and says why."""
    pytest.importorskip("onnxruntime")
    import spine_models._env as E
    from spine_models.engine.classify import Predictor

    def read_only() -> Path:
        raise PermissionError(13, "Permission denied", "/nonexistent/.cache/spine_models")

    monkeypatch.setattr(E, "cache_dir", read_only)
    p = Predictor(_card(weights, "tiny-cls", runtime={"path": "onnxruntime"}), device="cpu")
    assert p.net.path == "torch" and "PermissionError" in p.net.why
    assert p.predict(_film(), cam=False).probs
