"""Composite classifiers (measurement + view routing), view labels and the lumbosacral crop.

The shipped U-Nets are too slow for unit tests, so the components here are small stand-ins with the
same interface (``.card``, ``.predict``, ``.predict_proba``) that "measure" something visible in the
tiny films: the horizontal spread of the bright column (straight = small, S-curve = large).
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from spine_models.engine import composite
from spine_models.errors import ConfigError, DatasetError, WeightsNotAvailableError
from spine_models.models.cards import ModelCard


def _film(rng: np.random.Generator, curved: bool, bright: float = 1.0) -> np.ndarray:
    img = (rng.random((64, 48)) * 100).astype(np.uint8)
    x0, phase, amp = int(rng.integers(16, 32)), float(rng.uniform(0, 6.3)), float(rng.uniform(7, 10))
    for r in range(64):
        x = x0 + (int(amp * np.sin(r / 9 + phase)) if curved else 0)
        img[r, max(0, x - 3): x + 3] = int(230 * bright)
    return img


def _write_classes(root: Path, spec: dict[str, tuple[bool, float]], n: int = 12, seed: int = 0) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    for name, (curved, bright) in spec.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / name / f"{name[:3]}{i}.png"), _film(rng, curved, bright))
    return root


def _pixels(image) -> np.ndarray:
    from spine_models.io.pixels import as_pixels

    return as_pixels(image)[0]


def _spread(image) -> float:
    """Width of the band holding the bright column: ~6 px straight, 20+ px curved."""
    px = _pixels(image)
    cols = np.flatnonzero((px > 0.7 * px.max()).any(axis=0))
    return float(cols.max() - cols.min() + 1) if len(cols) else 0.0


def _card(id_: str, task: str, **kw) -> ModelCard:
    base = dict(id=id_, task=task, arch="stand-in", view="any", trained_on="test", weights="none.pt", sha256=f"sha-{id_}",
                input_size=[64, 48], train_command="", license="test")
    return ModelCard(**{**base, **kw})


class FakeSeg:
    def __init__(self) -> None:
        self.card = _card("fake_seg", "segment", structures=["vertebra"], view="ap")
        self.device = "cpu"

    def predict(self, image, **_):
        return SimpleNamespace(measurements={"cobb": {"cobb_deg": _spread(image)}, "slip": {"slip_percent": None}})


class FakeClassifier:
    """Fixed class probabilities; the view gate's P(ap) follows the film's brightness (bright = AP)."""

    def __init__(self, id_: str, classes: list[str], probs=None) -> None:
        self.card = _card(id_, "classify", classes=classes)
        self.probs, self.device, self.calls = probs, "cpu", 0

    def predict_proba(self, images):
        self.calls += 1
        out = []
        for im in images:
            if self.probs is None:  # view gate
                p_ap = 0.9 if _pixels(im).max() > 0.8 else 0.2
                out.append([p_ap, 1 - p_ap])
            else:
                out.append(list(self.probs))
        return np.array(out)

    def predict(self, image, cam=True, **_):
        from spine_models.results import ClassificationResult

        px = _pixels(image)
        return ClassificationResult(model_id=self.card.id, image_size=px.shape, classes=self.card.classes,
                                    probs=list(self.predict_proba([image])[0]), cam=np.ones(px.shape) if cam else None,
                                    extra={"from": self.card.id})


@pytest.fixture()
def components(monkeypatch):
    parts = {"fake_seg": FakeSeg(), "gate": FakeClassifier("gate", ["ap", "lat"]),
             "ap_expert": FakeClassifier("ap_expert", ["normal", "scoliosis"], [0.3, 0.7]),
             "lat_expert": FakeClassifier("lat_expert", ["normal", "spondylolisthesis"], [0.6, 0.4])}

    def load(model, device=None):
        if str(model) in parts:
            return parts[str(model)]
        from spine_models.engine.predictor import load_predictor

        return load_predictor(model, device=device)

    monkeypatch.setattr(composite, "_load", load)
    return parts


def _cfg(data, out, **kw):
    from spine_models.config import load_config

    base = {"data": [str(d) for d in (data if isinstance(data, list) else [data])], "out": str(out), "eval_resamples": 20,
            "leakage_check": False, "group_near_duplicates": False, "split": "0.6,0.2,0.2"}
    return load_config("classify", {**base, **kw})


def test_measure_classifier_fits_the_measurement_and_round_trips(components, tmp_path):
    from spine_models.engine import classify
    from spine_models.engine.predictor import load_predictor

    data = _write_classes(tmp_path / "films", {"Normal": (False, 1.0), "Scoliosis": (True, 1.0)})
    card_path = classify.train(_cfg(data, tmp_path / "run", model="measure_cobb", seg="fake_seg"), tmp_path / "run", quiet=True)
    card = ModelCard.from_json(card_path)
    assert card.arch == "measure_cobb" and card.classes == ["normal", "scoliosis"] and card.view == "ap"
    assert card.thresholds == {"binary": 0.5} and card.arch_kwargs["seg"] == "fake_seg"
    assert card.arch_kwargs["seg_sha256"] == "sha-fake_seg" and "fake_seg" in card.notes[0]
    # the fitted cut lies between the straight (~6 px) and curved (>= 20 px) films
    cut = float(card.notes[0].split("cobb_deg >= ")[1].split()[0])
    assert 6 < cut < 20
    assert card.metrics["accuracy"]["value"] == 1.0
    pred = load_predictor(card_path)
    assert isinstance(pred, composite.CompositePredictor)
    curved = _film(np.random.default_rng(3), True).astype(np.float32) / 255
    res = pred.predict(curved)
    assert res.top_class == "scoliosis" and res.cam is None and res.extra["measured_by"] == "fake_seg"
    assert res.extra["cobb_deg"] == pytest.approx(_spread(curved))
    straight = _film(np.random.default_rng(4), False).astype(np.float32) / 255
    assert pred.predict_proba([straight])[0, 1] < 0.5 < pred.predict_proba([curved])[0, 1]


def test_measure_classifier_refuses_other_classes_and_a_changed_segmenter(components, tmp_path):
    from spine_models.engine import classify
    from spine_models.engine.predictor import load_predictor

    data = _write_classes(tmp_path / "films", {"Normal": (False, 1.0), "Scoliosis": (True, 1.0)})
    with pytest.raises(DatasetError, match="measure_slip decides normal vs spondylolisthesis"):
        classify.train(_cfg(data, tmp_path / "bad", model="measure_slip", seg="fake_seg"), tmp_path / "bad", quiet=True)
    card_path = classify.train(_cfg(data, tmp_path / "run", model="measure_cobb", seg="fake_seg"), tmp_path / "run", quiet=True)
    components["fake_seg"].card.sha256 = "sha-retrained"
    with pytest.raises(WeightsNotAvailableError, match="retrain"):
        load_predictor(card_path)


def test_measured_value_clips_and_reads_a_failed_measurement_as_no_finding():
    assert composite.measured_value("measure_cobb", {"cobb": {"cobb_deg": 95.0}}) == 40.0
    assert composite.measured_value("measure_cobb", {"cobb": {"cobb_deg": None}}) == 0.0
    assert composite.measured_value("measure_slip", {}) == -10.0
    assert composite.measured_value("measure_slip", {"slip": {"slip_percent": 12.5}}) == 12.5


def test_view_routed_mixes_experts_by_the_gate_and_trusts_a_known_view(components, tmp_path):
    from spine_models.engine import classify
    from spine_models.engine.predictor import load_predictor
    from spine_models.io.radiograph import Radiograph

    data = _write_classes(tmp_path / "films", {"Normal": (False, 1.0), "Scoliosis": (True, 1.0),
                                               "Spondylolisthesis": (False, 0.5)}, n=8)
    experts = {"view": "gate", "ap": "ap_expert", "lat": "lat_expert"}
    card_path = classify.train(_cfg(data, tmp_path / "run", model="view_routed", experts=experts), tmp_path / "run", quiet=True)
    card = ModelCard.from_json(card_path)
    assert card.classes == ["normal", "scoliosis", "spondylolisthesis"] and card.view == "any"
    assert card.arch_kwargs["experts_sha256"] == {"ap": "sha-ap_expert", "lat": "sha-lat_expert"}
    pred = load_predictor(card_path)
    bright = _film(np.random.default_rng(1), False).astype(np.float32) / 255  # gate: P(ap) = 0.9
    p = pred.predict_proba([bright])[0]
    np.testing.assert_allclose(p, [0.9 * 0.3 + 0.1 * 0.6, 0.9 * 0.7, 0.1 * 0.4], atol=1e-9)
    res = pred.predict(bright, cam=True)
    assert res.top_class == "scoliosis" and res.extra["expert"] == "ap_expert" and res.extra["view"]["ap"] == 0.9
    assert res.cam is not None and res.cam.shape == bright.shape
    # a film whose metadata says lateral skips the gate
    calls = components["gate"].calls
    rad = Radiograph(pixels=bright, bits=8, format="dicom", name="lat.dcm", photometric="MONOCHROME2", view="lat")
    np.testing.assert_allclose(pred.predict_proba([rad])[0], [0.6, 0.0, 0.4], atol=1e-9)
    assert components["gate"].calls == calls


def test_view_routed_config_errors_name_the_fix(components, tmp_path):
    from spine_models.engine import classify

    data = _write_classes(tmp_path / "films", {"Normal": (False, 1.0), "Scoliosis": (True, 1.0),
                                               "Spondylolisthesis": (False, 0.5)}, n=6)
    with pytest.raises(ConfigError, match="experts=.*view"):
        classify.train(_cfg(data, tmp_path / "a", model="view_routed"), tmp_path / "a", quiet=True)
    with pytest.raises(ConfigError, match="label_from=view"):
        classify.train(_cfg(data, tmp_path / "b", model="view_routed",
                            experts={"view": "ap_expert", "ap": "ap_expert", "lat": "lat_expert"}), tmp_path / "b", quiet=True)


def test_label_from_view_trains_a_view_classifier(tmp_path):
    """The synth layout's view column becomes the label: classes ap / lat, card view 'any'."""
    from spine_models.data.records import Sample
    from spine_models.engine.classify import relabel

    samples = [Sample(id="a", patient_id="p1", view="ap", label="normal"), Sample(id="b", patient_id="p1", view="LAT", label="normal"),
               Sample(id="c", patient_id="p2", view=None, label="scoliosis")]
    assert [(s.id, s.label) for s in relabel(samples, "view")] == [("a", "ap"), ("b", "lat")]
    assert [s.id for s in relabel(samples, "class")] == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="label_from"):
        relabel(samples, "colour")


