"""A failed or unreliable measurement reads "cannot measure — <reason>" wherever it is shown: the page's
panels and overlay, the JSON and CSV downloads, the HTML and PDF clinician reports, the CLI summary."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from spine_models.report.clinician import clinician_html, clinician_pdf
from spine_models.results import ClassificationResult, SegmentationResult

WHY = "27 separate bodies found; a spine film shows about 10-18"
BAD_COBB = {"cobb_deg": 77.4, "band": [72.4, 82.4], "reliable": False, "warnings": [WHY], "n_vertebrae": 27,
            "curves": [{"name": "main thoracic", "angle_deg": 77.4, "upper_end": "V3", "lower_end": "V9", "band": [72.4, 82.4],
                        "upper_line": [[10.0, 20.0], [40.0, 22.0]], "lower_line": [[10.0, 80.0], [40.0, 60.0]]}]}
NO_BODY_COBB = {"cobb_deg": None, "n_vertebrae": 1, "note": "only 1 separate vertebral bodies found; Cobb needs 4"}
BAD_SLIP = {"slip_percent": 31.0, "level": "L5-S1", "meyerding_grade": 2, "meyerding": "II", "levels": {"L5-S1": 31.0},
            "reliable": False, "warnings": ["the film's anterior side was assumed, not seen"]}
GOOD_SLIP = {**BAD_SLIP, "reliable": True, "warnings": []}


def _results(cobb, slip=None):
    mask = np.zeros((120, 80), bool)
    mask[20:90, 25:40] = True
    ap = SegmentationResult(model_id="seg_ap", structures=["vertebra", "spinous_process", "pedicle"],
                            masks={"vertebra": mask}, image_size=(120, 80), measurements={"cobb": cobb} if cobb else {})
    lat = SegmentationResult(model_id="seg_lat", structures=["vertebra", "spinous_process", "disc_height"],
                             masks={"vertebra": mask}, image_size=(120, 80), measurements={"slip": slip} if slip else {})
    cls = ClassificationResult(model_id="cobb_measure", classes=["normal", "scoliosis"], probs=[], threshold=0.5,
                               image_size=(120, 80), abstained=True,
                               note=f"no answer: the measurement failed — {WHY}")
    return [ap, lat, cls]


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the app's ui/ package sits at the repo root

IMG = np.random.default_rng(0).random((120, 80)).astype(np.float32)


def test_html_report_says_cannot_measure_and_no_answer():
    html = clinician_html(_results(BAD_COBB, BAD_SLIP), image=IMG)
    assert f"Cobb angle: <b>cannot measure</b> — {WHY}" in html
    assert "Slip: <b>cannot measure</b> — the film&#x27;s anterior side was assumed" in html
    assert "77.4" not in html and "31.0" not in html
    assert "Finding: <b>no answer</b> — no answer: the measurement failed" in html
    html = clinician_html(_results(NO_BODY_COBB), image=IMG)
    assert "cannot measure</b> — only 1 separate vertebral bodies found" in html
    # an AP model whose mask held no body at all (no cobb entry) still says so, as does a lateral one
    html = clinician_html(_results(None), image=IMG)
    assert "Cobb angle: <b>cannot measure</b> — no vertebral body found" in html
    assert "Slip: <b>cannot measure</b> — no vertebral body found" in html
    good = clinician_html(_results({**BAD_COBB, "reliable": True, "warnings": []}, GOOD_SLIP), image=IMG)
    assert "77.4°" in good and "31.0 %" in good and "Meyerding grade II" in good and "cannot measure" not in good


def test_pdf_report_says_cannot_measure(monkeypatch, tmp_path):
    from matplotlib.figure import Figure

    seen: list[str] = []
    real = Figure.text

    def text(self, x, y, s, *a, **k):
        seen.append(str(s))
        return real(self, x, y, s, *a, **k)

    monkeypatch.setattr(Figure, "text", text)
    out = clinician_pdf(tmp_path / "r.pdf", _results(BAD_COBB, BAD_SLIP), image=IMG)
    assert out.read_bytes()[:5] == b"%PDF-"
    body = " ".join(" ".join(seen).split())  # lines are wrapped, not cut: join them back
    assert f"Cobb angle: cannot measure — {WHY}" in body
    assert "slip: cannot measure — the film's anterior side was assumed, not seen" in body
    assert "finding: no answer — no answer: the measurement failed" in body
    assert "77.4" not in body and "31.0" not in body


def test_downloads_carry_the_reason_not_the_number():
    pytest.importorskip("streamlit")
    from ui import render

    payload = json.loads(render.results_json(_results(BAD_COBB, BAD_SLIP)))
    cobb = payload["results"][0]["measurements"]["cobb"]
    assert cobb["cobb_deg"] is None and cobb["band"] is None and cobb["curves"] == []
    assert cobb["status"] == f"cannot measure — {WHY}" and cobb["unreliable_read"]["cobb_deg"] == 77.4
    slip = payload["results"][1]["measurements"]["slip"]
    assert slip["slip_percent"] is None and slip["meyerding_grade"] is None and slip["status"].startswith("cannot measure — ")
    cls = payload["results"][2]
    assert cls["prediction"] is None and cls["probs"] == {} and cls["abstained"] is True
    found = {f["finding"]: f for f in payload["findings"]}  # the findings panel leads the download, number-free
    assert found["scoliosis"]["status"] == "no answer" and "77.4" not in json.dumps(found)
    rows = {(r["model_id"], r["item"]): r for r in csv.DictReader(io.StringIO(render.results_csv(_results(BAD_COBB, BAD_SLIP)).decode()))}
    assert rows[("seg_ap", "cobb_deg")]["value"] == "" and rows[("seg_ap", "cobb_deg")]["note"] == f"cannot measure — {WHY}"
    assert rows[("seg_lat", "slip_percent")]["value"] == "" and "cannot measure" in rows[("seg_lat", "slip_percent")]["note"]
    assert rows[("cobb_measure", "prediction")]["note"].startswith("no answer: the measurement failed")
    assert not any(r["item"] in ("normal", "scoliosis") for r in rows.values())
    good = {(r["model_id"], r["item"]): r for r in csv.DictReader(io.StringIO(
        render.results_csv(_results({**BAD_COBB, "reliable": True, "warnings": []}, GOOD_SLIP)).decode()))}
    assert good[("seg_ap", "cobb_deg")]["value"] == "77.4" and good[("seg_lat", "slip_percent")]["value"] == "31.0"


class _Box:
    """Records what a Streamlit container was asked to show."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name):
        return lambda *a, **k: self.calls.append((name, a))


