"""The one in-memory shape every dataset adapter produces and every trainer/evaluator consumes.

Why: class folders, the synth layout, YOLO, COCO, two-view patient folders, DICOM studies and ZIPs
all become a :class:`SpineDataset` of :class:`Sample` records, so splits, leakage checks, training
and evaluation are written once. Paths are real files (ZIPs are extracted to a cache first).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from spine_models.errors import ConfigError

__all__ = ["BoxLabel", "Sample", "SpineDataset", "relabel", "LABEL_FROM", "VIEW_CLASSES", "DISC_STATES"]

#: MRI disc states in SPEC order: the grade is the index (0 normal … 3 herniation). The one spelling for the
#: phantom, the MRI adapter, class ordering and the app.
DISC_STATES: tuple[str, ...] = ("normal", "degeneration", "bulge", "herniation")
LABEL_FROM = ("class", "view")
VIEW_CLASSES = ["ap", "lat"]


@dataclass
class BoxLabel:
    """A ground-truth box in pixel coordinates of the sample's image."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str


@dataclass
class Sample:
    id: str
    patient_id: str
    path: Path | None = None  # the image (None for two-view samples: see ``views``)
    view: str | None = None  # "ap" | "lat" | "mri_sag" | "mri_ax" | None when unknown
    label: str | None = None  # class name for classification
    views: dict[str, Path] = field(default_factory=dict)  # two-view: {"ap": path, "lat": path}
    masks: dict[str, Path] = field(default_factory=dict)  # structure -> binary mask file
    boxes: list[BoxLabel] = field(default_factory=list)
    landmarks: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # vertebra -> 4 corners
    meta: dict[str, Any] = field(default_factory=dict)  # cobb_deg, slip_percent, meyerding_grade, implant, frame...
    source: str = ""  # the --data argument it came from


@dataclass
class SpineDataset:
    name: str
    samples: list[Sample]
    classes: list[str] = field(default_factory=list)  # classification classes in SPEC order
    structures: list[str] = field(default_factory=list)  # segmentation structures present
    box_classes: list[str] = field(default_factory=list)  # detection classes present
    problems: list[str] = field(default_factory=list)  # e.g. "patient P7: no lateral view" (reported, not fatal)
    root: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"split": provenance} set by data.splits

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def patients(self) -> list[str]:
        return sorted({s.patient_id for s in self.samples})

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.samples:
            if s.label is not None:
                out[s.label] = out.get(s.label, 0) + 1
        return out


def relabel(samples: Sequence[Sample], label_from: str) -> list[Sample]:
    """Samples labelled by what the model learns: ``class`` (the data's label) or ``view`` (``ap`` / ``lat``,
    a view classifier). Why: an X-ray of unknown view must be routed to the AP or the lateral models; the
    phantom's labels.csv (and two-view patient folders) already say the view, so no second dataset is needed.
    Here, not in the engine: a network and a composite classifier label their data the same way."""
    if label_from == "class":
        return [s for s in samples if s.label is not None]
    if label_from == "view":
        return [replace(s, label=str(s.view).lower()) for s in samples if str(s.view or "").lower() in VIEW_CLASSES]
    raise ConfigError(f"classify config: label_from={label_from!r}; valid: {', '.join(LABEL_FROM)}")
