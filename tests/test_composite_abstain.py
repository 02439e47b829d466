"""Classifiers that read a measurement give no answer when the measurement failed.

A film with no spine found, too few bodies, or a read the engine flags unreliable must not become
"normal 100 %" (a failed Cobb read as 0 deg) or "scoliosis 100 %" (a 277 deg misread capped at 40):
the result says "no answer: the measurement failed — <reason>", and a routed model whose deciding expert
abstains abstains too. A good film still answers.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from spine_models.engine import composite
from spine_models.measure import cobb_read, public_measurement, slip_read
from spine_models.models.cards import ModelCard
from spine_models.results import ClassificationResult

NO_BODIES = {"cobb_deg": None, "n_vertebrae": 0, "note": "only 0 separate vertebral bodies found; Cobb needs 4"}
UNRELIABLE = {"cobb_deg": 38.0, "band": [33.0, 43.0], "curves": [{"angle_deg": 38.0}], "reliable": False,
              "warnings": ["27 separate bodies found; a spine film shows about 10-18"]}
GOOD = {"cobb_deg": 23.0, "band": [18.0, 28.0], "curves": [{"angle_deg": 23.0}], "reliable": True, "warnings": []}


def _card(id_: str, task: str, **kw) -> ModelCard:
    base = dict(id=id_, task=task, arch="stand-in", view="any", trained_on="test", weights="none.pt",
                sha256=f"sha-{id_}", input_size=[32, 16], train_command="", license="test")
    return ModelCard(**{**base, **kw})


class Seg:
    """A segmenter stand-in that returns whatever measurement the test sets."""

    def __init__(self, measurements: dict) -> None:
        self.card, self.device, self.measurements = _card("seg", "segment", structures=["vertebra"]), "cpu", measurements

    def predict(self, image, **_):
        return SimpleNamespace(measurements=self.measurements, image_size=(32, 16), source="")


class Fixed:
    """A network expert stand-in with fixed probabilities (the view gate: P(view) fixed)."""

    def __init__(self, id_: str, classes: list[str], probs: list[float]) -> None:
        self.card, self.device, self.probs, self.threshold = _card(id_, "classify", classes=classes), "cpu", probs, None

    def predict_proba(self, images):
        return np.array([self.probs for _ in images])

    def predict(self, image, cam=True, **_):
        return ClassificationResult(model_id=self.card.id, image_size=(32, 16), classes=self.card.classes,
                                    probs=list(self.probs), extra={"from": self.card.id})


def _measure_model(measurements: dict) -> composite.CompositePredictor:
    """A measure_cobb predictor (cut at 10 deg) over a stand-in segmenter, built without a weight file."""
    p = object.__new__(composite.CompositePredictor)
    p.card = _card("cobb_measure", "classify", arch="measure_cobb", classes=["normal", "scoliosis"],
                   thresholds={"binary": 0.5})
    p.kw, p.threshold, p.two_view = {}, 0.5, False
    p.seg, p.coef, p.intercept, p.device = Seg(measurements), 1.0, -10.0, "cpu"
    return p


def _routed(ap_expert, gate_probs: list[float]) -> composite.CompositePredictor:
    p = object.__new__(composite.CompositePredictor)
    p.card = _card("routed", "classify", arch="view_routed", classes=["normal", "scoliosis", "spondylolisthesis"])
    p.kw, p.threshold, p.two_view, p.device = {}, None, False, "cpu"
    p.view_model = Fixed("gate", ["ap", "lat"], gate_probs)
    p.experts = {"ap": ap_expert, "lat": Fixed("lat_expert", ["normal", "spondylolisthesis"], [0.7, 0.3])}
    return p


FILM = np.zeros((32, 16), np.float32)


def _assert_abstains(res: ClassificationResult, *words: str) -> None:
    d = res.to_dict()
    assert res.abstained and d["abstained"] is True
    assert d["prediction"] is None and d["probs"] == {} and res.probs == []
    assert res.top_class == "no answer" and np.isnan(res.top_prob)
    assert d["note"].startswith("no answer: the measurement failed — ")
    for w in words:
        assert w in d["note"]


@pytest.mark.parametrize("measurements, why", [
    ({}, "no vertebral body found"),  # an empty vertebra mask: the engine measures nothing at all
    ({"cobb": NO_BODIES}, "only 0 separate vertebral bodies"),
    ({"cobb": UNRELIABLE}, "27 separate bodies"),
    ({"cobb": {"cobb_deg": 277.4}}, "outside the physical range"),
])
def test_measure_classifier_abstains_when_the_measurement_failed(measurements, why):
    res = _measure_model(measurements).predict(FILM)
    _assert_abstains(res, why)
    assert "cobb_deg" not in res.extra  # no 0 deg or capped 40 deg passed on as if measured
    m = res.extra["measurement"]
    assert m is None or (m["cobb_deg"] is None and m["status"].startswith("cannot measure — "))


def test_measure_classifier_still_answers_a_good_read():
    res = _measure_model({"cobb": GOOD}).predict(FILM)
    assert not res.abstained and res.top_class == "scoliosis" and res.extra["cobb_deg"] == 23.0
    assert "abstained" not in res.to_dict() and res.to_dict()["prediction"] == "scoliosis"
    # evaluation keeps scoring every film: a failed read scores as the clip's low end, as before
    assert _measure_model({"cobb": NO_BODIES}).predict_proba([FILM])[0, 1] < 0.5


def test_routed_model_abstains_with_its_deciding_expert_and_answers_without_a_ruled_out_one():
    failing = _measure_model({"cobb": UNRELIABLE})
    res = _routed(failing, [0.95, 0.05]).predict(FILM)
    _assert_abstains(res, "27 separate bodies")
    assert res.extra["expert"] == "cobb_measure" and "cobb_measure" in res.extra["abstained_experts"]
    # a lateral film: the AP expert's failure on it is expected and the lateral expert decides alone
    res = _routed(failing, [0.2, 0.8]).predict(FILM)
    assert not res.abstained and res.extra["expert"] == "lat_expert"
    assert res.probs == pytest.approx([0.7, 0.0, 0.3]) and "cobb_measure" in res.extra["abstained_experts"]
    # a good AP read still answers through the router
    res = _routed(_measure_model({"cobb": GOOD}), [0.95, 0.05]).predict(FILM)
    assert not res.abstained and res.top_class == "scoliosis"


def test_reads_and_public_dicts_never_carry_a_failed_number():
    assert cobb_read(GOOD).ok and cobb_read(GOOD).text == "23.0°"
    r = cobb_read(UNRELIABLE)
    assert not r.ok and r.text == "cannot measure — 27 separate bodies found; a spine film shows about 10-18"
    assert cobb_read({"cobb_deg": 132.0, "reliable": True}).text.startswith("cannot measure — 132.0° lies outside")
    pub = public_measurement("cobb", UNRELIABLE)
    assert pub["cobb_deg"] is None and pub["band"] is None and pub["curves"] == []
    assert pub["unreliable_read"]["cobb_deg"] == 38.0 and pub["status"].startswith("cannot measure — ")
    assert public_measurement("cobb", GOOD)["cobb_deg"] == 23.0
    slip = {"slip_percent": 31.0, "level": "L5-S1", "meyerding_grade": 2, "meyerding": "II", "levels": {"L5-S1": 31.0},
            "reliable": False, "warnings": ["the film's anterior side was assumed, not seen"]}
    assert slip_read(slip).text == "cannot measure — the film's anterior side was assumed, not seen"
    pub = public_measurement("slip", slip)
    assert pub["slip_percent"] is None and pub["meyerding_grade"] is None and pub["levels"] == {}
    assert slip_read({**slip, "reliable": True, "warnings": []}).text == "31.0 %"


def test_shipped_models_abstain_on_a_film_with_no_spine_and_answer_a_phantom():
    """The real path: shipped AP U-Net -> measure_cobb -> routed model, on tiny films."""
    pytest.importorskip("torch")
    from spine_models.data.phantom.xray import make_patient, render_film
    from spine_models.engine.predictor import load_predictor

    measure = load_predictor("xray_ap_cobb_measure_synth")
    routed = load_predictor("xray_3class_routed_synth")
    black = np.zeros((512, 256), np.float32)
    for model in (measure, routed):
        res = model.predict(black, cam=False)
        _assert_abstains(res)
    noise = (np.random.default_rng(0).random((512, 256)) * 0.2).astype(np.float32)  # specks, no column
    _assert_abstains(measure.predict(noise, cam=False))
    film = render_film(make_patient(5, 0), "ap", height=512, width=256).image
    res = measure.predict(film, cam=False)
    assert not res.abstained and res.top_class in ("normal", "scoliosis")
    assert 0.0 <= res.extra["cobb_deg"] <= 40.0 and res.extra["measurement"]["status"] == "measured"
