"""Near-duplicate check on films that share one layout: copies match, look-alike patients do not, cost bounded."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from spine_models.data.leakage import find_near_duplicates
from spine_models.data.records import Sample, SpineDataset


def _layout_film(seed: int, size: tuple[int, int] = (128, 64)) -> np.ndarray:
    """Same layout for every seed (a column of 'vertebrae' and a frame); only the fine texture is the patient's."""
    h, w = size
    img = np.full(size, 0.3, np.float32)
    for k in range(10):
        y = 8 + k * 11
        cv2.rectangle(img, (w // 2 - 8, y), (w // 2 + 8, y + 8), 0.8, -1)
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.normal(0, 1, size).astype(np.float32), (0, 0), 1.2)
    return np.clip(img + 0.08 * tex / tex.std(), 0, 1)


def _write(path: Path, img: np.ndarray) -> Path:
    cv2.imwrite(str(path), (np.clip(img, 0, 1) * 255).astype(np.uint8))
    return path


def test_layout_twins_not_grouped_but_copies_are(tmp_path: Path):
    samples = [Sample(id=f"p{i}", patient_id=f"P{i}", path=_write(tmp_path / f"p{i}.png", _layout_film(i))) for i in range(12)]
    assert find_near_duplicates(SpineDataset("x", samples)) == []  # same layout, different patients
    src = _layout_film(3)
    crop = src[6:-4, 3:-2]  # re-cropped ~8 %
    copy = np.fliplr(cv2.resize(crop, (56, 120), interpolation=cv2.INTER_AREA)) * 0.9 + 0.05  # flipped, darker
    samples.append(Sample(id="copy", patient_id="Q", path=_write(tmp_path / "copy.png", copy)))
    found = find_near_duplicates(SpineDataset("x", samples))
    assert [(r["a"], r["b"]) for r in found] == [("p3", "copy")]


def test_verifications_bounded_on_lookalikes(tmp_path: Path):
    samples = [Sample(id=f"p{i}", patient_id=f"P{i}", path=_write(tmp_path / f"p{i}.png", _layout_film(100 + i, (64, 32))))
               for i in range(60)]
    stats: dict = {}
    find_near_duplicates(SpineDataset("x", samples), max_candidates=2, stats=stats)
    assert stats["pairs"] == 60 * 59 // 2
    assert stats["verified"] <= 2 * 2 * 60  # at most k per row plus k per column, not O(n^2)


def test_near_duplicates_between_two_sources(tmp_path: Path):
    """A film copied into another source under another patient id is found across the two sets only."""
    from spine_models.data.leakage import near_duplicates_between

    a = [Sample(id=f"a{i}", patient_id=f"A{i}", path=_write(tmp_path / f"a{i}.png", _layout_film(i))) for i in range(6)]
    b = [Sample(id=f"b{i}", patient_id=f"B{i}", path=_write(tmp_path / f"b{i}.png", _layout_film(100 + i))) for i in range(6)]
    assert near_duplicates_between(SpineDataset("a", a), SpineDataset("b", b)) == []
    b.append(Sample(id="copy", patient_id="B99", path=_write(tmp_path / "copy.png", _layout_film(2) * 0.9 + 0.05)))
    found = near_duplicates_between(SpineDataset("a", a), SpineDataset("b", b))
    assert [(r["a"], r["b"]) for r in found] == [("a2", "copy")]


def test_unreadable_films_are_reported_and_the_check_carries_on(tmp_path: Path, capfd):
    """A truncated PNG, a garbage file and a missing file among the films used to crash the whole check (OpenCV /
    Pillow errors, a FileNotFoundError): each is now one problem line with a neutral name, and the copy among the
    readable films is still found; a split and check_leakage report them too."""
    from spine_models.data.leakage import check_leakage
    from spine_models.data.splits import split_dataset

    samples = [Sample(id=f"p{i}", patient_id=f"P{i}", path=_write(tmp_path / f"p{i}.png", _layout_film(i))) for i in range(6)]
    samples.append(Sample(id="copy", patient_id="Q", path=_write(tmp_path / "copy.png", _layout_film(3) * 0.9 + 0.05)))
    whole = (tmp_path / "p0.png").read_bytes()
    bad = {"PID-77341_cut.png": whole[: len(whole) // 2], "PID-77341_junk.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 200}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        samples.append(Sample(id=name, patient_id=name, path=tmp_path / name))
    samples.append(Sample(id="gone", patient_id="G", path=tmp_path / "PID-77341_gone.png"))
    problems: list[str] = []
    found = find_near_duplicates(SpineDataset("x", samples), problems=problems)
    assert [(r["a"], r["b"]) for r in found] == [("p3", "copy")]
    assert len(problems) == 3
    assert all("\n" not in p and len(p) <= 300 and "PID-77341" not in p and "file-" in p for p in problems)
    parts = split_dataset(SpineDataset("x", samples), (0.5, 0.25, 0.25), seed=0, group_near_duplicates=True)
    assert all(len(part.problems) == 3 for part in parts.values())
    report = check_leakage({"a": SpineDataset("a", samples[:3]), "b": SpineDataset("b", samples[7:])})
    assert len(report["problems"]) == 3 and report["image_pairs_checked"] == 0
    assert capfd.readouterr().err == ""
