"""Evaluation report schema (build / validate / write / read) and the clinician HTML page."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from spine_models.errors import SpineInputError
from spine_models.metrics.audit import metadata_features, shortcut_audit
from spine_models.metrics.classification import classification_metrics
from spine_models.report.clinician import DISCLAIMER, clinician_html, write_clinician_report
from spine_models.report.evaluation import (ReportSchemaError, build_report, read_report, validate_report,
                                            write_report)
from spine_models.results import ClassificationResult, DetectionResult, SegmentationResult
from spine_models.results.detection import Box

CLASSES = ["normal", "scoliosis"]


@pytest.fixture(scope="module")
def good_report() -> dict:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    p1 = np.clip(y * 0.6 + rng.random(40) * 0.4, 0, 1)
    metrics = classification_metrics(y, np.stack([1 - p1, p1], 1), CLASSES, groups=np.arange(40) // 2,
                                      n_resamples=200)
    feats = [metadata_features(rng.random((40, 40)).astype(np.float32)) for _ in range(40)]
    audit = shortcut_audit(feats, [CLASSES[i] for i in y], n_resamples=200)
    preds = [{"id": f"s{i}", "truth": CLASSES[t], "pred": CLASSES[int(q >= 0.5)], "prob": float(q)}
             for i, (t, q) in enumerate(zip(y, p1))]
    return build_report("classify", "toy-model", "ab" * 32,
                        {"path": "/data/x", "n": 40, "n_patients": 20, "classes": CLASSES, "split": "test",
                         "split_seed": 0}, metrics, audit, predictions=preds)


def test_good_report_validates_and_roundtrips(good_report, tmp_path):
    assert validate_report(good_report) is good_report
    assert good_report["data"]["split_seed"] == 0  # extra keys survive
    p = write_report(tmp_path / "sub" / "r.json", good_report)
    back = read_report(p)
    assert back == json.loads(json.dumps(good_report))
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.parametrize("breakage, where", [
    (lambda d: d.pop("audit"), "audit"),
    (lambda d: d["metrics"]["per_class"].pop("scoliosis"), "per_class"),
    (lambda d: d["metrics"]["per_class"]["normal"].pop("npv"), "npv"),
    (lambda d: d["metrics"].__setitem__("accuracy", {"value": 0.9, "ci95": [0.1, 0.5]}), "outside"),
    (lambda d: d["metrics"].__setitem__("accuracy", 0.9), "accuracy"),
    (lambda d: d["metrics"].__setitem__("macro_f1", {"value": float("nan"), "ci95": [0, 1]}), "macro_f1"),
    (lambda d: d["metrics"]["confusion_matrix"].pop(), "confusion_matrix"),
    (lambda d: d["data"].__setitem__("n", 41), "sum to"),
    (lambda d: d["data"].pop("n_patients"), "n_patients"),
    (lambda d: d["audit"].__setitem__("shortcut_warning", "no"), "shortcut_warning"),
    (lambda d: d.__setitem__("task", "regress"), "task"),
])
def test_broken_reports_rejected(good_report, breakage, where):
    d = copy.deepcopy(good_report)
    breakage(d)
    with pytest.raises(ReportSchemaError, match=where):
        validate_report(d)


def test_detect_and_segment_shapes():
    m = {"value": 0.5, "ci95": [0.4, 0.6]}
    audit = {"metadata_baseline": {"balanced_accuracy": m, "features": ["width"]}, "shortcut_warning": False}
    data = {"path": "d", "n": 3, "n_patients": 3, "classes": ["lumbar_implant"], "split": "all"}
    det = build_report("detect", "det", "x", data, {"map50": m, "map50_95": m, "per_class": {
        "lumbar_implant": {"ap50": m, "sensitivity": m, "specificity": m}}}, audit)
    validate_report(det)
    det["metrics"]["per_class"]["lumbar_implant"].pop("ap50")
    with pytest.raises(ReportSchemaError, match="ap50"):
        validate_report(det)
    seg = build_report("segment", "seg", "x", {**data, "classes": []},
                       {"dice": {"vertebra": m}, "iou": {"vertebra": m}, "cobb_mae_deg": m}, audit)
    validate_report(seg)
    seg["metrics"].pop("iou")
    with pytest.raises(ReportSchemaError, match="iou"):
        validate_report(seg)


def test_read_report_bad_file_is_input_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpineInputError, match="bad.json"):
        read_report(bad)
    bad.write_text("{}")
    with pytest.raises(SpineInputError, match="not a valid evaluation report"):
        read_report(bad)


# ------------------------------------------------------------------------------------------- clinician
IDENTIFYING = {"PatientName": "DOE^JOHN", "PatientID": "MRN-991337", "PatientBirthDate": "19610203",
               "InstitutionName": "St Example Hospital", "name": "DOE^JOHN.dcm", "AccessionNumber": "ACC4242"}


def _results(img):
    h, w = img.shape
    cam = np.zeros_like(img)
    cam[h // 4: h // 2, w // 4: w // 2] = 1
    cls = ClassificationResult(model_id="ap-normal-scoliosis", classes=CLASSES, probs=[0.12, 0.88], threshold=0.5,
                               cam=cam, image_size=(h, w))
    det = DetectionResult(model_id="implant-yolo", classes=["lumbar_implant"], threshold=0.4,
                          boxes=[Box(10, 10, 30, 40, "lumbar_implant", 0.91)], image_size=(h, w))
    mask = np.zeros((h, w), bool)
    mask[20:90, 25:40] = True
    seg = SegmentationResult(model_id="ap-seg", structures=["vertebra"], masks={"vertebra": mask}, image_size=(h, w),
                             measurements={"cobb": {"cobb_deg": 23.4, "band": [18.4, 28.4], "curves": [
                                 {"name": "main thoracic", "angle_deg": 23.4, "upper_end": "T5", "lower_end": "T11",
                                  "band": [18.4, 28.4]}]},
                                 "slip": {"L4-L5": {"slip_percent": 18.0, "meyerding_grade": 1}}})
    return [cls, det, seg]


class _Card:
    def __init__(self, id_, sha, validated_on=None):
        self.id, self.sha256, self.arch = id_, sha, "resnet18"
        self.validated_on = validated_on or []


def test_clinician_html_has_disclaimer_findings_and_no_identifiers(tmp_path):
    img = np.random.default_rng(0).random((120, 80)).astype(np.float32)
    header = {"format": "dicom", "modality": "DX", "width": 80, "height": 120, "bits": 12,
              "pixel_spacing_mm": [0.2, 0.2], **IDENTIFYING}
    sha = "f" * 64
    html = clinician_html(_results(img), image=img, header=header, cards=[_Card("ap-normal-scoliosis", sha)])
    assert DISCLAIMER in html
    assert html.index(DISCLAIMER) < html.index("<h1>")  # at the top
    for value in IDENTIFYING.values():
        assert value not in html, value
    assert "PatientName" not in html
    assert "scoliosis" in html and "88.0%" in html
    assert "23.4°" in html and "±5°" in html and "18.4–28.4°" in html
    assert "Meyerding grade 1" in html and "lumbar_implant" in html and "present" in html
    assert sha in html and "ap-normal-scoliosis" in html
    assert html.count("data:image/png;base64,") == 3
    assert "http://" not in html and "https://" not in html  # self-contained
    out = write_clinician_report(tmp_path / "r.html", _results(img), image=img, header=header, pdf=True)
    assert out.read_text(encoding="utf-8") .startswith("<!DOCTYPE html>")
    pdf = out.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and b"DOE^JOHN" not in pdf.read_bytes()


def test_clinician_report_says_where_each_model_was_validated(tmp_path):
    """A phantom-only model carries the phantom-trained label on the report; a real-validated one its figures."""
    img = np.random.default_rng(0).random((120, 80)).astype(np.float32)
    real = [{"data": "aasce-ap", "real": True, "metrics": {"cobb_mae_deg": {"value": 9.5, "ci95": [8.0, 11.0]}}}]
    cards = [_Card("ap-normal-scoliosis", "a" * 64), _Card("ap-seg", "b" * 64, validated_on=real)]
    html = clinician_html(_results(img), image=img, cards=cards)
    assert html.count("validation: phantom-trained — not validated on real films") == 1
    assert "validation: validated on real films: aasce-ap" in html
    pdf = write_clinician_report(tmp_path / "r.html", _results(img), image=img, cards=cards, pdf=True).with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize("copies", [1, 8])
def test_pdf_pages_put_the_film_beside_no_text_and_findings_first(copies):
    """Rendered pages: no text box overlaps the film (few or many results); page 1 has title, findings, banner."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from spine_models.report.clinician import pdf_figures

    img = np.random.default_rng(0).random((120, 80)).astype(np.float32)
    figs = pdf_figures(_results(img) * copies, image=img, header={"format": "PNG", "width": 80, "height": 120})
    first = " ".join(t.get_text() for t in figs[0].texts)
    assert DISCLAIMER in first and "Spine Lab — model findings" in first and "FINDINGS" in first
    assert "Scoliosis: present — Cobb 23.4°" in first and "Spinal implant: present" in first
    n_images = 0
    for fig in figs:
        renderer = FigureCanvasAgg(fig).get_renderer()
        texts = [t.get_window_extent(renderer) for t in fig.texts if t.get_text().strip()]
        for ax in fig.axes:
            n_images += bool(ax.images)
            box = ax.get_window_extent(renderer)
            assert not any(box.overlaps(t) for t in texts), "the film overlaps text on a PDF page"
        for t in texts:  # every line stays on its page
            assert t.y0 >= 0 and t.y1 <= fig.bbox.height
    assert n_images == 1


