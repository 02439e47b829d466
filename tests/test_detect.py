"""Detect task: metrics on hand-made boxes, coordinate mapping, tiny YOLO / Faster R-CNN train+predict offline."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from spine_models.config import load_config
from spine_models.data.records import BoxLabel, Sample, SpineDataset
from spine_models.metrics.detection import (ImageBoxes, box_iou, detection_map, detection_map_ci, image_level_sens_spec,
                                            image_scores, youden_threshold)
from spine_models.models.cards import ModelCard
from spine_models.models.registry import create_model, list_models
from spine_models.results.detection import DetectionResult

# ------------------------------------------------------------------------------------------ helpers


def _film(rng: np.random.Generator, h: int, w: int, implant: bool) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    """Noise background with a faint 'spine' column; an 'implant' is a bright rectangle."""
    img = rng.normal(0.25, 0.04, (h, w))
    img[:, w // 2 - w // 10: w // 2 + w // 10] += 0.15
    boxes = []
    if implant:
        bw, bh = int(rng.integers(w // 5, w // 3)), int(rng.integers(h // 5, h // 3))
        x1, y1 = int(rng.integers(2, w - bw - 2)), int(rng.integers(2, h - bh - 2))
        img[y1:y1 + bh, x1:x1 + bw] = 0.95
        boxes.append((x1, y1, x1 + bw, y1 + bh))
    return (np.clip(img, 0, 1) * 65535).astype(np.uint16), boxes


def _write_yolo(root: Path, n: int = 8, size: tuple[int, int] = (128, 96)) -> Path:
    rng = np.random.default_rng(1)
    h, w = size
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    for i in range(n):
        split = "train" if i < n - 2 else "val"
        img, boxes = _film(rng, h, w, implant=i % 2 == 0)
        cv2.imwrite(str(root / "images" / split / f"P{i:03d}.png"), img)
        lines = [f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                 for x1, y1, x2, y2 in boxes]
        (root / "labels" / split / f"P{i:03d}.txt").write_text("\n".join(lines))
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: lumbar_implant\n  1: scoliosis\n")
    return root / "data.yaml"


def _write_coco(root: Path, n: int = 8, size: tuple[int, int] = (128, 96)) -> Path:
    rng = np.random.default_rng(2)
    h, w = size
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        img, boxes = _film(rng, h, w, implant=i % 2 == 0)
        cv2.imwrite(str(root / "images" / f"P{i:03d}.png"), img)
        images.append({"id": i + 1, "file_name": f"P{i:03d}.png", "width": w, "height": h})
        for x1, y1, x2, y2 in boxes:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "Lum"}, {"id": 2, "name": "sco"}]}
    (root / "coco.json").write_text(json.dumps(coco))
    return root / "coco.json"


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly (and is recorded)."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args else kwargs)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def _tiny_cfg(**kw):
    base = {"epochs": 1, "imgsz": 128, "batch": 4, "split": "6:2:0", "n_resamples": 50}
    return load_config("detect", {**base, **kw})


# ------------------------------------------------------------------------------------------ metrics


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0])


def test_map_perfect_miss_and_iou_ladder():
    gts = [ImageBoxes.make([[10, 10, 50, 50]], ["lumbar_implant"]), ImageBoxes.make([], [])]
    perfect = [ImageBoxes.make([[10, 10, 50, 50]], ["lumbar_implant"], [0.9]), ImageBoxes.make([], [], [])]
    r = detection_map(perfect, gts, ["lumbar_implant"])
    assert r["map50"] == pytest.approx(1.0) and r["map50_95"] == pytest.approx(1.0)

    miss = [ImageBoxes.make([[100, 100, 140, 140]], ["lumbar_implant"], [0.9]), ImageBoxes.make([], [], [])]
    r = detection_map(miss, gts, ["lumbar_implant"])
    assert r["map50"] == 0.0 and r["map50_95"] == 0.0

    # wrong class is a miss for the right class and a false positive for the other (which has no truth: NaN)
    wrong = [ImageBoxes.make([[10, 10, 50, 50]], ["scoliosis"], [0.9]), ImageBoxes.make([], [], [])]
    r = detection_map(wrong, gts, ["lumbar_implant", "scoliosis"])
    assert r["ap50"]["lumbar_implant"] == 0.0 and np.isnan(r["ap50"]["scoliosis"]) and r["map50"] == 0.0

    # IoU 0.62: a hit at 0.50, 0.55, 0.60 only -> AP50 1, AP50:95 = 3/10
    x2 = 10 + 40 * 0.62  # same height, overlapping width fraction 0.62
    partial = [ImageBoxes.make([[10, 10, x2, 50]], ["lumbar_implant"], [0.9]), ImageBoxes.make([], [], [])]
    assert box_iou(partial[0].boxes, gts[0].boxes)[0, 0] == pytest.approx(0.62)
    r = detection_map(partial, gts, ["lumbar_implant"])
    assert r["map50"] == pytest.approx(1.0) and r["map50_95"] == pytest.approx(0.3)


def test_map_ranked_false_positive_known_ap():
    # two truths; ranked TP .9, FP .8, TP .7 -> precision 1 up to recall .5, 2/3 up to recall 1
    gts = [ImageBoxes.make([[0, 0, 10, 10]], ["lumbar_implant"]), ImageBoxes.make([[0, 0, 10, 10]], ["lumbar_implant"])]
    preds = [ImageBoxes.make([[0, 0, 10, 10], [50, 50, 60, 60]], ["lumbar_implant"] * 2, [0.9, 0.8]),
             ImageBoxes.make([[0, 0, 10, 10]], ["lumbar_implant"], [0.7])]
    r = detection_map(preds, gts, ["lumbar_implant"])
    assert r["map50"] == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)
    # a duplicate of a matched box is a false positive, not a second hit
    dup = [ImageBoxes.make([[0, 0, 10, 10], [0, 0, 10, 10]], ["lumbar_implant"] * 2, [0.9, 0.8]), ImageBoxes.make([], [], [])]
    r = detection_map(dup, gts, ["lumbar_implant"])
    assert r["map50"] == pytest.approx(51 / 101)


def test_map_ci_brackets_value_and_is_M():
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for i in range(30):
        if i % 2:
            gts.append(ImageBoxes.make([[10, 10, 40, 40]], ["lumbar_implant"]))
            hit = rng.random() < 0.7
            preds.append(ImageBoxes.make([[10, 10, 40, 40] if hit else [60, 60, 90, 90]], ["lumbar_implant"], [rng.random()]))
        else:
            gts.append(ImageBoxes.make([], []))
            preds.append(ImageBoxes.make([[60, 60, 90, 90]], ["lumbar_implant"], [rng.random() * 0.5]))
    r = detection_map_ci(preds, gts, ["lumbar_implant"], n_resamples=200)
    point = detection_map(preds, gts, ["lumbar_implant"])
    m = r["map50"]
    assert set(m) == {"value", "ci95"} and m["value"] == pytest.approx(point["map50"])
    assert m["ci95"][0] <= m["value"] <= m["ci95"][1] and m["ci95"][1] - m["ci95"][0] > 0.01


def test_image_level_sens_spec_known_table():
    # 4 positives (3 called), 6 negatives (1 called) at threshold 0.5
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    s = [0.9, 0.6, 0.5, 0.2, 0.7, 0.1, 0.0, 0.3, 0.49, 0.0]
    sens, spec = image_level_sens_spec(y, s, 0.5)
    assert sens == pytest.approx(3 / 4) and spec == pytest.approx(5 / 6)
    sens, spec = image_level_sens_spec([1, 1], [0.9, 0.1], 0.5)
    assert sens == 0.5 and np.isnan(spec)
    preds = [ImageBoxes.make([[0, 0, 1, 1], [0, 0, 2, 2]], ["a", "a"], [0.3, 0.8]), ImageBoxes.make([], [], [])]
    np.testing.assert_allclose(image_scores(preds, "a"), [0.8, 0.0])


def test_youden_threshold_separates_and_sits_between_scores():
    t, j = youden_threshold([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert j == pytest.approx(1.0) and 0.3 < t < 0.7
    t, j = youden_threshold([0, 0, 1, 1], [0.1, 0.6, 0.5, 0.9])
    assert j == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------ models


def test_registry_has_detectors_and_builds_offline(no_network):
    assert {"yolov8n", "yolo11n", "fasterrcnn_mobilenet_v3", "fasterrcnn_resnet50"} <= set(list_models("detect"))
    y = create_model("yolo11n", task="detect", nc=3)
    assert y.nc == 3 if hasattr(y, "nc") else y.yaml["nc"] == 3
    r = create_model("fasterrcnn_mobilenet_v3", task="detect", nc=2, min_size=128, max_size=128)
    assert r.roi_heads.box_predictor.cls_score.out_features == 3 and r.transform.min_size == (128,)
    # the CPU variant's slim head and sampling; torchvision's reference sizes on request
    assert r.roi_heads.box_head.fc7.out_features == 256 and r.roi_heads.fg_bg_sampler.batch_size_per_image == 128
    assert r.rpn._post_nms_top_n["training"] == 500
    ref = create_model("fasterrcnn_mobilenet_v3", task="detect", nc=2, representation_size=1024,
                       rpn_post_nms_top_n_train=2000, box_batch_size_per_image=512)
    assert ref.roi_heads.box_head.fc7.out_features == 1024 and ref.roi_heads.box_predictor.bbox_pred.out_features == 12
    assert sum(p.numel() for p in r.parameters()) < 0.5 * sum(p.numel() for p in ref.parameters())
    assert not no_network


class _FixedYolo(torch.nn.Module):
    """Emits one box (cx, cy, w, h in letterboxed pixels) with class 1 at score 0.9."""

    def __init__(self, cxcywh, nc=2):
        super().__init__()
        self.out = torch.zeros(1, 4 + nc, 8)
        self.out[0, :4, 0] = torch.tensor(cxcywh, dtype=torch.float32)
        self.out[0, 4 + 1, 0] = 0.9

    def forward(self, x):
        assert x.shape == (1, 3, 128, 64)  # minimal (stride) padding, not a square
        return self.out


class _FixedRcnn(torch.nn.Module):
    def __init__(self, box):
        super().__init__()
        self.box = torch.tensor([box], dtype=torch.float32)

    def forward(self, imgs):
        return [{"boxes": self.box, "scores": torch.tensor([0.8]), "labels": torch.tensor([1])}]


def _card(arch, **kw):
    return ModelCard(id="t", task="detect", arch=arch, view="any", trained_on="test", weights="/nonexistent.pt",
                     sha256="", input_size=128, train_command="", license="test",
                     classes=["lumbar_implant", "scoliosis"], thresholds={"score": 0.5}, **kw)


def test_predictor_maps_boxes_back_to_original_coordinates():
    from spine_models.engine.detect import Predictor

    # 300 x 140 (H x W) film -> long side 128: resized 128 x 60 (sx 60/140, sy 128/300), padded to 64: 2 px left
    image = np.zeros((300, 140), np.float32)
    s = np.array([60 / 140, 128 / 300, 60 / 140, 128 / 300])
    want = np.array([30.0, 60.0, 90.0, 210.0])  # x1 y1 x2 y2 in the original
    x1, y1, x2, y2 = want * s
    p = Predictor(_card("yolov8n"), device="cpu", model=_FixedYolo([(x1 + x2) / 2 + 2, (y1 + y2) / 2, x2 - x1, y2 - y1]))
    r = p.predict(image)
    assert isinstance(r, DetectionResult) and r.image_size == (300, 140)
    b = r.boxes[0]
    assert b.label == "scoliosis" and b.score == pytest.approx(0.9)
    np.testing.assert_allclose([b.x1, b.y1, b.x2, b.y2], want, atol=0.01)
    assert r.findings() == {"lumbar_implant": False, "scoliosis": True}

    p = Predictor(_card("fasterrcnn_mobilenet_v3"), device="cpu", model=_FixedRcnn(list(want * s)))
    b = p.predict(image).boxes[0]
    assert b.label == "lumbar_implant"  # torchvision label 1 = first class
    np.testing.assert_allclose([b.x1, b.y1, b.x2, b.y2], want, atol=0.01)


# ------------------------------------------------------------------------------------------ train / predict


def _check_run(card_path: Path, tmp: Path):
    from spine_models.engine.detect import Predictor, evaluate

    card = ModelCard.from_json(card_path)
    run = card_path.parent
    assert {"model.pt", "card.json", "history.json", "last.pt"} <= {p.name for p in run.iterdir()}
    assert card.task == "detect" and card.classes[0] == "lumbar_implant" and 0 < card.thresholds["score"] < 1
    assert set(card.metrics) >= {"map50", "map50_95", "per_class"}
    assert set(card.metrics["per_class"]["lumbar_implant"]) >= {"ap50", "sensitivity", "specificity"}
    ckpt = torch.load(card.weights_path(), map_location="cpu", weights_only=True)
    assert all(v.dtype != torch.float32 for v in ckpt["state_dict"].values())  # shipped fp16
    hist = json.loads((run / "history.json").read_text())  # one history format for every task: a list of epochs
    assert isinstance(hist, list) and len(hist) == 1 and hist[0]["time_s"] > 0 and hist[0]["epoch"] == 1
    assert json.loads((run / "summary.json").read_text())["threshold"] == pytest.approx(card.thresholds["score"], abs=1e-4)

    # a non-square film of another size than imgsz: boxes come back inside its own pixel grid
    rng = np.random.default_rng(5)
    film, _ = _film(rng, 200, 120, implant=True)
    path = tmp / "odd.png"
    cv2.imwrite(str(path), film)
    r = Predictor(card, device="cpu").predict(path)
    assert r.image_size == (200, 120) and r.boxes
    for b in r.boxes:
        assert 0 <= b.x1 <= b.x2 <= 120 and 0 <= b.y1 <= b.y2 <= 200 and b.label in card.classes
    assert json.loads(r.to_json())["threshold"] == card.thresholds["score"]

    ds = SpineDataset("odd", [Sample(id="odd", patient_id="odd", path=path, boxes=[BoxLabel(1, 1, 30, 30, "lumbar_implant")]),
                              Sample(id="odd2", patient_id="odd2", path=path, boxes=[])])
    out = evaluate(card, ds, quiet=True, n_resamples=20)
    assert len(out["predictions"]) == 2 and out["metrics"]["per_class"]["lumbar_implant"]["sensitivity"]["value"] in (0.0, 1.0)


def test_tiny_yolo_trains_offline_and_predicts(tmp_path, no_network):
    from spine_models.data.adapters import load_dataset
    from spine_models.engine import detect
    from spine_models.engine.callbacks import Callback

    data_yaml = _write_yolo(tmp_path / "yolo")
    ds = load_dataset(data_yaml, task="detect")

    class Rec(Callback):
        def __init__(self):
            self.epochs, self.batches = [], 0

        def on_batch_end(self, step, steps, loss):
            self.batches += 1

        def on_epoch_end(self, epoch, metrics):
            self.epochs.append(epoch)

    rec = Rec()
    cfg = _tiny_cfg(model="yolov8n", data=ds, classes=["lumbar_implant"])
    card = detect.train(cfg, tmp_path / "run", callbacks=[rec], quiet=True)
    assert rec.epochs == [1] and rec.batches >= 1
    # the YOLO view holds 8-bit images resized to imgsz on the long side
    img = cv2.imread(str(next((tmp_path / "run" / "yolo_data" / "images" / "train").glob("*.png"))), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint8 and max(img.shape) == 128
    _check_run(card, tmp_path)
    assert not no_network, f"network attempted: {no_network}"


def test_tiny_fasterrcnn_trains_from_coco_and_predicts(tmp_path, no_network):
    from spine_models.data.adapters import load_dataset
    from spine_models.engine import detect

    ds = load_dataset(_write_coco(tmp_path / "coco"), task="detect")
    assert "lumbar_implant" in ds.box_classes
    cfg = _tiny_cfg(model="fasterrcnn_mobilenet_v3", data=ds, classes=["lumbar_implant"], min_size=128, max_size=128)
    card = detect.train(cfg, tmp_path / "run", quiet=True)
    _check_run(card, tmp_path)
    assert not no_network


def test_stop_request_ends_training_without_a_card(tmp_path):
    from spine_models.data.adapters import load_dataset
    from spine_models.engine import detect
    from spine_models.engine.callbacks import Callback, StopTraining

    class Cancel(Callback):
        def should_stop(self):
            return True

    ds = load_dataset(_write_coco(tmp_path / "coco"), task="detect")
    cfg = _tiny_cfg(model="fasterrcnn_mobilenet_v3", data=ds, classes=["lumbar_implant"], min_size=64, max_size=64,
                    imgsz=64, epochs=3)
    with pytest.raises(StopTraining):
        detect.train(cfg, tmp_path / "run", callbacks=[Cancel()], quiet=True)
    assert not (tmp_path / "run" / "card.json").exists()


def test_unknown_arch_and_missing_class_are_input_errors(tmp_path):
    from spine_models.data.adapters import load_dataset
    from spine_models.engine import detect
    from spine_models.errors import SpineInputError

    ds = load_dataset(_write_coco(tmp_path / "coco", n=4), task="detect")
    with pytest.raises(SpineInputError, match="valid names"):
        detect.train(_tiny_cfg(model="yolov99", data=ds), tmp_path / "a", quiet=True)
    with pytest.raises(SpineInputError, match="vertebra"):
        detect.train(_tiny_cfg(model="yolov8n", data=ds, classes=["vertebra"]), tmp_path / "b", quiet=True)


def test_fasterrcnn_time_budget_stops_early_with_annealed_lr_and_bad_optimizer_is_config_error(tmp_path):
    """max_minutes ends training inside the planned epochs with the cosine lr at ~0; optimizer names are checked."""
    from spine_models.data.adapters import load_dataset
    from spine_models.engine import detect
    from spine_models.errors import ConfigError

    ds = load_dataset(_write_coco(tmp_path / "coco"), task="detect")
    base = dict(model="fasterrcnn_mobilenet_v3", data=ds, classes=["lumbar_implant"], min_size=64, max_size=64, imgsz=64,
                batch=2)
    card = detect.train(_tiny_cfg(**base, epochs=50, max_minutes=1e-4, optimizer="adamw"), tmp_path / "run", quiet=True)
    hist = json.loads((card.parent / "history.json").read_text())
    assert len(hist) == 1 and hist[0]["steps"] == 1 and max(hist[0]["lr"]) < 1e-6  # budget spent: lr annealed to 0
    with pytest.raises(ConfigError, match="optimizer"):
        detect.train(_tiny_cfg(**base, optimizer="rmsprop"), tmp_path / "bad", quiet=True)


def test_fasterrcnn_init_from_an_earlier_run_and_init_errors(tmp_path):
    """init loads an earlier run's weights (continuing a budget-cut run); with the budget spent before the
    first step the lr is 0, so the new run's weights are exactly the loaded ones. YOLO and missing files
    are config errors, not silent fresh starts."""
    from spine_models.data.adapters import load_dataset
    from spine_models.engine import detect
    from spine_models.errors import ConfigError
    from spine_models.models.cards import ModelCard, load_state

    ds = load_dataset(_write_coco(tmp_path / "coco"), task="detect")
    base = dict(model="fasterrcnn_mobilenet_v3", data=ds, classes=["lumbar_implant"], min_size=64, max_size=64, imgsz=64,
                batch=2)
    first = detect.train(_tiny_cfg(**base, epochs=3, seed=1), tmp_path / "a", quiet=True)
    second = detect.train(_tiny_cfg(**base, epochs=3, init=str(first.parent / "model.pt"), seed=2, max_minutes=1e-4),
                          tmp_path / "b", quiet=True)
    sd_a, _ = load_state(ModelCard.from_json(first))
    sd_b, _ = load_state(ModelCard.from_json(second))
    weights = [k for k in sd_a if "running_" not in k and "num_batches" not in k]  # batch-norm statistics move in train mode
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in weights)
    fresh = detect.train(_tiny_cfg(**base, epochs=1, seed=2, max_minutes=1e-4), tmp_path / "c", quiet=True)
    sd_c, _ = load_state(ModelCard.from_json(fresh))
    assert not all(torch.equal(sd_a[k], sd_c[k]) for k in weights)  # the equality above is the init, not chance
    with pytest.raises(ConfigError, match="init"):
        detect.train(_tiny_cfg(**base, init=str(tmp_path / "missing.pt")), tmp_path / "d", quiet=True)
    with pytest.raises(ConfigError, match="Faster R-CNN"):
        detect.train(_tiny_cfg(model="yolov8n", data=ds, classes=["lumbar_implant"], init=str(first.parent / "model.pt")),
                     tmp_path / "e", quiet=True)
