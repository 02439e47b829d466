"""Segmentation architectures (U-Nets) and their losses.

Why: the segmentation study's U-Net is reproduced as an option (so its numbers can be compared)
next to a modern encoder U-Net from segmentation-models-pytorch. Every builder returns a module
mapping ``(N, in_chans, H, W)`` to ``(N, num_classes, H, W)`` *logits*, one channel per structure;
the multi-label sigmoid is applied by the loss (numerically stable) and by the predictor.

Orientation: input sizes are ``(H, W)``. The study's 512x256 input is a portrait film: 512 rows
(head to feet) by 256 columns, the shape of a whole-spine AP or lateral radiograph.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from spine_models.errors import ConfigError
from spine_models.models.registry import register_model

__all__ = ["UNetStudy", "study_jaccard_coefficient", "StudyJaccardLoss", "DiceBCELoss", "build_loss", "LOSSES"]


class _Block(nn.Sequential):
    """Two 3x3 convolutions with ReLU and no batch norm (the study's plain U-Net block)."""

    def __init__(self, cin: int, cout: int, norm: bool = False) -> None:
        layers: list[nn.Module] = []
        for a, b in ((cin, cout), (cout, cout)):
            layers.append(nn.Conv2d(a, b, 3, padding=1, bias=not norm))
            if norm:
                layers.append(nn.BatchNorm2d(b))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNetStudy(nn.Module):
    """The study's U-Net: filters 32->64->128->256->512, max-pool down, transposed-conv up, no BN.

    ``filters`` can be shrunk for tests (``unet_tiny``). H and W must be divisible by
    ``2 ** (len(filters) - 1)`` (16 for the study's five levels).
    """

    def __init__(self, num_classes: int = 3, in_chans: int = 1, filters: tuple[int, ...] = (32, 64, 128, 256, 512),
                 norm: bool = False) -> None:
        super().__init__()
        self.filters = tuple(int(f) for f in filters)
        self.down = nn.ModuleList()
        c = in_chans
        for f in self.filters:
            self.down.append(_Block(c, f, norm))
            c = f
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for f in reversed(self.filters[:-1]):
            self.up.append(nn.ConvTranspose2d(c, f, kernel_size=2, stride=2))
            self.dec.append(_Block(2 * f, f, norm))
            c = f
        self.head = nn.Conv2d(c, num_classes, kernel_size=1)

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.filters) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"UNetStudy input {h}x{w}: height and width must be multiples of {self.divisor}")
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)


@register_model("unet_study", task="segment", input_size=(512, 256),
                description="The segmentation study's U-Net (32-512 filters, transposed conv, no BN), 512x256 HxW")
def unet_study(num_classes: int = 3, in_chans: int = 1, **_: Any) -> nn.Module:
    return UNetStudy(num_classes, in_chans)


@register_model("unet_tiny", task="segment", input_size=(64, 32),
                description="A 3-level 8-32 filter U-Net for tests and quick CPU runs")
def unet_tiny(num_classes: int = 3, in_chans: int = 1, **_: Any) -> nn.Module:
    return UNetStudy(num_classes, in_chans, filters=(8, 16, 32))


def _smp_unet(encoder: str, num_classes: int, in_chans: int, decoder_channels: tuple[int, ...] | None = None) -> nn.Module:
    import segmentation_models_pytorch as smp

    # encoder_weights=None: never download (ENV-NOTES: the imagenet default hangs ~24 s offline)
    kw = {"decoder_channels": tuple(decoder_channels)} if decoder_channels else {}
    return smp.Unet(encoder_name=encoder, encoder_weights=None, in_channels=in_chans, classes=num_classes, **kw)


@register_model("unet_mobilenet_v2", task="segment", input_size=(512, 256),
                description="Fast CPU U-Net: MobileNetV2 encoder, slim decoder (64-8), ~3.7 GFLOP at 512x256")
def unet_mobilenet_v2(num_classes: int = 3, in_chans: int = 1, **_: Any) -> nn.Module:
    return _smp_unet("mobilenet_v2", num_classes, in_chans, decoder_channels=(64, 32, 16, 16, 8))


@register_model("unet_resnet18", task="segment", input_size=(512, 256),
                description="segmentation-models-pytorch U-Net, ResNet-18 encoder (random init), BN")
def unet_resnet18(num_classes: int = 3, in_chans: int = 1, **_: Any) -> nn.Module:
    return _smp_unet("resnet18", num_classes, in_chans)


