"""The int8 inference path (engine.runtime ``onnxruntime-int8``): a statically quantised ONNX model, calibrated on
inputs left in the cache, answers close to torch; torch serves, saying why in one line, when there is no calibration
or quantisation is unavailable or fails. bench/bench_int8.py's CI rule is checked on hand-made reports."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from spine_models.errors import ConfigError
from spine_models.models.cards import ModelCard

sys.path.insert(0, str(Path(__file__).parent))
from runtime_fixtures import card_with as _card, column_film  # noqa: E402
from runtime_fixtures import private_cache, weights  # noqa: E402,F401 - fixtures used by name

# int8 against torch, on the probabilities (softmax / sigmoid) of the tiny random-weight fixtures: the largest
# difference stays within 5 % of the spread of torch's own outputs on the film (measured: 0.2-0.3 %; the random
# fixtures' probabilities span only 0.02-0.09, so an absolute bound would be empty). The real networks' figures:
# docs/int8_check.md (bench/bench_int8.py)
INT8_TOL = 0.05


def _film(seed: int) -> np.ndarray:
    return column_film(seed, 30 + seed % 20)  # a bright column that moves from film to film


def _calibrate(weights: Path, mid: str, n: int = 12) -> tuple[ModelCard, object]:
    """Leave ``n`` preprocessed films where the int8 path looks for its calibration; (card, torch Predictor)."""
    from spine_models.engine import predictor_class
    from spine_models.engine.runtime import calibration_file

    card = _card(weights, mid)
    ref = predictor_class(card)(card, device="cpu")
    xs = [np.asarray(ref.preprocess(ref.read(_film(s))), dtype=np.float32) for s in range(n)]
    path = calibration_file(card, xs[0].shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.concatenate(xs))
    return card, ref


@pytest.mark.parametrize("mid", ["tiny-cls", "tiny-seg"])
def test_int8_from_the_card_is_close_to_torch_and_cached(weights: Path, mid: str) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import onnx

    from spine_models.engine import predictor_class
    from spine_models.engine.runtime import int8_file

    card, ref = _calibrate(weights, mid)
    fast = predictor_class(card)(_card(weights, mid, runtime={"path": "onnxruntime-int8"}), device="cpu")
    assert ref.net.path == "torch" and fast.net.path == "onnxruntime-int8", fast.net.why
    film = _film(99)  # not one of the calibration films
    a, b = (p.infer(p.preprocess(p.read(film))) for p in (ref, fast))
    assert a.shape == b.shape and float(np.abs(a - b).max()) < INT8_TOL * float(a.max() - a.min())
    assert float(np.abs(a - b).max()) > 0  # it is another computation, not torch again
    assert not np.allclose(a, a.mean())
    x = np.asarray(ref.preprocess(ref.read(film)), dtype=np.float32)
    ops = {n.op_type for n in onnx.load(str(int8_file(card, x.shape))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ int8, as built once and cached


def test_the_environment_asks_for_int8_and_torch_serves_without_calibration(weights: Path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    from spine_models.engine.classify import Predictor

    monkeypatch.setenv("SPINE_MODELS_RUNTIME", "onnxruntime-int8")
    p = Predictor(_card(weights, "tiny-cls"), device="cpu")
    assert p.net.path == "torch" and "no int8 calibration for tiny-cls" in p.net.why and "\n" not in p.net.why
    assert "bench/bench_int8.py" in p.net.why
    assert p.predict(_film(1), cam=False).probs


def test_torch_serves_when_quantisation_is_unavailable_or_fails(weights: Path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    import spine_models.models.onnx_runtime as O
    from spine_models.engine.classify import Predictor

    _calibrate(weights, "tiny-cls", n=2)
    card = _card(weights, "tiny-cls", runtime={"path": "onnxruntime-int8"})
    monkeypatch.setattr(O, "quant_available", lambda: False)
    p = Predictor(card, device="cpu")
    assert p.net.path == "torch" and "quantisation is unavailable" in p.net.why

    monkeypatch.setattr(O, "quant_available", lambda: True)

    def broken(*_a, **_k):
        raise RuntimeError("Unsupported op in calibration\nsecond line")

    monkeypatch.setattr(O, "quantize_int8", broken)
    p = Predictor(card, device="cpu")
    assert p.net.path == "torch" and p.net.why.startswith("int8 quantisation, ONNX export or load failed (RuntimeError")
    assert p.predict(_film(1), cam=False).probs


def test_quantize_int8_refuses_bad_calibration_and_methods(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import torch

    from spine_models.models.onnx_runtime import export_onnx, quantize_int8

    fp32 = export_onnx(torch.nn.Conv2d(1, 2, 3).eval(), torch.rand(1, 1, 8, 8), tmp_path / "c.onnx")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(8, 8\)"):
        quantize_int8(fp32, tmp_path / "q.onnx", np.zeros((8, 8), np.float32))
    with pytest.raises(ConfigError, match="'kl'; valid: minmax, percentile, entropy"):
        quantize_int8(fp32, tmp_path / "q.onnx", np.zeros((1, 1, 8, 8), np.float32), method="kl")


def test_the_ci_rule_of_the_int8_bench() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.bench_int8 import ci_check

    ref = {"dice": {"vertebra": {"value": 0.80, "ci95": [0.75, 0.85]}}, "cobb_mae_deg": {"value": 5.0, "ci95": [4, 6]},
           "auc_macro": None}
    rows = {r["metric"]: r for r in ci_check(ref, {"dice": {"vertebra": {"value": 0.76, "ci95": [0.7, 0.8]}},
                                                   "cobb_mae_deg": {"value": 6.5, "ci95": [5, 8]}})}
    assert rows["dice.vertebra"]["inside_ci"] and abs(rows["dice.vertebra"]["delta"] + 0.04) < 1e-12
    assert not rows["cobb_mae_deg"]["inside_ci"]
    assert set(rows) == {"dice.vertebra", "cobb_mae_deg"}


def test_the_int8_decision_rule() -> None:
    """Faster at batch 1 and at the batch a film runs, every metric inside its CI, same classes: else fp32 stays."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.bench_int8 import decide

    ok = {"all_inside_ci": True, "outside_ci": [], "predictions_agree": True, "predictions_same_class": "26/26"}
    assert decide({"int8_ms": 3.0, "fp32_onnx_ms": 6.0, "held_out": dict(ok)})["decision"] == "int8"
    slow = decide({"int8_ms": 3.0, "fp32_onnx_ms": 6.0, "film_batch": 14, "int8_ms_film_batch": 2.6,
                   "fp32_onnx_ms_film_batch": 2.5, "held_out": dict(ok)})
    assert slow["decision"] == "stay on fp32 onnxruntime" and "14 patches" in slow["why"]
    out = decide({"int8_ms": 3.0, "fp32_onnx_ms": 6.0,
                  "held_out": {**ok, "all_inside_ci": False, "outside_ci": ["cobb_mae_deg"]}})
    assert out["decision"] != "int8" and "cobb_mae_deg" in out["why"]
    moved = decide({"int8_ms": 3.0, "fp32_onnx_ms": 6.0,
                    "held_out": {**ok, "predictions_agree": False, "predictions_same_class": "25/26"}})
    assert moved["decision"] != "int8" and "25/26" in moved["why"]
    assert decide({"int8_ms": 3.0, "fp32_onnx_ms": 6.0})["decision"] == "not decided"


