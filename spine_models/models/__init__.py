"""Model registry, builders per task, and shipped-weight loading."""
from spine_models.models.registry import ModelSpec, create_model, get_spec, list_models, register_model

__all__ = ["ModelSpec", "create_model", "get_spec", "list_models", "register_model"]
