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
    # AP films: one entry per vertebral body found, top to bottom:
    # {"name": "T1".., "corners": [[x, y] TL, TR, BR, BL], "box": [x1, y1, x2, y2], "score": mean probability}
    vertebrae: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(structures=list(self.structures),
                 area_px={s: int(np.count_nonzero(m)) for s, m in self.masks.items()},
                 measurements=self.measurements)
        if self.vertebrae:
            d["vertebrae"] = self.vertebrae
        return d

    def plot(self, image: np.ndarray, show: list[str] | None = None, alpha: float = 0.45) -> np.ndarray:
        rgb = to_rgb_uint8(image).astype(np.float32)
        for i, s in enumerate(self.structures):
            if (show is not None and s not in show) or s not in self.masks:
                continue
            m = self.masks[s].astype(bool)
            rgb[m] = rgb[m] * (1 - alpha) + np.array(PALETTE[i % len(PALETTE)], np.float32) * alpha
        out = rgb.astype(np.uint8)
        if self.vertebrae and (show is None or "vertebra" in show):
            out = self._draw_corners(out)
        return out

    def _draw_corners(self, rgb: np.ndarray) -> np.ndarray:
        """Each found body's 4 corners as a closed outline plus its level name: what Cobb was read from."""
        import cv2

        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        t = max(1, round(min(h, w) / 400))
        scale = max(0.3, min(h, w) / 1600)
        for v in self.vertebrae:
            pts = np.round(np.asarray(v["corners"], np.float32)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(rgb, [pts], True, (255, 255, 0), t, cv2.LINE_AA)
            x, y = int(pts[:, 0, 0].max()) + 3 * t, int(pts[:, 0, 1].mean())
            cv2.putText(rgb, str(v.get("name", "")), (min(x, w - 1), y), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        (255, 255, 0), t, cv2.LINE_AA)
        return rgb