def _moved(folder: Path, weights_file: str, sha: str) -> ModelCard:
    """tiny-seg from ``folder`` with its weights there and a shipped calibration of ``sha``."""
    card = ModelCard.from_json(folder / "tiny-seg.json")
    card.weights = weights_file
    card.runtime = {"path": "onnxruntime-int8", "calibration": {"file": "tiny-seg.calib.npz", "sha256": sha}}
    return card


def test_int8_from_a_calibration_shipped_beside_the_weights(weights: Path, tmp_path: Path) -> None:
    """A card that ships its calibration (runtime.calibration, uint8 beside the weights) serves int8 on a fresh cache;
    a file that does not match the card's sha256 is not used: torch serves and says why in one line."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import shutil

    from spine_models.engine import predictor_class
    from spine_models.engine.runtime import calibration_inputs, int8_file, save_calibration

    card = _card(weights, "tiny-seg")
    ref = predictor_class(card)(card, device="cpu")
    xs = np.concatenate([np.asarray(ref.preprocess(ref.read(_film(s))), dtype=np.float32) for s in range(8)])
    folder = tmp_path / "w"
    shutil.copytree(weights, folder)
    sha = save_calibration(xs, folder / "tiny-seg.calib.npz")
    moved = str(folder / Path(card.weights).name)  # the copy's weights: the calibration is looked for beside them
    shipped = _moved(folder, moved, sha)
    back = calibration_inputs(shipped, xs[:1].shape)
    assert back.dtype == np.float32 and back.shape == xs.shape and float(np.abs(back - xs).max()) <= 0.5 / 255 + 1e-6
    fast = predictor_class(shipped)(shipped, device="cpu")
    assert fast.net.path == "onnxruntime-int8", fast.net.why
    assert int8_file(shipped, xs[:1].shape).name.endswith(f"-int8-{sha[:12]}.onnx")  # named by its calibration
    film = _film(99)
    a, b = (p.infer(p.preprocess(p.read(film))) for p in (ref, fast))
    assert float(np.abs(a - b).max()) < INT8_TOL * float(a.max() - a.min())

    wrong = _moved(folder, moved, "0" * 64)
    p = predictor_class(wrong)(wrong, device="cpu")
    assert p.net.path == "torch" and "sha256 differs" in p.net.why and "\n" not in p.net.why
    with pytest.raises(ValueError, match=r"in \[0, 1\] are stored; got shape \(8, 1, .*range \[0, 2\]"):
        save_calibration(xs * 2, tmp_path / "bad.npz")


def test_the_headline_gate_of_int8_shipping() -> None:
    """--ship keeps a network off int8 when a headline figure gets worse by more than 5 % of torch's value, in the
    direction that is worse for that figure (a larger error, a smaller accuracy); better or equal figures pass."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.bench_int8 import headline_losses

    ref = {"cobb_mae_deg": {"value": 5.64, "ci95": [3.75, 8.33]}, "cobb_within_5deg": {"value": 0.65, "ci95": [0.5, 0.8]},
           "vertebra_ap50": {"value": 0.72, "ci95": [0.64, 0.79]}}
    worse = {"cobb_mae_deg": {"value": 6.46}, "cobb_within_5deg": {"value": 0.66}, "vertebra_ap50": {"value": 0.70}}
    assert headline_losses(ref, worse) == ["cobb_mae_deg 5.64 -> 6.46"]  # AP50 -0.02 is within 5 % of 0.72
    better = {"cobb_mae_deg": {"value": 5.0}, "cobb_within_5deg": {"value": 0.60}, "vertebra_ap50": {"value": 0.72}}
    assert headline_losses(ref, better) == ["cobb_within_5deg 0.65 -> 0.6"]
    assert headline_losses(ref, {"cobb_mae_deg": {"value": 5.64}}) == ["cobb_within_5deg 0.65 -> not reported",
                                                                       "vertebra_ap50 0.72 -> not reported"]
