"""The Predictor contract (issue 13): every task's Predictor goes through the same calls on tiny models.

Each one is built from a card by ``engine.predictor.load_predictor``, subclasses ``engine.base.BasePredictor``,
takes ``predict(image, cam=...)`` whatever its task (an option of another task is ignored, a typo raises with
the closest name), answers its task's Result type at the film's own size, and that Result serialises.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spine_models.engine import predictor_class  # noqa: E402
from spine_models.engine.base import ALL_OPTIONS, TASK_OPTIONS, BasePredictor  # noqa: E402
from spine_models.engine.film_memo import film_memo  # noqa: E402
from spine_models.engine.predictor import load_predictor  # noqa: E402
from spine_models.errors import ConfigError  # noqa: E402
from spine_models.io.radiograph import Radiograph  # noqa: E402
from spine_models.models.cards import ModelCard, save_checkpoint_file  # noqa: E402
from spine_models.models.registry import create_model  # noqa: E402
from spine_models.results import ClassificationResult, DetectionResult, SegmentationResult  # noqa: E402
from spine_models.results.discs import DiscGradingResult  # noqa: E402

FILM = np.clip(np.random.default_rng(0).random((96, 48)).astype(np.float32), 0, 1)


def _card(tmp: Path, id_: str, task: str, arch: str, state: dict, kw: dict, **fields) -> Path:
    """A card (``<id>.json``) next to its weight file, as ``spine-models train`` writes them."""
    sha = save_checkpoint_file(tmp / f"{id_}.pt", arch=arch, task=task, state_dict=state, arch_kwargs=kw, half=False)
    base = dict(id=id_, task=task, arch=arch, view="any", trained_on="test", weights=str(tmp / f"{id_}.pt"), sha256=sha,
                train_command="", license="test", arch_kwargs=kw)
    card = ModelCard(**{**base, **fields})
    card.to_json(tmp / f"{id_}.json")
    return tmp / f"{id_}.json"


def _network(arch: str, task: str, **kw) -> dict:
    torch.manual_seed(0)
    return create_model(arch, task=task, **kw).state_dict()


@pytest.fixture(scope="module")
def cards(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("contract")
    cls_kw = {"num_classes": 2, "in_chans": 1}
    seg_kw = {"classes": 1}
    rcnn_kw = {"nc": 2, "min_size": 64, "max_size": 64}
    out = {
        "classify": _card(tmp, "tiny_cls", "classify", "spinenet_tiny", _network("spinenet_tiny", "classify", **cls_kw), cls_kw,
                          input_size=32, classes=["normal", "scoliosis"], thresholds={"binary": 0.5}),
        "segment": _card(tmp, "tiny_seg", "segment", "unet_tiny", _network("unet_tiny", "segment", **seg_kw), seg_kw,
                         input_size=[64, 32], structures=["vertebra"], view="ap"),
        "detect_rcnn": _card(tmp, "tiny_rcnn", "detect", "fasterrcnn_mobilenet_v3",
                             _network("fasterrcnn_mobilenet_v3", "detect", **rcnn_kw), rcnn_kw, input_size=64,
                             classes=["lumbar_implant", "scoliosis"]),
    }
    out["disc_locator"] = _card(tmp, "tiny_discs", "segment", "unet_tiny", _network("unet_tiny", "segment", classes=2),
                                {"classes": 2}, input_size=[64, 32], structures=["disc", "disc_caudal"], view="mri")
    seg = ModelCard.from_json(out["segment"])
    state = {"coef": torch.tensor([0.3], dtype=torch.float64), "intercept": torch.tensor([-3.0], dtype=torch.float64)}
    out["composite"] = _card(tmp, "tiny_measure", "classify", "measure_cobb", state,
                             {"seg": str(out["segment"]), "seg_sha256": seg.sha256, "value": "cobb_deg", "clip": [0.0, 40.0]},
                             input_size=[64, 32], classes=["normal", "scoliosis"], thresholds={"binary": 0.5}, view="ap")
    return out


EXPECTED = {"classify": ClassificationResult, "segment": SegmentationResult, "detect_rcnn": DetectionResult,
            "composite": ClassificationResult, "disc_locator": DiscGradingResult}
TABLE_ROW = {"disc_locator": "discs"}  # a disc model's options are its own row of TASK_OPTIONS


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_every_task_predictor_answers_the_same_calls(cards, kind):
    card = ModelCard.from_json(cards[kind])
    pred = load_predictor(cards[kind], device="cpu")
    assert isinstance(pred, BasePredictor) and type(pred) is predictor_class(card)
    assert dict(pred.OPTIONS) == TASK_OPTIONS[TABLE_ROW.get(kind, card.task)] and set(pred.OPTIONS) <= ALL_OPTIONS
    rad = Radiograph(pixels=FILM, bits=8, format="png", name="film.png", photometric="MONOCHROME2")
    for image in (FILM, rad):
        for call in ({}, {"cam": False}, {"cam": True, "measure": True}):  # every model takes every task's options
            res = pred.predict(image, **call)
            assert type(res) is EXPECTED[kind]
            assert tuple(res.image_size) == FILM.shape and res.model_id == card.id and res.elapsed_ms >= 0
            d = json.loads(json.dumps(res.to_dict()))
            assert d["type"] == EXPECTED[kind].__name__ and d["model_id"] == card.id
    with pytest.raises(ConfigError, match="did you mean 'cam'"):
        pred.predict(FILM, cma=True)


def test_yolo_predictor_answers_the_same_calls(tmp_path):
    pytest.importorskip("ultralytics")
    kw = {"nc": 2}
    path = _card(tmp_path, "tiny_yolo", "detect", "yolov8n", _network("yolov8n", "detect", **kw), kw, input_size=64,
                 classes=["lumbar_implant", "scoliosis"])
    pred = load_predictor(path, device="cpu")
    assert isinstance(pred, BasePredictor) and pred.yolo
    res = pred.predict(FILM, cam=True)
    assert type(res) is DetectionResult and tuple(res.image_size) == FILM.shape
    assert json.loads(res.to_json())["type"] == "DetectionResult"


def test_a_network_runs_once_per_film_and_options(cards):
    """The base keeps each network's result per film: the same call again (or a composite reading the same
    segmenter) does not run the network; another film or other options do."""
    film_memo.clear()
    seg = load_predictor(cards["segment"], device="cpu")
    calls: list[int] = []
    seg.model.register_forward_hook(lambda *_: calls.append(1))
    first = seg.predict(FILM)
    again = seg.predict(FILM.copy())
    assert len(calls) == 1 and again.to_dict() | {"elapsed_ms": 0} == first.to_dict() | {"elapsed_ms": 0}
    seg.predict(FILM, measure=False)
    seg.predict(FILM[::-1].copy())
    assert len(calls) == 3


def test_a_composite_card_is_not_a_network_classifier(cards):
    from spine_models.engine import classify
    from spine_models.engine.composite import CompositePredictor

    card = ModelCard.from_json(cards["composite"])
    assert predictor_class(card) is CompositePredictor
    with pytest.raises(ConfigError, match="load_predictor"):
        classify.Predictor(card)


# ------------------------------------------------------------------------------------------------ the Trainer contract
# Every task's Trainer (engine.trainer.BaseTrainer) goes through the same calls on a tiny phantom: one epoch, the same
# history schema (a list of per-epoch dicts), summary.json, a card with the same keys written by engine.trainer.new_card,
# and the card loads back through load_predictor and predicts a film at its own size.

from spine_models.engine.trainer import BaseTrainer, read_history_file  # noqa: E402

CARD_KEYS = {f for f in ModelCard.__dataclass_fields__ if not f.startswith("_")} - {"classes", "structures"}
SUMMARY_KEYS = {"task", "best_epoch", "best_metric", "stopped_by", "epochs_run", "train_seconds"}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    """Twelve small AP phantom films in the synth layout (masks, COCO and YOLO boxes, classes normal/scoliosis)."""
    from spine_models.data.phantom.writer import generate_xray

    root = tmp_path_factory.mktemp("phantom") / "ap"
    generate_xray(root, "ap", 12, 0, height=256, width=128, workers=1, implant_fraction=0.5, quiet=True)
    return root


def _trainer(kind: str, data: Path, out: Path, seg_card: Path | None = None) -> BaseTrainer:
    from spine_models.config import load_config
    from spine_models.engine.classify import ClassifyTrainer, _CompositeTrainer
    from spine_models.engine.detect import DetectTrainer
    from spine_models.engine.segment import SegmentTrainer

    cls_set = {"data": [str(data)], "epochs": 1, "batch": 4, "eval_resamples": 20, "leakage_check": False,
               "group_near_duplicates": False, "split": "6:3:3"}
    det_set = {"data": str(data / "coco.json"), "epochs": 1, "batch": 4, "imgsz": 64, "n_resamples": 20,
               "classes": ["lumbar_implant"], "split": "6:3:3"}
    table = {
        "classify": (ClassifyTrainer, "classify", {**cls_set, "model": "spinenet_tiny", "imgsz": 32}),
        "composite": (_CompositeTrainer, "classify", {**cls_set, "model": "measure_cobb", "seg": str(seg_card)}),
        "segment": (SegmentTrainer, "segment", {"model": "unet_tiny", "data": [str(data)], "imgsz": [64, 32], "epochs": 1,
                                                "batch": 4, "max_steps": 1, "augment": "none", "eval_resamples": 20,
                                                "leakage_check": False}),
        "detect_rcnn": (DetectTrainer, "detect", {**det_set, "model": "fasterrcnn_mobilenet_v3", "min_size": 64, "max_size": 64}),
        "detect_yolo": (DetectTrainer, "detect", {**det_set, "model": "yolov8n"}),
    }
    cls, task, overrides = table[kind]
    return cls(load_config(task, overrides), out, quiet=True)


@pytest.fixture(scope="module")
def seg_run(phantom, tmp_path_factory) -> Path:
    return _trainer("segment", phantom, tmp_path_factory.mktemp("seg") / "run").train()


@pytest.mark.parametrize("kind", ["classify", "segment", "detect_rcnn", "detect_yolo", "composite"])
def test_every_task_trainer_goes_through_the_same_calls(kind, phantom, seg_run, tmp_path):
    if kind == "detect_yolo":
        pytest.importorskip("ultralytics")
    if kind == "segment":
        card_path = seg_run
    else:
        trainer = _trainer(kind, phantom, tmp_path / "run", seg_card=seg_run)
        assert isinstance(trainer, BaseTrainer)
        card_path = trainer.train()
    run = card_path.parent
    assert card_path == run / "card.json"

    history = json.loads((run / "history.json").read_text())
    assert isinstance(history, list) and read_history_file(run / "history.json") == history
    assert len(history) == (0 if kind == "composite" else 1)  # a composite has no epochs
    for row in history:
        assert isinstance(row, dict) and row["epoch"] == 1 and row["time_s"] >= 0
    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["epochs_run"] == len(history)

    from spine_models.models.cards import sha256_file

    raw = json.loads(card_path.read_text())
    own = {"structures"} if raw["task"] == "segment" else {"classes"}
    assert set(raw) == CARD_KEYS | own, set(raw) ^ (CARD_KEYS | own)
    card = ModelCard.from_json(card_path)
    assert Path(card.weights) == (run / "model.pt").resolve() and card.sha256 == sha256_file(run / "model.pt")
    assert card.created.endswith("+00:00") and card.metrics  # UTC, and test metrics on the held-out part

    pred = load_predictor(card_path, device="cpu")
    res = pred.predict(FILM, cam=False)
    assert tuple(res.image_size) == FILM.shape and res.model_id == card.id


def test_disc_grader_trainer_is_on_the_contract():
    """The disc grader needs the SPIDER layout and a locator: it trains in tests/test_spider_discs.py
    (test_tiny_locator_and_grader_train_and_evaluate); here, that it is a BaseTrainer using fit's loop."""
    from spine_models.engine.discs import DiscGraderTrainer

    assert issubclass(DiscGraderTrainer, BaseTrainer)
    assert DiscGraderTrainer.run is BaseTrainer.run and DiscGraderTrainer.train is BaseTrainer.train


def test_read_history_takes_the_list_and_the_old_detection_dict(tmp_path):
    from spine_models.engine.jobs import read_history

    rows = [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.4}]
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "history.json").write_text(json.dumps(rows))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "history.json").write_text(json.dumps({"epochs": rows, "summary": {"threshold": 0.3}}))
    assert read_history(tmp_path / "new") == rows and read_history(tmp_path / "old") == rows
    assert read_history(tmp_path / "missing") == []
