"""Two-view (AP + lateral) fusion classifiers.

Why: the segmentation study classified each patient from both films: ResNet-50 features of the AP and
the lateral view concatenated -> Dense 20 -> Dense 12 -> 1 sigmoid unit. ``twoview_resnet50_study``
reproduces that (one logit; the engine turns it into [1-p, p]); ``twoview_resnet18`` is the lighter
modern variant (separate ResNet-18 feature extractors, an MLP with dropout, one logit per class).
Both take ``model(ap, lat)``; ``model.two_view`` is True so the engine and explainers know.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from spine_models.models.classification import _adapt_conv_weight, load_matching_state, read_state_file, _imagenet_file
from spine_models.models.registry import register_model

__all__ = ["TwoViewNet"]


def _resnet_features(arch: str, in_chans: int, imagenet: bool) -> tuple[nn.Module, int]:
    import torchvision.models as tvm

    m = getattr(tvm, arch)(weights=None)
    if imagenet:
        path = _imagenet_file(arch, tvm.get_model_weights(arch).DEFAULT)
        load_matching_state(m, read_state_file(path), first_conv="conv1", source=path)
    if in_chans != 3:
        conv = m.conv1
        new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
        with torch.no_grad():
            new.weight.copy_(_adapt_conv_weight(conv.weight.data, in_chans))
        m.conv1 = new
    n = m.fc.in_features
    m.fc = nn.Identity()
    return m, n


class TwoViewNet(nn.Module):
    """Features of each view (separate or shared backbone) concatenated -> MLP head."""

    two_view = True

    def __init__(self, backbone: str = "resnet50", hidden: tuple[int, ...] = (20, 12), num_outputs: int = 1,
                 in_chans: int = 1, shared: bool = False, dropout: float = 0.0, imagenet: bool = False) -> None:
        super().__init__()
        self.ap, n = _resnet_features(backbone, in_chans, imagenet)
        self.lat = self.ap if shared else _resnet_features(backbone, in_chans, imagenet)[0]
        layers: list[nn.Module] = []
        prev = 2 * n
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU(inplace=True)] + ([nn.Dropout(dropout)] if dropout else [])
            prev = h
        layers.append(nn.Linear(prev, num_outputs))
        self.head = nn.Sequential(*layers)

    def forward(self, ap: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.ap(ap), self.lat(lat)], dim=1))

    def cam_target_layer(self) -> nn.Module:
        return self.ap.layer4[-1]

    def get_classifier(self) -> nn.Module:
        return self.head


def _finish(model: TwoViewNet, arch: str, in_chans: int, pretrained: Any) -> TwoViewNet:
    model.spine_arch = arch
    model.spine_in_chans = in_chans
    if pretrained not in (None, "", "scratch", "imagenet"):
        load_matching_state(model, read_state_file(Path(pretrained)), source=pretrained)
    return model


@register_model("twoview_resnet50_study", task="classify", input_size=224)
def twoview_resnet50_study(num_classes: int = 2, in_chans: int = 1, pretrained: str | Path | None = None,
                           dropout: float = 0.0, **_: Any) -> TwoViewNet:
    """Segmentation study's two-view model: ResNet-50 AP + lateral features -> Dense 20 -> 12 -> 1 (sigmoid); binary only"""
    if num_classes != 2:
        from spine_models.errors import ConfigError

        raise ConfigError(f"twoview_resnet50_study is binary (one sigmoid unit) but the data has {num_classes} classes; "
                          "use twoview_resnet18 for more classes")
    model = TwoViewNet("resnet50", (20, 12), 1, in_chans, False, dropout, pretrained == "imagenet")
    return _finish(model, "twoview_resnet50_study", in_chans, pretrained)


@register_model("twoview_resnet18", task="classify", input_size=224)
def twoview_resnet18(num_classes: int = 2, in_chans: int = 1, pretrained: str | Path | None = None,
                     dropout: float = 0.2, **_: Any) -> TwoViewNet:
    """Modern two-view variant: separate ResNet-18 features per view -> MLP 128 with dropout -> classes"""
    model = TwoViewNet("resnet18", (128,), num_classes, in_chans, False, dropout, pretrained == "imagenet")
    return _finish(model, "twoview_resnet18", in_chans, pretrained)
