"""Classification architectures: the studies' model zoo behind one ``create_model`` call.

Why one module: the trainer, the explainers and the app need the same four facts about every
architecture — how to build it for N classes and 1 or 3 input channels, where its head is (for the
``frozen`` transfer mode), which layer Grad-CAM should look at, and how to load local weights. Those
facts live in :data:`ARCHS` so every registered name answers them the same way.

Weights are never downloaded. ``pretrained="imagenet"`` reads a file already on disk (torchvision:
``torch.hub.get_dir()/checkpoints/<file from the weights URL>``; timm: ``.../checkpoints/timm-<name>.pth``
or ``.safetensors``), otherwise :class:`~spine_models.errors.WeightsNotAvailableError` says where to
put it. ``pretrained=<path>`` loads every tensor whose name and shape match (an earlier run's
``model.pt`` / ``last.pt`` / ``best.pt``, a segmentation U-Net's ``model.pt`` whose encoder matches the
architecture, or any state-dict file): the MRI study's same-domain transfer.
Grayscale (``in_chans=1``): 3-channel first-conv weights are summed into one channel (timm's
``adapt_input_conv`` rule), so a gray image repeated three times and a single channel agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from spine_models.errors import WeightsNotAvailableError
from spine_models.models.registry import register_model

__all__ = [
    "ArchInfo",
    "ARCHS",
    "arch_of",
    "get_classifier",
    "cam_target_layer",
    "load_matching_state",
    "read_state_file",
    "XceptionStudy",
    "SpineNetTiny",
]


@dataclass(frozen=True)
class ArchInfo:
    """Module paths (dotted, ``[i]`` for indexing) of the head, the CAM layer and the first conv."""

    head: str
    cam: str
    first_conv: str
    source: str  # "torchvision" | "timm" | "local"
    input_size: int = 224


ARCHS: dict[str, ArchInfo] = {
    "resnet18": ArchInfo("fc", "layer4[-1]", "conv1", "torchvision"),
    "resnet50": ArchInfo("fc", "layer4[-1]", "conv1", "torchvision"),
    "resnet101": ArchInfo("fc", "layer4[-1]", "conv1", "torchvision"),
    "densenet121": ArchInfo("classifier", "features[-1]", "features.conv0", "torchvision"),
    "densenet169": ArchInfo("classifier", "features[-1]", "features.conv0", "torchvision"),
    "densenet201": ArchInfo("classifier", "features[-1]", "features.conv0", "torchvision"),
    "squeezenet1_1": ArchInfo("classifier", "features[-1]", "features[0]", "torchvision"),
    "inception_v3": ArchInfo("fc", "Mixed_7c", "Conv2d_1a_3x3.conv", "torchvision", 299),
    "vgg16": ArchInfo("classifier[-1]", "features[-1]", "features[0]", "torchvision"),
    "vgg19": ArchInfo("classifier[-1]", "features[-1]", "features[0]", "torchvision"),
    "mobilenet_v2": ArchInfo("classifier", "features[-1]", "features[0][0]", "torchvision"),
    "efficientnet_b0": ArchInfo("classifier", "bn2", "conv_stem", "timm"),
    "efficientnet_b3": ArchInfo("classifier", "bn2", "conv_stem", "timm"),
    "xception": ArchInfo("head", "backbone.act4", "backbone.conv1", "timm", 299),
    "spinenet_tiny": ArchInfo("head", "features[-1]", "features[0][0]", "local", 128),
}


def _resolve(model: nn.Module, path: str) -> nn.Module:
    """``"features[0][0]"`` / ``"layer4[-1]"`` / ``"backbone.act4"`` -> the submodule."""
    obj: Any = model
    for part in path.split("."):
        name, *idx = part.replace("]", "").split("[")
        if name:
            obj = getattr(obj, name)
        for i in idx:
            obj = obj[int(i)]
    return obj


def _set(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, last = path.rpartition(".")
    parent = _resolve(model, parent_path) if parent_path else model
    name, *idx = last.replace("]", "").split("[")
    if not idx:
        setattr(parent, name, new)
        return
    container = getattr(parent, name) if name else parent
    for i in idx[:-1]:
        container = container[int(i)]
    container[int(idx[-1])] = new


def arch_of(model: nn.Module) -> str:
    """The registry name a model was built under (set by every builder here)."""
    arch = getattr(model, "spine_arch", None)
    if arch is None:
        raise ValueError(f"{type(model).__name__} was not built by spine_models.models.create_model (no spine_arch)")
    return arch


def get_classifier(model: nn.Module) -> nn.Module:
    """The head module (what ``mode=frozen`` trains)."""
    return _resolve(model, ARCHS[arch_of(model)].head) if arch_of(model) in ARCHS else model.get_classifier()


def cam_target_layer(model: nn.Module, arch: str | None = None) -> nn.Module:
    """The layer Grad-CAM hooks for this architecture (last spatial feature block)."""
    arch = arch or arch_of(model)
    if arch in ARCHS:
        return _resolve(model, ARCHS[arch].cam)
    if hasattr(model, "cam_target_layer"):
        return model.cam_target_layer()
    raise ValueError(f"no Grad-CAM target layer known for architecture {arch!r}")


# ----------------------------------------------------------------------------------------------------
# weight files

def _adapt_conv_weight(w: torch.Tensor, in_chans: int) -> torch.Tensor:
    """3-channel conv weight -> ``in_chans`` (sum for 1; repeat and rescale otherwise, as timm does)."""
    if w.shape[1] == in_chans:
        return w
    if in_chans == 1:
        return w.sum(dim=1, keepdim=True)
    reps = -(-in_chans // w.shape[1])
    return w.repeat(1, reps, 1, 1)[:, :in_chans] * (w.shape[1] / in_chans)


def _unwrap_state(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Accept a raw state dict, our shipped format, or a trainer checkpoint (``{"model": ...}``)."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state", "state_dict_ema"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsNotAvailableError(f"{path}: not a state dict or a spine-models checkpoint (no tensors found)")
    return obj


def read_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pt``/``.pth``/``.safetensors`` file, float32 (fp16 shipped files cast back)."""
    p = Path(path)
    if not p.is_file():
        raise WeightsNotAvailableError(f"{p}: weight file not found; pass an existing checkpoint (e.g. RUNDIR/model.pt)")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(p))
    else:
        obj = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and obj.get("int8") and isinstance(obj.get("state_dict"), dict):
            from spine_models.models.cards import dequantize_state

            obj = dequantize_state(obj)  # an int8-stored shipped file
        sd = _unwrap_state(obj, p)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def load_matching_state(model: nn.Module, state: dict[str, torch.Tensor], *, first_conv: str | None = None,
                        source: str = "") -> dict[str, Any]:
    """Copy every tensor whose name and shape match; adapt the first conv's channels. Returns a report.

    Why partial: transfer from ImageNet or from another spine dataset keeps the backbone and drops a
    head of a different class count; the report (loaded / total / skipped) tells the user what happened.
    """
    own = model.state_dict()
    # strip a DataParallel / wrapper prefix if no key matches as is; "encoder." takes the encoder of a
    # segmentation run's U-Net (smp encoders keep torchvision's names): a same-domain backbone that already
    # knows vertebrae, endplates and the vertebral lines
    if state and not (set(state) & set(own)):
        for prefix in ("module.", "model.", "backbone.", "encoder."):
            stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if set(stripped) & set(own):
                state = stripped
                break
    if first_conv:
        wkey = f"{_module_key(model, first_conv)}.weight"
        if wkey in state and wkey in own and state[wkey].shape != own[wkey].shape and state[wkey].dim() == 4:
            state = {**state, wkey: _adapt_conv_weight(state[wkey], own[wkey].shape[1])}
    loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    own.update(loadable)
    model.load_state_dict(own)
    report = {"source": str(source), "loaded": len(loadable), "total": len(own),
              "skipped": sorted(k for k in state if k not in loadable)[:20]}
    model.pretrained_report = report
    return report


