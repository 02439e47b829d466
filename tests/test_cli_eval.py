"""`evaluate`, `compare`, `models`, `predict` through the real CLI dispatcher (engines replaced by tiny fakes)."""
from __future__ import annotations

import hashlib
import json
import types

import numpy as np
import pytest

from spine_models.cli import main
from spine_models.models.cards import ModelCard, sha256_file
from spine_models.results import ClassificationResult

CLASSES = ["normal", "scoliosis"]


def _card(tmp_path, model_id="toy-ap", view="ap", relative=True) -> ModelCard:
    wdir = tmp_path / "weights"
    wdir.mkdir(exist_ok=True)
    wfile = wdir / f"{model_id}.pt"
    wfile.write_bytes(b"not really torch " + model_id.encode())
    card = ModelCard(id=model_id, task="classify", arch="resnet18", view=view, trained_on="toy set v1",
                     weights=f"weights/{wfile.name}" if relative else str(wfile), sha256=sha256_file(wfile),
                     input_size=64, train_command="spine-models train --task classify --model resnet18 ...",
                     license="Apache-2.0", classes=CLASSES, data={"split": {"seed": 3, "ratios": [0.5, 0.25, 0.25]}})
    card.to_json(wdir / f"{model_id}.json")
    return card


def _class_folders(root, n=12, *, tall=False):
    import cv2

    rng = np.random.default_rng(0)
    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h = 96 if (tall and c == "scoliosis") else 64
            cv2.imwrite(str(root / c / f"{c}_{i:02d}.png"), (rng.random((h, 64)) * 255).astype(np.uint8))
    return root


def _fake_engine(skill: float):
    """A classify 'engine' whose accuracy is set by ``skill`` (deterministic per sample id)."""
    from spine_models.metrics.classification import classification_metrics

    def evaluate(card, dataset, *, quiet=False, n_resamples=1000):
        y, probs, preds = [], [], []
        for s in dataset.samples:
            t = card.classes.index(s.label)
            h = int(hashlib.md5(s.id.encode()).hexdigest(), 16) % 1000 / 1000
            right = h < skill
            p1 = 0.8 if (t == 1) == right else 0.2
            y.append(t)
            probs.append([1 - p1, p1])
            preds.append({"id": s.id, "truth": s.label, "pred": card.classes[int(p1 >= 0.5)], "prob": p1})
        m = classification_metrics(y, np.array(probs), card.classes, groups=[s.patient_id for s in dataset.samples],
                                   n_resamples=n_resamples)
        return {"metrics": m, "predictions": preds}

    return types.SimpleNamespace(evaluate=evaluate)


@pytest.fixture
def weights_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SPINE_MODELS_WEIGHTS", str(tmp_path / "weights"))
    (tmp_path / "weights").mkdir()
    return tmp_path


# --------------------------------------------------------------------------------------------- models
def test_models_json_empty_then_one_card(weights_env, capsys):
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["models"]) == 0
    assert "no shipped models" in capsys.readouterr().out
    _card(weights_env)
    assert main(["models", "--json"]) == 0
    arr = json.loads(capsys.readouterr().out)
    assert isinstance(arr, list) and len(arr) == 1
    obj = arr[0]
    for key in ("id", "task", "arch", "classes", "view", "trained_on", "weights", "sha256", "input_size",
                "train_command", "metrics", "license"):
        assert key in obj, key
    assert obj["id"] == "toy-ap" and obj["classes"] == CLASSES and "normalization" not in obj
    assert main(["models"]) == 0
    assert "toy-ap" in capsys.readouterr().out


# -------------------------------------------------------------------------------------------- predict
def test_predict_without_models_says_so(weights_env, tmp_path, capsys):
    img = _class_folders(tmp_path / "d", n=1) / "normal" / "normal_00.png"
    assert main(["predict", str(img)]) == 2
    err = capsys.readouterr().err
    assert "no shipped models" in err and "spine-models train" in err and len(err.strip().splitlines()) == 1


