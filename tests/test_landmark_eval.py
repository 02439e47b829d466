"""Corner / Cobb metrics and the segment evaluation on the landmark and YOLO layouts (issue 14)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from spine_models.metrics.landmarks import (LandmarkAccumulator, corner_errors, match_vertebrae, quad_box,
                                            smape_percent, within_deg)


def _quad(x, y, w=24, h=14):
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


def test_smape_and_within_on_known_values():
    assert smape_percent([10, 0], [30, 0]) == pytest.approx(100 * (20 / 40) / 2)
    assert smape_percent([0], [20]) == pytest.approx(100.0)   # a film read 0 deg against a curve: worst case
    assert within_deg([10, 20, 31], [14, 26, 30]) == pytest.approx(2 / 3)


def test_match_is_one_to_one_by_overlap_and_errors_are_per_corner():
    truth = [_quad(10, 10), _quad(10, 40)]
    pred = [_quad(12, 41), _quad(300, 300), _quad(10, 10)]   # shuffled, one stray body
    pairs = match_vertebrae(pred, truth)
    assert sorted(pairs) == [(0, 1), (2, 0)]
    err = corner_errors(pred, truth, pairs)
    assert err.shape == (8,) and err.max() == pytest.approx(np.hypot(2, 1))
    assert quad_box(_quad(5, 6, 10, 4)) == (5, 6, 15, 10)


def test_accumulator_counts_failed_reads_as_zero_and_gives_cis_over_patients():
    acc = LandmarkAccumulator()
    acc.add_cobb(20.0, 22.0, "p1")
    acc.add_cobb(None, 30.0, "p2")
    acc.add_cobb(41.0, 40.0, "p2")
    acc.add_corners([_quad(10, 10)], [_quad(10, 12), _quad(10, 40)], 100, "p1")
    m = acc.compute(n_resamples=50)
    assert m["cobb_mae_deg"]["value"] == pytest.approx((2 + 30 + 1) / 3)
    assert m["cobb_within_5deg"]["value"] == pytest.approx(2 / 3)
    assert m["landmark_mre_px"]["value"] == pytest.approx(2.0)
    assert m["landmark_mre_rel"]["value"] == pytest.approx(0.02)
    assert m["vertebrae_matched_fraction"]["value"] == pytest.approx(0.5)
    lo, hi = m["cobb_mae_deg"]["ci95"]
    assert lo <= m["cobb_mae_deg"]["value"] <= hi
    assert "vertebra_level_accuracy" not in m  # no names given: no level figure


def test_level_accuracy_counts_matched_bodies_named_as_the_experts():
    acc = LandmarkAccumulator()
    row = acc.add_corners([_quad(10, 10), _quad(10, 40)], [_quad(10, 12), _quad(10, 41)], 100, "p1",
                          pred_names=["L4", "L4"], truth_names=["L4", "L5"])
    assert row["level_correct"] == 0.5
    acc.add_corners([_quad(10, 10)], [_quad(10, 11)], 100, "p2", pred_names=["T1"], truth_names=["T1"])
    assert acc.compute(n_resamples=30)["vertebra_level_accuracy"]["value"] == pytest.approx(0.75)


def _spine_film(tmp_path, name, tilt_deg, n=8):
    """A dark film with ``n`` bright tilted bodies; returns (path, corners by level)."""
    import cv2

    h, w = 256, 128
    img = np.full((h, w), 30, np.uint8)
    lm = {}
    levels = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"][-n:]
    for k, lev in enumerate(levels):
        cx, cy = 64 + 6 * np.sin(k / 2), 30 + 26 * k
        a = np.deg2rad(tilt_deg * (k - n / 2) / n)
        R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        base = np.array([(-14, -8), (14, -8), (14, 8), (-14, 8)], float)
        c = base @ R.T + [cx, cy]
        cv2.fillPoly(img, [np.round(c).astype(np.int32)], 220)
        lm[lev] = [tuple(map(float, p)) for p in c]
    p = tmp_path / "images" / f"{name}.png"
    p.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(p), img)
    return p, lm


def _landmark_folder(tmp_path, n_films=4):
    from spine_models.measure import cobb_angle

    root = tmp_path / "lm"
    rows, lms = [], []
    for i in range(n_films):
        _, lm = _spine_film(root, f"film {i} AP", tilt_deg=10 + 8 * i)
        cobb = cobb_angle(lm).max_angle
        rows.append({"id": f"film {i} AP", "patient_id": f"P{i // 2}", "view": "ap",
                     "class": "scoliosis" if cobb >= 10 else "normal", "cobb_deg": round(cobb, 2)})
        lms += [{"id": f"film {i} AP", "vertebra": v, **{f"{a}{j + 1}": round(c[j][0 if a == 'x' else 1], 1)
                                                          for j in range(4) for a in "xy"}} for v, c in lm.items()]
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(root / "landmarks.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "vertebra", "x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"])
        w.writeheader()
        w.writerows(lms)
    return root


@pytest.fixture(scope="module")
def tiny_ap_run(tmp_path_factory):
    from spine_models.data.adapters import load_dataset
    from spine_models.engine.segment import train_parts

    tmp = tmp_path_factory.mktemp("lmeval")
    root = _landmark_folder(tmp)
    ds = load_dataset(root, task="segment")
    cfg = {"model": "unet_tiny", "imgsz": [128, 64], "epochs": 1, "batch": 2, "max_steps": 2, "view": "ap",
           "structures": ["vertebra"], "augment": "xray-real", "eval_resamples": 20, "seed": 0}
    from spine_models.data.records import SpineDataset

    card = train_parts({"train": ds, "val": ds, "test": SpineDataset(name="e", samples=[])}, cfg, tmp / "run",
                       quiet=True)
    return root, card


def test_evaluate_on_a_landmark_folder_reports_the_spec_keys_with_cis(tiny_ap_run, tmp_path):
    from spine_models.report.evaluation import evaluate_command, read_report

    root, card = tiny_ap_run
    out = tmp_path / "r.json"
    evaluate_command(card.parent, root, out=out, n_resamples=30, quiet=True, audit=False)
    m = read_report(out)["metrics"]
    for key in ("cobb_mae_deg", "cobb_smape_percent", "cobb_within_5deg", "landmark_mre_px", "landmark_mre_rel",
                "vertebra_ap50", "cobb_not_shown_fraction"):
        assert key in m and "ci95" in m[key], key
    assert "vertebra" in m["dice"]                      # Dice against the filled corner quadrilaterals
    assert 0 <= m["cobb_within_5deg"]["value"] <= 1


def _yolo_from_landmarks(root, yolo):
    """The landmark folder's films as a YOLO vertebra folder: one box per body, the corners' extent."""
    import csv as _csv
    import shutil

    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    by_id: dict[str, list] = {}
    with open(root / "landmarks.csv") as f:
        for r in _csv.DictReader(f):
            by_id.setdefault(r["id"], []).append(r)
    for i, (fid, rs) in enumerate(by_id.items()):
        shutil.copy(root / "images" / f"{fid}.png", yolo / "images" / f"f{i}.png")
        lines = []
        for r in rs:
            xs = [float(r[f"x{j}"]) for j in range(1, 5)]
            ys = [float(r[f"y{j}"]) for j in range(1, 5)]
            cx, cy = (min(xs) + max(xs)) / 2 / 128, (min(ys) + max(ys)) / 2 / 256
            lines.append(f"0 {cx:.5f} {cy:.5f} {(max(xs) - min(xs)) / 128:.5f} {(max(ys) - min(ys)) / 256:.5f}")
        (yolo / "labels" / f"f{i}.txt").write_text("\n".join(lines) + "\n")
    (yolo / "data.yaml").write_text("train: images\nval: images\nnames: [vertebra]\nnc: 1\n")
    return yolo


def test_evaluate_on_a_yolo_folder_reports_per_class_vertebra_ap50(tiny_ap_run, tmp_path):
    from spine_models.report.evaluation import evaluate_command, read_report

    root, card = tiny_ap_run
    yolo = _yolo_from_landmarks(root, tmp_path / "yolo")
    out = tmp_path / "r.json"
    evaluate_command(card.parent, yolo, out=out, n_resamples=30, quiet=True, audit=False)
    m = read_report(out)["metrics"]
    assert "ap50" in m["per_class"]["vertebra"] and "vertebra_ap50" in m


def test_a_landmark_folder_scores_the_bodies_boxes_and_a_yolo_folder_the_models_vertebra_box(tiny_ap_run, tmp_path):
    """Like with like: expert corners are bodies, so on a landmark folder AP50 compares the predicted corners' extent;
    a YOLO folder's boxes are compared with each vertebra's ``box`` (a corner model may draw it wider than the body)."""
    from spine_models.data.adapters import load_dataset
    from spine_models.engine.base import BasePredictor
    from spine_models.engine.segment import evaluate
    from spine_models.models.cards import ModelCard
    from spine_models.results import SegmentationResult

    root, _ = tiny_ap_run
    films = {s.path.name: s.landmarks for s in load_dataset(root, task="segment").samples}

    class Exact(BasePredictor):  # the experts' corners back, each box moved off its body
        structures = ["vertebra"]

        def __init__(self, by_name, shift=60.0):
            self.card = ModelCard(id="exact", task="segment", arch="vertebra_corners", view="ap", trained_on="t",
                                  weights="w.pt", sha256="", input_size=[64, 64], train_command="", license="x",
                                  structures=["vertebra"])
            self.by_name, self.shift = by_name, shift

        def predict(self, path, **_):
            lm = self.by_name[Path(path).name]
            verts = [{"name": n, "corners": [list(p) for p in c], "score": 0.9,
                      "box": [min(p[0] for p in c) + self.shift, min(p[1] for p in c), max(p[0] for p in c) + self.shift,
                              max(p[1] for p in c)]}
                     for n, c in lm.items()]
            return SegmentationResult(model_id="exact", source=str(path), image_size=(256, 128), device="cpu",
                                      structures=["vertebra"], masks={"vertebra": np.zeros((256, 128), bool)},
                                      measurements={}, vertebrae=verts)

    landmark = evaluate(Exact(films), load_dataset(root, task="segment"), quiet=True, n_resamples=10)
    assert landmark["metrics"]["vertebra_ap50"]["value"] == pytest.approx(1.0)
    yolo = _yolo_from_landmarks(root, tmp_path / "yolo")
    names = {f"f{i}.png": lm for i, lm in enumerate(films.values())}
    boxed = evaluate(Exact(names), load_dataset(yolo, task="segment"), quiet=True, n_resamples=10)
    assert boxed["metrics"]["per_class"]["vertebra"]["ap50"]["value"] == pytest.approx(0.0)
    same = evaluate(Exact(names, shift=0.0), load_dataset(yolo, task="segment"), quiet=True, n_resamples=10)
    assert same["metrics"]["per_class"]["vertebra"]["ap50"]["value"] == pytest.approx(1.0)  # the films line up


def test_cobb_from_predicted_corners_equals_cobb_from_the_same_corners_as_truth(tiny_ap_run):
    """The corners a prediction hands out are the ones its angle was read from."""
    from spine_models.engine.segment import cobb_from_mask, vertebra_instances
    from spine_models.measure import cobb_angle

    root, _ = tiny_ap_run
    import cv2

    from spine_models.data.vertebra_targets import quad_mask

    film = sorted((root / "images").glob("*.png"))[-1]
    _, lm = _spine_film(root.parent / "again", "x", tilt_deg=34)
    mask = quad_mask((256, 128), lm) > 0.5
    got, res = cobb_from_mask(mask)
    bodies = vertebra_instances(got, mask.astype(np.float32))
    again = cobb_angle({b["name"]: b["corners"] for b in bodies}, angles="fused")
    assert again.max_angle == pytest.approx(res.max_angle, abs=0.2)
    assert len(bodies) == len(lm) and all(b["score"] > 0.8 for b in bodies)   # bodies sit on the mask
    assert cv2.imread(str(film)) is not None


def test_predictor_result_carries_corners_and_scores(tiny_ap_run):
    from spine_models.engine.segment import Predictor

    root, card = tiny_ap_run
    res = Predictor(card).predict(sorted((root / "images").glob("*.png"))[0])
    d = res.to_dict()
    assert "cobb" in d["measurements"]                   # a number, or "cannot measure" with its reason
    for v in d.get("vertebrae", []):
        assert len(v["corners"]) == 4 and 0 <= v["score"] <= 1 and len(v["box"]) == 4


def test_compare_with_on_a_landmark_folder_pairs_films_by_the_5deg_band(tiny_ap_run, tmp_path):
    """Two vertebra models compare on the same films: a film is right when its shown angle is within 5 deg."""
    from spine_models.report.evaluation import _correct, evaluate_command

    assert _correct({"cobb_true": 20.0, "cobb_pred": 24.0, "cobb_shown": True}) is True
    assert _correct({"cobb_true": 20.0, "cobb_pred": 26.0, "cobb_shown": True}) is False
    assert _correct({"cobb_true": 20.0, "cobb_pred": 21.0, "cobb_shown": False}) is False  # not shown: no finding
    root, card = tiny_ap_run
    r = evaluate_command(card.parent, root, out=tmp_path / "r.json", n_resamples=20, quiet=True, audit=False,
                         compare_with=card.parent)
    assert r["mcnemar"]["b"] == r["mcnemar"]["c"] == 0 and r["mcnemar"]["p_value"] == 1.0
