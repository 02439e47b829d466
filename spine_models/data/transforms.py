"""The one preprocessing path (train == inference) and the studies' augmentation presets.

Why: a model is only as good as the agreement between how its inputs were prepared in training and at
prediction time, so :func:`to_model_input` is the single function both call. Augmentation presets are
albumentations pipelines, applied to the *train* part only, after the per-patient split.
"""
from __future__ import annotations

import os
from typing import Any, Literal, Sequence

import numpy as np

from spine_models.errors import ConfigError

__all__ = [
    "to_model_input",
    "resize_2d",
    "letterbox_geometry",
    "long_side_uint8",
    "augmentation_preset",
    "PRESET_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CornerTextErase",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRESET_NAMES = ("none", "light", "xception", "mri", "mri-sag", "mri-disc", "xray-robust", "xray-real", "flip-gain")


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
    pixels: np.ndarray, size: "int | Sequence[int]", resize_mode: str = "stretch", *, nearest: bool = False
) -> tuple[np.ndarray, dict[str, float]]:
    """Resize a 2-D array to ``size`` (H, W); returns it and the mapping (scale_y, scale_x, pad_top, pad_left).

    ``letterbox`` keeps the aspect ratio and pads with 0 (black, the film background); output pixel
    (y, x) came from input ((y - pad_top) / scale_y, (x - pad_left) / scale_x).
    """
    import cv2

    h, w = _hw(size)
    ih, iw = pixels.shape[:2]
    down = ih * iw > h * w
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
    x, _ = resize_2d(x, size, resize_mode)
    norm = dict(normalization or {"kind": "minmax"})
    kind = norm.get("kind", "minmax")
    if kind == "minmax":
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
        out = np.repeat(x[None], in_chans, axis=0)
    elif kind in ("imagenet", "meanstd"):
        mean = np.asarray(norm.get("mean", IMAGENET_MEAN), np.float32)
        std = np.asarray(norm.get("std", IMAGENET_STD), np.float32)
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


def long_side_uint8(pixels: np.ndarray, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 HxW with long side ``long_side``, (sx, sy, sx, sy) = new / original): what both detector families see,
    in training (``DetectionTorchDataset``, the YOLO view) and at prediction.

    8-bit because Ultralytics reads training files with cv2 (a 16-bit PNG would be shifted to 8 bits by it anyway);
    resized once so training does not decode 1024-px films every epoch.
    """
    import cv2

    h, w = pixels.shape
    scale = long_side / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    img = np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return img, np.array([nw / w, nh / h, nw / w, nh / h])
