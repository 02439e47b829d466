"""X-ray phantom: SPEC layout, determinism, truth that agrees with an independent recomputation."""
from __future__ import annotations

import csv
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from spine_models.data.phantom.xray import meyerding_grade, slip_from_corners

SIZE = "256x128"


def _synth(out: Path, kind: str, n: int = 12, seed: int = 5, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "spine_models.cli", "synth", kind, "--n", str(n), "--out", str(out),
                           "--seed", str(seed), "--size", SIZE, "--quiet", *extra], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def ap(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ap") / "set"
    _synth(out, "xray-ap", 16, 5, "--implant-fraction", "0.5")
    return out


@pytest.fixture(scope="module")
def lat(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lat") / "set"
    _synth(out, "xray-lat", 16, 5, "--implant-fraction", "0.5")
    return out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_spec_file_is_present(ap: Path, lat: Path) -> None:
    for root, structures in ((ap, ["vertebra", "spinous_process", "pedicle"]),
                             (lat, ["vertebra", "spinous_process", "disc_height", "anterior_line", "posterior_line"])):
        rows = _rows(root / "labels.csv")
        assert len(rows) == 16
        for col in ("id", "patient_id", "view", "class", "cobb_deg", "slip_percent", "meyerding_grade", "implant"):
            assert col in rows[0]
        for r in rows:
            img = cv2.imread(str(root / "images" / f"{r['id']}.png"), cv2.IMREAD_UNCHANGED)
            assert img.dtype == np.uint16 and img.shape == (256, 128)
            for s in structures:
                m = cv2.imread(str(root / "masks" / s / f"{r['id']}.png"), cv2.IMREAD_UNCHANGED)
                assert m.shape == img.shape and set(np.unique(m)) <= {0, 255} and m.max() == 255, (s, r["id"])
            assert (root / "yolo" / "labels" / f"{r['id']}.txt").is_file()
        assert (root / "yolo" / "data.yaml").is_file() and (root / "coco.json").is_file()
        lm = _rows(root / "landmarks.csv")
        assert len(lm) == 16 * 18 and {r["vertebra"] for r in lm} >= {"T1", "L5", "S1"}
        manifest = json.loads((root / "MANIFEST.json").read_text())
        for rel, digest in manifest["files"].items():
            assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest
        assert sum(manifest["counts"].values()) == 16


def test_same_arguments_give_byte_identical_output(tmp_path: Path, ap: Path) -> None:
    _synth(tmp_path / "again", "xray-ap", 16, 5, "--implant-fraction", "0.5")
    a = json.loads((ap / "MANIFEST.json").read_text())["files"]
    b = json.loads((tmp_path / "again" / "MANIFEST.json").read_text())["files"]
    assert a == b
    _synth(tmp_path / "other", "xray-ap", 4, 6)
    assert json.loads((tmp_path / "other" / "MANIFEST.json").read_text())["files"] != a


def _independent_cobb(corners: dict[str, np.ndarray]) -> float:
    """Endplate slopes straight from landmarks.csv; the largest upper-vs-lower difference."""
    names = [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
    up = [math.degrees(math.atan((c[1, 1] - c[0, 1]) / (c[1, 0] - c[0, 0]))) for c in (corners[n] for n in names)]
    lo = [math.degrees(math.atan((c[2, 1] - c[3, 1]) / (c[2, 0] - c[3, 0]))) for c in (corners[n] for n in names)]
    return max(abs(up[i] - lo[j]) for i in range(len(names)) for j in range(i, len(names)))


def _landmarks(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """{film id: {vertebra: 4 corners}} from a synth folder's landmarks.csv."""
    lms: dict[str, dict[str, np.ndarray]] = {}
    for r in _rows(folder / "landmarks.csv"):
        lms.setdefault(r["id"], {})[r["vertebra"]] = np.array([[float(r[f"x{i}"]), float(r[f"y{i}"])] for i in range(1, 5)])
    return lms


def test_cobb_truth_agrees_with_landmarks_within_one_degree(ap: Path) -> None:
    lms = _landmarks(ap)
    classes = set()
    for r in _rows(ap / "labels.csv"):
        cobb = float(r["cobb_deg"])
        assert abs(_independent_cobb(lms[r["id"]]) - cobb) < 1.0, r["id"]
        assert r["class"] == ("scoliosis" if cobb >= 10 else "normal")
        classes.add(r["class"])
    assert classes == {"normal", "scoliosis"}


def test_lateral_slip_and_grade_are_consistent(lat: Path) -> None:
    lms = _landmarks(lat)
    seen = set()
    for r in _rows(lat / "labels.csv"):
        slip, grade = float(r["slip_percent"]), int(r["meyerding_grade"])
        assert grade == meyerding_grade(slip)
        assert r["class"] == ("spondylolisthesis" if grade >= 1 else "normal")
        if grade >= 1:
            upper, lower = r["slip_level"].split("-")
            assert abs(slip_from_corners(lms[r["id"]][upper], lms[r["id"]][lower]) - slip) < 0.5  # landmarks.csv rounds to 0.01 px
        seen.add(r["class"])
    assert seen == {"normal", "spondylolisthesis"}


def test_meyerding_boundaries() -> None:
    assert [meyerding_grade(v) for v in (0, 4.9, 5, 24.9, 25, 50, 75, 99.9, 100, 101)] == [0, 0, 1, 1, 2, 3, 4, 4, 5, 5]


def test_boxes_masks_and_formats_agree(ap: Path) -> None:
    coco = json.loads((ap / "coco.json").read_text())
    assert {c["id"]: c["name"] for c in coco["categories"]} == {1: "lumbar_implant", 2: "scoliosis", 3: "vertebra"}
    by_img: dict[int, list] = {}
    for a in coco["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    rows = {r["id"]: r for r in _rows(ap / "labels.csv")}
    for im in coco["images"]:
        sid = Path(im["file_name"]).stem
        anns = by_img.get(im["id"], [])
        cats = [a["category_id"] for a in anns]
        assert (1 in cats) == (rows[sid]["implant"] == "1")
        assert (2 in cats) == (rows[sid]["class"] == "scoliosis")
        assert cats.count(3) == 17
        yolo = (ap / "yolo" / "labels" / f"{sid}.txt").read_text().split("\n")
        assert len([y for y in yolo if y]) == len(anns)
        vert = cv2.imread(str(ap / "masks" / "vertebra" / f"{sid}.png"), cv2.IMREAD_UNCHANGED) > 0
        for a in anns:
            if a["category_id"] == 3:  # every vertebra box holds vertebra mask pixels
                x, y, w, h = (int(round(v)) for v in a["bbox"])
                assert vert[y:y + h + 1, x:x + w + 1].mean() > 0.3
        if rows[sid]["implant"] == "1":  # metal inside its box is brighter than bone
            img = cv2.imread(str(ap / "images" / f"{sid}.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
            x, y, w, h = (int(round(v)) for v in next(a["bbox"] for a in anns if a["category_id"] == 1))
            bone = vert.copy()
            bone[max(0, y - 4):y + h + 4, max(0, x - 4):x + w + 4] = False  # bodies away from the screws
            assert np.percentile(img[y:y + h, x:x + w], 98) > np.percentile(img[bone], 99)


def test_same_seed_links_ap_and_lateral_patients(ap: Path, lat: Path) -> None:
    a = {r["patient_id"] for r in _rows(ap / "labels.csv")}
    b = {r["patient_id"] for r in _rows(lat / "labels.csv")}
    assert a == b and len(a) == 16
    ia = {r["patient_id"]: r["implant"] for r in _rows(ap / "labels.csv")}
    ib = {r["patient_id"]: r["implant"] for r in _rows(lat / "labels.csv")}
    assert ia == ib


def test_bad_arguments_exit_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    for args in (["xray-ap", "--n", "0", "--out", str(tmp_path / "a"), "--seed", "1"],
                 ["xray-ap", "--n", "2", "--out", str(tmp_path / "full"), "--seed", "1"],
                 ["xray-ap", "--n", "2", "--out", str(tmp_path / "b"), "--seed", "1", "--implant-fraction", "2"],
                 ["bone-scan", "--n", "2", "--out", str(tmp_path / "c"), "--seed", "1"]):
        proc = subprocess.run([sys.executable, "-m", "spine_models.cli", "synth", *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, args
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert (tmp_path / "full" / "x.txt").read_text() == "keep me"
