"""The typed, de-identified image object every reader returns.

Why: the rest of the package (datasets, predictors, the app) needs one shape for any input file:
pixels as float32 in [0, 1] plus the physical facts (bit depth, spacing, view) that measurements and
the shortcut audit rely on, and never anything identifying.

Pixel convention (documented once, relied on everywhere): ``pixels`` is a C-contiguous float32 HxW
array in [0, 1], 0 = black, 1 = white *as displayed* — i.e. after the DICOM Modality LUT, the VOI
LUT / window, and MONOCHROME1 inversion, so bone is bright. 8-bit files are divided by 255, 16-bit
PNG/TIFF by 65535; DICOM without a window is scaled min–max over all its frames. ``value_range`` gives
the original values (e.g. Hounsfield units) mapped to 0 and 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Radiograph", "kind_of"]

_XRAY_MODALITIES = {"CR", "DX", "DR", "RF", "XA", "RG", "PX", "MG", "IO", "OT", "SC", "DF"}


def kind_of(modality: str | None, fmt: str) -> str:
    """``xray`` | ``mri`` | ``ct`` | ``other``: raster files count as X-ray films (what the app reads)."""
    if fmt != "DICOM" or not modality:
        return "xray"
    modality = modality.upper()
    if modality == "MR":
        return "mri"
    if modality == "CT":
        return "ct"
    return "xray" if modality in _XRAY_MODALITIES else "other"


@dataclass(repr=False, eq=False)
class Radiograph:
    """One image (first frame in ``pixels``; all frames in ``volume`` when ``frames > 1``)."""

    pixels: np.ndarray
    bits: int
    format: str
    name: str
    photometric: str
    pixel_spacing_mm: tuple[float, float] | None = None
    spacing_source: str | None = None  # "PixelSpacing" | "ImagerPixelSpacing" | None
    view: str | None = None  # "ap" | "lat" | "mri_sag" | "mri_ax" | "mri_cor" | None
    modality: str | None = None
    frames: int = 1
    volume: np.ndarray | None = None
    value_range: tuple[float, float] | None = None
    window: tuple[float, float] | None = None  # (center, width) of the VOI window applied, original units
    header: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def kind(self) -> str:
        return kind_of(self.modality, self.format)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description without pixels (the SPEC ``info`` fields plus the safe extras)."""
        return {
            "name": self.name,
            "format": self.format,
            "kind": self.kind,
            "width": self.width,
            "height": self.height,
            "bits": self.bits,
            "photometric": self.photometric,
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
            "spacing_source": self.spacing_source,
            "frames": self.frames,
            "modality": self.modality,
            "view": self.view,
            "value_range": list(self.value_range) if self.value_range else None,
            "window": list(self.window) if self.window else None,
            "header": dict(self.header),
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        spacing = "none" if not self.pixel_spacing_mm else "×".join(f"{s:g}" for s in self.pixel_spacing_mm) + " mm"
        return (
            f"Radiograph({self.name!r}, {self.format}, {self.width}×{self.height}, {self.bits}-bit "
            f"{self.photometric}, frames={self.frames}, spacing={spacing}, modality={self.modality}, view={self.view})"
        )
