"""The one preprocessing path (train == inference) and the studies' augmentation presets.

Why: a model is only as good as the agreement between how its inputs were prepared in training and at
prediction time. A model's preprocessing is one typed, versioned object, :class:`PreprocessConfig` (timm's
``PretrainedCfg`` is the model), read from its card (``PreprocessConfig.from_card``; shipped cards unchanged)
and stored in new cards (``to_dict``). :func:`preprocess` is the one film -> network-input function every
task's Predictor calls (classify, segment, detect, the disc locator); the training datasets
(``data.torch_datasets``) call its two halves, :func:`prepare_pixels` (what is cached and augmented) and
:func:`finish_input` (augmented pixels -> tensor), so training sees what inference sees. The returned
:class:`Geometry` maps boxes, masks and heat maps from the network input back onto the film.

Augmentation presets are albumentations pipelines, applied to the *train* part only, after the per-patient
split; one name means one pipeline for every task (:func:`augmentation_preset`).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from spine_models.errors import ConfigError

__all__ = [
    "PreprocessConfig",
    "Normalization",
    "Geometry",
    "preprocess",
    "prepare_pixels",
    "finish_input",
    "fit_long_side",
    "PREPROCESS_VERSION",
    "to_model_input",
    "resize_2d",
    "letterbox_geometry",
    "augmentation_preset",
    "PRESET_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CornerTextErase",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESS_VERSION = 1  # what PreprocessConfig.to_dict writes; from_dict refuses newer ones
RESIZE_MODES = ("stretch", "letterbox", "fit")
INTERPOLATIONS = ("area-down", "area-taller")
NORM_KINDS = ("minmax", "imagenet", "meanstd", "none", "components")
TTA_MODES = ("none", "hflip")
CROP_KINDS = ("none", "lumbosacral", "disc")
PRESET_NAMES = ("none", "light", "light-flip", "xception", "mri", "mri-sag", "mri-disc", "xray-robust", "xray-real",
                "flip-gain")


def _hw(size: "int | Sequence[int]") -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(v) for v in size)
    return h, w


def letterbox_geometry(image_hw: "Sequence[int]", size: "int | Sequence[int]") -> tuple[int, int, int, int]:
    """Where a letterboxed image sits in the model input: (height, width, pad_top, pad_left).

    One rule for the forward resize and for mapping model-sized maps (Grad-CAM, SHAP) back to the film.
    """
    h, w = _hw(size)
    ih, iw = int(image_hw[0]), int(image_hw[1])
    s = min(h / ih, w / iw)
    nh, nw = max(1, int(round(ih * s))), max(1, int(round(iw * s)))
    return nh, nw, (h - nh) // 2, (w - nw) // 2


def resize_2d(
    pixels: np.ndarray, size: "int | Sequence[int]", resize_mode: str = "stretch", *, nearest: bool = False,
    interpolation: str = "area-down",
) -> tuple[np.ndarray, dict[str, float]]:
    """Resize a 2-D array to ``size`` (H, W); returns it and the mapping (scale_y, scale_x, pad_top, pad_left).

    ``letterbox`` keeps the aspect ratio and pads with 0 (black, the film background); output pixel
    (y, x) came from input ((y - pad_top) / scale_y, (x - pad_left) / scale_x). ``interpolation``: when
    INTER_AREA is used instead of bilinear — ``area-down`` when the output has fewer pixels (the classifiers'
    rule), ``area-taller`` when the input is taller than the output (the U-Nets' rule, kept so their inputs
    stay bit-identical to the ones they were trained on).
    """
    import cv2

    h, w = _hw(size)
    ih, iw = pixels.shape[:2]
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"interpolation {interpolation!r} is not known; use one of {', '.join(INTERPOLATIONS)}")
    down = ih * iw > h * w if interpolation == "area-down" else ih > h
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if down else cv2.INTER_LINEAR)
    if resize_mode == "stretch":
        out = cv2.resize(pixels, (w, h), interpolation=interp)
        return out, {"scale_y": h / ih, "scale_x": w / iw, "pad_top": 0.0, "pad_left": 0.0}
    if resize_mode != "letterbox":
        raise ConfigError(f"resize_mode {resize_mode!r} is not known; use 'stretch' or 'letterbox'")
    nh, nw, top, left = letterbox_geometry((ih, iw), (h, w))
    small = cv2.resize(pixels, (nw, nh), interpolation=interp)
    out = np.zeros((h, w) + pixels.shape[2:], dtype=pixels.dtype)
    out[top : top + nh, left : left + nw] = small
    return out, {"scale_y": nh / ih, "scale_x": nw / iw, "pad_top": float(top), "pad_left": float(left)}


def to_model_input(
    pixels2d: np.ndarray,
    size: "int | Sequence[int]",
    normalization: dict[str, Any] | None = None,
    in_chans: int = 1,
    resize_mode: str = "stretch",
    interpolation: str = "area-down",
) -> np.ndarray:
    """2-D float image in [0, 1] -> (C, H, W) float32 network input.

    ``normalization``: ``{"kind": "minmax"}`` (default; per image, as in the Xception study),
    ``{"kind": "imagenet"}`` (ImageNet mean/std, channel-replicated; for 3-channel backbones),
    ``{"kind": "meanstd", "mean": [...], "std": [...]}`` or ``{"kind": "none"}``. An (H, W, 3) input is
    averaged to gray first. Resizing happens before normalisation; letterbox padding is 0.
    """
    x = np.asarray(pixels2d, dtype=np.float32)
    if x.ndim == 3 and x.shape[2] in (3, 4):
        x = x[..., :3].mean(axis=2)
    if x.ndim != 2:
        raise ConfigError(f"to_model_input expects a 2-D image, got shape {x.shape}; pass Radiograph.pixels")
    if in_chans not in (1, 3):
        raise ConfigError(f"in_chans={in_chans} is not supported; use 1 or 3")
    x, _ = resize_2d(x, size, resize_mode, interpolation=interpolation)
    norm = dict(normalization or {"kind": "minmax"})
    kind = norm.get("kind", "minmax")
    if kind == "minmax":
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
        out = np.repeat(x[None], in_chans, axis=0)
    elif kind in ("imagenet", "meanstd"):
        mean = np.asarray(IMAGENET_MEAN if norm.get("mean") is None else norm["mean"], np.float32).reshape(-1)
        std = np.asarray(IMAGENET_STD if norm.get("std") is None else norm["std"], np.float32).reshape(-1)
        if in_chans == 1:
            mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
        elif mean.size == 1:
            mean, std = np.repeat(mean.reshape(1), 3), np.repeat(std.reshape(1), 3)
        out = (np.repeat(x[None], in_chans, axis=0) - mean[:in_chans, None, None]) / std[:in_chans, None, None]
    elif kind == "none":
        out = np.repeat(x[None], in_chans, axis=0)
    else:
        raise ConfigError(f"normalization kind {kind!r} is not known; use minmax, imagenet, meanstd or none")
    return np.ascontiguousarray(out, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------
# the typed preprocessing config, the one film -> input function and its inverse


def _one_of(key: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ConfigError(f"preprocessing {key}={value!r} is not known; use one of {', '.join(map(repr, allowed))}")


def _numbers(key: str, value: Any) -> tuple[float, ...] | None:
    """None, or a tuple of 1 or 3 finite numbers (a card may hold one number for a gray model)."""
    if value is None:
        return None
    vals = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        out = tuple(float(v) for v in vals)
    except (TypeError, ValueError):
        out = ()
    if len(out) not in (1, 3) or not all(np.isfinite(out)):
        raise ConfigError(f"preprocessing normalization {key}={value!r}; give 1 or 3 finite numbers, e.g. [0.5]")
    return out


@dataclass(frozen=True)
class Normalization:
    """How resized pixels in [0, 1] become network values: ``minmax`` (per image), ``imagenet`` / ``meanstd``
    ((x - mean) / std; ImageNet's when not given), ``none``, or ``components`` (a composite: its parts do it)."""

    kind: str = "minmax"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _one_of("normalization kind", self.kind, NORM_KINDS)
        object.__setattr__(self, "mean", _numbers("mean", self.mean))
        object.__setattr__(self, "std", _numbers("std", self.std))
        if self.std is not None and min(self.std) <= 0:
            raise ConfigError(f"preprocessing normalization std={list(self.std)}; give every std > 0, e.g. [0.25]")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Normalization":
        d = dict(d or {"kind": "minmax"})
        return cls(str(d.get("kind", "minmax")), d.get("mean"), d.get("std"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.mean is not None:
            out["mean"] = list(self.mean)
        if self.std is not None:
            out["std"] = list(self.std)
        return out


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything between a decoded film (2-D, [0, 1]) and the network input, as one typed, versioned object.

    Why one object: the card carries it, training and inference build their inputs from it, and the
    :class:`Geometry` it yields maps outputs back to the film — so the three can never drift apart.

    - ``size`` (H, W) of the input; ``resize_mode``: ``stretch``, ``letterbox`` (keep the aspect, pad 0) or
      ``fit`` (the detectors: long side = max(size), no square padding; ``stride`` pads each side up to a
      multiple, centred, with ``pad_value`` — Ultralytics' auto letterbox).
    - ``interpolation``: when INTER_AREA replaces bilinear (:func:`resize_2d`).
    - ``prescale``: first shrink the (cropped) film so its long side is at most ``prescale`` x the input's long
      side, then resize (the classifiers: training caches that copy; a direct full-resolution resize changed
      P(positive) by up to 0.2 on real films). None: resize to the input size at once.
    - ``bits``: 8 quantises the film to uint8 before resizing (the detectors train on 8-bit files).
    - ``roi`` (the MRI classifier's centre blocks), ``crop`` (``lumbosacral``: a box placed by ``crop_model``;
      ``disc``: the disc grader's crops), ``tta`` (``hflip``: the input and its mirror), ``orientation`` (text).
    """

    size: tuple[int, int]
    in_chans: int = 1
    resize_mode: str = "stretch"
    normalization: Normalization = field(default_factory=Normalization)
    interpolation: str = "area-down"
    prescale: float | None = None
    bits: int | None = None
    stride: int | None = None
    pad_value: float = 0.0
    roi: bool = False
    crop: str = "none"
    crop_model: str | None = None
    crop_side: float | None = None
    tta: str = "none"
    orientation: str = "HxW"
    version: int = PREPROCESS_VERSION

    def __post_init__(self) -> None:
        if self.version != PREPROCESS_VERSION:
            raise ConfigError(f"preprocessing version={self.version!r} is not readable by this spine_models "
                              f"(it reads {PREPROCESS_VERSION}); upgrade spine_models or re-export the card")
        try:
            size = _hw(self.size)
        except (TypeError, ValueError):
            size = (0, 0)
        if min(size) < 1:
            raise ConfigError(f"preprocessing size={self.size!r}; give [height, width] in pixels, e.g. [512, 256]")
        object.__setattr__(self, "size", size)
        if isinstance(self.normalization, Mapping):
            object.__setattr__(self, "normalization", Normalization.from_dict(self.normalization))
        _one_of("in_chans", self.in_chans, (1, 3))
        _one_of("resize_mode", self.resize_mode, RESIZE_MODES)
        _one_of("interpolation", self.interpolation, INTERPOLATIONS)
        _one_of("bits", self.bits, (None, 8))
        _one_of("tta", self.tta, TTA_MODES)
        _one_of("crop", self.crop, CROP_KINDS)
        if self.resize_mode == "fit" and self.bits != 8:
            raise ConfigError(f"preprocessing resize_mode='fit' with bits={self.bits!r}; 'fit' is the detectors' 8-bit path, set bits=8")
        if self.prescale is not None and not (isinstance(self.prescale, (int, float)) and self.prescale >= 1):
            raise ConfigError(f"preprocessing prescale={self.prescale!r}; use a number >= 1 (e.g. 2) or null")
        if self.stride is not None and not (isinstance(self.stride, int) and self.stride >= 1):
            raise ConfigError(f"preprocessing stride={self.stride!r}; use a whole number of pixels (e.g. 32) or null")
        if self.crop_side is not None and not 2.0 <= float(self.crop_side) <= 12.0:
            raise ConfigError(f"preprocessing crop_side={self.crop_side!r}; give the crop's side in body heights, 2 to 12")

    # ------------------------------------------------------------------ card <-> config
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PreprocessConfig":
        """A config from its ``to_dict`` form; keys that are not config fields (a card's ``augment``,
        ``label_from`` ...) are left to their readers."""
        names = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in names}
        if "size" not in kw:
            raise ConfigError("preprocessing config has no 'size'; give [height, width], e.g. [512, 256]")
        kw["normalization"] = Normalization.from_dict(kw.get("normalization"))
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``version``: what new cards store under ``preprocessing``."""
        d = asdict(self)
        d["size"] = list(self.size)
        d["normalization"] = self.normalization.to_dict()
        return d

    @classmethod
    def for_unet(cls, size: "Sequence[int]", normalization: Mapping[str, Any] | None, tta: str = "none",
                 **kw: Any) -> "PreprocessConfig":
        """The segmenters' input (training and their cards): stretched, INTER_AREA when the film is taller than the
        input, ``meanstd`` without numbers meaning mean 0.5 / std 0.25 (as the U-Nets were trained)."""
        norm = Normalization.from_dict(normalization)
        if norm.kind == "meanstd":
            norm = Normalization("meanstd", norm.mean or (0.5,), norm.std or (0.25,))
        return cls(tuple(size), normalization=norm, interpolation="area-taller", tta=tta,
                   **{"orientation": "HxW portrait", **kw})

    @classmethod
    def from_card(cls, card: Any) -> "PreprocessConfig":
        """The config of a model card: the versioned dict when the card stores one, else derived from the
        card's ``input_size``, ``in_chans``, ``normalization`` and ``preprocessing`` (the shipped cards, unchanged)."""
        pp = dict(getattr(card, "preprocessing", None) or {})
        if "version" in pp:
            return cls.from_dict(pp)
        task, size = getattr(card, "task", ""), card.input_size
        if task == "detect":  # io display values -> uint8, long side = imgsz; YOLO pads to the stride
            from spine_models.models.detection import is_yolo

            side = int(size if isinstance(size, (int, float)) else max(size))
            yolo = bool(pp.get("letterbox", is_yolo(str(card.arch))))
            return cls((side, side), in_chans=3, resize_mode="fit", normalization=Normalization("none"), bits=8,
                       stride=int(pp.get("stride", 32)) if yolo else None, pad_value=114.0)
        norm = Normalization.from_dict(getattr(card, "normalization", None))
        if task == "segment":
            hw = (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size) // 2)
            disc = "disc_crops" in str(pp.get("crop", ""))
            return cls.for_unet(tuple(pp.get("crop_size", hw)) if disc else hw, card.normalization,
                                str(pp.get("tta", "none")), in_chans=int(getattr(card, "in_chans", 1)),
                                resize_mode=str(pp.get("resize_mode", "stretch")), crop="disc" if disc else "none",
                                orientation=str(pp.get("input_orientation", "HxW")))
        hw = _hw(size[0] if isinstance(size, (list, tuple)) and len(size) == 1 else size)
        if norm.kind == "components":
            return cls(hw, normalization=norm)
        return cls(hw, int(getattr(card, "in_chans", 1)), str(pp.get("resize_mode", "stretch")), norm,
                   prescale=2.0, roi=bool(pp.get("roi", False)), crop=str(pp.get("crop") or "none"),
                   crop_model=pp.get("crop_model"), crop_side=None if pp.get("crop_side") is None else float(pp["crop_side"]))


@dataclass(frozen=True)
class Geometry:
    """Where the network input came from on the film, and the way back.

    ``region`` (y0, y1, x0, x1) is the part of the film the input shows (a crop or ROI; None: all of it);
    input pixel (y, x) = ((film_y - y0) * scale_y + pad_top, (film_x - x0) * scale_x + pad_left);
    ``content_hw`` is the region's size inside the (padded) input."""

    film_hw: tuple[int, int]
    input_hw: tuple[int, int]
    content_hw: tuple[int, int]
    scale_y: float = 1.0
    scale_x: float = 1.0
    pad_top: float = 0.0
    pad_left: float = 0.0
    region: tuple[int, int, int, int] | None = None
    resize_mode: str = "stretch"

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The region, or the whole film: (y0, y1, x0, x1)."""
        return self.region if self.region is not None else (0, self.film_hw[0], 0, self.film_hw[1])

    def boxes_to_input(self, boxes: Any) -> np.ndarray:
        """(N, 4) x1 y1 x2 y2 film pixels -> input pixels (the forward mapping; tests and box targets)."""
        y0, _, x0, _ = self.box
        b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] = (b[:, [0, 2]] - x0) * self.scale_x + self.pad_left
        b[:, [1, 3]] = (b[:, [1, 3]] - y0) * self.scale_y + self.pad_top
        return b

    def boxes_to_film(self, boxes: Any) -> np.ndarray:
        """(N, 4) x1 y1 x2 y2 input pixels -> film pixels, clipped to the film."""
        y0, _, x0, _ = self.box
        b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] -= self.pad_left
        b[:, [1, 3]] -= self.pad_top
        b = b / np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        b[:, [0, 2]] += x0
        b[:, [1, 3]] += y0
        h, w = self.film_hw
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
        return b

    def _unpad(self, m: np.ndarray) -> np.ndarray:
        mh, mw = m.shape[-2:]
        if self.resize_mode == "letterbox":  # where the region sits in a map of this shape (one rule, resize_2d's)
            y0, y1, x0, x1 = self.box
            nh, nw, top, left = letterbox_geometry((y1 - y0, x1 - x0), (mh, mw))
            return m[..., top:top + nh, left:left + nw]
        if (self.pad_top, self.pad_left) == (0.0, 0.0) and self.content_hw == self.input_hw:
            return m
        fy, fx = mh / self.input_hw[0], mw / self.input_hw[1]
        top, left = int(round(self.pad_top * fy)), int(round(self.pad_left * fx))
        return m[..., top:top + max(1, int(round(self.content_hw[0] * fy))), left:left + max(1, int(round(self.content_hw[1] * fx)))]

    def maps_to_film(self, maps: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        """(H', W') or (K, H', W') maps over the input (any resolution) -> the film's resolution, bilinear
        (nearest for labels); 0 outside the region."""
        import cv2

        m = np.asarray(maps, np.float32)
        single = m.ndim == 2
        m = self._unpad(m[None] if single else m)
        y0, y1, x0, x1 = self.box
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        # each map resized straight into its slot of the film-sized array (no stacked copy of every map at the film's
        # full resolution); a box inside the film gets zeros around it
        full = self.region is not None
        out = np.zeros((len(m), *self.film_hw), np.float32) if full else np.empty((len(m), y1 - y0, x1 - x0), np.float32)
        for k, c in enumerate(m):
            dst = out[k, y0:y1, x0:x1] if full else out[k]
            got = cv2.resize(np.ascontiguousarray(c), (x1 - x0, y1 - y0), dst=dst if dst.flags.c_contiguous else None,
                             interpolation=interp)
            if got is not dst:  # OpenCV wrote elsewhere (a view it cannot fill in place): copy it in
                dst[...] = got
        placed = out
        return placed[0] if single else placed

    def heatmap_to_film(self, heat: np.ndarray) -> np.ndarray:
        """A Grad-CAM / SHAP map over the input -> the film (0 outside the crop / ROI)."""
        return self.maps_to_film(heat)

    def mask_to_film(self, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Per-structure probabilities (or a 0/1 mask) over the input -> boolean masks on the film: resized
        bilinear, then thresholded (smoother outlines than resizing the thresholded mask)."""
        return self.maps_to_film(probs) > float(threshold)


def fit_long_side(pixels: np.ndarray, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 HxW with long side ``long_side``, (sx, sy, sx, sy) = new / original): what both detector
    families see, in training (``DetectionTorchDataset``, the YOLO view) and at prediction. 8-bit because Ultralytics reads training files with cv2 (a 16-bit PNG would be shifted to 8
    bits by it anyway); resized once so training does not decode 1024-px films every epoch."""
    import cv2

    h, w = pixels.shape
    scale = long_side / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    img = np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return img, np.array([nw / w, nh / h, nw / w, nh / h])


def _gray(pixels: np.ndarray) -> np.ndarray:
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim == 3 and x.shape[2] in (3, 4):
        x = x[..., :3].mean(axis=2)
    if x.ndim != 2:
        raise ConfigError(f"preprocess expects a 2-D image, got shape {x.shape}; pass Radiograph.pixels")
    return x


def prepare_pixels(pixels: np.ndarray, cfg: PreprocessConfig,
                   box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The first half of :func:`preprocess`: what training caches and augments — the crop ``box`` (y0, y1, x0, x1)
    if given, shrunk by ``prescale`` (or resized to the input at once; ``fit``: the 8-bit long-side image)."""
    import cv2

    x = _gray(pixels)
    if box is not None:
        y0, y1, x0, x1 = box
        x = x[y0:y1, x0:x1]
    if cfg.resize_mode == "fit":
        return fit_long_side(x, max(cfg.size))[0]
    if cfg.prescale is None:
        return resize_2d(x, cfg.size, cfg.resize_mode, interpolation=cfg.interpolation)[0]
    h, w = x.shape
    scale = cfg.prescale * max(cfg.size) / max(h, w)
    if scale < 1:
        x = cv2.resize(x, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return x.astype(np.float32)


def _pad_to_stride(img: np.ndarray, stride: int, value: float) -> tuple[np.ndarray, int, int]:
    """Pad to the next stride multiple, centred; (padded, top, left)."""
    import math

    h, w = img.shape
    ph, pw = math.ceil(h / stride) * stride, math.ceil(w / stride) * stride
    top, left = (ph - h) // 2, (pw - w) // 2
    out = np.full((ph, pw), value, dtype=img.dtype)
    out[top:top + h, left:left + w] = img
    return out, top, left


def finish_input(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """The second half of :func:`preprocess`: prepared (and perhaps augmented) pixels -> (C, H, W) float32."""
    if cfg.resize_mode == "fit":
        img = np.asarray(pixels)
        if cfg.stride:
            img = _pad_to_stride(img, cfg.stride, cfg.pad_value)[0]
        x = img.astype(np.float32) / np.float32(255.0)
        return np.ascontiguousarray(np.repeat(x[None], cfg.in_chans, axis=0))
    if cfg.normalization.kind == "components":
        raise ConfigError("a composite model's card has no input of its own (normalization 'components'); "
                          "preprocess with its component models' configs")
    x = _gray(pixels)
    if cfg.roi:
        from spine_models.data.mri import crop_roi

        x = crop_roi(x)
    return to_model_input(x, cfg.size, cfg.normalization.to_dict(), cfg.in_chans, cfg.resize_mode,
                          interpolation=cfg.interpolation)


def _geometry(film_hw: tuple[int, int], cfg: PreprocessConfig, box: tuple[int, int, int, int] | None) -> Geometry:
    region = box
    if region is None and cfg.roi:
        from spine_models.data.mri import roi_box

        region = roi_box(*film_hw)
    y0, y1, x0, x1 = region if region is not None else (0, film_hw[0], 0, film_hw[1])
    rh, rw = y1 - y0, x1 - x0
    H, W = cfg.size
    if cfg.resize_mode == "stretch":
        return Geometry(film_hw, (H, W), (H, W), H / rh, W / rw, 0.0, 0.0, region, "stretch")
    if cfg.resize_mode == "letterbox":
        nh, nw, top, left = letterbox_geometry((rh, rw), (H, W))
        return Geometry(film_hw, (H, W), (nh, nw), nh / rh, nw / rw, float(top), float(left), region, "letterbox")
    scale = max(cfg.size) / max(rh, rw)
    nh, nw = max(1, round(rh * scale)), max(1, round(rw * scale))
    ph, pw, top, left = nh, nw, 0, 0
    if cfg.stride:
        ph, pw = -(-nh // cfg.stride) * cfg.stride, -(-nw // cfg.stride) * cfg.stride
        top, left = (ph - nh) // 2, (pw - nw) // 2
    return Geometry(film_hw, (ph, pw), (nh, nw), nh / rh, nw / rw, float(top), float(left), region, "fit")


def preprocess(pixels: np.ndarray, cfg: PreprocessConfig,
               box: tuple[int, int, int, int] | None = None) -> tuple[Any, Geometry]:
    """A film (2-D, [0, 1]) -> ((N, C, H, W) float32 CPU tensor, :class:`Geometry`); N = 2 with ``hflip`` TTA
    (the input and its mirror). ``box``: the crop on the film (``data.roi.locate``) when ``cfg.crop`` asks for one.
    The one path every Predictor takes; training takes the same two halves with augmentation between."""
    import torch

    x = _gray(pixels)
    t = torch.from_numpy(finish_input(prepare_pixels(x, cfg, box), cfg))[None]
    if cfg.tta == "hflip":
        t = torch.cat([t, torch.flip(t, dims=[-1])])
    return t, _geometry(tuple(int(v) for v in x.shape[:2]), cfg, box)



def _albu():
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    return A


def _corner_text_erase_cls():
    A = _albu()

    class _CornerTextErase(A.ImageOnlyTransform):
        """Blank or paint fake text into 1-2 film corners.

        Why: burned-in labels, markers and rulers sit in corners and differ between hospitals/classes;
        a classifier must not learn them. Randomly erasing them or adding text where there was none
        breaks that shortcut. Image-only: masks and boxes are untouched.
        """

        def __init__(self, max_w: float = 0.35, max_h: float = 0.12, p: float = 0.5) -> None:
            super().__init__(p=p)
            self.max_w, self.max_h = max_w, max_h

        def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
            rng = self.py_random
            corners = rng.sample(range(4), rng.choice((1, 2)))
            return {"boxes": [(c, rng.uniform(0.1, self.max_w), rng.uniform(0.04, self.max_h), rng.random() < 0.5,
                               rng.random(), rng.randint(0, 10**6)) for c in corners]}

        def apply(self, img: np.ndarray, boxes: Sequence[tuple] = (), **params: Any) -> np.ndarray:
            import cv2

            out = img.copy()
            H, W = out.shape[:2]
            top = float(out.max()) if out.size else 1.0
            for corner, fw, fh, paint, level, seed in boxes:
                bw, bh = max(2, int(W * fw)), max(2, int(H * fh))
                y0 = 0 if corner in (0, 1) else H - bh
                x0 = 0 if corner in (0, 2) else W - bw
                region = out[y0 : y0 + bh, x0 : x0 + bw]
                region[...] = level * 0.2 * top  # dark plate, as on most films
                if paint:
                    text = "".join(chr(65 + (seed // 26**k) % 26) for k in range(4)) + f" {seed % 97}"
                    scale = max(0.25, bh / 40.0)
                    glyphs = np.zeros((bh, bw), np.uint8)  # OpenCV 5 draws text on 8-bit only
                    cv2.putText(glyphs, text, (1, max(1, bh - 3)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                                255, max(1, int(scale * 2)), cv2.LINE_AA)
                    on = glyphs > 127
                    region[on] = top
            return out

        def get_transform_init_args_names(self) -> tuple[str, ...]:
            return ("max_w", "max_h")

    return _CornerTextErase


def __getattr__(name: str) -> Any:  # CornerTextErase is built lazily: albumentations is heavy to import
    if name == "CornerTextErase":
        return _corner_text_erase_cls()
    raise AttributeError(name)


def augmentation_preset(
    name: str,
    size: "int | Sequence[int] | None" = None,
    targets: Literal["image", "mask", "bboxes"] = "image",
    *,
    seed: int | None = None,
) -> Any:
    """An ``A.Compose`` for a named preset; call it as ``aug(image=x)`` (+ ``mask=``/``masks=`` or
    ``bboxes=`` in pascal_voc pixels with ``labels=``). Works on float32 [0, 1] 2-D images.

    - ``xception``: the Xception study's five — Transpose, shift/scale/rotate (±45°, p=0.45; as ``A.Affine``
      because ``ShiftScaleRotate`` is deprecated in albumentations 2), HorizontalFlip, VerticalFlip,
      RandomBrightnessContrast(p=0.2).
    - ``mri``: the MRI study's Keras ``brightness_range=[0.1, 0.7]`` (a multiplicative brightness factor
      drawn in [0.1, 0.7], always applied) + horizontal and vertical flips.
    - ``xray-robust``: steers a classifier away from framing, size and burned-in text shortcuts —
      random crop/pad of each border (±12 %), scale jitter and mild rotation (±10°), corner erasing/fake
      text, CLAHE or gamma, brightness/contrast, mild noise.
    - ``flip-gain``: horizontal flip + a gain in [0.8, 1.2] (detection: boxes flip with the image).
    - ``light``: flips off, small affine + brightness/contrast (anatomy-preserving for lateral films).
    - ``light-flip``: the U-Nets' light set — affine (scale 0.9-1.1, shift ±4 %, rotation ±10°, p=0.7),
      horizontal flip, brightness/contrast and gamma. Why a name of its own: until the presets were one table,
      ``augment: light`` meant this pipeline in the segment engine (its default) and the one above in the
      classify engine. The shipped cards trained with ``light`` (xray_3class_mobilenet_v2_synth,
      xray_lat_slip_roi_mobilenet_v2_synth; ``--set augment=light``) are classifiers, so ``light`` keeps the
      classifiers' meaning; the segment default (``cfg/segment.yaml``, which seg_unet_lat's train_command relied
      on) is now ``light-flip``, so retraining any shipped card means what it meant.
    - ``none``: identity.

    ``size`` (the model input size) sets the minimum corner-plate size in pixels for ``xray-robust``;
    presets otherwise work in fractions of the image. ``targets`` picks the geometric-target variant:
    for ``bboxes`` the boxes follow the image and are dropped when less than 30 % stays visible.
    """
    A = _albu()
    key = name.strip().lower().replace("_", "-")
    if key == "xception":
        tf = [
            A.Transpose(p=0.5),
            A.Affine(translate_percent=(-0.0625, 0.0625), scale=(0.9, 1.1), rotate=(-45, 45), p=0.45),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomBrightnessContrast(p=0.2),
        ]
    elif key == "mri":
        tf = [
            A.MultiplicativeNoise(multiplier=(0.1, 0.7), per_channel=False, elementwise=False, p=1.0),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
        ]
    elif key == "xray-robust":
        max_w = 0.35
        if size is not None:
            max_w = max(max_w, min(0.5, 8.0 / min(_hw(size))))
        tf = [
            A.CropAndPad(percent=(-0.12, 0.12), keep_size=False, sample_independently=True, p=0.7),
            A.Affine(scale=(0.85, 1.15), rotate=(-10, 10), translate_percent=(-0.04, 0.04), p=0.6),
            _corner_text_erase_cls()(max_w=max_w, p=0.5),
            A.OneOf([A.CLAHE(clip_limit=(1, 3), p=1.0), A.RandomGamma(gamma_limit=(70, 140), p=1.0)], p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.2, p=0.5),
            A.GaussNoise(std_range=(0.0, 0.03), p=0.3),
            A.HorizontalFlip(p=0.5),
        ]
    elif key == "xray-real":
        # the real AP sources' looks: CADMA's harsh adaptive equalisation, AASCE's raw films, JPEG
        # re-saves, blur, framing (crops/pads), patient rotation and mirror images; geometric steps
        # move masks with the film (a mask has no corner order, so a flip needs no relabelling)
        tf = [
            A.CropAndPad(percent=(-0.08, 0.08), keep_size=True, sample_independently=True, p=0.5),
            A.Affine(scale=(0.85, 1.15), rotate=(-12, 12), translate_percent=(-0.05, 0.05), p=0.7),
            A.HorizontalFlip(p=0.5),
            A.OneOf([A.CLAHE(clip_limit=(2, 6), tile_grid_size=(8, 8), p=1.0),
                     A.RandomGamma(gamma_limit=(60, 160), p=1.0),
                     A.Equalize(p=1.0)], p=0.6),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.3, p=0.5),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5), p=1.0), A.Downscale(scale_range=(0.4, 0.8), p=1.0)], p=0.3),
            A.ImageCompression(quality_range=(30, 90), p=0.3),
            A.GaussNoise(std_range=(0.0, 0.03), p=0.3),
        ]
    elif key == "mri-sag":
        # real sagittal MR slices come in any of the 8 flips/rotations (SPIDER's renderings), from many scanners
        # (T1 and T2, 1.5 and 3 T): every orientation, field-of-view and contrast changes, blur and noise
        tf = [
            A.RandomRotate90(p=1.0),
            A.HorizontalFlip(p=0.5),
            A.CropAndPad(percent=(-0.1, 0.1), keep_size=True, sample_independently=True, p=0.5),
            A.Affine(scale=(0.8, 1.2), rotate=(-15, 15), translate_percent=(-0.06, 0.06), p=0.7),
            A.OneOf([A.RandomGamma(gamma_limit=(60, 160), p=1.0), A.CLAHE(clip_limit=(1, 4), p=1.0)], p=0.6),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.3, p=0.6),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5), p=1.0), A.Downscale(scale_range=(0.5, 0.9), p=1.0)], p=0.3),
            A.GaussNoise(std_range=(0.0, 0.04), p=0.3),
        ]
    elif key == "mri-disc":
        # a disc crop (upright already): mirror (anterior left or right), small turns and zooms, contrast and noise
        tf = [
            A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.9, 1.1), rotate=(-10, 10), translate_percent=(-0.05, 0.05), p=0.7),
            A.RandomGamma(gamma_limit=(70, 140), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.2, p=0.5),
            A.GaussNoise(std_range=(0.0, 0.03), p=0.3),
        ]
    elif key == "light":
        tf = [
            A.Affine(scale=(0.95, 1.05), rotate=(-5, 5), translate_percent=(-0.03, 0.03), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
        ]
    elif key == "flip-gain":
        # the detectors' (Faster R-CNN) recipe: a mirror image and an overall gain of 0.8-1.2; boxes follow the flip
        tf = [
            A.HorizontalFlip(p=0.5),
            A.MultiplicativeNoise(multiplier=(0.8, 1.2), per_channel=False, elementwise=False, p=1.0),
        ]
    elif key == "light-flip":
        tf = [
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.04, 0.04), rotate=(-10, 10), p=0.7),
            A.HorizontalFlip(p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.2, p=0.5),
            A.RandomGamma(gamma_limit=(80, 120), p=0.3),
        ]
    elif key == "none":
        tf = []
    else:
        raise ConfigError(f"augmentation preset {name!r} is not known; use one of {', '.join(PRESET_NAMES)}")
    kwargs: dict[str, Any] = {}
    if seed is not None:
        kwargs["seed"] = int(seed)
    if targets == "bboxes":
        kwargs["bbox_params"] = A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.3, clip=True)
    elif targets not in ("image", "mask"):
        raise ConfigError(f"targets {targets!r} is not known; use 'image', 'mask' or 'bboxes'")
    return A.Compose(tf, **kwargs)

