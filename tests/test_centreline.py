"""The column's centreline reading (measure.centreline_cobb) and the scoliosis call that needs it."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from spine_models.engine.landmarks import _check_degree, with_centreline
from spine_models.measure import centreline_cobb, cobb_angle, public_measurement
from spine_models.report.findings import ABSENT, PRESENT, cobb_call


def _body(cx: float, cy: float, tilt_deg: float, w: float = 60, h: float = 40) -> np.ndarray:
    """Corners TL, TR, BR, BL of a body centred at (cx, cy), its endplates tilted by ``tilt_deg``."""
    a = math.radians(tilt_deg)
    u, v = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
    c = np.array([cx, cy])
    return np.array([c - u * w / 2 - v * h / 2, c + u * w / 2 - v * h / 2, c + u * w / 2 + v * h / 2,
                     c - u * w / 2 + v * h / 2])


def _arc_column(turn_deg: float, n: int = 17, pitch: float = 55.0) -> dict[str, np.ndarray]:
    """Bodies stacked along a circular arc whose tangent turns by ``turn_deg`` (a C curve of that Cobb angle),
    each body's endplates perpendicular to the arc."""
    out, x, y = {}, 500.0, 100.0
    for i in range(n):
        theta = -turn_deg / 2 + turn_deg * i / (n - 1)  # the tangent's angle from vertical
        out[f"B{i:02d}"] = _body(x, y, -theta)
        x += pitch * math.sin(math.radians(theta))
        y += pitch * math.cos(math.radians(theta))
    return out


def test_one_crooked_body_makes_an_endplate_curve_but_no_centreline_curve() -> None:
    col = _arc_column(0.0)
    col["B08"] = _body(*col["B08"].mean(axis=0), 25.0)  # one body read 25 deg off
    assert cobb_angle(col, angles="body_tilt").max_angle > 20
    line = centreline_cobb(col)
    assert line is not None and line.angle_deg < 2.0


@pytest.mark.parametrize("turn", [12.0, 30.0, 55.0])
def test_a_curved_column_reads_its_curve_on_the_centreline_and_its_mirror_alike(turn: float) -> None:
    col = _arc_column(turn)
    line = centreline_cobb(col)
    assert line is not None and abs(line.angle_deg - turn) < 0.15 * turn + 1.0
    assert abs(cobb_angle(col).max_angle - turn) < 0.5  # the endplates of the same bodies agree
    mirrored = {k: np.array([[1000 - x, y] for x, y in c])[[1, 0, 3, 2]] for k, c in col.items()}
    assert centreline_cobb(mirrored).angle_deg == pytest.approx(line.angle_deg, abs=1e-6)
    assert len(line.points) >= 3 and line.points[0][1] < line.points[-1][1]


def test_a_speck_beside_the_column_does_not_bend_the_centreline() -> None:
    col = _arc_column(0.0)
    col["B16"] = _body(700.0, col["B16"].mean(axis=0)[1], 0.0)  # the lowest "body" far to the side
    assert centreline_cobb(col).angle_deg < 2.0


def test_too_few_bodies_give_no_centreline_and_a_bad_degree_is_named() -> None:
    col = dict(list(_arc_column(20.0).items())[:4])
    assert centreline_cobb(col, degree=3) is None
    with pytest.raises(ValueError, match="degree=0"):
        centreline_cobb(col, degree=0)
    with pytest.raises(Exception, match="centreline_degree='3'"):
        _check_degree("3", "model 'x': centreline_degree")
    assert _check_degree(None, "x") is None and _check_degree(3, "x") == 3


def _cobb(value: float, **extra) -> dict:
    return {"cobb_deg": value, "band": [value - 5, value + 5], "reliable": True, "warnings": [],
            "curves": [{"name": "main thoracic", "angle_deg": value, "upper_end": "T6", "lower_end": "T11", "apex": "T8"}],
            **extra}


def test_scoliosis_is_called_only_when_the_centreline_bends_too() -> None:
    assert cobb_call(_cobb(17.0)) == PRESENT  # no centreline reading: the endplate rule alone
    assert cobb_call(_cobb(17.0, centreline_deg=14.0)) == PRESENT
    assert cobb_call(_cobb(17.0, centreline_deg=6.0)) == ABSENT
    assert cobb_call(_cobb(7.0, centreline_deg=12.0)) == ABSENT


def test_with_centreline_adds_its_reading_and_an_unreliable_read_withholds_it() -> None:
    col = _arc_column(30.0)
    got = with_centreline(_cobb(30.0), col, 3)
    assert got["centreline_deg"] == pytest.approx(centreline_cobb(col).angle_deg, abs=0.01) and got["centreline"]
    failed = {"cobb_deg": None, "failed": True, "reliable": False, "warnings": ["x"], "note": "x"}
    assert with_centreline(failed, col, 3) is failed
    hidden = public_measurement("cobb", {**got, "reliable": False, "warnings": ["the bodies span 20% of the film"]})
    assert hidden["centreline_deg"] is None and hidden["centreline"] is None