@register_model("unet_resnet34", task="segment", input_size=(512, 256),
                description="segmentation-models-pytorch U-Net, ResNet-34 encoder (random init), BN")
def unet_resnet34(num_classes: int = 3, in_chans: int = 1, **_: Any) -> nn.Module:
    return _smp_unet("resnet34", num_classes, in_chans)


# ----------------------------------------------------------------------------------------- losses

def study_jaccard_coefficient(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0,
                              per_channel: bool = False) -> torch.Tensor:
    """The study's squared-intersection Jaccard coefficient ``(I**2 + s) / (T + P - I + s)``.

    ``I = sum(target * prob)``, ``T = sum(target)``, ``P = sum(prob)``, summed over the flattened
    batch as the study's Keras code does (``per_channel=True``: one value per structure, averaged,
    so thin structures count as much as large ones). It is not bounded by 1: for a fixed truth it
    is largest, equal to ``T`` (+ smoothing), when the prediction equals the truth, and ~0 when
    they are disjoint. It equals ``I * Jaccard`` for binary masks.
    """
    prob = prob.float()
    target = target.float()
    if per_channel:
        dims = [d for d in range(prob.ndim) if d != 1]
        inter = (prob * target).sum(dims)
        total = prob.sum(dims) + target.sum(dims)
        return ((inter ** 2 + smooth) / (total - inter + smooth)).mean()
    inter = (prob * target).sum()
    return (inter ** 2 + smooth) / (prob.sum() + target.sum() - inter + smooth)


class StudyJaccardLoss(nn.Module):
    """Loss = the negative of :func:`study_jaccard_coefficient` (of ``sigmoid(logits)``).

    The negative, not ``1 - coefficient``: the coefficient is unbounded (its best value is the truth
    area), so ``1 - c`` would not be a distance in [0, 1]; the two have identical gradients and the
    same minimiser, and the negative says honestly that the scale is the mask area. Divided by the
    number of pixels per channel (``normalize=True``, default) so the loss scale does not grow with
    the input size; the optimum is unchanged.
    """

    def __init__(self, smooth: float = 1.0, per_channel: bool = False, normalize: bool = True) -> None:
        super().__init__()
        self.smooth, self.per_channel, self.normalize = smooth, per_channel, normalize

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = study_jaccard_coefficient(torch.sigmoid(logits), target, self.smooth, self.per_channel)
        if self.normalize:
            per = target[:, :1].numel() if self.per_channel else target.numel()
            c = c / per
        return -c


class DiceBCELoss(nn.Module):
    """Soft Dice (per image and structure, averaged) + binary cross-entropy on the logits.

    Why both: Dice cares about overlap regardless of structure size (the thin lateral lines), BCE
    gives well-behaved per-pixel gradients early in training.
    """

    def __init__(self, smooth: float = 1.0, bce_weight: float = 1.0, pos_weight: float | None = None) -> None:
        super().__init__()
        self.smooth, self.bce_weight = smooth, bce_weight
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.float()
        # negative targets mean "no truth here" (data.vertebra_targets.IGNORE): weight 0 in both terms
        valid = (target >= 0).float()
        target = target.clamp(min=0) * valid
        prob = torch.sigmoid(logits) * valid
        dims = tuple(range(2, logits.ndim))
        inter = (prob * target).sum(dims)
        dice = (2 * inter + self.smooth) / (prob.sum(dims) + target.sum(dims) + self.smooth)
        # an image/structure with no valid pixel at all says nothing: leave it out of the mean
        has = valid.sum(dims) > 0
        dice_term = (1 - dice[has]).mean() if bool(has.any()) else logits.sum() * 0
        pw = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logits.device)
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
        bce = (bce * valid).sum() / valid.sum().clamp(min=1)
        return dice_term + self.bce_weight * bce


LOSSES = ("study_jaccard", "dice_bce")


def build_loss(name: str, smooth: float = 1.0) -> nn.Module:
    """``"study_jaccard"`` (the study's) or ``"dice_bce"`` (the default, better on thin structures)."""
    if name == "study_jaccard":
        return StudyJaccardLoss(smooth=smooth)
    if name == "dice_bce":
        return DiceBCELoss(smooth=smooth)
    raise ConfigError(f"segment config: loss={name!r} is not known; use one of {', '.join(LOSSES)}")
