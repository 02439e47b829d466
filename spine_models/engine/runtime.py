"""Which runtime runs a Predictor's network: torch (the reference, and the fallback) or ONNX Runtime.

Why a choice: on this CPU the shipped CNNs run far below the matmul peak under eager torch (bench/bench_flops.py)
and ONNX Runtime runs the same weights several times faster (bench/bench_onnx.py, which also checks the outputs
against torch on real films). What decides, in order:
- ``SPINE_MODELS_RUNTIME=torch`` or ``=onnxruntime`` (the environment) for every plain network: a switch for
  deployments and for measuring;
- else the card's ``runtime`` field: ``{"path": "onnxruntime", ...the figures it was validated with}``; an empty
  field (every card written so far) means torch.
ONNX Runtime is used only on CPU, for a one-input network, when ``onnxruntime`` imports and the export works; else
torch runs, and :attr:`Network.path` / :attr:`Network.why` say which ran and why. The ONNX file is exported once
from the shipped weights into ``cache_dir()/onnx`` (named by the weights' sha256 and input size). Grad-CAM always
runs on torch: it needs gradients.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from spine_models.errors import ConfigError
from spine_models.models.cards import ModelCard

__all__ = ["RUNTIMES", "ENV", "requested_runtime", "Network", "network_for"]

RUNTIMES = ("torch", "onnxruntime")
ENV = "SPINE_MODELS_RUNTIME"


def requested_runtime(card: ModelCard) -> str:
    """The runtime asked for: the environment's, else the card's ``runtime.path``, else torch."""
    env = os.environ.get(ENV, "").strip()
    path = env or str((getattr(card, "runtime", None) or {}).get("path") or "torch")
    if path not in RUNTIMES:
        where = f"{ENV}={env!r}" if env else f"model card {card.id!r}: runtime.path={path!r}"
        raise ConfigError(f"{where}; valid: {', '.join(RUNTIMES)}")
    return path


class Network:
    """The callable a Predictor runs: ``forward(x) -> tensor`` through ``path`` ("torch" or "onnxruntime")."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], path: str, why: str = "") -> None:
        self.forward, self.path, self.why = forward, path, why

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


def _onnx_file(card: ModelCard, shape: tuple[int, ...]) -> Path:
    from spine_models._env import cache_dir

    tag = "x".join(str(int(s)) for s in shape[1:])
    return cache_dir() / "onnx" / f"{card.id}-{(card.sha256 or 'nosha')[:16]}-{tag}.onnx"


def network_for(card: ModelCard, model: nn.Module, in_shape: tuple[int, ...], device: Any) -> Network:
    """``model`` as the runtime the card (or the environment) asks for; torch whenever ONNX Runtime cannot serve."""
    want = requested_runtime(card)
    torch_net = Network(model, "torch")
    if want == "torch":
        return torch_net
    if torch.device(device).type != "cpu":
        return Network(model, "torch", "onnxruntime is used on CPU only; this model runs on " + str(device))
    from spine_models.models.onnx_runtime import OrtNetwork, export_onnx, ort_available

    if not ort_available():
        return Network(model, "torch", "onnxruntime is not installed")
    try:
        path = _onnx_file(card, in_shape)  # inside: a cache folder that cannot be made (read-only home) -> torch serves
        if not path.is_file():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            export_onnx(model, torch.rand(*in_shape), tmp)
            os.replace(tmp, path)
        ort_net = OrtNetwork(path)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:  # an op the exporter cannot write: torch serves
        return Network(model, "torch", f"ONNX export or load failed ({type(exc).__name__}: {str(exc)[:120]})")
    return Network(ort_net, "onnxruntime")
