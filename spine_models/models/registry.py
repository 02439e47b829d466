"""One name, one constructor: every architecture of every task behind ``create_model``.

Why: pages, the CLI, the trainer and weight loading all name models by string; a single registry
means an unknown name fails in one place with the list of valid ones (timm ``_registry.py``).
Builders register themselves with :func:`register_model` in ``classification.py``, ``fusion.py``
(two-view classifiers), ``detection.py`` and ``segmentation.py``; those modules are imported on first
lookup, listed here so none has to import another to get registered (fusion builds on classification).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from spine_models.errors import ModelNotFoundError

__all__ = ["ModelSpec", "register_model", "create_model", "list_models", "get_spec"]

_TASK_MODULES = (
    "spine_models.models.classification",
    "spine_models.models.fusion",
    "spine_models.models.detection",
    "spine_models.models.segmentation",
    "spine_models.models.grading",
    "spine_models.models.corners",
)


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about an architecture before it is built."""

    name: str
    task: str  # "classify" | "detect" | "segment"
    builder: Callable[..., Any]
    input_size: int | tuple[int, int] = 224
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}
_loaded = False


def register_model(name: str, *, task: str, input_size: int | tuple[int, int] = 224, description: str = "",
                   **defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``@register_model("resnet50", task="classify")`` over a builder function."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].builder is not fn:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, task, fn, input_size, description or (fn.__doc__ or "").strip().split("\n")[0], defaults)
        return fn

    return deco


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _TASK_MODULES:
        importlib.import_module(mod)


def list_models(task: str | None = None) -> list[str]:
    """Sorted registered names, optionally of one task."""
    _ensure_loaded()
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


def get_spec(name: str, task: str | None = None) -> ModelSpec:
    """The spec of ``name``; unknown names raise with the valid ones listed."""
    _ensure_loaded()
    spec = _REGISTRY.get(name)
    if spec is None or (task is not None and spec.task != task):
        valid = ", ".join(list_models(task))
        what = f"{task} model" if task else "model"
        raise ModelNotFoundError(f"unknown {what} {name!r}; valid names: {valid}")
    return spec


def create_model(name: str, task: str | None = None, **kwargs: Any) -> Any:
    """Build architecture ``name`` (random or locally-loaded weights only; never downloads)."""
    spec = get_spec(name, task)
    return spec.builder(**{**spec.defaults, **kwargs})
