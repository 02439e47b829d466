"""U-Nets, losses, Dice/IoU, and a tiny end-to-end train + predict + evaluate of the segment engine."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from spine_models.data.records import Sample, SpineDataset
from spine_models.errors import ConfigError
from spine_models.metrics.segmentation import dice, iou, score_mask, segmentation_metrics
from spine_models.models.registry import create_model, get_spec, list_models
from spine_models.models.segmentation import (DiceBCELoss, StudyJaccardLoss, build_loss,
                                              study_jaccard_coefficient)


# ------------------------------------------------------------------------------------------ models
def test_segment_models_registered():
    assert {"unet_study", "unet_resnet18", "unet_resnet34", "unet_mobilenet_v2", "unet_tiny"} <= set(list_models("segment"))
    assert get_spec("unet_study").input_size == (512, 256)


def test_unet_study_512x256_keeps_size_and_has_no_batchnorm():
    m = create_model("unet_study", task="segment", num_classes=5).eval()
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    assert any(isinstance(x, torch.nn.ConvTranspose2d) for x in m.modules())
    assert [b[0].out_channels for b in m.down] == [32, 64, 128, 256, 512]
    with torch.inference_mode():
        y = m(torch.rand(1, 1, 512, 256))
    assert y.shape == (1, 5, 512, 256)


def test_unet_study_rejects_bad_size():
    m = create_model("unet_study", task="segment", num_classes=1)
    with pytest.raises(ValueError, match="multiples of 16"):
        m(torch.rand(1, 1, 72, 40))


@pytest.mark.parametrize("arch", ["unet_resnet18", "unet_mobilenet_v2", "unet_tiny"])
def test_modern_unets_shape(arch):
    m = create_model(arch, task="segment", num_classes=3, in_chans=1).eval()
    with torch.inference_mode():
        y = m(torch.rand(2, 1, 128, 64))
    assert y.shape == (2, 3, 128, 64)


# ------------------------------------------------------------------------------------------ losses
def _masks():
    t = torch.zeros(1, 1, 8, 8)
    t[..., 0:4, 0:4] = 1  # 16 px
    return t


def test_study_coefficient_identical_disjoint_partial():
    t = _masks()
    s = 1.0
    same = study_jaccard_coefficient(t, t, smooth=s)
    assert same.item() == pytest.approx((16 ** 2 + s) / (16 + s))  # best value = truth area (+ smoothing)
    disjoint = torch.zeros_like(t)
    disjoint[..., 4:8, 4:8] = 1
    worst = study_jaccard_coefficient(disjoint, t, smooth=s)
    assert worst.item() == pytest.approx(s / (32 + s))
    partial = torch.zeros_like(t)
    partial[..., 0:4, 2:6] = 1  # overlaps 8 px of the 16, 16 px predicted
    # I = 8, sum = 32 -> (64 + 1) / (32 - 8 + 1) = 65 / 25
    assert study_jaccard_coefficient(partial, t, smooth=s).item() == pytest.approx(65 / 25)
    assert worst < study_jaccard_coefficient(partial, t) < same
    # bigger or smaller predictions than the truth score lower than the truth itself
    bigger = torch.zeros_like(t)
    bigger[..., 0:5, 0:5] = 1
    assert study_jaccard_coefficient(bigger, t) < same


def test_study_loss_is_negative_coefficient_and_trains_towards_truth():
    t = _masks()
    loss = StudyJaccardLoss(smooth=1.0, normalize=False)
    big = 20.0
    perfect, wrong = t * 2 * big - big, -t * 2 * big + big
    assert loss(perfect, t).item() == pytest.approx(-(256 + 1) / 17, rel=1e-4)
    assert loss(perfect, t) < loss(torch.zeros_like(t), t) < loss(wrong, t)
    logits = torch.zeros_like(t, requires_grad=True)
    StudyJaccardLoss()(logits, t).backward()
    g = logits.grad
    assert (g[t > 0] < 0).all() and (g[t == 0] > 0).all()  # descent raises truth pixels, lowers the rest


def test_dice_bce_and_build_loss():
    t = _masks()
    l_good = DiceBCELoss()(t * 20 - 10, t)
    l_bad = DiceBCELoss()(-t * 20 + 10, t)
    assert l_good.item() < 0.05 < l_bad.item()
    assert isinstance(build_loss("study_jaccard"), StudyJaccardLoss)
    from spine_models.errors import ConfigError
    with pytest.raises(ConfigError, match="dice_bce"):
        build_loss("focal")


# ----------------------------------------------------------------------------------------- metrics
def test_dice_iou_known_masks():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :4] = True  # 40
    b[:, 2:6] = True  # 40, overlap 20
    assert dice(a, b) == pytest.approx(0.5) and iou(a, b) == pytest.approx(20 / 60)
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    empty = np.zeros_like(a)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0  # correctly absent
    assert dice(a, empty) == 0.0 and iou(empty, a) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        dice(a, np.zeros((5, 5)))


def test_score_mask_resizes_truth_and_says_so():
    pred = np.zeros((100, 50), bool)
    pred[20:60, 10:40] = True
    truth_small = cv2.resize(pred.astype(np.uint8) * 255, (25, 50), interpolation=cv2.INTER_NEAREST)
    r = score_mask(pred, truth_small)
    assert r["resized"] and "resized" in r["note"] and r["dice"] > 0.95
    r2 = score_mask(pred, np.dstack([pred * 255] * 3))
    assert not r2["resized"] and r2["dice"] == 1.0 and "note" not in r2


def test_segmentation_metrics_ci():
    per = [{"vertebra": {"dice": d, "iou": d / (2 - d)}} for d in (0.8, 0.9, 1.0)] + [{}]
    m = segmentation_metrics(per, ["vertebra", "pedicle"], n_resamples=200)
    v = m["dice"]["vertebra"]
    assert v["value"] == pytest.approx(0.9) and v["ci95"][0] <= 0.9 <= v["ci95"][1]
    assert m["iou"]["pedicle"]["value"] is None


# -------------------------------------------------------------------------------- tiny engine run
STRUCTS = ("vertebra", "spinous_process", "pedicle")


def _film(rng, h=128, w=64):
    img = rng.normal(0.2, 0.02, (h, w)).astype(np.float32)
    masks = {s: np.zeros((h, w), np.uint8) for s in STRUCTS}
    tilt = rng.uniform(-8, 8)
    for i in range(5):
        cy, cx = 14 + i * 24, w / 2 + rng.uniform(-2, 2)
        box = cv2.boxPoints(((cx, cy), (30, 14), tilt))
        cv2.fillPoly(masks["vertebra"], [np.round(box).astype(np.int32)], 255)
        cv2.rectangle(masks["spinous_process"], (int(cx) - 2, int(cy) + 2), (int(cx) + 2, int(cy) + 6), 255, -1)
        for dx in (-9, 9):
            cv2.circle(masks["pedicle"], (int(cx + dx), int(cy)), 3, 255, -1)
    img[masks["vertebra"] > 0] += 0.5
    img[masks["pedicle"] > 0] += 0.2
    img[masks["spinous_process"] > 0] += 0.3
    return (np.clip(img, 0, 1) * 65535).astype(np.uint16), masks, tilt


def _dataset(tmp_path, n, name, seed):
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        img, masks, tilt = _film(rng)
        sid = f"{name}{i}"
        ip = tmp_path / "images" / f"{sid}.png"
        ip.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(ip), img)
        mp = {}
        for s, m in masks.items():
            p = tmp_path / "masks" / s / f"{sid}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), m)
            mp[s] = p
        samples.append(Sample(id=sid, patient_id=sid, path=ip, view="ap", label="normal", masks=mp,
                              meta={"cobb_deg": 0.0, "pixel_spacing_mm": 0.5}))
    return SpineDataset(name=name, samples=samples, structures=list(STRUCTS), root=str(tmp_path))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from spine_models.engine.segment import train_parts

    base = tmp_path_factory.mktemp("seg")
    parts = {"train": _dataset(base / "d", 6, "tr", 1), "val": _dataset(base / "d", 2, "va", 2),
             "test": _dataset(base / "d", 3, "te", 3)}
    cfg = {"model": "unet_tiny", "imgsz": [64, 32], "epochs": 2, "batch": 2, "lr": 3e-3, "max_steps": 2,
           "augment": "light", "eval_resamples": 50, "seed": 0}
    card_path = train_parts(parts, cfg, base / "run", quiet=True)
    return card_path, parts


def test_tiny_train_writes_run_folder_and_card(tiny_run):
    from spine_models.models.cards import ModelCard

    card_path, _ = tiny_run
    run = card_path.parent
    for f in ("model.pt", "last.pt", "history.json", "card.json"):
        assert (run / f).is_file(), f
    card = ModelCard.from_json(card_path)
    assert card.task == "segment" and card.view == "ap" and card.structures == list(STRUCTS)
    assert card.input_size == [64, 32]
    assert set(card.metrics["dice"]) == set(STRUCTS)
    m = card.metrics["dice"]["vertebra"]
    assert 0.0 <= m["value"] <= 1.0 and m["ci95"][0] <= m["value"] <= m["ci95"][1]
    assert "cobb_mae_deg" in card.metrics
    hist = json.loads((run / "history.json").read_text())
    assert len(hist) == 2 and "val_dice_vertebra" in hist[0]


def test_predictor_returns_masks_at_original_resolution(tiny_run):
    from spine_models.engine.segment import Predictor
    from spine_models.results.segmentation import SegmentationResult

    card_path, parts = tiny_run
    pred = Predictor(card_path)
    film = np.random.default_rng(0).random((300, 140)).astype(np.float32)
    res = pred.predict(film, pixel_spacing_mm=0.2)
    assert isinstance(res, SegmentationResult)
    assert res.image_size == (300, 140)
    assert set(res.masks) == set(STRUCTS) and all(m.shape == (300, 140) and m.dtype == bool for m in res.masks.values())
    assert res.measurements["pixel_spacing_mm"] == [0.2, 0.2]
    d = res.to_dict()
    json.dumps(d)
    assert res.plot(film).shape == (300, 140, 3)
    res2 = pred.predict(parts["test"].samples[0].path)
    assert res2.image_size == (128, 64)


def test_hflip_tta_averages_the_film_and_its_mirror_and_follows_the_card(tiny_run):
    """tta=hflip: the mean of the plain probabilities on the film and on its mirror, mirrored back
    (so a mirrored film gets the mirrored answer exactly); the card's setting is the default."""
    from spine_models.engine.segment import Predictor
    from spine_models.models.cards import ModelCard

    card_path, _ = tiny_run
    card = ModelCard.from_json(card_path)
    assert card.preprocessing["tta"] == "none"
    plain, tta = Predictor(card), Predictor(card, tta="hflip")
    assert plain.tta == "none" and tta.tta == "hflip"
    film = np.random.default_rng(1).random((128, 64)).astype(np.float32)
    mirror = np.ascontiguousarray(film[:, ::-1])
    want = (plain.probabilities(film) + plain.probabilities(mirror)[..., ::-1]) / 2
    got = tta.probabilities(film)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - plain.probabilities(film)).max() > 1e-4  # it is not the plain answer
    np.testing.assert_allclose(tta.probabilities(mirror), got[..., ::-1], atol=1e-5)
    card.preprocessing = {**card.preprocessing, "tta": "hflip"}
    assert Predictor(card).tta == "hflip"
    with pytest.raises(ConfigError, match="tta='vflip'"):
        Predictor(card, tta="vflip")


