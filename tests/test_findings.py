"""The findings panel's logic (spine_models.report.findings): which model leads, agreement, failed reads."""
from __future__ import annotations

from types import SimpleNamespace

from spine_models.report.findings import ABSENT, NO_ANSWER, PRESENT, findings


def _card(model_id: str, real: bool) -> SimpleNamespace:
    entry = {"data": "aasce-ap", "real": True, "metrics": {"cobb_mae_deg": {"value": 9.7, "ci95": [7.5, 12.3]}}}
    return SimpleNamespace(id=model_id, validated_on=[entry] if real else [])


def _seg(model_id: str, cobb: dict | None) -> dict:
    return {"type": "SegmentationResult", "model_id": model_id, "structures": ["pedicle", "spinous_process", "vertebra"],
            "measurements": {} if cobb is None else {"cobb": cobb}}


def _cls(model_id: str, probs: dict, threshold: float | None = None, **extra) -> dict:
    classes = list(probs)
    pred = max(probs, key=probs.get) if threshold is None else classes[int(probs[classes[1]] >= threshold)]
    return {"type": "ClassificationResult", "model_id": model_id, "classes": classes, "probs": probs,
            "prediction": pred, "threshold": threshold, **extra}


COBB_24 = {"cobb_deg": 24.0, "band": [19.0, 29.0], "reliable": True,
           "curves": [{"name": "main thoracic", "angle_deg": 24.0, "upper_end": "T6", "lower_end": "T11", "apex": "T8"}]}


def test_a_real_validated_measurement_leads_and_disagreement_is_named() -> None:
    cards = [_card("seg", True), _card("cnn", False)]
    (f,) = findings([_seg("seg", COBB_24), _cls("cnn", {"normal": 0.7, "scoliosis": 0.3})], cards)
    assert f.key == "scoliosis" and f.status == PRESENT and f.lead.model_id == "seg" and f.lead.measured
    assert "Cobb 24.0°" in f.headline and "T6–T11" in f.headline and "apex T8" in f.headline
    assert f.agreement == "disagree" and not f.phantom_only
    assert [v.real_validated for v in f.votes] == [True, False]


def test_a_failed_read_is_cannot_measure_never_a_number() -> None:
    wrapped = {**COBB_24, "cobb_deg": 277.4, "reliable": False, "warnings": ["Cobb 277 deg is beyond what the measurement can mean (> 90)"]}
    (f,) = findings([_seg("seg", wrapped)], [_card("seg", True)])
    assert f.status == NO_ANSWER and "cannot measure" in f.headline and "277.4" not in f.headline.split("—")[0]
    assert f.agreement == "no model answered"
    (g,) = findings([_seg("seg", None)], [_card("seg", True)])  # an AP model that found no body at all
    assert g.headline == "Scoliosis: cannot measure — no spine column found"


def test_a_measurement_that_failed_hands_the_lead_to_a_model_that_answered() -> None:
    cards = [_card("seg", True), _card("cnn", True)]
    (f,) = findings([_seg("seg", None), _cls("cnn", {"normal": 0.2, "scoliosis": 0.8}, threshold=0.62)], cards)
    assert f.lead.model_id == "cnn" and f.status == PRESENT and f.agreement == "one model"


def test_binary_threshold_and_borderline_are_spelled_out() -> None:
    (f,) = findings([_cls("cnn", {"normal": 0.43, "scoliosis": 0.57}, threshold=0.62)], [_card("cnn", True)])
    v = f.votes[0]
    assert v.says == ABSENT and v.borderline
    assert "P(scoliosis) 57.0 %" in v.detail and "threshold 62.0 %" in v.detail and "borderline" in v.detail


def test_abstaining_classifier_and_detector_classes_read_as_a_clinician_would() -> None:
    abst = {"type": "ClassificationResult", "model_id": "rule", "classes": ["normal", "scoliosis"], "probs": {},
            "prediction": None, "abstained": True, "note": "no answer: the measurement failed — no body found"}
    det = {"type": "DetectionResult", "model_id": "det", "classes": ["lumbar_implant", "scoliosis"], "threshold": 0.5,
           "boxes": [{"label": "lumbar_implant", "score": 0.91, "box": [1, 2, 3, 4]},
                     {"label": "scoliosis", "score": 0.2, "box": [1, 2, 3, 4]}]}
    sco, imp = findings([abst, det], [])
    assert [v.says for v in sco.votes] == [NO_ANSWER, ABSENT] and "measurement failed" in sco.votes[0].detail
    assert "no scoliotic curve region at score ≥ 0.50 (best 0.20)" == sco.votes[1].detail
    assert imp.status == PRESENT and imp.headline.startswith("Spinal implant: present — lumbar implant detected (score 0.91")
    assert imp.phantom_only and sco.phantom_only  # no card: never counted as real-validated


def test_a_measured_angle_near_the_cut_off_is_borderline() -> None:
    near = {"cobb_deg": 12.0, "band": [7.0, 17.0], "reliable": True, "curves": []}
    (f,) = findings([_seg("seg", near)], [_card("seg", True)])
    assert f.status == PRESENT and f.votes[0].borderline and "borderline" in f.headline
    (g,) = findings([_seg("seg", COBB_24)], [_card("seg", True)])
    assert not g.votes[0].borderline and "borderline" not in g.headline


def test_a_read_within_the_models_real_error_of_the_cut_off_is_borderline() -> None:
    """A 16° read from a model whose held-out real-film Cobb MAE is 9.7° is borderline; 24° is not."""
    mild = {"cobb_deg": 16.0, "band": [11.0, 21.0], "reliable": True, "curves": []}
    (f,) = findings([_seg("seg", mild)], [_card("seg", True)])
    assert f.votes[0].borderline and "within this model's mean error on held-out real films (9.7°)" in f.headline
    (g,) = findings([_seg("seg", mild)], [_card("seg", False)])  # no real figure: only the ±5° band counts
    assert not g.votes[0].borderline
