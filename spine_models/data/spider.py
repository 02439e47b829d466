"""The disc-grading layout (SPIDER lumbar MRI): whole sagittal slices, disc boxes recovered from the crops, gradings.

Why this module: the folder gives whole slices, small disc crops and per-disc gradings, but no box and no level
on any slice. Both are recovered here, from the data, by one documented rule, so training, evaluation and the
page read the same truth.

What the data says (``python docs/spider_levels.py`` re-derives each fact):
- **Boxes.** Every crop is an exact cut of its series' slice as stored upstream, which is the PNG flipped
  top-to-bottom for almost every series (normalised cross-correlation 1.000 at scale 1 after the flip): the
  crop's red frame *is* the disc box. A crop is located by template matching its inside (frame removed) under the
  8 flips/rotations of the slice, the one with the best total score per series kept; crops that match below
  ``MATCH_MIN`` are left out (a few series' crops come from another slice).
- **Crop numbers.** In the upstream (upright) orientation the crops are numbered from the top: ``disc_1`` is the
  most cranial crop of the series, the highest number sits on the sacrum.
- **IVD label.** ``gradings.csv`` numbers discs from the bottom: label 1 is L5-S1, 2 L4-L5, … 5 L1-L2, 6 T12-L1,
  up to 9 (T9-T10). Evidence: every patient has labels 1-6 and only some 7-9 (fields of view end above, not
  below); mean Pfirrmann grade falls from label 1-2 (3.35, 3.26) to label 6 (2.25) and herniation peaks at label 2
  (L4-L5, 17 %) then 1 (11 %), as in every lumbar series; and on T2 slices the nucleus brightness inside a crop's
  box correlates with the Pfirrmann grade at Spearman -0.64 when crop k is read as label ``n + 1 - k`` (n = the
  series' crop count), against -0.29 when read as label k (377 discs; docs/spider_levels.md).
- Where a series' crop count differs from its ``num_discs`` (19 series) the mapping is less certain; those series
  give boxes (``disc``) but no level and no grading target (``levels_certain`` false).
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spine_models.data.records import BoxLabel, Sample, SpineDataset
from spine_models.errors import DatasetError

__all__ = ["IVD_LEVELS", "LUMBAR_LEVELS", "FINDINGS", "GRADABLE_FINDINGS", "MATCH_MIN", "SeriesDiscs", "is_spider_layout",
           "recover_disc_boxes", "load_spider", "level_of_ivd", "grading_targets", "dihedral", "undo_dihedral_box"]

IVD_LEVELS: dict[int, str] = {1: "L5-S1", 2: "L4-L5", 3: "L3-L4", 4: "L2-L3", 5: "L1-L2", 6: "T12-L1",
                              7: "T11-T12", 8: "T10-T11", 9: "T9-T10"}
LUMBAR_LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")  # SPEC's MRI disc levels
FINDINGS = ("herniation", "bulging", "narrowing")  # binary gradings a grader predicts by default (with Pfirrmann)
#: every binary grading the folder gives per disc (Modic: any type, 1-3; endplates: upper / lower changed), the
#: findings a grader can be trained for (``--set grader_findings=[...]``)
GRADABLE_FINDINGS = (*FINDINGS, "modic", "up_endplate", "low_endplate", "spondylolisthesis")
_COLUMNS = {"herniation": "Disc herniation", "bulging": "Disc bulging", "narrowing": "Disc narrowing",
            "pfirrmann": "Pfirrman grade", "modic": "Modic", "up_endplate": "UP endplate",
            "low_endplate": "LOW endplate", "spondylolisthesis": "Spondylolisthesis"}
MATCH_MIN = 0.95  # normalised cross-correlation below which a crop is not taken as a cut of the slice
_VERSION = 1  # bump when the recovery rule changes (the cache key holds it)


def level_of_ivd(ivd: int) -> str:
    """The anatomical level of an upstream ``IVD label`` (1 = L5-S1, counted upwards)."""
    try:
        return IVD_LEVELS[int(ivd)]
    except (KeyError, ValueError):
        raise DatasetError(f"IVD label {ivd!r} is outside 1-9; the disc-grading layout numbers discs 1 (L5-S1) upwards") from None


def is_spider_layout(root: Path) -> bool:
    """``DIR/gradings.csv`` beside ``DIR/images/``: the disc-grading layout (SPEC real-data layouts)."""
    return (root / "gradings.csv").is_file() and (root / "images").is_dir()


def dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations: ``rot90(img, k % 4)``, mirrored left-right when ``k >= 4``."""
    t = np.rot90(img, k % 4)
    return np.ascontiguousarray(t[:, ::-1] if k >= 4 else t)