def test_predict_bad_file_continues(weights_env, tmp_path, capsys, monkeypatch):
    import spine_models.commands.predict as pred

    _card(weights_env, "toy-ap", view="ap")
    _card(weights_env, "toy-mri", view="mri")  # must not be used on an X-ray

    class FakePredictor:
        def __init__(self, card):
            self.card = card

        def predict(self, image):
            return ClassificationResult(model_id=self.card.id, classes=CLASSES, probs=[0.3, 0.7])

    used = []
    monkeypatch.setattr(pred, "get_predictor", lambda card, device=None: used.append(card.id) or FakePredictor(card))
    good = _class_folders(tmp_path / "d", n=1) / "scoliosis" / "scoliosis_00.png"
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["predict", str(bad), str(good), "--json"]) == 2
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert out[0]["file"] != "broken.png" and out[0]["index"] == 1 and "error" in out[0]  # neutral id, no raw name
    assert "broken" not in cap.out
    assert out[1]["results"][0]["prediction"] == "scoliosis" and out[1]["results"][0]["model_id"] == "toy-ap"
    # a model with no real validation says so in the JSON of every film (issue 14)
    assert out[1]["results"][0]["real_validated"] is False
    assert out[1]["results"][0]["validation"] == "phantom-trained — not validated on real films"
    (f,) = out[1]["findings"]  # the page's findings panel leads each film's JSON
    assert f["finding"] == "scoliosis" and f["status"] == "present" and f["phantom_only"] is True
    assert used == ["toy-ap"]
    assert "broken.png" in cap.err and "1 of 2" in cap.err
    assert main(["predict", str(good), "--html", str(tmp_path / "html"), "--show-names"]) == 0
    assert "toy-ap\tscoliosis" in capsys.readouterr().out
    assert "Research use only" in (tmp_path / "html" / "scoliosis_00.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------ evaluate/compare
def test_evaluate_and_compare_end_to_end(weights_env, tmp_path, capsys, monkeypatch):
    import spine_models.engine as engine

    data = _class_folders(tmp_path / "data", n=12, tall=True)
    _card(weights_env, "good")
    _card(weights_env, "bad")
    engines = {"good": _fake_engine(0.95), "bad": _fake_engine(0.55)}
    current = {}
    monkeypatch.setattr(engine, "task_module", lambda task: current["engine"])

    out_a, out_b = tmp_path / "a.json", tmp_path / "b.json"
    current["engine"] = engines["good"]
    assert main(["evaluate", "--model", "good", "--data", str(data), "--out", str(out_a), "--resamples", "200",
                 "--quiet"]) == 0
    ra = json.loads(out_a.read_text())
    assert ra["task"] == "classify" and ra["model"] == "good" and ra["data"]["n"] == 24
    assert ra["data"]["classes"] == CLASSES and ra["data"]["split"] == "all"
    assert len(ra["predictions"]) == 24 and {"id", "truth", "pred", "prob"} <= set(ra["predictions"][0])
    # the scoliosis films are taller: the audit must say so
    assert ra["audit"]["shortcut_warning"] is True

    current["engine"] = engines["bad"]
    assert main(["evaluate", "--model", "bad", "--data", str(data), "--out", str(out_b), "--resamples", "200",
                 "--quiet"]) == 0
    assert main(["compare", str(out_a), str(out_b)]) == 0
    cmp = json.loads(capsys.readouterr().out)
    mc = cmp["mcnemar"]
    assert mc["n"] == 24 and mc["b"] + mc["c"] > 0
    acc_a = ra["metrics"]["accuracy"]["value"]
    assert cmp["deltas"]["accuracy"]["a"] == pytest.approx(acc_a)
    assert cmp["deltas"]["accuracy"]["b_minus_a"] < 0

    # test split from the card's recorded provenance: fewer images, provenance recorded
    current["engine"] = engines["good"]
    assert main(["evaluate", "--model", "good", "--data", str(data), "--out", str(tmp_path / "t.json"),
                 "--split", "test", "--resamples", "50", "--quiet", "--no-audit"]) == 0
    rt = json.loads((tmp_path / "t.json").read_text())
    assert 0 < rt["data"]["n"] < 24 and rt["data"]["split"] == "test" and rt["data"]["split_seed"] == 3

    # McNemar inside evaluate: the second model runs on the same images
    by_id = {"good": engines["good"], "bad": engines["bad"]}
    both = types.SimpleNamespace(evaluate=lambda card, ds, **kw: by_id[card.id].evaluate(card, ds, **kw))
    current["engine"] = both
    assert main(["evaluate", "--model", "good", "--compare-with", "bad", "--data", str(data), "--out",
                 str(tmp_path / "c.json"), "--resamples", "50", "--quiet", "--no-audit"]) == 0
    rc = json.loads((tmp_path / "c.json").read_text())
    assert rc["mcnemar"]["other_model"] == "bad"
    assert (rc["mcnemar"]["b"], rc["mcnemar"]["c"]) == (mc["b"], mc["c"])


def test_evaluate_bad_inputs_exit_2(weights_env, tmp_path, capsys):
    assert main(["evaluate", "--model", "nope", "--data", str(tmp_path), "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert main(["compare", str(bad), str(bad)]) == 2
    assert "bad.json" in capsys.readouterr().err
