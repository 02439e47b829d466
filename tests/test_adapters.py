"""Dataset adapters: every --data layout on tiny folders built here (no phantom dependency)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from spine_models.data.adapters import (
    canonical_class,
    dataset_fingerprint,
    load_dataset,
    patient_id_from_name,
    view_from_name,
)
from spine_models.errors import DatasetError


def _png(path: Path, seed: int = 0, shape: tuple[int, int] = (48, 40), bits16: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 65535 if bits16 else 255, size=shape).astype(np.uint16 if bits16 else np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPINE_MODELS_CACHE", str(tmp_path / "cache"))


def _class_tree(root: Path) -> Path:
    for i, name in enumerate(["N12,N,F,14_1_0.jpg", "N1,N,40,M_1_0.jpg", "N1,N,F,21_1_0.jpg"]):
        _png(root / "Normal" / name.replace(".jpg", ".png"), i)
    for i, name in enumerate(["N1, Rt TAIS, F, 15 yrs.png", "N101, Rt TAIS, F, 15  Yrs.png"]):
        _png(root / "Scoliosis" / name, 10 + i)
    return root


def test_names_and_patient_ids():
    assert canonical_class("Normal") == "normal"
    assert canonical_class("SCOLIOSIS") == "scoliosis"
    assert canonical_class("Spondylolisthesis") == "spondylolisthesis"
    assert patient_id_from_name("N12,N,F,14_1_0.jpg") == "N12,N,F,14"
    assert patient_id_from_name("N1,N,40,M_1_0.jpg") != patient_id_from_name("N1,N,F,21_1_0.jpg")
    assert patient_id_from_name("N101, Rt TAIS, F, 15  Yrs.jpg") == "N101, Rt TAIS, F, 15 Yrs"
    assert patient_id_from_name("case7_aug3.png") == "case7"
    for name, view in [("ap.png", "ap"), ("AP .png", "ap"), ("lat.png", "lat"), ("LAT.PNG", "lat"),
                       ("lateral.jpg", "lat"), ("ap view.png", "ap"), ("P3_Lateral.png", "lat"), ("notes.png", None)]:
        assert view_from_name(name) == view, name


def test_class_folders_with_commas_and_spaces(tmp_path):
    ds = load_dataset(_class_tree(tmp_path / "cls"), task="classify")
    assert ds.classes == ["normal", "scoliosis"]
    assert ds.counts() == {"normal": 3, "scoliosis": 2}
    assert len(ds.patients) == 5
    assert all(s.path.is_file() for s in ds.samples)


def test_synth_layout(tmp_path):
    root = tmp_path / "synth"
    for i, sid in enumerate(["ap_0000", "ap_0001"]):
        _png(root / "images" / f"{sid}.png", i, bits16=True)
        _png(root / "masks" / "vertebra" / f"{sid}.png", 5 + i)
    (root / "labels.csv").write_text(
        "id,patient_id,view,class,cobb_deg,slip_percent,meyerding_grade,implant,pixel_spacing_mm\n"
        "ap_0000,P0,ap,scoliosis,23.5,,,1,0.2\n"
        "ap_0001,P1,ap,normal,3.0,,,0,0.2\n"
    )
    (root / "landmarks.csv").write_text("id,vertebra,x1,y1,x2,y2,x3,y3,x4,y4\nap_0000,L1,1,2,3,2,3,4,1,4\n")
    coco = {"images": [{"id": 1, "file_name": "images/ap_0000.png", "width": 40, "height": 48},
                       {"id": 2, "file_name": "images/ap_0001.png", "width": 40, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "bbox": [5, 6, 10, 12], "category_id": 1}],
            "categories": [{"id": 1, "name": "lumbar_implant"}, {"id": 2, "name": "scoliosis"}]}
    (root / "coco.json").write_text(json.dumps(coco))
    ds = load_dataset(root, task="segment")
    s0 = next(s for s in ds.samples if s.id == "ap_0000")
    assert s0.patient_id == "P0" and s0.view == "ap" and s0.label == "scoliosis"
    assert s0.meta["cobb_deg"] == pytest.approx(23.5) and s0.meta["implant"] == 1 and s0.meta["slip_percent"] is None
    assert s0.meta["pixel_spacing_mm"] == pytest.approx(0.2)
    assert s0.landmarks["L1"] == [(1, 2), (3, 2), (3, 4), (1, 4)]
    assert [(b.x1, b.y1, b.x2, b.y2, b.label) for b in s0.boxes] == [(5, 6, 15, 18, "lumbar_implant")]
    assert set(s0.masks) == {"vertebra"} and ds.structures == ["vertebra"]
    assert ds.classes == ["normal", "scoliosis"]


def test_yolo_and_coco(tmp_path):
    y = tmp_path / "yolo"
    _png(y / "images" / "train" / "a.png", 1, shape=(50, 100))
    _png(y / "images" / "val" / "b.png", 2, shape=(50, 100))
    (y / "labels" / "train").mkdir(parents=True)
    (y / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.25 0.25 0.1 0.1\n")
    (y / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: Lum, 1: sco}\n")
    ds = load_dataset(y, task="detect")
    a = next(s for s in ds.samples if s.id == "a")
    b0 = a.boxes[0]
    assert (b0.label, b0.x1, b0.y1, b0.x2, b0.y2) == ("lumbar_implant", pytest.approx(40), pytest.approx(15),
                                                       pytest.approx(60), pytest.approx(35))
    assert a.boxes[1].label == "scoliosis" and ds.box_classes == ["lumbar_implant", "scoliosis"]
    assert len(ds) == 2 and next(s for s in ds.samples if s.id == "b").boxes == []

    c = tmp_path / "coco"
    _png(c / "images" / "x.png", 3)
    (c / "ann.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "x.png", "width": 40, "height": 48}],
        "annotations": [{"id": 1, "image_id": 7, "bbox": [1, 2, 3, 4], "category_id": 3}],
        "categories": [{"id": 3, "name": "vertebra"}]}))
    for arg in (c, c / "ann.json"):
        ds = load_dataset(arg, task="detect")
        assert [(b.x2, b.y2, b.label) for b in ds.samples[0].boxes] == [(4, 6, "vertebra")]


def test_two_view_tolerant_names_and_missing_view(tmp_path):
    root = tmp_path / "tv"
    _png(root / "Normal" / "P1" / "ap.png", 1)
    _png(root / "Normal" / "P1" / "lat.png", 2)
    _png(root / "Normal" / "P2" / "AP .png", 3)
    _png(root / "Normal" / "P2" / "LAT.PNG", 4)
    _png(root / "Spondylolisthesis" / "P3" / "ap view.png", 5)
    _png(root / "Spondylolisthesis" / "P3" / "Lateral.png", 6)
    _png(root / "Spondylolisthesis" / "P4" / "ap.png", 7)  # no lateral
    ds = load_dataset(root, task="classify")
    assert sorted(s.patient_id for s in ds.samples) == ["P1", "P2", "P3"]
    assert ds.classes == ["normal", "spondylolisthesis"]
    p2 = next(s for s in ds.samples if s.patient_id == "P2")
    assert p2.views["ap"].name == "AP .png" and p2.views["lat"].name == "LAT.PNG" and p2.path is None
    assert len(ds.problems) == 1 and "P4" in ds.problems[0] and "lateral" in ds.problems[0]


def test_zip_round_trip_and_traversal_refused(tmp_path):
    tree = _class_tree(tmp_path / "cls")
    zpath = tmp_path / "data.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in tree.rglob("*.png"):
            zf.write(p, Path("wrapped") / p.relative_to(tree))
    ds = load_dataset(zpath)
    direct = load_dataset(tree)
    assert ds.counts() == direct.counts() and sorted(ds.patients) == sorted(direct.patients)
    assert dataset_fingerprint(ds) == dataset_fingerprint(direct)  # same files and labels, other location
    assert load_dataset(zpath).root == ds.root  # cached by sha256, not re-extracted elsewhere

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("normal/a.png", b"x")
        zf.writestr("../../escape.png", b"x")
    with pytest.raises(DatasetError, match="traversal"):
        load_dataset(evil)
    assert not (tmp_path / "escape.png").exists()


def test_concatenation_and_errors(tmp_path):
    a = _class_tree(tmp_path / "a")
    b = tmp_path / "b"
    _png(b / "spondylolisthesis" / "L1.png", 20)
    ds = load_dataset([a, b])
    assert ds.classes == ["normal", "scoliosis", "spondylolisthesis"]
    assert len(ds) == 6 and len({s.id for s in ds.samples}) == 6
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no dataset layout recognised"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no boxes"):
        load_dataset(a, task="detect")


def test_fingerprint_tracks_labels_and_content(tmp_path):
    tree = _class_tree(tmp_path / "cls")
    ds = load_dataset(tree)
    fp = dataset_fingerprint(ds)
    ds.samples[0].label = "scoliosis"
    assert dataset_fingerprint(ds) != fp
    ds2 = load_dataset(tree)
    _png(ds2.samples[0].path, 99)
    assert dataset_fingerprint(load_dataset(tree)) != fp


def test_real_fraiwan_folder(fraiwan_dir):
    ds = load_dataset(fraiwan_dir, task="classify")
    assert ds.classes == ["normal", "scoliosis"]
    assert ds.counts() == {"normal": 57, "scoliosis": 130}
    assert len(ds.patients) == len(ds) == 187  # one image per subject: ids must not collide
    assert not ds.problems