def test_page_panels_and_overlay_show_no_failed_number():
    pytest.importorskip("streamlit")
    from ui import render

    box = _Box()
    render.cobb_panel(box, BAD_COBB, ["vertebra", "pedicle"])
    assert ("metric", ("Cobb angle", "cannot measure")) in box.calls and ("warning", (f"cannot measure — {WHY}",)) in box.calls
    box = _Box()
    render.cobb_panel(box, None, ["vertebra", "pedicle"])
    assert ("warning", ("cannot measure — no vertebral body found",)) in box.calls
    box = _Box()
    render.slip_panel(box, BAD_SLIP, ["vertebra", "disc_height"])
    assert ("metric", ("Slip", "cannot measure")) in box.calls
    assert not any("31.0" in str(a) for name, a in box.calls if name != "json")
    box = _Box()
    render.cobb_panel(box, {**BAD_COBB, "reliable": True, "warnings": []}, ["vertebra", "pedicle"])
    assert box.calls[0][:2] == ("metric", ("Cobb angle", "77.4°"))
    rgb = np.zeros((120, 80, 3), np.uint8)
    assert not render.cobb_overlay(rgb, BAD_COBB).any()  # no lines, no angle drawn for a failed read
    assert render.cobb_overlay(rgb, {**BAD_COBB, "reliable": True}).any()
    abst = _results(BAD_COBB)[2]
    assert render.classification_headline(abst).startswith("**No answer** — no answer: the measurement failed")


def test_cli_summary_says_cannot_measure():
    from spine_models.commands.predict import _summary

    ap, lat, cls = _results(BAD_COBB, BAD_SLIP)
    assert _summary(ap) == f"cobb: cannot measure — {WHY}"
    assert _summary(cls).startswith("no answer: the measurement failed")
