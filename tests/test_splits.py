"""Per-patient stratified splits and the leakage check (patient ids and planted near duplicates)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from spine_models.data.leakage import check_leakage, find_near_duplicates
from spine_models.data.records import Sample, SpineDataset
from spine_models.data.splits import parse_ratios, split_dataset, split_provenance
from spine_models.errors import ConfigError, LeakageError


def _toy(n_norm: int = 30, n_sco: int = 12, per_patient: int = 2) -> SpineDataset:
    samples = []
    for label, n in (("normal", n_norm), ("scoliosis", n_sco)):
        for p in range(n):
            for k in range(per_patient):
                samples.append(Sample(id=f"{label}{p}_{k}", patient_id=f"{label[0]}{p}", label=label))
    return SpineDataset(name="toy", samples=samples, classes=["normal", "scoliosis"])


def test_ratios():
    assert parse_ratios("8:1:1") == pytest.approx((0.8, 0.1, 0.1))
    assert parse_ratios("75/15/10") == pytest.approx((0.75, 0.15, 0.10))
    assert parse_ratios((7, 2, 1)) == pytest.approx((0.7, 0.2, 0.1))
    with pytest.raises(ConfigError, match="8:1:1"):
        parse_ratios("a:b")


def test_split_per_patient_stratified_deterministic():
    ds = _toy()
    sp = split_dataset(ds, "8:1:1", seed=3)
    assert sum(len(p) for p in sp.values()) == len(ds)
    sides = {}
    for name, part in sp.items():
        for s in part.samples:
            assert sides.setdefault(s.patient_id, name) == name  # a patient on one side only
        assert set(part.counts()) == {"normal", "scoliosis"}  # every class in every part
    check_leakage(sp, phash_threshold=None)
    again = split_dataset(ds, "8:1:1", seed=3)
    assert all([s.id for s in sp[k].samples] == [s.id for s in again[k].samples] for k in sp)
    other = split_dataset(ds, "8:1:1", seed=4)
    assert [s.id for s in other["test"].samples] != [s.id for s in sp["test"].samples]
    prov = split_provenance(sp)
    assert prov["seed"] == 3 and prov["ratios"] == pytest.approx([0.8, 0.1, 0.1])
    assert prov["n_patients"] == 42 and prov["parts"]["train"]["per_class"]["normal"] == 2 * 24
    sp2 = split_dataset(ds, "75/15/10", seed=0)
    assert len(sp2["train"].patients) == 23 + 9  # largest-remainder counts per class: 30 -> 23/4/3, 12 -> 9/2/1


def test_leakage_catches_shared_patient(monkeypatch):
    ds = _toy(6, 6, 1)
    a = SpineDataset("a", ds.samples[:7])
    b = SpineDataset("b", ds.samples[7:] + [Sample(id="dup", patient_id=ds.samples[0].patient_id, label="normal")])
    with pytest.raises(LeakageError, match="SPINE_MODELS_SHOW_NAMES=1 shows") as hidden:  # ids are names: neutral
        check_leakage(a, b, phash_threshold=None)
    assert repr(ds.samples[0].patient_id) not in str(hidden.value) and "'patient-" in str(hidden.value)
    monkeypatch.setenv("SPINE_MODELS_SHOW_NAMES", "1")  # the user's opt-in
    with pytest.raises(LeakageError, match=repr(ds.samples[0].patient_id)):
        check_leakage(a, b, phash_threshold=None)


def _film(seed: int, shape=(160, 96)) -> np.ndarray:
    """A distinct structured image: random blobs, blurred (phash needs low-frequency structure)."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    for _ in range(12):
        cv2.circle(img, (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0]))),
                   int(rng.integers(5, 30)), float(rng.uniform(0.2, 1.0)), -1)
    return cv2.GaussianBlur(img, (0, 0), 3)


def test_leakage_catches_planted_near_duplicate(tmp_path: Path, monkeypatch):
    train, test = [], []
    for i in range(8):
        p = tmp_path / f"t{i}.png"
        cv2.imwrite(str(p), (_film(i) * 65535).astype(np.uint16))
        (train if i < 5 else test).append(Sample(id=f"t{i}", patient_id=f"P{i}", path=p, label="normal"))
    parts = {"train": SpineDataset("tr", train), "test": SpineDataset("te", list(test))}
    report = check_leakage(parts)
    assert report["image_pairs_checked"] == 15
    # plant: film 2, slightly noised, resized and re-saved as 8-bit JPEG under another name/patient
    src = _film(2)
    noisy = np.clip(src + np.random.default_rng(9).normal(0, 0.02, src.shape), 0, 1)
    copy = cv2.resize(noisy, (80, 140), interpolation=cv2.INTER_AREA)
    q = tmp_path / "other name.jpg"
    cv2.imwrite(str(q), (copy * 255).astype(np.uint8))
    parts["test"].samples.append(Sample(id="x", patient_id="P99", path=q, label="normal"))
    with pytest.raises(LeakageError, match=r"file-[0-9a-f]{8}\.png .*file-[0-9a-f]{8}\.jpg") as hidden:
        check_leakage(parts)
    assert "other name" not in str(hidden.value) and "P99" not in str(hidden.value)  # names hidden by default
    monkeypatch.setenv("SPINE_MODELS_SHOW_NAMES", "1")
    with pytest.raises(LeakageError, match=r"t2\.png.*other name\.jpg"):
        check_leakage(parts)
    # flipped copy is caught too
    parts["test"].samples[-1] = Sample(id="f", patient_id="P98", path=q, label="normal")
    cv2.imwrite(str(q), (np.fliplr(copy) * 255).astype(np.uint8))
    with pytest.raises(LeakageError, match="near-duplicate"):
        check_leakage(parts)
    # the same pair found inside one dataset, and grouping keeps them together when splitting
    allds = SpineDataset("all", train + parts["test"].samples, classes=["normal"])
    dups = find_near_duplicates(allds)
    assert [(d["a"], d["b"]) for d in dups] == [("t2", "f")]
    for seed in range(4):
        sp = split_dataset(allds, (0.5, 0.25, 0.25), seed=seed, group_near_duplicates=True)
        check_leakage(sp)


def test_real_fraiwan_duplicates_grouped(fraiwan_dir):
    from spine_models.data.adapters import load_dataset

    ds = load_dataset(fraiwan_dir)
    sp = split_dataset(ds, "8:1:1", seed=0, group_near_duplicates=True)
    report = check_leakage(sp)
    assert report["parts"] == {k: len(v) for k, v in sp.items()}
    assert split_provenance(sp)["patients_merged_as_duplicates"] >= 3