def _stacked_mask(h: int = 400, w: int = 200, n: int = 6, body: int = 30, gap: int = 10, x0: int = 80) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for k in range(n):
        y = 40 + k * (body + gap)
        m[y:y + body, x0:x0 + 40] = True
    return m


def test_lumbosacral_box_is_centred_on_the_lowest_body_and_scales_with_it():
    from spine_models.data.roi import SIDE_IN_BODIES, lumbosacral_box

    m = _stacked_mask()
    y0, y1, x0, x1 = lumbosacral_box(m)
    assert y1 - y0 == x1 - x0 == pytest.approx(SIDE_IN_BODIES * 30, abs=6)
    lowest_cy = 40 + 5 * 40 + 15
    assert abs((y0 + y1) / 2 - lowest_cy) <= 2 and abs((x0 + x1) / 2 - 100) <= 2
    big = np.kron(m, np.ones((2, 2), bool))  # the same anatomy at twice the resolution: twice the box
    b = lumbosacral_box(big)
    assert b[1] - b[0] == pytest.approx(2 * (y1 - y0), abs=4)
    near_edge = _stacked_mask(x0=2)  # the box is shifted inside the film, never padded
    nb = lumbosacral_box(near_edge)
    assert nb[2] == 0 and nb[3] <= 200
    b4 = lumbosacral_box(m, side_in_bodies=4.0)  # a tighter crop: same centre, smaller side
    assert b4[1] - b4[0] == pytest.approx(4.0 * 30, abs=6) and abs((b4[0] + b4[1]) / 2 - lowest_cy) <= 2
    one = np.zeros((100, 100), bool)
    one[40:70, 40:70] = True
    assert lumbosacral_box(one) is None


