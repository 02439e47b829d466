"""torch ``Dataset`` wrappers over :class:`Sample` lists (classification, two-view, segmentation).

Why: every trainer reads images the same way — ``spine_models.io.read_image`` -> optional augmentation
(train part only: build the train dataset with ``augment=augmentation_preset(...)`` and val/test with
``augment=None``) -> :func:`to_model_input`. Films are large and the CPU is scarce, so with ``cache=True``
each image is decoded once, shrunk to at most 2x the input size and kept in memory as uint16.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from spine_models.data.records import Sample
from spine_models.data.transforms import _hw, resize_2d, to_model_input
from spine_models.errors import DatasetError

__all__ = ["ClassificationTorchDataset", "TwoViewTorchDataset", "SegmentationTorchDataset", "default_reader",
           "DetectionTorchDataset", "detection_collate"]

Reader = Callable[[Path], np.ndarray]


def default_reader(path: Path) -> np.ndarray:
    """2-D float32 pixels in [0, 1] via the project's one image reader (DICOM, 16-bit PNG, JPEG...)."""
    from spine_models.io import read_image

    return read_image(path).pixels


class _ImageStore:
    """Reads images, optionally caching a shrunk uint16 copy per path."""

    def __init__(self, size: "int | Sequence[int]", cache: bool, reader: Reader | None) -> None:
        self.size = _hw(size)
        self.cache = cache
        self.reader = reader or default_reader
        self._mem: dict[str, np.ndarray] = {}

    def get(self, path: Path) -> np.ndarray:
        key = str(path)
        if key in self._mem:
            return self._mem[key].astype(np.float32) / 65535.0
        px = np.asarray(self.reader(Path(path)), dtype=np.float32)
        if not self.cache:
            return px
        limit = 2 * max(self.size)
        h, w = px.shape[:2]
        if max(h, w) > limit:
            s = limit / max(h, w)
            px, _ = resize_2d(px, (max(1, round(h * s)), max(1, round(w * s))), "stretch")
        self._mem[key] = np.round(np.clip(px, 0.0, 1.0) * 65535.0).astype(np.uint16)
        return self._mem[key].astype(np.float32) / 65535.0


class ClassificationTorchDataset(Dataset):
    """``(tensor (C,H,W), label_index)`` per sample."""

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str],
        size: "int | Sequence[int]",
        normalization: dict[str, Any] | None = None,
        in_chans: int = 1,
        augment: Callable[..., dict] | None = None,
        resize_mode: str = "stretch",
        cache: bool = False,
        reader: Reader | None = None,
    ) -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        index = {c: i for i, c in enumerate(self.classes)}
        bad = sorted({str(s.label) for s in self.samples if s.label not in index})
        if bad:
            raise DatasetError(f"labels {bad} are not among the classes {self.classes}; check --data and the model's classes")
        self.targets = [index[s.label] for s in self.samples]
        self.size, self.normalization, self.in_chans = size, normalization, in_chans
        self.augment, self.resize_mode = augment, resize_mode
        self.store = _ImageStore(size, cache, reader)

    def __len__(self) -> int:
        return len(self.samples)

    def _prepare(self, path: Path) -> torch.Tensor:
        px = self.store.get(path)
        if self.augment is not None:
            px = self.augment(image=px)["image"]
        return torch.from_numpy(to_model_input(px, self.size, self.normalization, self.in_chans, self.resize_mode))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        s = self.samples[i]
        if s.path is None:
            raise DatasetError(f"sample {s.id!r} has no single image (a two-view sample?); use TwoViewTorchDataset")
        return self._prepare(Path(s.path)), self.targets[i]


