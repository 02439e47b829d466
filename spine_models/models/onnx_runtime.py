"""ONNX Runtime as a second inference path for a shipped network; torch stays the reference and the fallback.

Why: the shipped CNNs run far below this CPU's matmul peak under eager torch (bench/bench_flops.py: batch-norm run
as its own pass, one dispatch per op); ONNX Runtime fuses convolution + batch-norm + activation and plans the
graph once. A network is exported from its shipped weights (the TorchScript exporter, which needs no ``onnxscript``)
and checked against torch on real films before anyone uses it (bench/bench_onnx.py prints the largest difference
and both latencies). Nothing here changes what a Predictor runs.
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spine_models.errors import ConfigError

__all__ = ["ort_available", "export_onnx", "OrtNetwork", "OPSET"]

OPSET = 17


def ort_available() -> bool:
    """True when ``onnxruntime`` is installed (requirements.txt pins it; torch is used without it)."""
    return importlib.util.find_spec("onnxruntime") is not None


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """``model`` (eval mode, CPU, fp32) as an ONNX file taking ``x`` (batch dimension free) and giving ``y``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().eval().cpu()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript (not installed)
        warnings.simplefilter("ignore", DeprecationWarning)
        # the trace fixes the input's height and width (the card's input size; batch stays free): shape checks such
        # as a U-Net's padding become constants, and ONNX Runtime refuses another size instead of answering wrongly
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (example.float().cpu(),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], opset_version=OPSET,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return path


class OrtNetwork:
    """An exported network behind the torch call shape: a (N, C, H, W) tensor in, the first output as a tensor out."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        if not ort_available():
            raise ConfigError("onnxruntime is not installed; pip install -r requirements.txt (torch works without it)")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        # no busy-waiting after a run: its threads would spin on the cores that the torch work which follows (Grad-CAM,
        # the next model) needs
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # no memory arena: an arena keeps each session's peak activations (the AP U-Net's hflip pair is the largest)
        # for the life of the server, which raised the peak memory of one full analysis far more than the weights do
        # (``/usr/bin/time -f %M python bench/bench_analysis.py``); freeing them costs a little speed
        opts.enable_cpu_mem_arena = False
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: Any) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {"x": arr})[0])
