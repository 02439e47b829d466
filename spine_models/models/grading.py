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

__all__ = ["DiscGrader", "DiscGraderEnsemble", "PFIRRMANN_GRADES", "split_outputs", "cam_layers"]

PFIRRMANN_GRADES = (1, 2, 3, 4, 5)


class DiscGrader(SpineNetTiny):
    """SpineNetTiny's trunk (4 conv blocks, BN, ReLU) -> global average pool -> dropout -> [5 Pfirrmann logits | one
    logit per finding]. ``forward`` returns (N, 5 + len(findings)) logits; :func:`split_outputs` splits them."""

    def __init__(self, findings: Sequence[str] = ("herniation", "bulging", "narrowing"), in_chans: int = 1,
                 width: int = 24, dropout: float = 0.3) -> None:
        super().__init__(len(PFIRRMANN_GRADES) + len(tuple(findings)), in_chans, width, dropout)
        self.findings = tuple(findings)


class DiscGraderEnsemble(nn.Module):
    """``members`` DiscGraders, each initialised on its own, trained side by side on the same batches.

    Why: two runs of one grader recipe differ on validation by more than most recipe changes do (the data are
    ~1,400 discs); the mean of several members' logits is steadier than any one of them. ``forward`` returns that
    mean (N, 5 + F) in eval mode — what the Predictor, Grad-CAM and ONNX export see — and in training mode the
    members' own logits stacked (M, N, 5 + F), so each member gets its own loss and stays an independent model."""

    def __init__(self, findings: Sequence[str] = ("herniation", "bulging", "narrowing"), in_chans: int = 1,
                 width: int = 24, dropout: float = 0.3, members: int = 3) -> None:
        super().__init__()
        if int(members) < 2:
            raise ValueError(f"members={members!r}: an ensemble needs at least 2 (1 is a plain DiscGrader)")
        self.members = nn.ModuleList(DiscGrader(findings, in_chans, width, dropout) for _ in range(int(members)))
        self.findings = tuple(findings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.stack([m(x) for m in self.members])
        return out if self.training else out.mean(0)


def cam_layers(model: nn.Module) -> list[nn.Module]:
    """Grad-CAM target layers of a grader: the last conv block (of every member, for an ensemble)."""
    nets = list(model.members) if isinstance(model, DiscGraderEnsemble) else [model]
    return [m.features[-1] for m in nets]


def split_outputs(logits: torch.Tensor, n_findings: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Pfirrmann logits (N, 5), finding logits (N, n_findings))."""
    k = len(PFIRRMANN_GRADES)
    if logits.shape[-1] != k + n_findings:
        raise ValueError(f"grader output has {logits.shape[-1]} columns; expected {k} Pfirrmann + {n_findings} findings")
    return logits[..., :k], logits[..., k:]


@register_model("disc_grading", task="segment", input_size=(64, 128),
                description="Disc grading on sagittal MR: a disc locator U-Net (component) + a multi-head disc grader")
def disc_grading(findings: Sequence[str] = ("herniation", "bulging", "narrowing"), in_chans: int = 1, width: int = 24,
                 dropout: float = 0.3, members: int = 1, **_: Any) -> nn.Module:
    """One grader (``members=1``, the state-dict layout of earlier cards) or an ensemble of ``members`` graders."""
    if int(members) == 1:
        return DiscGrader(findings, in_chans, width, dropout)
    return DiscGraderEnsemble(findings, in_chans, width, dropout, members)
