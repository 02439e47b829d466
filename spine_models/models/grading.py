"""The disc grader network, registered as the ``disc_grading`` architecture (a composite: locator + grader).

Why a small multi-head CNN: a disc crop is ~70x35 pixels on a real slice; one shared trunk learns the disc's
signal, height and contour once for every grading (Pfirrmann's five grades as one softmax — mutually exclusive —
and each finding as its own sigmoid — a disc can be bulging *and* narrowed). About 1.2 M parameters at width 24:
it trains on this CPU in minutes and adds ~2.4 MB (fp16) to the weights folder.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from spine_models.models.classification import SpineNetTiny
from spine_models.models.registry import register_model

__all__ = ["DiscGrader", "PFIRRMANN_GRADES", "split_outputs"]

PFIRRMANN_GRADES = (1, 2, 3, 4, 5)


class DiscGrader(SpineNetTiny):
    """SpineNetTiny's trunk (4 conv blocks, BN, ReLU) -> global average pool -> dropout -> [5 Pfirrmann logits | one
    logit per finding]. ``forward`` returns (N, 5 + len(findings)) logits; :func:`split_outputs` splits them."""

    def __init__(self, findings: Sequence[str] = ("herniation", "bulging", "narrowing"), in_chans: int = 1,
                 width: int = 24, dropout: float = 0.3) -> None:
        super().__init__(len(PFIRRMANN_GRADES) + len(tuple(findings)), in_chans, width, dropout)
        self.findings = tuple(findings)


def split_outputs(logits: torch.Tensor, n_findings: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Pfirrmann logits (N, 5), finding logits (N, n_findings))."""
    k = len(PFIRRMANN_GRADES)
    if logits.shape[-1] != k + n_findings:
        raise ValueError(f"grader output has {logits.shape[-1]} columns; expected {k} Pfirrmann + {n_findings} findings")
    return logits[..., :k], logits[..., k:]


@register_model("disc_grading", task="segment", input_size=(64, 128),
                description="Disc grading on sagittal MR: a disc locator U-Net (component) + a multi-head disc grader")
def disc_grading(findings: Sequence[str] = ("herniation", "bulging", "narrowing"), in_chans: int = 1, width: int = 24,
                 dropout: float = 0.3, **_: Any) -> nn.Module:
    return DiscGrader(findings, in_chans, width, dropout)
