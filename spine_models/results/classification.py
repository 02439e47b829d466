"""Classification result: probabilities per class, optional CAM/SHAP maps."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spine_models.results.base import Result, heat_overlay, to_rgb_uint8

__all__ = ["ClassificationResult", "NO_ANSWER"]

NO_ANSWER = "no answer"


@dataclass
class ClassificationResult(Result):
    classes: list[str] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    threshold: float | None = None  # binary models: decision threshold on the positive class
    cam: np.ndarray | None = None  # HxW in [0, 1] at the original resolution
    shap: np.ndarray | None = None  # HxW signed attribution at the original resolution
    # a classifier that reads a measurement gives no answer when the measurement failed (probs then empty):
    # "normal 100 %" from a film where no spine was found would be a finding nobody measured
    abstained: bool = False
    note: str = ""  # why it abstained ("no answer: the measurement failed — ...")

    @property
    def top_class(self) -> str:
        """The predicted class; "no answer" when the model abstained."""
        if self.abstained or not self.probs:
            return NO_ANSWER
        if self.threshold is not None and len(self.classes) == 2:
            return self.classes[int(self.probs[1] >= self.threshold)]
        return self.classes[int(np.argmax(self.probs))]

    @property
    def top_prob(self) -> float:
        """The predicted class's probability; NaN when the model abstained (there is none)."""
        if self.abstained or not self.probs:
            return float("nan")
        return float(self.probs[self.classes.index(self.top_class)])

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(
            classes=list(self.classes),
            probs={c: round(float(p), 6) for c, p in zip(self.classes, self.probs)},
            prediction=None if self.abstained else self.top_class,
            threshold=self.threshold,
            has_cam=self.cam is not None,
            has_shap=self.shap is not None,
        )
        if self.abstained:
            d.update(abstained=True, note=self.note or NO_ANSWER)
        return d

    def plot(self, image: np.ndarray, which: str = "cam", alpha: float = 0.45) -> np.ndarray:
        """Heat map (``cam`` or ``shap``) blended on the image; the plain image when absent."""
        heat = self.cam if which == "cam" else self.shap
        if heat is None:
            return to_rgb_uint8(image)
        h = np.asarray(heat, dtype=np.float32)
        if which == "shap":
            m = float(np.abs(h).max()) or 1.0
            h = (h / m + 1) / 2
        return heat_overlay(image, h, alpha)