def test_crop_is_used_at_training_and_the_cam_lands_in_the_box(monkeypatch, tmp_path):
    """crop=lumbosacral: the same locator places the crop in training and inference; Grad-CAM is placed
    back into that box on the full film (zero elsewhere); the card records the crop and its model."""
    from spine_models.data import roi
    from spine_models.engine import classify
    from spine_models.engine.predictor import load_predictor

    seen = []

    def fake_locate(pixels, kind, model=None, *, side_in_bodies=None, segment=None):
        seen.append((pixels.shape, kind, model, side_in_bodies))
        return (8, 40, 4, 36)

    monkeypatch.setattr(roi, "locate", fake_locate)
    data = _write_classes(tmp_path / "films", {"Normal": (False, 1.0), "Spondylolisthesis": (True, 1.0)}, n=8)
    cfg = _cfg(data, tmp_path / "run", model="spinenet_tiny", epochs=1, imgsz=32, batch=8, half=False, crop="lumbosacral",
               crop_side=4)
    card = ModelCard.from_json(classify.train(cfg, tmp_path / "run", quiet=True))
    assert card.preprocessing["crop"] == "lumbosacral" and card.preprocessing["crop_model"] == "seg_unet_lat"
    assert card.preprocessing["crop_side"] == 4.0
    assert seen and all(s == ((64, 48), "lumbosacral", "seg_unet_lat", 4.0) for s in seen)  # full-resolution films
    pred = load_predictor(tmp_path / "run")
    film = _film(np.random.default_rng(2), True).astype(np.float32) / 255
    seen.clear()
    f = pred.read(film)
    x = pred.preprocess(f)
    px, box = f.pixels, f.extra["box"]
    assert seen == [((64, 48), "lumbosacral", "seg_unet_lat", 4.0)]  # inference crops as the card says
    assert box == (8, 40, 4, 36) and tuple(x.shape[-2:]) == (32, 32) and px.shape == (64, 48)
    placed = f.extra["geometry"].heatmap_to_film(np.ones((32, 32), np.float32))  # the crop box on the film
    assert placed[8:40, 4:36].min() == 1.0 and placed.sum() == 32 * 32
    with pytest.raises(ConfigError, match="crop"):
        classify.train(_cfg(data, tmp_path / "bad", model="spinenet_tiny", crop="pelvis"), tmp_path / "bad", quiet=True)
    with pytest.raises(ConfigError, match="crop_side=40"):
        classify.train(_cfg(data, tmp_path / "bad", model="spinenet_tiny", crop="lumbosacral", crop_side=40), tmp_path / "bad",
                       quiet=True)