def undo_dihedral_box(box: tuple[float, float, float, float], k: int, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """A box ``(x1, y1, x2, y2)`` found on ``dihedral(img, k)`` mapped back onto ``img`` (of ``shape`` H, W)."""
    h, w = shape
    ys, xs = np.indices((h, w))
    ty, tx = dihedral(ys, k), dihedral(xs, k)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    sub_y, sub_x = ty[y1:y2, x1:x2], tx[y1:y2, x1:x2]
    return float(sub_x.min()), float(sub_y.min()), float(sub_x.max() + 1), float(sub_y.max() + 1)


def _crop_inside(path: Path) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """(grey inside of a crop without its red frame, offset of that inside in the crop, crop H, W)."""
    import cv2

    crop = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if crop is None:
        raise DatasetError("disc crop is not a readable image", path)
    red = (crop[:, :, 2] > 180) & (crop[:, :, 1] < 80) & (crop[:, :, 0] < 80)
    rows, cols = np.where(red.mean(1) < 0.5)[0], np.where(red.mean(0) < 0.5)[0]
    if len(rows) == 0 or len(cols) == 0 or red.mean() < 0.02:
        r0, r1, c0, c1 = 2, crop.shape[0] - 2, 2, crop.shape[1] - 2
    else:
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    grey = cv2.cvtColor(crop[r0:r1, c0:c1], cv2.COLOR_BGR2GRAY)[3:-3, 3:-3]
    return grey, (r0 + 3, c0 + 3), crop.shape[:2]


@dataclass
class SeriesDiscs:
    """Disc boxes recovered on one series' slice (PNG pixel coordinates) and how they were found."""

    series: str
    orientation: int  # the dihedral k under which the crops matched (6 = top-to-bottom flip)
    boxes: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)  # IVD label -> box
    scores: dict[int, float] = field(default_factory=dict)
    levels_certain: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"series": self.series, "orientation": self.orientation, "levels_certain": self.levels_certain,
                "boxes": {str(k): list(v) for k, v in self.boxes.items()}, "scores": {str(k): v for k, v in self.scores.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SeriesDiscs":
        return cls(d["series"], int(d["orientation"]), {int(k): tuple(v) for k, v in d["boxes"].items()},
                   {int(k): float(v) for k, v in d["scores"].items()}, bool(d["levels_certain"]))


def _match_series(image: Path, crops: list[tuple[int, Path]], num_discs: int | None) -> SeriesDiscs:
    import cv2

    img = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise DatasetError("slice is not a readable image", image)
    insides = [(k, *_crop_inside(p)) for k, p in crops]
    best: tuple[float, int, list] | None = None
    for k in range(8):
        im = dihedral(img, k)
        total, found = 0.0, []
        for num, grey, off, cshape in insides:
            if grey.shape[0] >= im.shape[0] or grey.shape[1] >= im.shape[1] or min(grey.shape) < 4:
                total -= 1.0
                continue
            r = cv2.matchTemplate(im, grey, cv2.TM_CCOEFF_NORMED)
            _, mx, _, (x, y) = cv2.minMaxLoc(r)
            total += float(mx)
            x0, y0 = x - off[1], y - off[0]
            found.append((num, float(mx), (x0, y0, x0 + cshape[1], y0 + cshape[0])))
        if best is None or total > best[0]:
            best = (total, k, found)
    assert best is not None
    _, k, found = best
    n = len(crops)
    out = SeriesDiscs(image.stem, k, levels_certain=(num_discs is None or n == num_discs))
    for num, score, box in found:
        if score < MATCH_MIN:
            continue
        ivd = n + 1 - num  # crops count from the top, IVD labels from the bottom (module docstring)
        x1, y1, x2, y2 = box
        tb = (max(0, x1), max(0, y1), min(dihedral(img, k).shape[1], x2), min(dihedral(img, k).shape[0], y2))
        out.boxes[ivd] = undo_dihedral_box(tb, k, img.shape[:2])
        out.scores[ivd] = round(score, 4)
    return out


def _series_rows(root: Path) -> dict[str, dict[str, str]]:
    p = root / "series.csv"
    if not p.is_file():
        return {}
    with p.open(newline="", encoding="utf-8") as fh:
        return {r.get("new_file_name", ""): r for r in csv.DictReader(fh)}


def recover_disc_boxes(root: str | Path, *, cache: bool = True) -> dict[str, SeriesDiscs]:
    """Disc boxes per series with crops, recovered by template matching (module docstring); cached by content.

    About 2 minutes on 2 cores for the whole folder the first time; the cache (in the package's cache folder) is
    keyed on the crop and slice names, sizes and this rule's version."""
    from spine_models._env import cache_dir

    root = Path(root)
    discs_dir = root / "discs"
    crops: dict[str, list[tuple[int, Path]]] = {}
    if discs_dir.is_dir():
        for p in sorted(discs_dir.glob("*.png")):
            stem = p.stem
            if "_disc_" not in stem:
                continue
            series, num = stem.rsplit("_disc_", 1)
            if not num.isdigit():  # e.g. an editor's "-checkpoint" copy
                continue
            crops.setdefault(series, []).append((int(num), p))
    key_src = json.dumps([_VERSION] + [[s, [(n, p.stat().st_size) for n, p in v]] for s, v in sorted(crops.items())]
                         + sorted((p.name, p.stat().st_size) for p in (root / "images").glob("*.png")))
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    cache_file = cache_dir() / "spider" / f"boxes-{key}.json"
    if cache and cache_file.is_file():
        return {k: SeriesDiscs.from_dict(v) for k, v in json.loads(cache_file.read_text()).items()}
    rows = _series_rows(root)
    out: dict[str, SeriesDiscs] = {}
    for series, items in sorted(crops.items()):
        image = root / "images" / f"{series}.png"
        if not image.is_file():
            continue
        nd = rows.get(series, {}).get("num_discs")
        out[series] = _match_series(image, sorted(items), int(nd) if nd and str(nd).isdigit() else None)
    if cache:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v.to_dict() for k, v in out.items()}))
        tmp.replace(cache_file)
    return out


