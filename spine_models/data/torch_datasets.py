"""torch ``Dataset`` wrappers over :class:`Sample` lists: the one dataset family every trainer uses.

Why: training must read images the way inference does — a film in [0, 1] -> :func:`prepare_pixels` (the crop,
the shrink: what is cached) -> optional augmentation (train part only: build the train dataset with
``augment=augmentation_preset(...)`` and val/test with ``augment=None``) -> :func:`finish_input` — the two halves of
``data.transforms.preprocess``, the Predictors' path, driven by the same :class:`PreprocessConfig`. Films are
large and the CPU is scarce, so with ``cache=True`` each image is decoded and prepared once and kept in memory
(classification: the prepared float32 film, at most 2x the input size; segmentation: the film and its targets at
the input size, float16).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from spine_models.data.records import Sample
from spine_models.data.transforms import Normalization, PreprocessConfig, _hw, finish_input, prepare_pixels
from spine_models.data.vertebra_patches import (body_frame, corner_targets, extract_patch, patch_matrix, standardize,
                                                to_patch)
from spine_models.errors import ConfigError, DatasetError

__all__ = ["ClassificationTorchDataset", "TwoViewTorchDataset", "SegmentationTorchDataset", "default_reader",
           "load_pixels", "read_mask", "structure_targets", "Locate", "DetectionTorchDataset", "detection_collate",
           "VertebraPatchDataset", "LevelPatchDataset"]

Reader = Callable[[Path], np.ndarray]
#: full-resolution pixels -> the crop box (y0, y1, x0, x1) the model looks at, or None (the whole film)
Locate = Callable[[np.ndarray], "tuple[int, int, int, int] | None"]


def default_reader(path: Path) -> np.ndarray:
    """2-D float32 pixels in [0, 1] via the project's one image reader (DICOM, 16-bit PNG, JPEG...)."""
    from spine_models.io import read_image

    return read_image(path).pixels


def _frame_index(sample: Any) -> int | None:
    meta = getattr(sample, "meta", {}) or {}
    # 0-based frame inside a multi-frame file (spine_models.data.mri); meta["frame"] is 1-based, not used here
    return None if meta.get("frame_index") is None else int(meta["frame_index"])


def load_pixels(source: Any) -> np.ndarray:
    """A Sample / path / Radiograph / array -> HxW float32 in [0, 1] (the sample's frame for volumes)."""
    from spine_models.errors import SpineInputError

    if isinstance(source, np.ndarray):
        a = source.astype(np.float32)
        if a.ndim == 3 and a.shape[-1] in (3, 4):
            a = a[..., :3].mean(axis=-1)
        if a.ndim != 2:
            raise SpineInputError(f"expected a 2-D grayscale image array, got shape {a.shape}")
        return a
    if hasattr(source, "pixels") and not hasattr(source, "patient_id"):
        return np.asarray(source.pixels, dtype=np.float32)
    from spine_models.io import read_image

    path = getattr(source, "path", source)
    if path is None:
        raise DatasetError(f"sample {getattr(source, 'id', '?')}: no image path (two-view samples need two_view=true)")
    rad = read_image(path)
    frame = _frame_index(source)
    volume = getattr(rad, "volume", None)
    if frame is not None and volume is not None and 0 <= frame < len(volume):
        return np.asarray(volume[frame], dtype=np.float32)
    return np.asarray(rad.pixels, dtype=np.float32)


def _config(cfg: PreprocessConfig | None, size: Any, normalization: Any, in_chans: int, resize_mode: str,
            **defaults: Any) -> PreprocessConfig:
    if cfg is not None:
        return cfg
    if size is None:
        raise ConfigError("a torch dataset needs cfg= (a PreprocessConfig) or size=; pass the model's input size")
    return PreprocessConfig(_hw(size), in_chans, resize_mode, Normalization.from_dict(normalization), **defaults)