def _synth_like(root: Path, n: int = 10, seed: int = 0) -> Path:
    """A synth-layout folder (images/ + labels.csv with a view column): AP films bright, lateral dim."""
    import csv

    import cv2

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        for view, bright in (("ap", 1.0), ("lat", 0.45)):
            sid = f"P{i}-{view}"
            cv2.imwrite(str(root / "images" / f"{sid}.png"), _film(rng, bool(i % 2), bright))
            rows.append({"id": sid, "patient_id": f"P{i}", "view": view, "class": "normal"})
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_view_model_trains_and_its_report_judges_the_view_question(tmp_path):
    """label_from=view end to end: card classes ap/lat and view 'any'; `evaluate` counts ap/lat (not the
    films' diagnosis classes) and runs the metadata audit on the view labels."""
    from spine_models.cli import main

    data = _synth_like(tmp_path / "films")
    out = tmp_path / "run"
    assert main(["train", "--task", "classify", "--model", "spinenet_tiny", "--data", str(data), "--out", str(out),
                 "--epochs", "1", "--imgsz", "32", "--set", "label_from=view", "--set", "eval_resamples=20",
                 "--set", "leakage_check=false", "--set", "group_near_duplicates=false", "--quiet"]) == 0
    card = ModelCard.from_json(out / "card.json")
    assert card.classes == ["ap", "lat"] and card.view == "any" and card.preprocessing["label_from"] == "view"
    import json

    assert main(["evaluate", "--model", str(out), "--data", str(data), "--out", str(tmp_path / "r.json"),
                 "--resamples", "20", "--quiet"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["data"]["classes"] == ["ap", "lat"] and report["data"]["n_per_class"] == {"ap": 10, "lat": 10}
    assert report["audit"]["majority_rate"] == 0.5 and len(report["metrics"]["confusion_matrix"]) == 2


def test_at_threshold_moves_an_experts_cut_to_one_half_and_keeps_order():
    p = np.array([[1 - x, x] for x in (0.05, 0.17, 0.3, 0.9)])
    q = np.array([composite.at_threshold(r, 0.17) for r in p])
    assert q[1, 1] == pytest.approx(0.5) and q[0, 1] < 0.5 < q[2, 1] < q[3, 1]
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    np.testing.assert_allclose(composite.at_threshold(p[2], None), p[2])
    three = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(composite.at_threshold(three, 0.17), three)  # only binary experts shift


def test_cli_fits_models_to_a_file_by_the_apps_rule():
    """`spine-models predict` picks models with engine.predictor.card_fits: a view-any X-ray model does not
    run on an MR image, and a known view keeps only that view's ap/lat models."""
    from spine_models.commands.predict import fitting_cards

    cards = [_card(i, "classify", classes=["a", "b"], view=v) for i, v in
             (("any", "any"), ("ap", "ap"), ("lat", "lat"), ("mri", "mri"))]
    ids = lambda cs: [c.id for c in cs]  # noqa: E731
    assert ids(fitting_cards(cards, "xray")) == ["any", "ap", "lat"]
    assert ids(fitting_cards(cards, "xray", "lat")) == ["any", "lat"]
    assert ids(fitting_cards(cards, "mri")) == ["mri"]
