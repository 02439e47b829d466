"""Grad-CAM through pytorch-grad-cam, with the right target layer per registered architecture.

Why a wrapper: the layer to hook differs per architecture (``cam_target_layer`` in
``models/classification.py``), one-logit (sigmoid) models need a signed target, and the caller's model must come
back exactly as it was (train/eval flag of every module, ``requires_grad`` of every parameter).

Why the graph starts at the target layer: Grad-CAM needs the class score's gradient with respect to the target
layer's activations only. Run as pytorch-grad-cam runs it on its own (a gradient-tracking forward through the whole
network and a backward down to its first layer, after a plain forward to pick the target), it costs several
forwards; here the layers below the target run without autograd, the target's output becomes the graph's leaf, and
the backward crosses only the layers above it (the pooling and classifier of a CNN). The gradient it gives is the
same (tests/test_explain.py compares the maps with pytorch-grad-cam's full run).
"""
from __future__ import annotations

from typing import Any, Sequence

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


class _Target:
    """The score explained: class ``k``'s logit (the top class when None); a one-logit (sigmoid) model's logit
    signed for class 1, negated for class 0. Decided on the output itself, so no forward runs only to pick it."""

    def __init__(self, k: int | None) -> None:
        self.k = k

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if output.shape[-1] == 1:
            cls = (1 if float(torch.sigmoid(output[..., 0])) >= 0.5 else 0) if self.k is None else self.k
            return (1.0 if cls == 1 else -1.0) * output[..., 0]
        return output[..., int(torch.argmax(output)) if self.k is None else self.k]


def _graph_from_here(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    """Forward hook on the target layer: its output as a fresh leaf that tracks gradients (see the module doc)."""
    return output.detach().requires_grad_(True).clone()


def gradcam(model: nn.Module, input_tensor: torch.Tensor | tuple[torch.Tensor, torch.Tensor], target_class: int | None = None,
            arch: str | None = None, target_layer: nn.Module | Sequence[nn.Module] | None = None) -> np.ndarray:
    """Grad-CAM of ``input_tensor`` (1, C, H, W) -> HxW float32 in [0, 1] at the input size.

    ``target_class=None`` explains the top class. Two-view models take ``(ap, lat)`` and get the AP map. Several
    target layers (an ensemble's members) give pytorch-grad-cam's mean of their maps.
    """
    from pytorch_grad_cam import GradCAM

    from spine_models.models.classification import cam_target_layer

    modes = {m: m.training for m in model.modules()}
    grads = {p: p.requires_grad for p in model.parameters()}
    cuts: list[Any] = []
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)  # no weight gradients: the backward stops at the target layer's output
        layer = target_layer if target_layer is not None else cam_target_layer(model, arch)
        layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
        net: nn.Module = model
        x = input_tensor
        if isinstance(input_tensor, (tuple, list)):
            net = _FixedOther(model, input_tensor[1].detach())
            x = input_tensor[0]
        x = x.detach().clone()
        # before GradCAM's own hooks, which then see the leaf
        cuts = [m.register_forward_hook(_graph_from_here) for m in layers]
        with torch.enable_grad(), GradCAM(model=net, target_layers=layers) as cam:
            heat = cam(input_tensor=x, targets=[_Target(None if target_class is None else int(target_class))])[0]
        heat = np.nan_to_num(np.asarray(heat, dtype=np.float32))
        return np.clip(heat, 0.0, 1.0)
    finally:
        for c in cuts:
            c.remove()
        for m, t in modes.items():
            m.training = t
        for p, g in grads.items():
            p.requires_grad_(g)