def test_evaluate_report_shape(tiny_run):
    from spine_models.engine.segment import evaluate

    card_path, parts = tiny_run
    rep = evaluate(card_path, parts["test"], quiet=True, n_resamples=30)
    assert set(rep["metrics"]["iou"]) == set(STRUCTS) and rep["n"] == 3
    assert len(rep["predictions"]) == 3 and "dice" in rep["predictions"][0]
    json.dumps(rep)


def test_measure_masks_on_a_drawn_ap_spine():
    from spine_models.engine.segment import measure_masks

    m = np.zeros((400, 200), np.uint8)
    tilts = [10, 5, 0, -5, -10, -15]
    x, y = 100.0, 30.0  # centres follow the curve the tilts make (endplates ~ perpendicular to the column)
    for i, t in enumerate(tilts):
        if i:
            for a in (tilts[i - 1], t):
                x, y = x - 30 * np.sin(np.radians(a)), y + 30 * np.cos(np.radians(a))
        box = cv2.boxPoints(((x, y), (70, 35), t))
        cv2.fillPoly(m, [np.round(box).astype(np.int32)], 255)
    out = measure_masks({"vertebra": m > 0, "pedicle": np.zeros_like(m, bool)}, "ap", (0.3, 0.3))
    assert out["cobb"]["n_vertebrae"] == 6
    assert out["cobb"]["cobb_deg"] == pytest.approx(25, abs=2.5)


