"""Process-wide settings that keep every library offline, and device choice.

Why: the project must never hang on the network (timm retries ~47 s, smp ~24 s, albumentations and
Ultralytics phone home at import). These defaults are set with ``setdefault`` so a user can override.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["configure_offline", "get_device", "cache_dir"]

_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "False",
    "YOLO_VERBOSE": "False",
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
}


def cache_dir() -> Path:
    """Writable per-user cache (Ultralytics config, job store defaults)."""
    root = Path(os.environ.get("SPINE_MODELS_CACHE", Path.home() / ".cache" / "spine_models"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def configure_offline() -> None:
    """Set the offline environment variables (idempotent, never overrides the user's own)."""
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_dir() / "ultralytics"))


def get_device(prefer: str | None = None) -> "torch.device":  # noqa: F821
    """CUDA when torch sees it, else CPU; ``prefer`` ("cpu", "cuda", "cuda:1") wins when given."""
    import torch

    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
