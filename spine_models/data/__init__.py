"""Data: records, dataset adapters (--data), per-patient splits, leakage checks, transforms.

Light names are imported eagerly; torch/albumentations-backed ones lazily (``__getattr__``) so that
``import spine_models.data`` stays cheap for the CLI.
"""
from __future__ import annotations

import importlib
from typing import Any

from spine_models.data.records import BoxLabel, Sample, SpineDataset

__all__ = [
    "BoxLabel", "Sample", "SpineDataset",
    "load_dataset", "dataset_fingerprint", "concat_datasets",
    "split_dataset", "split_provenance",
    "check_leakage", "find_near_duplicates",
    "to_model_input", "augmentation_preset", "PreprocessConfig", "Geometry", "preprocess",
    "ClassificationTorchDataset", "TwoViewTorchDataset", "SegmentationTorchDataset",
]

_LAZY = {
    "load_dataset": "adapters", "dataset_fingerprint": "adapters", "concat_datasets": "adapters",
    "split_dataset": "splits", "split_provenance": "splits",
    "check_leakage": "leakage", "find_near_duplicates": "leakage",
    "to_model_input": "transforms", "augmentation_preset": "transforms",
    "PreprocessConfig": "transforms", "Geometry": "transforms", "preprocess": "transforms",
    "ClassificationTorchDataset": "torch_datasets", "TwoViewTorchDataset": "torch_datasets",
    "SegmentationTorchDataset": "torch_datasets",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"spine_models.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'spine_models.data' has no attribute {name!r}")