def _module_key(model: nn.Module, dotted: str) -> str:
    """State-dict prefix of a module path like ``features[0][0]`` -> ``features.0.0``."""
    target = _resolve(model, dotted)
    for name, mod in model.named_modules():
        if mod is target:
            return name
    raise ValueError(f"module {dotted!r} not found")


def _imagenet_file(arch: str, tv_weights: Any = None, timm_name: str | None = None) -> Path:
    ckpt_dir = Path(torch.hub.get_dir()) / "checkpoints"
    if tv_weights is not None:
        fname = Path(tv_weights.url).name
        p = ckpt_dir / fname
        if p.is_file():
            return p
        raise WeightsNotAvailableError(
            f"ImageNet weights for {arch} are not on this machine and are never downloaded; put {fname} in {ckpt_dir} "
            f"(from {tv_weights.url}) or use --init scratch")
    for ext in (".pth", ".safetensors", ".bin"):
        p = ckpt_dir / f"timm-{timm_name}{ext}"
        if p.is_file():
            return p
    raise WeightsNotAvailableError(
        f"ImageNet weights for {arch} (timm {timm_name}) are not on this machine and are never downloaded; "
        f"put the file at {ckpt_dir / f'timm-{timm_name}.pth'} (or .safetensors), pass --init /path/to/file, or use --init scratch")