def test_train_from_a_synth_folder_via_load_dataset(tmp_path):
    """train(cfg) reads the SPEC synth layout, splits per patient and evaluates on the test part."""
    pytest.importorskip("spine_models.data.adapters")
    from spine_models.engine.segment import train
    from spine_models.models.cards import ModelCard

    root = tmp_path / "synth"
    ds = _dataset(root, 10, "s", 5)
    rows = ["id,patient_id,view,class,cobb_deg,slip_percent,meyerding_grade,implant,pixel_spacing_mm"]
    rows += [f"{s.id},P{i},ap,normal,0.0,0.0,0,0,0.5" for i, s in enumerate(ds.samples)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    cfg = {"model": "unet_tiny", "data": [str(root)], "imgsz": [64, 32], "epochs": 1, "batch": 4, "max_steps": 1,
           "augment": "none", "eval_resamples": 20,
           "leakage_check": False}  # the drawn test films are near-duplicates of each other by design
    card = ModelCard.from_json(train(cfg, tmp_path / "run", quiet=True))
    assert card.structures == list(STRUCTS) and card.view == "ap"
    assert card.data["split"]["parts"]["test"]["n_patients"] >= 1
    assert "dice" in card.metrics and "cobb_mae_deg" in card.metrics


def test_measure_masks_reports_unmeasurable_masks():
    from spine_models.engine.segment import measure_masks

    blob = np.zeros((200, 100), bool)
    blob[20:180, 20:80] = True  # one merged body
    ap = measure_masks({"vertebra": blob, "pedicle": blob}, "ap")
    assert ap["cobb"]["cobb_deg"] is None and "bodies" in ap["cobb"]["note"]
    lat = measure_masks({"vertebra": blob}, "lat")
    assert lat["slip"]["slip_percent"] is None and lat["slip"]["meyerding_grade"] is None
    empty = measure_masks({"vertebra": np.zeros_like(blob)}, "ap")   # says why, instead of leaving Cobb out
    assert empty["cobb"]["cobb_deg"] is None and "no vertebral body" in empty["cobb"]["note"]
    assert measure_masks({"vertebra": np.zeros_like(blob)}, "lat") == {}


def test_time_budget_stops_only_at_an_epoch_end():
    from spine_models.engine.callbacks import TimeBudget

    b = TimeBudget(minutes=0.5)  # 30 s
    b.on_epoch_start(0, 10)
    b.epoch_t0 -= 10  # pretend the epoch took 10 s
    b.on_epoch_end(0, {})
    b.t0 -= 10
    assert not b.should_stop()  # 10 s used + 10 s for another epoch fits in 30 s
    b.t0 -= 15
    b.on_epoch_start(1, 10)
    b.epoch_t0 -= 10
    b.on_epoch_end(1, {})
    assert b.should_stop()  # 25 s used: another 10 s epoch would overrun


def test_time_budget_does_not_count_the_caching_first_epoch_once_later_ones_exist():
    from spine_models.engine.callbacks import TimeBudget

    b = TimeBudget(minutes=1.0)  # 60 s
    for epoch, took in enumerate((28, 8)):  # the first epoch decodes and caches every film
        b.on_epoch_start(epoch, 10)
        b.epoch_t0 -= took
        b.t0 -= took
        b.on_epoch_end(epoch, {})
    assert b.longest == pytest.approx(8, abs=0.5) and not b.should_stop()  # 36 s used + 8 s fits (counting the first: 36 + 28 > 60)
    b.on_epoch_start(2, 10)
    b.epoch_t0 -= 9
    b.t0 -= 16
    b.on_epoch_end(2, {})
    assert b.longest == pytest.approx(9, abs=0.5) and b.should_stop()  # 52 s used + 9 s would overrun


def test_measure_masks_lateral_reads_l5_s1_from_the_disc_mask():
    """The lateral vertebra mask holds T1..L5 only; the L5-S1 slip needs the sacral endplate from the disc."""
    from spine_models.engine.segment import measure_masks

    shape, w, h, gap, shift = (420, 300), 60, 30, 14, 0.3
    def box(cx, cy):
        return np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])
    s1 = box(150, 320)
    bodies = [box(150 - shift * w, 320 - k * (h + gap)) for k in (4, 3, 2, 1)]  # L2..L5, slipped at L5-S1
    vert = np.zeros(shape, np.uint8)
    for b in bodies:
        cv2.fillPoly(vert, [np.round(b).astype(np.int32)], 255)
    disc = np.zeros(shape, np.uint8)
    cv2.fillPoly(disc, [np.round(np.array([bodies[-1][3], bodies[-1][2], s1[1], s1[0]])).astype(np.int32)], 255)
    spin = np.zeros(shape, np.uint8)
    spin[100:320, 250:260] = 255
    out = measure_masks({"vertebra": vert > 0, "spinous_process": spin > 0, "disc_height": disc > 0}, "lat", (0.5, 0.5))
    slip = out["slip"]
    assert slip["level"] == "L5-S1" and slip["slip_percent"] == pytest.approx(30, abs=3)
    assert slip["meyerding_grade"] == 2 and slip["anterior"] == "left"
    assert slip["disc_heights"]["L5-S1"]["middle_mm"] == pytest.approx(gap * 0.5, abs=1.0)