class ClassificationTorchDataset(Dataset):
    """``(tensor (C,H,W), label_index)`` per sample; with ``two_view`` ``((ap, lat), label_index)``.

    ``cfg`` is the model's :class:`PreprocessConfig` (or give ``size``/``normalization``/``in_chans``/``resize_mode``);
    ``locate`` places its crop (``cfg.crop``) on the full-resolution film; ``reader`` reads a path (default:
    :func:`load_pixels`, a sample's own frame of a volume)."""

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str],
        size: "int | Sequence[int] | None" = None,
        normalization: dict[str, Any] | None = None,
        in_chans: int = 1,
        augment: Callable[..., dict] | None = None,
        resize_mode: str = "stretch",
        cache: bool = False,
        reader: Reader | None = None,
        *,
        cfg: PreprocessConfig | None = None,
        locate: Locate | None = None,
        two_view: bool = False,
    ) -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        index = {c: i for i, c in enumerate(self.classes)}
        bad = sorted({str(s.label) for s in self.samples if s.label not in index})
        if bad:
            raise DatasetError(f"labels {bad} are not among the classes {self.classes}; check --data and the model's classes")
        self.targets = [index[s.label] for s in self.samples]
        self.cfg = _config(cfg, size, normalization, in_chans, resize_mode, prescale=2.0)
        if self.cfg.crop not in ("none",) and locate is None:
            raise ConfigError(f"preprocessing crop={self.cfg.crop!r} needs locate= (pixels -> crop box); "
                              "spine_models.engine.classify.crop_locator builds one")
        self.augment, self.cache, self.two_view = augment, cache, two_view
        self.locate, self.reader = locate, reader
        self._mem: dict[tuple[int, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, source: Any) -> np.ndarray:
        """A sample or a view's path -> pixels (``reader`` for files when given)."""
        if self.reader is None:
            return load_pixels(source)
        return np.asarray(self.reader(Path(getattr(source, "path", source))), dtype=np.float32)

    def _pixels(self, i: int, view: str) -> np.ndarray:
        key = (i, view)
        if key in self._mem:
            return self._mem[key]
        s = self.samples[i]
        if view == "image":
            if s.path is None:
                raise DatasetError(f"sample {s.id!r} has no single image (a two-view sample?); use two_view=True")
            px = self._read(s)
        else:
            if view not in s.views:
                raise DatasetError(f"sample {s.id!r}: no {view!r} view ({sorted(s.views)}); two-view training needs ap and lat images")
            px = self._read(s.views[view])
        box = self.locate(px) if self.locate is not None else None
        px = prepare_pixels(px, self.cfg, box)
        if self.cache:
            self._mem[key] = px
        return px

    def _one(self, i: int, view: str) -> torch.Tensor:
        px = self._pixels(i, view)
        if self.augment is not None:
            px = self.augment(image=px)["image"]
        return torch.from_numpy(np.ascontiguousarray(finish_input(px, self.cfg)))

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if self.two_view:
            return (self._one(i, "ap"), self._one(i, "lat")), self.targets[i]
        return self._one(i, "image"), self.targets[i]


class TwoViewTorchDataset(ClassificationTorchDataset):
    """``((ap_tensor, lat_tensor), label_index)`` per two-view sample (augmentation drawn per view)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "two_view": True})


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A binary mask file as HxW bool (non-zero = structure); resized (nearest) to ``shape`` if given."""
    import cv2

    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise DatasetError(f"{path}: mask file is missing or not an image; masks are 8-bit PNG, 0 = background")
    if m.ndim == 3:
        m = m.max(axis=-1)
    if shape is not None and m.shape != tuple(shape):
        m = cv2.resize((m > 0).astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return m > 0


def _resize_soft(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(mask.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)


def structure_targets(sample: Sample, structures: Sequence[str], size: tuple[int, int],
                      film_shape: tuple[int, int], body_height: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(targets, weights), each (K, H, W) float32 at model size, from a sample's masks, corners or boxes.

    Why: real sources mark vertebrae differently (data.vertebra_targets); a structure a sample does
    not mark has weight 0, so a real film teaches the vertebra channel and leaves the others alone.
    Masks are resized with area averaging (soft targets keep few-pixel-wide lines alive at lower resolution)."""
    from spine_models.data.vertebra_targets import CAUDAL_LEVELS, box_weak_mask, disc_boxes, disc_mask, quad_mask, vertebra_boxes

    masks = np.zeros((len(structures), *size), np.float32)
    weights = np.zeros((len(structures), *size), np.float32)
    scale = (size[0] / film_shape[0], size[1] / film_shape[1])
    for k, st in enumerate(structures):
        if st in sample.masks:
            masks[k] = _resize_soft(read_mask(sample.masks[st]), size)
            weights[k] = 1.0
        elif st == "vertebra" and sample.landmarks:
            masks[k] = quad_mask(size, sample.landmarks, scale, body_height)
            weights[k] = 1.0
        elif st == "vertebra" and vertebra_boxes(sample.boxes):
            masks[k], weights[k] = box_weak_mask(size, vertebra_boxes(sample.boxes), scale)
        elif st == "disc" and disc_boxes(sample.boxes):  # a slice's recovered disc boxes mark all its discs
            masks[k], weights[k] = disc_mask(size, disc_boxes(sample.boxes), scale), 1.0
        elif st == "disc_caudal" and sample.meta.get("levels_certain") and disc_boxes(sample.boxes):
            low = [b for lvl in CAUDAL_LEVELS for b in disc_boxes(sample.boxes, lvl)]
            masks[k], weights[k] = disc_mask(size, low, scale), 1.0
        elif sample.masks:
            weights[k] = 1.0  # a film with mask files but none for this structure: truly absent
    return masks, weights


def _film_reader(path: Path) -> np.ndarray:
    """The segmenters' reader (``io.pixels.as_pixels``: RGB averaged, values outside [0, 1] rescaled)."""
    from spine_models.io.pixels import as_pixels

    return as_pixels(path)[0]


class SegmentationTorchDataset(Dataset):
    """``(image (C,H,W), targets (K,H,W) float32)`` in ``structures`` order: soft targets in [0, 1] from masks,
    corners or boxes (:func:`structure_targets`), -1 where a structure has no truth on that film
    (``data.vertebra_targets.encode_ignore``). Image and targets are made at the input size once (cached as
    float16 with ``cache``), then augmented together."""

    def __init__(
        self,
        samples: Sequence[Sample],
        structures: Sequence[str],
        size: "int | Sequence[int] | None" = None,
        normalization: dict[str, Any] | None = None,
        in_chans: int = 1,
        augment: Callable[..., dict] | None = None,
        resize_mode: str = "stretch",
        cache: bool = False,
        reader: Reader | None = None,
        *,
        cfg: PreprocessConfig | None = None,
        body_height: float = 1.0,
    ) -> None:
        self.samples = [s for s in samples if s.path is not None]
        self.structures = list(structures)
        self.cfg = _config(cfg, size, normalization, in_chans, resize_mode, interpolation="area-taller")
        if self.cfg.resize_mode != "stretch" or self.cfg.prescale is not None or self.cfg.crop != "none" or self.cfg.roi:
            raise ConfigError(f"segmentation training takes resize_mode='stretch' without prescale, crop or roi "
                              f"(targets are drawn on the stretched film), got {self.cfg.to_dict()}")
        self.size = self.cfg.size
        self.body_height = float(body_height)
        self.augment, self.cache = augment, cache
        self.reader = reader or _film_reader
        self._mem: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if i in self._mem:
            return self._mem[i]
        s = self.samples[i]
        pix = np.asarray(self.reader(Path(s.path)), dtype=np.float32)
        img = prepare_pixels(pix, self.cfg)
        masks, weights = structure_targets(s, self.structures, self.size, tuple(pix.shape[:2]), self.body_height)
        out = (img.astype(np.float32), masks, weights)
        if self.cache:
            self._mem[i] = (img.astype(np.float16), masks.astype(np.float16), weights.astype(np.uint8))
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from spine_models.data.vertebra_targets import encode_ignore

        img, masks, weights = self._load(i)
        img, masks, weights = img.astype(np.float32), masks.astype(np.float32), weights.astype(np.float32)
        k = len(masks)
        if self.augment is not None:
            r = self.augment(image=img.clip(0, 1), masks=list(masks) + list(weights))
            stacked = np.stack(r["masks"]).astype(np.float32)
            img, masks, weights = r["image"], stacked[:k], stacked[k:]
        x = finish_input(img, self.cfg)
        y = encode_ignore(masks, weights)
        return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(y))


class DetectionTorchDataset(Dataset):
    """``(image (3,H,W) float in [0, 1], {"boxes": (N,4) x1 y1 x2 y2, "labels": (N,)})`` per sample, torchvision's
    detection format.

    Each film is read once and kept as the uint8 image both detector families see (long side ``long_side``,
    ``transforms.fit_long_side``), boxes scaled onto it, clipped, and boxes under 1 px dropped; ``augment`` is an
    albumentations pipeline built with ``targets="bboxes"`` (``augmentation_preset(..., targets="bboxes")``), so the
    boxes follow every geometric step. Labels are class indices plus ``label_offset`` (1: torchvision keeps 0 for
    the background)."""

    def __init__(self, samples: Sequence[Sample], classes: Sequence[str], long_side: int, *,
                 augment: Callable[..., dict] | None = None, label_offset: int = 1, reader: Reader | None = None) -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        self.long_side = int(long_side)
        self.augment, self.label_offset = augment, int(label_offset)
        self.reader = reader or default_reader
        self._mem: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def item(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(uint8 image, float32 boxes on it, int64 labels) of sample ``i``, before augmentation."""
        if i in self._mem:
            return self._mem[i]
        from spine_models.data.transforms import fit_long_side

        s = self.samples[i]
        if s.path is None:
            raise DatasetError(f"sample {s.id!r} has no single image file; detection needs one image per sample", s.source or None)
        img, scale = fit_long_side(np.asarray(self.reader(Path(s.path)), dtype=np.float32), self.long_side)
        h, w = img.shape
        keep = [b for b in s.boxes if b.label in self.classes]
        boxes = np.array([[b.x1, b.y1, b.x2, b.y2] for b in keep], dtype=np.float32).reshape(-1, 4) * scale.astype(np.float32)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        ok = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        labels = np.array([self.classes.index(b.label) + self.label_offset for b in keep], dtype=np.int64)[ok]
        self._mem[i] = (img, boxes[ok], labels)
        return self._mem[i]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        img, boxes, labels = self.item(i)
        x = img.astype(np.float32) / 255.0
        if self.augment is not None:
            out = self.augment(image=x, bboxes=boxes, labels=labels)
            x = np.clip(out["image"], 0.0, 1.0)
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].expand(3, -1, -1)
        return t, {"boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                   "labels": torch.as_tensor(labels, dtype=torch.int64)}


def detection_collate(batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[list, list]:
    """(images, targets) as two lists: detection images differ in size and cannot be stacked."""
    return [b[0] for b in batch], [b[1] for b in batch]


class _BodyPatches(Dataset):
    """One item per (film, body) in ``self.index``; each item's random draws from its own generator (``seed`` fixes
    every draw, for validation; else torch's generator, so DataLoader workers differ)."""

    index: list[tuple[int, int]]
    seed: int | None

    def __len__(self) -> int:
        return len(self.index)

    def _rng(self, k: int) -> np.random.Generator:
        return np.random.default_rng(self.seed * 1_000_003 + k if self.seed is not None
                                     else int(torch.randint(0, 2**31 - 1, (1,))))


class VertebraPatchDataset(_BodyPatches):
    """(patch (1, P, P), targets (10,)) per body of ``data.vertebra_patches.patch_films``: the corner network's data.
    Each patch is cut around the expert's body with the AP U-Net's errors drawn in (tilt off by N(0, ``jitter_deg``),
    a quarter uniform within 2.5 times that; centre +-8 % of the width; size +-15 %); ``augment`` adds mirroring
    (corner order swapped) and the sources' looks (gamma, contrast, blur, noise); ``seed`` fixes every draw (validation)."""

    def __init__(self, films: Sequence[Any], *, size: int, side: float, jitter_deg: float, augment: bool,
                 seed: int | None = None) -> None:
        self.films, self.size, self.side, self.jitter, self.augment, self.seed = films, size, side, jitter_deg, augment, seed
        self.index = [(i, j) for i, f in enumerate(films) for j in range(len(f.corners))]

    def __getitem__(self, k: int):
        i, j = self.index[k]
        rng = self._rng(k)
        f = self.films[i]
        c, w, tilt = body_frame(f.corners[j])
        # the U-Net's tilt error: mostly a few degrees, sometimes far more (merged or cut bodies at the apex)
        err = rng.normal(0, self.jitter) if rng.random() < 0.75 else rng.uniform(-2.5, 2.5) * self.jitter
        angle, side, mirror = tilt + err, self.side * w * rng.uniform(0.85, 1.15), False
        c = c + rng.normal(0, 0.08 * w, 2)
        if self.augment:
            mirror = bool(rng.random() < 0.5)
        m = patch_matrix(c, angle, max(side, 1.0), size=self.size, mirror=mirror)
        x = extract_patch(f.image.astype(np.float32) / 255, m, self.size)
        if self.augment:
            x = np.clip(x, 0, 1) ** rng.uniform(0.6, 1.6) * rng.uniform(0.7, 1.3) + rng.uniform(-0.15, 0.15)
            if rng.random() < 0.3:
                import cv2

                x = cv2.GaussianBlur(x.astype(np.float32), (0, 0), rng.uniform(0.5, 1.5))
            if rng.random() < 0.3:
                x = x + rng.normal(0, 0.03, x.shape)
        y = corner_targets(to_patch(f.corners[j], m, mirror=mirror), self.size)
        return torch.from_numpy(standardize(x)[None]), torch.from_numpy(y)


class LevelPatchDataset(_BodyPatches):
    """(patch (1, P, P), level index) per labelled body of ``LevelFilm`` films: the level reader's data. Each patch is
    cut ``side`` body widths wide around the body with the locator's errors drawn in (centre +-12 % of width and
    height, size +-12 %, tilt N(0, 4 deg)); ``augment`` adds mirroring (a level is the same mirrored) and the sources'
    looks (gamma, contrast, blur); ``seed`` fixes every draw."""

    def __init__(self, films: Sequence[Any], *, size: int, side: float, augment: bool, seed: int | None = None) -> None:
        self.films, self.size, self.side, self.augment, self.seed = films, size, side, augment, seed
        self.index = [(i, j) for i, f in enumerate(films) for j in range(len(f.bodies)) if f.labels[j] >= 0]

    def __getitem__(self, k: int):
        i, j = self.index[k]
        rng = self._rng(k)
        f = self.films[i]
        b = f.bodies[j]
        c, w, tilt = body_frame(b)
        h = float(np.ptp(b[:, 1]))
        c = c + rng.normal(0, 0.12, 2) * np.array([w, h])
        side = self.side * w * float(np.exp(rng.normal(0, 0.12)))
        mirror = bool(self.augment and rng.random() < 0.5)
        m = patch_matrix(c, tilt + rng.normal(0, 4.0), max(side, 1.0), size=self.size, mirror=mirror)
        x = extract_patch(f.image.astype(np.float32) / 255, m, self.size)
        if self.augment:
            x = np.clip(x, 0, 1) ** rng.uniform(0.6, 1.6) * rng.uniform(0.7, 1.3) + rng.uniform(-0.15, 0.15)
            if rng.random() < 0.3:
                import cv2

                x = cv2.GaussianBlur(x.astype(np.float32), (0, 0), rng.uniform(0.5, 1.5))
        return torch.from_numpy(standardize(x)[None]), int(f.labels[j])
