"""Grad-CAM through pytorch-grad-cam, with the right target layer per registered architecture.

Why a wrapper: the layer to hook differs per architecture (``cam_target_layer`` in
``models/classification.py``), one-logit (sigmoid) models need a signed target, frozen models have no
gradients unless we switch them on, and the caller's model must come back exactly as it was (train/eval
flag of every module, ``requires_grad`` of every parameter).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["gradcam"]


class _FixedOther(nn.Module):
    """Two-view model seen as a one-input model of its AP view (the lateral input held fixed)."""

    def __init__(self, model: nn.Module, lat: torch.Tensor) -> None:
        super().__init__()
        self.model, self.lat = model, lat

    def forward(self, ap: torch.Tensor) -> torch.Tensor:
        return self.model(ap, self.lat.expand(ap.shape[0], *self.lat.shape[1:]))


class _Logit:
    """Target for a one-logit model: the logit for class 1, its negative for class 0."""

    def __init__(self, sign: float) -> None:
        self.sign = sign

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.sign * output[..., 0]


def gradcam(model: nn.Module, input_tensor: torch.Tensor | tuple[torch.Tensor, torch.Tensor], target_class: int | None = None,
            arch: str | None = None, target_layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM of ``input_tensor`` (1, C, H, W) -> HxW float32 in [0, 1] at the input size.

    ``target_class=None`` explains the top class. Two-view models take ``(ap, lat)`` and get the AP map.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from spine_models.models.classification import cam_target_layer

    modes = {m: m.training for m in model.modules()}
    grads = {p: p.requires_grad for p in model.parameters()}
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(True)
        layer = target_layer if target_layer is not None else cam_target_layer(model, arch)
        net: nn.Module = model
        x = input_tensor
        if isinstance(input_tensor, (tuple, list)):
            net = _FixedOther(model, input_tensor[1].detach())
            x = input_tensor[0]
        x = x.detach().clone()
        with torch.no_grad():
            out = net(x)
        if out.shape[-1] == 1:
            p1 = float(torch.sigmoid(out[0, 0]))
            cls = (1 if p1 >= 0.5 else 0) if target_class is None else int(target_class)
            targets: Any = [_Logit(1.0 if cls == 1 else -1.0)]
        else:
            targets = None if target_class is None else [ClassifierOutputTarget(int(target_class))]
        with GradCAM(model=net, target_layers=[layer]) as cam:
            heat = cam(input_tensor=x, targets=targets)[0]
        heat = np.nan_to_num(np.asarray(heat, dtype=np.float32))
        return np.clip(heat, 0.0, 1.0)
    finally:
        for m, t in modes.items():
            m.training = t
        for p, g in grads.items():
            p.requires_grad_(g)
