"""ONNX Runtime as a second inference path for a shipped network; torch stays the reference and the fallback.

Why: the shipped CNNs run far below this CPU's matmul peak under eager torch (bench/bench_flops.py: batch-norm run
as its own pass, one dispatch per op); ONNX Runtime fuses convolution + batch-norm + activation and plans the
graph once. A network is exported from its shipped weights (the TorchScript exporter, which needs no ``onnxscript``)
and checked against torch on real films before anyone uses it (bench/bench_onnx.py prints the largest difference
and both latencies). Nothing here changes what a Predictor runs.

int8: :func:`quantize_int8` turns an fp32 export into a statically quantised one (ONNX Runtime's ``quantize_static``,
QDQ format, int8 weights per output channel, uint8 activations — the U8S8 pairing ONNX Runtime recommends on x86,
where VNNI/AMX run it), its activation ranges calibrated on inputs the caller gives (real training-part films:
bench/bench_int8.py). Whether int8 may serve a card is decided by held-out metrics, not here (docs/int8_check.md).
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

__all__ = ["ort_available", "quant_available", "export_onnx", "quantize_int8", "OrtNetwork", "OPSET", "CALIBRATION_METHODS",
           "ort_errors"]

OPSET = 17


def ort_available() -> bool:
    """True when ``onnxruntime`` is installed (requirements.txt pins it; torch is used without it)."""
    return importlib.util.find_spec("onnxruntime") is not None


def quant_available() -> bool:
    """True when ONNX Runtime's quantisation tools import (they need the ``onnx`` package as well)."""
    return ort_available() and importlib.util.find_spec("onnx") is not None


def ort_errors() -> tuple[type[BaseException], ...]:
    """ONNX Runtime's own exception classes (they derive from ``Exception`` directly, not ``RuntimeError``): what a
    session or quantisation raises on a graph it cannot run, which the caller turns into the torch fallback."""
    if not ort_available():
        return ()
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException", "InvalidProtobuf",
             "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail")
    return tuple(getattr(state, n) for n in names if isinstance(getattr(state, n, None), type))


CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def quantize_int8(fp32: str | Path, out: str | Path, calibration: np.ndarray, method: str = "minmax") -> Path:
    """``fp32`` (an :func:`export_onnx` file) statically quantised to int8 at ``out``, activation ranges from
    ``calibration`` (N, C, H, W float32, fed one at a time as batch 1).

    Why QDQ + per-channel weights: QDQ keeps the graph readable by every execution provider and lets ONNX Runtime
    fuse each quantised convolution; per-channel scales keep the small-weight channels a per-tensor scale would crush
    (depthwise convolutions of MobileNetV2 in particular)."""
    if not quant_available():
        raise ConfigError("onnxruntime quantisation needs onnx and onnxruntime; pip install -r requirements.txt")
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"int8 calibration method {method!r}; valid: {', '.join(CALIBRATION_METHODS)}")
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    data = np.ascontiguousarray(np.asarray(calibration, dtype=np.float32))
    if data.ndim != 4 or len(data) == 0:
        raise ValueError(f"int8 calibration wants (N, C, H, W) inputs with N >= 1, got shape {data.shape}")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(data[i:i + 1] for i in range(len(data)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.items, None)
            return None if x is None else {"x": x}

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pre = out.with_suffix(".pre.onnx")
    try:
        # the recommended pre-processing: shape inference and graph optimisation, so that quantisation sees the fused
        # convolutions ONNX Runtime will run (batch-norm folded), not the exported ops one by one
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[method])
    finally:
        pre.unlink(missing_ok=True)
    return out


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