def _finish(model: nn.Module, arch: str, in_chans: int, pretrained: str | Path | None,
            imagenet_file: Callable[[], Path] | None) -> nn.Module:
    """Load weights (3-channel model), then adapt the first conv to ``in_chans``."""
    model.spine_arch = arch
    info = ARCHS[arch]
    if pretrained == "imagenet":
        if imagenet_file is None:
            raise WeightsNotAvailableError(f"{arch} has no ImageNet weights; use --init scratch or a checkpoint path")
        path = imagenet_file()
        load_matching_state(model, read_state_file(path), first_conv=info.first_conv, source=path)
    conv = _resolve(model, info.first_conv)
    if isinstance(conv, nn.Conv2d) and conv.in_channels != in_chans:
        new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                        conv.groups, conv.bias is not None, conv.padding_mode)
        with torch.no_grad():
            new.weight.copy_(_adapt_conv_weight(conv.weight.data, in_chans))
            if conv.bias is not None:
                new.bias.copy_(conv.bias.data)
        _set(model, info.first_conv, new)
    if pretrained not in (None, "", "scratch", "imagenet"):
        load_matching_state(model, read_state_file(pretrained), first_conv=info.first_conv, source=pretrained)
    model.spine_in_chans = in_chans
    return model


# ----------------------------------------------------------------------------------------------------
# torchvision builders

def _tv(arch: str, num_classes: int, in_chans: int, pretrained: Any, dropout: float) -> nn.Module:
    import torchvision.models as tvm

    ctor = getattr(tvm, arch)
    weights_enum = tvm.get_model_weights(arch).DEFAULT
    kwargs: dict[str, Any] = {"weights": None}
    if arch == "inception_v3":
        kwargs.update(aux_logits=False, init_weights=True, transform_input=False)
    if arch in ("vgg16", "vgg19", "mobilenet_v2", "squeezenet1_1"):
        kwargs["dropout"] = dropout
    model = ctor(**kwargs)  # 1000 classes so ImageNet tensors match; head replaced below
    _finish(model, arch, in_chans, "imagenet" if pretrained == "imagenet" else None, lambda: _imagenet_file(arch, weights_enum))
    # new head
    if arch.startswith("resnet") or arch == "inception_v3":
        model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.fc.in_features, num_classes))
    elif arch.startswith("densenet"):
        model.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.classifier.in_features, num_classes))
    elif arch.startswith("vgg"):
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    elif arch == "mobilenet_v2":
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    elif arch == "squeezenet1_1":
        model.classifier[1] = nn.Conv2d(512, num_classes, kernel_size=1)
        model.num_classes = num_classes
    if pretrained not in (None, "", "scratch", "imagenet"):
        load_matching_state(model, read_state_file(pretrained), first_conv=ARCHS[arch].first_conv, source=pretrained)
    return model


def _register_tv(arch: str, desc: str) -> None:
    def builder(num_classes: int = 2, in_chans: int = 1, pretrained: str | Path | None = None, dropout: float = 0.2,
                **_: Any) -> nn.Module:
        return _tv(arch, num_classes, in_chans, pretrained, dropout)

    builder.__doc__ = desc
    register_model(arch, task="classify", input_size=ARCHS[arch].input_size, description=desc)(builder)


for _arch, _desc in [
    ("resnet18", "ResNet-18 (torchvision): small and fast residual baseline"),
    ("resnet50", "ResNet-50 (torchvision): the segmentation study's two-view backbone"),
    ("resnet101", "ResNet-101 (torchvision)"),
    ("densenet121", "DenseNet-121 (torchvision)"),
    ("densenet169", "DenseNet-169 (torchvision)"),
    ("densenet201", "DenseNet-201 (torchvision)"),
    ("squeezenet1_1", "SqueezeNet 1.1 (torchvision): 1.2 M parameters, fastest on CPU"),
    ("inception_v3", "Inception v3 (torchvision), aux logits off, 299 px input"),
    ("vgg16", "VGG-16 (torchvision): 138 M parameters, slow on CPU"),
    ("vgg19", "VGG-19 (torchvision)"),
    ("mobilenet_v2", "MobileNet v2 (torchvision): light and fast"),
]:
    _register_tv(_arch, _desc)


