"""`spine-models train --task classify` end to end on a tiny class-folder dataset built here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spine_models.cli import main


def _film(rng: np.random.Generator, curved: bool) -> np.ndarray:
    """64x48 8-bit 'film': a bright column, straight (normal) or S-shaped (scoliosis), on textured noise."""
    import cv2

    img = cv2.GaussianBlur((rng.random((64, 48)) * 140).astype(np.uint8), (0, 0), float(rng.uniform(0.5, 3)))
    x0, phase, amp = int(rng.integers(16, 32)), float(rng.uniform(0, 6.3)), float(rng.uniform(6, 10))
    for r in range(64):
        x = x0 + (int(amp * np.sin(r / 9 + phase)) if curved else 0)
        img[r, max(0, x - 3): x + 3] = 230
    return img


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory) -> Path:
    import cv2

    root = tmp_path_factory.mktemp("films")
    rng = np.random.default_rng(0)
    for folder, curved in (("Normal", False), ("Scoliosis", True)):
        (root / folder).mkdir()
        for i in range(14):
            cv2.imwrite(str(root / folder / f"{folder[0]}{i}, film_1_0.png"), _film(rng, curved))
    return root


ARGS = ["--model", "spinenet_tiny", "--epochs", "2", "--imgsz", "32", "--batch", "8", "--set", "eval_resamples=50",
        "--set", "leakage_check=false", "--set", "group_near_duplicates=false", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(class_folders, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "tiny"
    assert main(["train", "--task", "classify", "--data", str(class_folders), "--out", str(out), *ARGS]) == 0
    return out


def test_train_writes_run_folder_and_valid_card(run_dir, class_folders):
    from spine_models.models.cards import ModelCard, sha256_file

    for name in ("card.json", "model.pt", "last.pt", "best.pt", "history.json"):
        assert (run_dir / name).is_file(), name
    card = ModelCard.from_json(run_dir / "card.json")
    assert card.task == "classify" and card.arch == "spinenet_tiny" and card.classes == ["normal", "scoliosis"]
    assert card.sha256 == sha256_file(run_dir / "model.pt")
    assert card.train_command.startswith("spine-models train --task classify --model spinenet_tiny --data ")
    assert str(class_folders) in card.train_command and "--epochs 2" in card.train_command
    assert 0 < card.thresholds["binary"] < 1
    m = card.metrics
    assert len(m["confusion_matrix"]) == 2 and "balanced_accuracy" in m and set(m["per_class"]) == {"normal", "scoliosis"}
    split = card.data["split"]
    assert split["seed"] == 0 and split["parts"]["test"]["n"] == sum(map(sum, m["confusion_matrix"]))
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all("val_balanced_accuracy" in h for h in history)


def test_model_loads_through_load_predictor_and_predicts(run_dir):
    from spine_models.engine.predictor import load_predictor
    from spine_models.results import ClassificationResult

    film = _film(np.random.default_rng(5), True).astype(np.float32) / 255
    for ref in (run_dir, run_dir / "card.json", run_dir / "model.pt"):
        pred = load_predictor(ref)
        res = pred.predict(film, cam=True)
        assert isinstance(res, ClassificationResult)
        assert res.classes == ["normal", "scoliosis"] and abs(sum(res.probs) - 1) < 1e-5
        assert res.cam.shape == film.shape and 0 <= res.cam.min() and res.cam.max() <= 1
        assert res.top_class in res.classes and res.threshold == pred.card.thresholds["binary"]
    res = pred.predict(film, cam=False, shap=True, shap_evals=30)
    assert res.cam is None and res.shap.shape == film.shape


def test_predict_file_runs_fitting_models(run_dir, tmp_path):
    import cv2

    from spine_models.engine.predictor import predict_file

    path = tmp_path / "film.png"
    cv2.imwrite(str(path), _film(np.random.default_rng(9), False))
    (res,) = predict_file(path, [run_dir], cam=False)
    assert res.source.startswith("file-") and "film" not in res.source and res.image_size == (64, 48) and res.model_id == run_dir.name


def test_resume_continues_to_more_epochs(run_dir, class_folders):
    cmd = ["train", "--task", "classify", "--data", str(class_folders), "--out", str(run_dir), *ARGS]
    cmd[cmd.index("--epochs") + 1] = "3"
    assert main(cmd + ["--resume"]) == 0
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_bad_input_exits_2_with_one_line(class_folders, tmp_path, capsys):
    rc = main(["train", "--task", "classify", "--model", "resnet5000", "--data", str(class_folders),
               "--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "resnet5000" in err and "resnet50" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--task", "classify", "--data", str(class_folders), "--out", str(tmp_path / "y"),
                 "--set", "nonsense=1", "--quiet"]) == 2
    assert main(["train", "--task", "classify", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "z"),
                 "--quiet"]) == 2
    assert main(["train", "--task", "classify", "--data", str(class_folders), "--out", str(tmp_path / "w"),
                 "--resume", "--quiet"]) == 2
    for task in ("detect", "segment"):  # dispatched to the task's engine, which rejects the missing folder
        assert main(["train", "--task", task, "--data", str(tmp_path / "missing"), "--out", str(tmp_path / task),
                     "--quiet"]) == 2


def _cfg(data, out, **kw):
    from spine_models.config import load_config

    base = {"model": "spinenet_tiny", "data": [str(data)], "out": str(out), "epochs": 1, "imgsz": 32, "batch": 8,
            "eval_resamples": 20, "leakage_check": False, "group_near_duplicates": False, "half": False}
    return load_config("classify", {**base, **kw})


def test_frozen_mode_trains_only_the_head(class_folders, tmp_path):
    import torch

    from spine_models.engine import classify
    from spine_models.models import create_model
    from spine_models.models.cards import ModelCard, load_state, save_checkpoint_file

    torch.manual_seed(3)
    start = create_model("spinenet_tiny", task="classify", num_classes=2)
    init = tmp_path / "start.pt"
    save_checkpoint_file(init, arch="spinenet_tiny", task="classify", state_dict=start.state_dict(), half=False)
    card_path = classify.train(_cfg(class_folders, tmp_path / "run", mode="frozen", init=str(init), epochs=2),
                               tmp_path / "run", quiet=True)
    sd, _ = load_state(ModelCard.from_json(card_path))
    ref = start.state_dict()
    body = [k for k in ref if not k.startswith("head.")]
    assert all(torch.equal(sd[k], ref[k]) for k in body), "frozen backbone (incl. batch-norm statistics) changed"
    assert not torch.equal(sd["head.2.weight"], ref["head.2.weight"])


def test_two_view_training_and_prediction(tmp_path):
    import cv2

    from spine_models.engine import classify
    from spine_models.engine.predictor import load_predictor

    rng = np.random.default_rng(1)
    root = tmp_path / "twoview"
    names = [("ap.png", "lat.png"), ("AP .png", "LAT.PNG")]
    for label, curved in (("normal", False), ("scoliosis", True)):
        for i in range(6):
            d = root / label / f"{label[0]}{i:02d}"
            d.mkdir(parents=True)
            ap_name, lat_name = names[i % 2]
            cv2.imwrite(str(d / ap_name), _film(rng, curved))
            cv2.imwrite(str(d / lat_name), _film(rng, False))
    card_path = classify.train(_cfg(root, tmp_path / "run", model="twoview_resnet18", two_view=True, split="4:1:1"),
                               tmp_path / "run", quiet=True)
    pred = load_predictor(card_path)
    film = _film(rng, True).astype(np.float32) / 255
    res = pred.predict({"ap": film, "lat": film}, cam=True)
    assert res.classes == ["normal", "scoliosis"] and res.cam.shape == film.shape


def test_freeze_then_finetune_schedule(class_folders, tmp_path):
    from spine_models.engine import classify

    cfg = _cfg(class_folders, tmp_path / "run", epochs=3, freeze_epochs=2, lr=1e-4, head_lr=1e-2, patience=0)
    classify.train(cfg, tmp_path / "run", quiet=True)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["phase"] for h in history] == ["frozen", "frozen", "finetune"]
    assert history[0]["lr"] == [1e-2, 1e-4] and history[2]["lr"] == [1e-4, 1e-4]


def test_head_lr_without_frozen_epochs_is_a_discriminative_rate(class_folders, tmp_path):
    """Fine-tuning a pretrained backbone from the start: an explicit head_lr holds for the new head."""
    from spine_models.engine import classify

    classify.train(_cfg(class_folders, tmp_path / "run", epochs=2, lr=1e-4, head_lr=1e-2, patience=0), tmp_path / "run",
                   quiet=True)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["lr"] for h in history] == [[1e-2, 1e-4], [1e-2, 1e-4]]


def test_youden_threshold_and_balanced_class_weights():
    from types import SimpleNamespace

    from spine_models.engine.classify import _class_weights, youden_threshold

    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.32, 0.6, 0.7, 0.9])
    t = youden_threshold(y, p)
    assert 0.35 < t <= 0.6  # separates all but the 0.32 positive: J = 0.75
    assert youden_threshold(np.zeros(4), np.linspace(0, 1, 4)) == 0.5
    # perfectly separated: the cut sits in the gap, not on the weakest positive
    t = youden_threshold(np.array([0, 0, 1, 1]), np.array([0.001, 0.002, 0.9951, 0.999]))
    assert 0.4 < t < 0.6
    samples = [SimpleNamespace(label="normal")] * 6 + [SimpleNamespace(label="scoliosis")] * 2
    w = _class_weights({"class_weights": "balanced"}, samples, ["normal", "scoliosis"])
    assert w.tolist() == pytest.approx([8 / 12, 8 / 4])
    assert _class_weights({"class_weights": "none"}, samples, ["normal", "scoliosis"]) is None


def test_classify_time_budget_stops_after_one_epoch_and_writes_the_card(class_folders, tmp_path):
    """max_minutes (shared with segment via engine.callbacks.with_time_budget): a budget smaller than one
    epoch ends the run after that epoch, never mid-epoch, with a complete card and one log line."""
    from spine_models.engine import classify
    from spine_models.engine.callbacks import Callback

    class Rec(Callback):
        def __init__(self):
            self.msgs = []

        def on_log(self, message):
            self.msgs.append(message)

    rec = Rec()
    card = classify.train(_cfg(class_folders, tmp_path / "run", epochs=5, max_minutes=1e-6), tmp_path / "run",
                          callbacks=[rec], quiet=True)
    assert card.is_file()
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 1
    assert sum(m.startswith("time budget") for m in rec.msgs) == 1


def test_portrait_input_size_is_kept_through_card_prediction_and_cam(class_folders, tmp_path):
    """imgsz [height, width]: a portrait film is not squashed into a square; the card records both sides and
    the Predictor's input and Grad-CAM follow them (the CAM comes back at the film's own size)."""
    from spine_models.engine import classify
    from spine_models.engine.predictor import load_predictor

    card_path = classify.train(_cfg(class_folders, tmp_path / "run", imgsz=[48, 32]), tmp_path / "run", quiet=True)
    raw = json.loads(card_path.read_text())
    assert raw["input_size"] == [48, 32]
    pred = load_predictor(card_path)
    x = pred.preprocess(pred.read(np.zeros((64, 48), np.float32) + np.eye(64, 48, dtype=np.float32)))
    assert tuple(x.shape[-2:]) == (48, 32)
    film = next(class_folders.glob("Scoliosis/*.png"))
    res = pred.predict(film, cam=True)
    assert res.cam.shape == (64, 48) and np.isfinite(res.cam).all()


def test_letterbox_cam_is_placed_on_the_film_not_the_padding(class_folders, tmp_path):
    """With letterbox resizing the model sees padding; a map lit only inside the film's part of the input
    must cover the whole film when placed back (and a map lit only on the padding must vanish)."""
    from spine_models.engine import classify
    from spine_models.data.transforms import letterbox_geometry
    from spine_models.engine.predictor import load_predictor

    card_path = classify.train(_cfg(class_folders, tmp_path / "run", imgsz=32, resize_mode="letterbox"),
                               tmp_path / "run", quiet=True)
    pred = load_predictor(card_path)
    nh, nw, top, left = letterbox_geometry((64, 48), 32)
    assert (nh, nw, top, left) == (32, 24, 0, 4)
    inside = np.zeros((32, 32), np.float32)
    inside[top:top + nh, left:left + nw] = 1.0
    film = pred.read(np.random.default_rng(0).random((64, 48)).astype(np.float32))
    pred.preprocess(film)
    geo = film.extra["geometry"]  # data.transforms.Geometry: the way back to the film
    np.testing.assert_allclose(geo.heatmap_to_film(inside), 1.0)
    np.testing.assert_allclose(geo.heatmap_to_film(1.0 - inside), 0.0)


@pytest.mark.parametrize("bad", [[48, 32, 3], [0, 32], "big", [48.5, 32]])
def test_bad_imgsz_is_a_config_error_naming_the_value(class_folders, tmp_path, bad):
    from spine_models.engine import classify
    from spine_models.errors import ConfigError

    with pytest.raises(ConfigError, match="imgsz"):
        classify.train(_cfg(class_folders, tmp_path / "run", imgsz=bad), tmp_path / "run", quiet=True)


def test_two_threads_explaining_with_one_predictor_get_their_own_maps(run_dir):
    """The app's warm-up thread and a page (or two sessions) call the same cached predictor at once: Grad-CAM hooks
    the shared network, so without the predictor's lock one call's forward lands in the other's hooks ("grads is
    None"). Every call must finish with the map its own film gives alone."""
    import threading

    from spine_models.engine.predictor import load_predictor

    from spine_models.engine.film_memo import film_memo

    pred = load_predictor(run_dir)
    films = [_film(np.random.default_rng(100 + i), i % 2 == 0).astype(np.float32) / 255 for i in range(24)]
    with film_memo.disabled():  # every call runs the network and Grad-CAM
        alone = [load_predictor(run_dir).predict(f, cam=True).cam for f in films]
    got: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(idx: range) -> None:
        for i in idx:
            try:
                got[i] = pred.predict(films[i], cam=True).cam
            except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(range(k, 24, 3),)) for k in range(3)]
    with film_memo.disabled():
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    for i, a in enumerate(alone):
        np.testing.assert_allclose(got[i], a, atol=1e-5)
