"""Explanations of classifier decisions: Grad-CAM maps and SHAP partition attributions.

pytorch-grad-cam and shap are imported inside the functions (both are slow to import).
"""
from __future__ import annotations

from spine_models.explain.gradcam import gradcam
from spine_models.explain.shap_explain import shap_partition

__all__ = ["gradcam", "shap_partition"]