class TwoViewTorchDataset(ClassificationTorchDataset):
    """``(ap_tensor, lat_tensor, label_index)`` per two-view sample (augmentation drawn per view)."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:  # type: ignore[override]
        s = self.samples[i]
        if "ap" not in s.views or "lat" not in s.views:
            raise DatasetError(f"sample {s.id!r} lacks an AP or lateral view ({sorted(s.views)}); load the two-view layout")
        return self._prepare(Path(s.views["ap"])), self._prepare(Path(s.views["lat"])), self.targets[i]


def _read_mask(path: Path) -> np.ndarray:
    import cv2

    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise DatasetError("mask file is not a readable image", path)
    if m.ndim == 3:
        m = m.max(axis=2)
    return (m > 0).astype(np.uint8)


class SegmentationTorchDataset(Dataset):
    """``(image (C,H,W), masks (K,H,W) float32 in {0,1})`` in ``structures`` order; absent masks are zeros."""

    def __init__(
        self,
        samples: Sequence[Sample],
        structures: Sequence[str],
        size: "int | Sequence[int]",
        normalization: dict[str, Any] | None = None,
        in_chans: int = 1,
        augment: Callable[..., dict] | None = None,
        resize_mode: str = "stretch",
        cache: bool = False,
        reader: Reader | None = None,
    ) -> None:
        self.samples = [s for s in samples if s.path is not None]
        self.structures = list(structures)
        self.size, self.normalization, self.in_chans = size, normalization, in_chans
        self.augment, self.resize_mode = augment, resize_mode
        self.store = _ImageStore(size, False, reader)  # masks must match the image grid: no shrink cache
        self.cache = cache
        self._mem: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i in self._mem:
            img16, masks = self._mem[i]
            return img16.astype(np.float32) / 65535.0, masks
        s = self.samples[i]
        img = self.store.get(Path(s.path))
        masks = np.zeros((len(self.structures),) + img.shape[:2], np.uint8)
        for k, st in enumerate(self.structures):
            if st in s.masks:
                m = _read_mask(Path(s.masks[st]))
                if m.shape != img.shape[:2]:
                    raise DatasetError(f"mask {m.shape} and image {img.shape[:2]} sizes differ for sample {s.id!r}", s.masks[st])
                masks[k] = m
        if self.cache:
            limit = 2 * max(_hw(self.size))
            h, w = img.shape[:2]
            if max(h, w) > limit:
                sc = limit / max(h, w)
                nh, nw = max(1, round(h * sc)), max(1, round(w * sc))
                img, _ = resize_2d(img, (nh, nw))
                masks = np.stack([resize_2d(m, (nh, nw), nearest=True)[0] for m in masks]) if len(masks) else masks.reshape(0, nh, nw)
            self._mem[i] = (np.round(np.clip(img, 0, 1) * 65535).astype(np.uint16), masks)
        return img, masks

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, masks = self._load(i)
        if self.augment is not None:
            out = self.augment(image=img, masks=list(masks))
            img = out["image"]
            masks = np.stack(out["masks"]) if len(out["masks"]) else np.zeros((0,) + img.shape[:2], np.uint8)
        x = to_model_input(img, self.size, self.normalization, self.in_chans, self.resize_mode)
        h, w = _hw(self.size)
        y = np.stack([resize_2d(m.astype(np.uint8), (h, w), self.resize_mode, nearest=True)[0] for m in masks]) \
            if len(masks) else np.zeros((0, h, w), np.uint8)
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))


class DetectionTorchDataset(Dataset):
    """``(image (3,H,W) float in [0, 1], {"boxes": (N,4) x1 y1 x2 y2, "labels": (N,)})`` per sample, torchvision's
    detection format.

    Each film is read once and kept as the uint8 image both detector families see (long side ``long_side``,
    ``transforms.long_side_uint8``), boxes scaled onto it, clipped, and boxes under 1 px dropped; ``augment`` is an
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
        from spine_models.data.transforms import long_side_uint8

        s = self.samples[i]
        if s.path is None:
            raise DatasetError(f"sample {s.id!r} has no single image file; detection needs one image per sample", s.source or None)
        img, scale = long_side_uint8(np.asarray(self.reader(Path(s.path)), dtype=np.float32), self.long_side)
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
