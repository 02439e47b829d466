"""The vertebra corner network, registered as the ``vertebra_corners`` architecture (a composite: AP U-Net + patches).

Why a small CNN with a dense head: it reads one 64x64 patch cut level along a body's tilt
(:mod:`spine_models.data.vertebra_patches`) and answers where that body's four corners are and how its two
endplates lie. Position matters, so the last feature map is flattened, not pooled. About 0.5 M parameters at
width 16: it trains on this CPU in minutes and adds ~1 MB (fp16) to the weights folder.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spine_models.models.registry import register_model

__all__ = ["VertebraCornerNet", "VertebraLevelNet", "N_OUTPUTS"]

N_OUTPUTS = 10  # 8 corner coordinates + upper and lower endplate angles


class VertebraCornerNet(nn.Module):
    """Four conv blocks (w, 2w, 4w, 8w; BN, ReLU, max-pool) -> flatten -> 256 -> dropout -> 10 outputs."""

    def __init__(self, width: int = 16, patch: int = 64, in_chans: int = 1, dropout: float = 0.2) -> None:
        super().__init__()
        if patch % 16:
            raise ValueError(f"vertebra_corners: patch={patch}; use a multiple of 16 (four 2x poolings)")
        chans = [in_chans, width, width * 2, width * 4, width * 8]
        self.features = nn.Sequential(*[nn.Sequential(
            nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]),
            nn.ReLU(inplace=True), nn.MaxPool2d(2)) for i in range(4)])
        side = patch // 16
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(chans[-1] * side * side, 256), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(256, N_OUTPUTS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("vertebra_corners", task="segment", input_size=(64, 64),
                description="AP vertebra corners: the AP U-Net (component) finds the bodies, a patch network reads "
                            "each body's corners at the film's own resolution")
def vertebra_corners(width: int = 16, patch: int = 64, in_chans: int = 1, dropout: float = 0.2, **_: Any) -> nn.Module:
    return VertebraCornerNet(width, patch, in_chans, dropout)


class VertebraLevelNet(nn.Module):
    """Four double-conv blocks (w, 2w, 4w, 8w; BN, ReLU, max-pool) -> global mean -> one logit per level.

    Why pooled, not flattened like the corner network: it answers *which* body it sees (first rib, last rib, pelvis
    in a wide patch around the body), not where its corners lie. ~0.3 M parameters at width 16."""

    def __init__(self, n_levels: int, width: int = 16, in_chans: int = 1) -> None:
        super().__init__()
        if n_levels < 2:
            raise ValueError(f"vertebra_levels: n_levels={n_levels}; a level reader needs at least 2 levels")
        chans = [in_chans, width, width * 2, width * 4, width * 8]
        self.features = nn.Sequential(*[nn.Sequential(
            nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True),
            nn.Conv2d(chans[i + 1], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]),
            nn.ReLU(inplace=True), nn.MaxPool2d(2)) for i in range(4)])
        self.head = nn.Linear(chans[-1], n_levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


@register_model("vertebra_levels", task="segment", input_size=(64, 64),
                description="AP vertebra levels: names each body the vertebra_corners model found (C7, T1..L5, S1) "
                            "from a wide patch around it, decoded in order down the column")
def vertebra_levels(n_levels: int = 19, width: int = 16, in_chans: int = 1, **_: Any) -> nn.Module:
    return VertebraLevelNet(n_levels, width, in_chans)
