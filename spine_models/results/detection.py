"""Detection result: boxes in original image coordinates."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spine_models.results.base import Result, to_rgb_uint8

__all__ = ["Box", "DetectionResult"]


@dataclass
class Box:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    score: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(float(v), 1) for v in (self.x1, self.y1, self.x2, self.y2)], "label": self.label,
                "score": round(float(self.score), 4)}


@dataclass
class DetectionResult(Result):
    classes: list[str] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    threshold: float = 0.5  # boxes below it are kept but not counted as findings

    def findings(self) -> dict[str, bool]:
        """Image-level verdict per class at the model's threshold."""
        return {c: any(b.label == c and b.score >= self.threshold for b in self.boxes) for c in self.classes}

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(classes=list(self.classes), threshold=self.threshold, findings=self.findings(),
                 boxes=[b.to_dict() for b in self.boxes])
        return d

    def plot(self, image: np.ndarray, min_score: float | None = None) -> np.ndarray:
        import cv2

        rgb = to_rgb_uint8(image).copy()
        thr = self.threshold if min_score is None else min_score
        palette = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180)]
        lw = max(1, round(max(rgb.shape[:2]) / 400))
        for b in self.boxes:
            if b.score < thr:
                continue
            color = palette[self.classes.index(b.label) % len(palette)] if b.label in self.classes else (255, 255, 0)
            p1, p2 = (int(b.x1), int(b.y1)), (int(b.x2), int(b.y2))
            cv2.rectangle(rgb, p1, p2, color, lw)
            cv2.putText(rgb, f"{b.label} {b.score:.2f}", (p1[0], max(p1[1] - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * lw, color, lw)
        return rgb
