"""Disc grading result: every disc found on a sagittal MR slice, its level and its grades.

Why a subclass of :class:`SegmentationResult`: the disc masks are a segmentation (the report's ``dice``/``iou``
keys, the page's mask overlay); the per-disc table is what a reader wants from it: one row per level with the
Pfirrmann grade and the findings, each with its probability, and the study's disc-state word.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spine_models.results.base import to_rgb_uint8
from spine_models.results.segmentation import SegmentationResult

__all__ = ["DiscGrade", "DiscGradingResult", "disc_state", "FINDING_LABELS"]

#: the table's column for each finding a grader may name (data.spider.GRADABLE_FINDINGS); others show their key
FINDING_LABELS = {"herniation": "herniation", "bulging": "bulging", "narrowing": "narrowing", "modic": "Modic change",
                  "up_endplate": "upper endplate change", "low_endplate": "lower endplate change",
                  "spondylolisthesis": "spondylolisthesis"}


def disc_state(pfirrmann: int, findings: dict[str, bool]) -> str:
    """The MRI study's disc-state word (SPEC ``normal``/``degeneration``/``bulge``/``herniation``) from SPIDER-style
    gradings, by one rule, worst first: herniation if herniated; else bulge if bulging; else degeneration if
    Pfirrmann ≥ 3 or the disc is narrowed; else normal. Why this order: the study's states are exclusive and
    ordered by severity (grades 0–3), and a herniated disc is usually also bulging and degenerated."""
    if findings.get("herniation"):
        return "herniation"
    if findings.get("bulging"):
        return "bulge"
    if int(pfirrmann) >= 3 or findings.get("narrowing"):
        return "degeneration"
    return "normal"


@dataclass
class DiscGrade:
    """One disc: where, which level, and its grades with probabilities (uncalibrated model scores)."""

    level: str | None
    box: tuple[float, float, float, float]
    score: float  # locator's mean disc probability inside the disc
    pfirrmann: int | None = None  # 1..5 (None when not graded)
    pfirrmann_probs: list[float] = field(default_factory=list)  # grades 1..5
    findings: dict[str, float] = field(default_factory=dict)  # finding -> probability
    calls: dict[str, bool] = field(default_factory=dict)  # finding -> at or above the card's threshold
    cam: np.ndarray | None = None  # Grad-CAM on the disc crop (crop pixels, [0, 1])
    crop: np.ndarray | None = None  # the upright crop the grader saw (kept with its CAM)

    @property
    def state(self) -> str | None:
        return None if self.pfirrmann is None else disc_state(self.pfirrmann, self.calls)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "box": [round(float(v), 1) for v in self.box], "score": round(float(self.score), 4),
                "pfirrmann": self.pfirrmann, "pfirrmann_probs": [round(float(p), 4) for p in self.pfirrmann_probs],
                "findings": {k: round(float(v), 4) for k, v in self.findings.items()},
                "calls": dict(self.calls), "disc_state": self.state}


@dataclass
class DiscGradingResult(SegmentationResult):
    discs: list[DiscGrade] = field(default_factory=list)
    levels_reliable: bool = False
    note: str = ""  # why levels are not named, or why nothing was found
    thresholds: dict[str, float] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """One row per disc, cranial to caudal when levels are known (the grading schema's table)."""
        rows = []
        # every finding the grader names, in its card's order (the first three even on an ungraded slice)
        names = list(dict.fromkeys([*("herniation", "bulging", "narrowing"), *(f for d in self.discs for f in d.findings)]))
        for d in self.discs[::-1] if self.levels_reliable else self.discs:
            rows.append({"level": d.level or "(level unknown)", "Pfirrmann": d.pfirrmann,
                         "P(Pfirrmann)": None if d.pfirrmann is None else round(d.pfirrmann_probs[d.pfirrmann - 1], 3),
                         **{FINDING_LABELS.get(f, f): (None if f not in d.findings
                                                       else f"{'yes' if d.calls.get(f) else 'no'} ({d.findings[f]:.2f})")
                            for f in names},
                         "disc state": d.state})
        return rows

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(discs=[x.to_dict() for x in self.discs], levels_reliable=self.levels_reliable, note=self.note,
                 thresholds=dict(self.thresholds))
        return d

    def plot(self, image: np.ndarray, show: list[str] | None = None, alpha: float = 0.3) -> np.ndarray:
        """The slice with each disc's box, level and Pfirrmann grade."""
        import cv2

        rgb = super().plot(image, show=show if show is not None else ["disc"], alpha=alpha) if self.masks else to_rgb_uint8(image).copy()
        lw = max(1, round(max(rgb.shape[:2]) / 400))
        for d in self.discs:
            x1, y1, x2, y2 = (int(round(v)) for v in d.box)
            color = (255, 80, 80) if d.calls.get("herniation") else (255, 200, 0) if (d.pfirrmann or 0) >= 4 else (0, 220, 120)
            cv2.rectangle(rgb, (x1, y1), (x2, y2), color, lw)
            text = f"{d.level or '?'}" + (f" P{d.pfirrmann}" if d.pfirrmann else "")
            cv2.putText(rgb, text, (x2 + 3, (y1 + y2) // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * lw + 0.05, color, lw)
        return rgb