def test_the_overlay_draws_the_centreline_only_when_the_read_is_a_finding() -> None:
    from spine_models.report.drawing import cobb_overlay

    col = _arc_column(30.0)
    read = with_centreline(_cobb(30.0), col, 3)
    rgb = np.zeros((1200, 1000, 3), np.uint8)
    green = (cobb_overlay(rgb, read) == [124, 252, 0]).all(axis=-1)
    assert green.sum() > 500  # the line through the centres (about 900 px long) and its label
    assert not cobb_overlay(rgb, {**read, "reliable": False, "warnings": ["x"]}).any()


def test_a_margin_raises_an_endplate_reading_that_lost_the_curve_and_says_so() -> None:
    col = _arc_column(60.0)
    lost = _cobb(30.0)  # the endplates of a 60 deg curve read 30: the end bodies were not found
    raised = with_centreline(lost, col, 3, margin=15.0)
    line = centreline_cobb(col).angle_deg
    assert raised["cobb_deg"] == pytest.approx(line - 15.0, abs=0.01) and raised["readings_deg"]["endplates"] == 30.0
    assert raised["band"] == pytest.approx([line - 20.0, line - 10.0], abs=0.02) and "raised" in raised["notes"][-1]
    kept = with_centreline(_cobb(55.0), col, 3, margin=15.0)  # the endplates read more: they stand
    assert kept["cobb_deg"] == 55.0 and "notes" not in kept
    assert with_centreline(lost, col, 3)["cobb_deg"] == 30.0  # no margin: no floor


def test_the_collapsed_section_names_the_centreline_beside_the_angle() -> None:
    from spine_models.results.segmentation import SegmentationResult
    from ui.render import result_summary

    res = SegmentationResult(model_id="m", structures=["pedicle", "vertebra"],
                             measurements={"cobb": _cobb(36.0, centreline_deg=8.3)})
    assert result_summary(res) == "Cobb 36.0°, centreline 8.3°"
    res.measurements = {"cobb": _cobb(36.0)}
    assert result_summary(res) == "Cobb 36.0°"


def test_the_scoliosis_call_is_evaluated_on_labelled_films_and_no_answer_counts_as_normal(monkeypatch) -> None:
    from types import SimpleNamespace

    import spine_models.engine.predictor as predictor_mod
    from spine_models.report.evaluation import scoliosis_call_evaluation

    reads = {"a": _cobb(30.0, centreline_deg=25.0), "b": _cobb(17.0, centreline_deg=6.0),  # present / absent
             "c": {"cobb_deg": None, "note": "only 3 separate vertebral bodies found"}, "d": _cobb(4.0)}
    films = [SimpleNamespace(id=k, path=k, patient_id=f"p{k}", label=lab)
             for k, lab in (("a", "scoliosis"), ("b", "normal"), ("c", "scoliosis"), ("d", "normal"))]
    fake = SimpleNamespace(predict=lambda path, **_: SimpleNamespace(measurements={"cobb": reads[path]}))
    monkeypatch.setattr(predictor_mod, "shared_predictor", lambda card, *a, **k: fake)
    out = scoliosis_call_evaluation(SimpleNamespace(id="m"), SimpleNamespace(samples=films), quiet=True, n_resamples=20)
    call = out["metrics"]["scoliosis_call"]
    assert call["confusion_matrix"] == [[2, 0], [1, 1]]  # the film with no answer is a missed scoliosis
    assert call["balanced_accuracy"]["value"] == pytest.approx(0.75) and call["specificity"]["value"] == 1.0
    assert out["metrics"]["cobb_not_shown_fraction"]["value"] == pytest.approx(0.25)
    assert [p["pred"] for p in out["predictions"]] == ["scoliosis", "normal", "normal", "normal"]


FRAIWAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "fraiwan-ap"


@pytest.mark.skipif(not FRAIWAN.is_dir(), reason="../shared/data/fraiwan-ap not present")
def test_evaluate_reads_class_folders_as_the_scoliosis_call_of_a_vertebra_model(tmp_path) -> None:
    import shutil

    from spine_models.report.evaluation import evaluate_command

    for label in ("normal", "scoliosis"):
        (tmp_path / label).mkdir()
        for f in sorted((FRAIWAN / label).iterdir())[:2]:
            shutil.copy(f, tmp_path / label / f.name)
    rep = evaluate_command("seg_vertebra_corners_aasce", [tmp_path], tmp_path / "r.json", n_resamples=20, quiet=True,
                           audit=False)
    assert rep["data"]["classes"] == ["normal", "scoliosis"] and rep["data"]["n"] == 4
    cm = rep["metrics"]["scoliosis_call"]["confusion_matrix"]
    assert sum(map(sum, cm)) == 4 and len(rep["predictions"]) == 4 and (tmp_path / "r.json").is_file()
