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

``onnxruntime-int8`` (chosen per network by measurement: docs/int8_check.md): the fp32 export statically quantised
(models.onnx_runtime.quantize_int8) on first use, cached beside it as ``<same name>-int8[-<calibration sha>].onnx``.
Static quantisation needs calibration inputs: real training-part films preprocessed by bench/bench_int8.py, either
left in the cache folder as ``<same name>-calib.npy`` (a measurement) or shipped beside the weights, named by the
card's ``runtime.calibration`` (``{"file", "sha256", ...}``: the network's [0, 1] inputs as uint8, checked by
sha256; bench/bench_int8.py --ship writes both). Without either, or when quantisation fails, torch serves and
:attr:`Network.why` says why in one line.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from spine_models.errors import ConfigError
from spine_models.models.cards import ModelCard

__all__ = ["RUNTIMES", "ENV", "INT8", "requested_runtime", "Network", "network_for", "onnx_file", "calibration_file",
           "int8_file", "shipped_calibration", "calibration_inputs", "stored_calibration", "save_calibration"]

INT8 = "onnxruntime-int8"
RUNTIMES = ("torch", "onnxruntime", INT8)
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


def onnx_file(card: ModelCard, shape: tuple[int, ...]) -> Path:
    """The cached fp32 export of ``card``'s network for inputs of ``shape`` (named by the weights' sha256)."""
    from spine_models._env import cache_dir

    tag = "x".join(str(int(s)) for s in shape[1:])
    return cache_dir() / "onnx" / f"{card.id}-{(card.sha256 or 'nosha')[:16]}-{tag}.onnx"


def _beside_export(card: ModelCard, shape: tuple[int, ...], suffix: str) -> Path:
    fp32 = onnx_file(card, shape)
    return fp32.with_name(fp32.stem + suffix)


def calibration_file(card: ModelCard, shape: tuple[int, ...]) -> Path:
    """Where bench/bench_int8.py leaves the int8 calibration inputs ((N, C, H, W) float32 .npy) for this export."""
    return _beside_export(card, shape, "-calib.npy")


def int8_file(card: ModelCard, shape: tuple[int, ...]) -> Path:
    """The cached int8 model quantised from :func:`onnx_file` with :func:`calibration_inputs` (named by the shipped
    calibration's sha256 when the card ships one, so a new calibration never meets an old int8 file)."""
    sha = str(_calibration_entry(card).get("sha256") or "")
    return _beside_export(card, shape, f"-int8-{sha[:12]}.onnx" if sha else "-int8.onnx")


def _calibration_entry(card: ModelCard) -> dict[str, Any]:
    """The card's ``runtime.calibration`` ({} when it ships none)."""
    return dict((getattr(card, "runtime", None) or {}).get("calibration") or {})


def shipped_calibration(card: ModelCard) -> Path | None:
    """The calibration file a card ships beside its weights (``runtime.calibration.file``), or None."""
    name = _calibration_entry(card).get("file")
    return card.weights_path().parent / str(name) if name else None


def _encoded(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) inputs in [0, 1] as the uint8 a card ships; anything else is refused in one line."""
    x = np.asarray(x, np.float32)
    if x.ndim != 4 or len(x) == 0 or float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError(f"calibration inputs: (N, C, H, W) in [0, 1] are stored; got shape {x.shape}, "
                         f"range [{float(x.min()) if x.size else 0:.3g}, {float(x.max()) if x.size else 0:.3g}]")
    return np.round(x * 255).astype(np.uint8)


def _decoded(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.float32) / 255.0


def stored_calibration(x: np.ndarray) -> np.ndarray:
    """Calibration inputs as they are shipped and read back (float32): what :func:`save_calibration` writes and
    :func:`calibration_inputs` returns. Why uint8 is enough: the inputs are min-max normalised films, themselves 8-bit
    in most sources, and static quantisation only takes each activation's range from them."""
    return _decoded(_encoded(x))


def save_calibration(x: np.ndarray, path: str | Path) -> str:
    """Store calibration inputs as uint8 (a quarter of float32's size, so weights/ stays small); returns the file's
    sha256."""
    from spine_models.models.cards import sha256_file

    path = Path(path)
    with path.open("wb") as fh:
        np.savez_compressed(fh, x=_encoded(x))
    return sha256_file(path)


def calibration_inputs(card: ModelCard, shape: tuple[int, ...]) -> np.ndarray | None:
    """(N, C, H, W) float32 calibration inputs: a measurement's file in the cache folder, else the card's shipped file
    (its sha256 checked), else None."""
    cached = calibration_file(card, shape)
    if cached.is_file():
        return np.load(cached)
    path = shipped_calibration(card)
    if path is None:
        return None
    from spine_models.models.cards import sha256_file

    want = str(_calibration_entry(card).get("sha256") or "")
    if not path.is_file():
        raise OSError(f"int8 calibration of {card.id} missing: {path}")
    if want and sha256_file(path) != want:
        raise OSError(f"int8 calibration of {card.id}: sha256 differs from its card (file replaced?): {path}")
    with np.load(path) as z:
        return _decoded(z["x"])


def _cached(path: Path, make: Callable[[Path], Any]) -> Path:
    """``path``, made once through a per-process temporary name (two processes never read a half-written file)."""
    if not path.is_file():
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
        make(tmp)
        os.replace(tmp, path)
    return path


def network_for(card: ModelCard, model: nn.Module, in_shape: tuple[int, ...], device: Any) -> Network:
    """``model`` as the runtime the card (or the environment) asks for; torch whenever ONNX Runtime cannot serve."""
    want = requested_runtime(card)
    torch_net = Network(model, "torch")
    if want == "torch":
        return torch_net
    if torch.device(device).type != "cpu":
        return Network(model, "torch", "onnxruntime is used on CPU only; this model runs on " + str(device))
    from spine_models.models.onnx_runtime import (OrtNetwork, export_onnx, ort_available, ort_errors, quant_available,
                                                  quantize_int8)

    if not ort_available():
        return Network(model, "torch", "onnxruntime is not installed")
    if want == INT8 and not quant_available():
        return Network(model, "torch", "onnxruntime quantisation is unavailable (it needs the onnx package)")
    try:
        # inside: a cache folder that cannot be made (read-only home) -> torch serves
        fp32 = path = _cached(onnx_file(card, in_shape), lambda p: export_onnx(model, torch.rand(*in_shape), p))
        if want == INT8:
            q8 = int8_file(card, in_shape)
            calib = None if q8.is_file() else calibration_inputs(card, in_shape)
            if not q8.is_file() and calib is None:
                return Network(model, "torch", f"no int8 calibration for {card.id} at {calibration_file(card, in_shape)} "
                                               f"or in its card (python bench/bench_int8.py --model {card.id} makes it)")
            path = _cached(q8, lambda p: quantize_int8(fp32, p, calib))
        ort_net = OrtNetwork(path)
    except (RuntimeError, OSError, ValueError, TypeError, ImportError, *ort_errors()) as exc:  # an op it cannot write
        step = "int8 quantisation, ONNX export or load" if want == INT8 else "ONNX export or load"
        return Network(model, "torch", f"{step} failed ({type(exc).__name__}: {str(exc)[:120]})")
    return Network(ort_net, want)
