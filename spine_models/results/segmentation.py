"""Segmentation result: one probability/binary mask per structure at the original resolution."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spine_models.results.base import Result, to_rgb_uint8

__all__ = ["SegmentationResult"]

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230)]


@dataclass
class SegmentationResult(Result):
    structures: list[str] = field(default_factory=list)
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # structure -> HxW bool
    measurements: dict[str, Any] = field(default_factory=dict)  # e.g. {"cobb": {...}, "slip": {...}}

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(structures=list(self.structures),
                 area_px={s: int(np.count_nonzero(m)) for s, m in self.masks.items()},
                 measurements=self.measurements)
        return d

    def plot(self, image: np.ndarray, show: list[str] | None = None, alpha: float = 0.45) -> np.ndarray:
        rgb = to_rgb_uint8(image).astype(np.float32)
        for i, s in enumerate(self.structures):
            if (show is not None and s not in show) or s not in self.masks:
                continue
            m = self.masks[s].astype(bool)
            rgb[m] = rgb[m] * (1 - alpha) + np.array(PALETTE[i % len(PALETTE)], np.float32) * alpha
        return rgb.astype(np.uint8)
