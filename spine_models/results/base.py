"""Common parts of every typed result."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Result", "to_rgb_uint8", "heat_overlay"]


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Float/any-depth grayscale or RGB -> HxWx3 uint8 for overlays (min-max per image)."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    a = (a * 255).round().astype(np.uint8)
    return np.stack([a] * 3, axis=-1) if a.ndim == 2 else a


def heat_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A [0, 1] heat map (JET, resized to the image) blended over the image: RGB uint8 (Grad-CAM, SHAP)."""
    import cv2

    rgb = to_rgb_uint8(image)
    h = cv2.resize(np.asarray(heat, np.float32), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    colored = cv2.applyColorMap((np.clip(h, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (rgb * (1 - alpha) + colored * alpha).astype(np.uint8)


@dataclass
class Result:
    """Base: which model produced it, on what, how long it took."""

    model_id: str
    source: str = ""  # de-identified file name or sample id
    image_size: tuple[int, int] = (0, 0)  # (height, width) of the original image
    elapsed_ms: float = 0.0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "model_id": self.model_id,
            "source": self.source,
            "image_size": list(self.image_size),
            "elapsed_ms": round(float(self.elapsed_ms), 2),
            "device": self.device,
            **({"extra": self.extra} if self.extra else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())