def test_outside_test_parts_keeps_the_films_in_no_cards_test_part():
    """Tuning films for a read-out: every sample outside each card's recorded test part (patients kept whole)."""
    from spine_models.data.records import Sample, SpineDataset
    from spine_models.models.cards import ModelCard
    from spine_models.report.evaluation import outside_test_parts, test_part

    ds = SpineDataset(name="d", samples=[Sample(id=f"s{i}", patient_id=f"p{i // 2}", label="normal" if i % 3 else "scoliosis")
                                         for i in range(60)], classes=["normal", "scoliosis"])

    def card(seed: int) -> ModelCard:
        return ModelCard(id=f"m{seed}", task="classify", arch="mobilenet_v2", view="ap", trained_on="t", weights="w.pt",
                         sha256="", input_size=[64, 64], train_command="", license="x", classes=["normal", "scoliosis"],
                         data={"split": {"method": "hash", "ratios": [0.6, 0.2, 0.2], "seed": seed, "stratify": False}})

    a, b = card(0), card(1)
    held = {s.id for c in (a, b) for s in test_part(c, ds).samples}
    kept = outside_test_parts(ds, a, b)
    assert held and kept and {s.id for s in kept}.isdisjoint(held)
    assert len(kept) + len(held) == len(ds)
    assert {s.patient_id for s in kept}.isdisjoint({s.patient_id for s in ds.samples if s.id in held})