def _gradings(root: Path) -> dict[tuple[str, int], dict[str, int]]:
    path = root / "gradings.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[tuple[str, int], dict[str, int]] = {}
    for i, r in enumerate(rows, start=2):
        try:
            out[(str(int(r["Patient"])), int(r["IVD label"]))] = {k: int(r[c]) for k, c in _COLUMNS.items()}
        except (KeyError, ValueError, TypeError):
            raise DatasetError(f"gradings.csv line {i}: needs integer Patient, IVD label and "
                               f"{', '.join(_COLUMNS.values())}", path) from None
    return out


def grading_targets(g: dict[str, int]) -> dict[str, int]:
    """The grader's targets from one disc's gradings: Pfirrmann as class 0-4 (grade 1-5) and every binary finding
    (:data:`GRADABLE_FINDINGS`; Modic: any type)."""
    return {"pfirrmann": int(g["pfirrmann"]) - 1, **{f: int(g[f] > 0) for f in GRADABLE_FINDINGS}}


def load_spider(root: str | Path, source: str = "") -> SpineDataset:
    """The disc-grading layout as a SpineDataset: one Sample per slice (``view`` ``mri_sag``), disc boxes labelled
    by level where the crops give them, and ``meta["gradings"]`` {level: gradings} for every graded disc of the
    patient (the gradings hold for both of a patient's series)."""
    root = Path(root)
    if not is_spider_layout(root):
        raise DatasetError("not the disc-grading layout: needs gradings.csv and images/", root)
    grades = _gradings(root)
    boxes = recover_disc_boxes(root)
    samples: list[Sample] = []
    for img in sorted((root / "images").glob("*.png")):
        series = img.stem
        patient = series.split("_")[0]
        found = boxes.get(series)
        blist: list[BoxLabel] = []
        if found is not None:
            for ivd, (x1, y1, x2, y2) in sorted(found.boxes.items()):
                label = f"disc {level_of_ivd(ivd)}" if found.levels_certain and ivd in IVD_LEVELS else "disc"
                blist.append(BoxLabel(x1, y1, x2, y2, label))
        patient_grades = {level_of_ivd(ivd): g for (p, ivd), g in grades.items() if p == patient}
        samples.append(Sample(
            id=series, patient_id=patient, path=img, view="mri_sag", boxes=blist, source=source or str(root),
            meta={"gradings": patient_grades, "sequence": series.split("_")[-1],
                  "levels_certain": bool(found.levels_certain) if found else False,
                  "orientation": found.orientation if found else None}))
    if not samples:
        raise DatasetError("the disc-grading layout has no slices in images/", root)
    return SpineDataset(name=root.name, samples=samples, box_classes=["disc"], root=str(root),
                        meta={"layout": "disc-grading"})