# ----------------------------------------------------------------------------------------------------
# timm builders

def _timm(arch: str, timm_name: str, num_classes: int, in_chans: int, pretrained: Any, dropout: float) -> nn.Module:
    import timm

    model = timm.create_model(timm_name, pretrained=False, num_classes=1000, in_chans=3, drop_rate=dropout)
    _finish(model, arch, in_chans, "imagenet" if pretrained == "imagenet" else None, lambda: _imagenet_file(arch, None, timm_name))
    model.reset_classifier(num_classes)
    if pretrained not in (None, "", "scratch", "imagenet"):
        load_matching_state(model, read_state_file(pretrained), first_conv=ARCHS[arch].first_conv, source=pretrained)
    return model


@register_model("efficientnet_b0", task="classify", input_size=224)
def efficientnet_b0(num_classes: int = 2, in_chans: int = 1, pretrained: str | Path | None = None, dropout: float = 0.2,
                    **_: Any) -> nn.Module:
    """EfficientNet-B0 (timm): 5 M parameters, good accuracy per CPU millisecond"""
    return _timm("efficientnet_b0", "efficientnet_b0", num_classes, in_chans, pretrained, dropout)


@register_model("efficientnet_b3", task="classify", input_size=224)
def efficientnet_b3(num_classes: int = 2, in_chans: int = 1, pretrained: str | Path | None = None, dropout: float = 0.2,
                    **_: Any) -> nn.Module:
    """EfficientNet-B3 (timm): 12 M parameters"""
    return _timm("efficientnet_b3", "efficientnet_b3", num_classes, in_chans, pretrained, dropout)


class XceptionStudy(nn.Module):
    """The Xception study's model: Xception features -> global average pool -> Dense(256, ReLU) -> Dropout -> classes."""

    def __init__(self, backbone: nn.Module, num_classes: int, hidden: int = 256, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Linear(backbone.num_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


@register_model("xception", task="classify", input_size=299)
def xception(num_classes: int = 2, in_chans: int = 1, pretrained: str | Path | None = None, dropout: float = 0.2,
             hidden: int = 256, **_: Any) -> nn.Module:
    """Xception (timm legacy_xception) with the Xception study's Dense(256)+Dropout head, 299 px"""
    import timm

    backbone = timm.create_model("legacy_xception", pretrained=False, num_classes=1000, in_chans=3)
    if pretrained == "imagenet":  # ImageNet tensors go into the bare timm model (its own key names)
        path = _imagenet_file("xception", None, "legacy_xception")
        load_matching_state(backbone, read_state_file(path), first_conv="conv1", source=path)
    backbone.reset_classifier(0)  # global pool kept, fc removed -> (N, 2048)
    model = XceptionStudy(backbone, num_classes, hidden, dropout)
    if getattr(backbone, "pretrained_report", None):
        model.pretrained_report = backbone.pretrained_report
    _finish(model, "xception", in_chans, None, None)
    if pretrained not in (None, "", "scratch", "imagenet"):
        load_matching_state(model, read_state_file(pretrained), first_conv=ARCHS["xception"].first_conv, source=pretrained)
    return model


# ----------------------------------------------------------------------------------------------------
# a small local CNN for tests and CPU-scale training

class SpineNetTiny(nn.Module):
    """Four conv blocks (16-32-64-128, BN, ReLU, max-pool) -> global average pool -> dropout -> linear."""

    def __init__(self, num_classes: int = 2, in_chans: int = 1, width: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        chans = [in_chans, width, width * 2, width * 4, width * 8]
        blocks = []
        for i in range(4):
            blocks.append(nn.Sequential(
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True),
                nn.Conv2d(chans[i + 1], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True),
                *([nn.MaxPool2d(2)] if i < 3 else [])))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(chans[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


@register_model("spinenet_tiny", task="classify", input_size=128)
def spinenet_tiny(num_classes: int = 2, in_chans: int = 1, pretrained: str | Path | None = None, dropout: float = 0.2,
                  width: int = 16, **_: Any) -> nn.Module:
    """Small 8-layer CNN (0.3 M parameters at width 16): tests and quick CPU experiments"""
    return _finish(SpineNetTiny(num_classes, in_chans, width, dropout), "spinenet_tiny", in_chans, pretrained, None)