def test_time_budget_in_training_stops_and_still_writes_the_card(tmp_path):
    """max_minutes through train_parts: the stop message reaches the caller's callbacks once, and the run ends
    with a card (a regression: the budget once logged through the list holding it and recursed forever)."""
    from spine_models.engine.callbacks import Callback
    from spine_models.engine.segment import train_parts

    class Rec(Callback):
        def __init__(self):
            self.msgs = []

        def on_log(self, message):
            self.msgs.append(message)

    parts = {"train": _dataset(tmp_path / "d", 4, "tr", 1), "val": _dataset(tmp_path / "d", 2, "va", 2),
             "test": _dataset(tmp_path / "d", 2, "te", 3)}
    cfg = {"model": "unet_tiny", "imgsz": [64, 32], "epochs": 5, "batch": 2, "max_steps": 1, "augment": "none",
           "eval_resamples": 20, "seed": 0, "max_minutes": 1e-6}
    rec = Rec()
    card = train_parts(parts, cfg, tmp_path / "run", callbacks=[rec], quiet=True)
    assert card.is_file()
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(hist) == 1
    assert sum(m.startswith("time budget") for m in rec.msgs) == 1


def test_cobb_on_scattered_specks_is_flagged_unreliable():
    """Real films gave the phantom-trained U-Net specks on skull, text and pelvis: say so, not just a number."""
    from spine_models.engine.segment import measure_masks

    m = np.zeros((800, 400), np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(6):  # a few blobs in one corner region, tilted every which way
        box = cv2.boxPoints(((rng.uniform(50, 350), rng.uniform(600, 780)), (30, 14), rng.uniform(-60, 60)))
        cv2.fillPoly(m, [np.round(box).astype(np.int32)], 255)
    out = measure_masks({"vertebra": m > 0, "pedicle": np.zeros_like(m, bool)}, "ap")
    assert out["cobb"]["reliable"] is False and out["cobb"]["warnings"]
    # a proper column stays reliable
    col = np.zeros((800, 400), np.uint8)
    for i in range(14):
        box = cv2.boxPoints(((200, 60 + i * 50), (60, 30), 3 * math.sin(i / 3)))
        cv2.fillPoly(col, [np.round(box).astype(np.int32)], 255)
    ok = measure_masks({"vertebra": col > 0, "pedicle": np.zeros_like(col, bool)}, "ap")
    assert ok["cobb"]["reliable"] is True and ok["cobb"]["warnings"] == []
