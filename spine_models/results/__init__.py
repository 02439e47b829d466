"""Typed inference results (Ultralytics ``engine/results.py``): pages and the CLI render these.

Each result has ``to_dict()`` (JSON-safe, no arrays larger than a few numbers unless asked) and
``plot()`` returning an RGB uint8 overlay on the input image.
"""
from spine_models.results.base import Result
from spine_models.results.classification import ClassificationResult
from spine_models.results.detection import DetectionResult
from spine_models.results.segmentation import SegmentationResult

__all__ = ["Result", "ClassificationResult", "DetectionResult", "SegmentationResult"]
