"""Detect engine: train / Predictor / evaluate for YOLO (Ultralytics) and Faster R-CNN (torchvision).

Why one engine for two families: the study compared them on the same data and the same report, so
both read the same :class:`SpineDataset`, see the same 8-bit image (long side resized to ``imgsz``),
get a score threshold chosen the same way on validation (image-level Youden), and are scored by
the same functions in ``metrics/detection.py``. YOLO trains with Ultralytics' own trainer on a YOLO
view of the split written into the run folder; Faster R-CNN with a short torch loop here.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from spine_models.data.records import Sample, SpineDataset
from spine_models.data.transforms import PreprocessConfig, preprocess
from spine_models.data.transforms import fit_long_side as prepare_image  # the 8-bit long-side image both families train on
from spine_models.engine.base import TASK_OPTIONS, BasePredictor, Film
from spine_models.engine.callbacks import Callback, CallbackList, StopTraining
from spine_models.engine.trainer import init_from_run
from spine_models.errors import ConfigError, DatasetError
from spine_models.io.pixels import as_pixels
from spine_models.metrics.detection import (ImageBoxes, detection_map, detection_map_ci, image_level_sens_spec,
                                            image_scores, sens_spec_ci, youden_threshold)
from spine_models.models.cards import ModelCard, load_state, save_checkpoint_file
from spine_models.models.detection import ensure_ultralytics_offline, is_yolo
from spine_models.models.registry import create_model, get_spec
from spine_models.results.detection import Box, DetectionResult

__all__ = ["DETECTION_CLASSES", "train", "Predictor", "evaluate", "choose_threshold", "prepare_image", "read_pixels", "split_by_box_classes"]

DETECTION_CLASSES = ("lumbar_implant", "scoliosis", "vertebra")  # SPEC order; unknown names go after


# ----------------------------------------------------------------------------------------- images
def read_pixels(image: Any) -> tuple[np.ndarray, str]:
    """(float32 HxW in [0, 1], de-identified name) from a Radiograph, a 2-D array or a file path."""
    pixels, name, _ = as_pixels(image)
    return pixels, name


# ---------------------------------------------------------------------------------------- predict
class Predictor(BasePredictor):
    """Load a detect card's weights once; ``predict(image)`` -> :class:`DetectionResult` in original pixels."""

    task = "detect"
    OPTIONS = TASK_OPTIONS["detect"]

    def __init__(self, card: ModelCard, device: Any = None, *, model: Any = None) -> None:
        super().__init__(card, device)
        self.classes = list(card.classes or [])
        self.imgsz = int(card.input_size if isinstance(card.input_size, int) else max(card.input_size))
        self.threshold = float(card.thresholds.get("score", 0.5))
        pre = card.preprocessing or {}
        self.conf_min = float(pre.get("conf_min", 0.001))
        self.nms_iou = float(pre.get("nms_iou", 0.6))
        self.max_det = int(pre.get("max_det", 100))
        self.yolo = is_yolo(card.arch)
        self.stride = int(pre.get("stride", 32))
        self.pre = PreprocessConfig.from_card(card)
        self._given_model = model is not None  # a test's or a trainer's in-memory model: its results are not kept per film
        if model is None:
            sd, kwargs = load_state(card)
            model = create_model(card.arch, task="detect", **kwargs)
            model.load_state_dict(sd)
        self.model = model.to(self.device).float().eval()

    def preprocess(self, film: Film, **_: Any) -> Any:
        """(1, 3, h, w) input by ``data.transforms.preprocess``: the 8-bit film with long side ``imgsz`` that
        training saw (YOLO: padded to the stride, Ultralytics' grey); the way back in ``film.extra["geometry"]``."""
        x, film.extra["geometry"] = preprocess(film.pixels, self.pre)
        return x

    def infer(self, x: Any, **_: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes x1 y1 x2 y2 on the input, scores, class indices)."""
        import torch

        with torch.inference_mode():
            return self._yolo(x) if self.yolo else self._rcnn(x)

    def postprocess(self, raw: tuple[np.ndarray, np.ndarray, np.ndarray], film: Film, x: Any, **_: Any) -> DetectionResult:
        """Boxes back on the film's pixels (``Geometry.boxes_to_film``: padding off, scaled, clipped), best first."""
        boxes, scores, labels = raw
        h, w = film.pixels.shape
        boxes = film.extra["geometry"].boxes_to_film(boxes)
        out = [Box(*map(float, b), label=self.classes[int(c)], score=float(s))
               for b, s, c in zip(boxes, scores, labels) if 0 <= int(c) < len(self.classes)]
        out.sort(key=lambda b: -b.score)
        return DetectionResult(model_id=self.card.id, source=film.name, image_size=(h, w), device=str(self.device),
                               classes=list(self.classes), boxes=out, threshold=self.threshold)

    def memo_key(self, film: Any, options: Any, *parts: Any) -> tuple | None:
        return None if self._given_model else super().memo_key(film, options, self.threshold, self.conf_min,
                                                                 self.nms_iou, self.max_det, self.stride, *parts)

    def _yolo(self, x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from ultralytics.utils.nms import non_max_suppression

        pred = self.model(x.to(self.device))
        det = non_max_suppression(pred, conf_thres=self.conf_min, iou_thres=self.nms_iou, max_det=self.max_det,
                                  nc=len(self.classes))[0].cpu().numpy()
        return det[:, :4].astype(np.float64), det[:, 4], det[:, 5].astype(int)

    def _rcnn(self, x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.model([x[0].to(self.device)])[0]
        return (out["boxes"].cpu().numpy().astype(np.float64), out["scores"].cpu().numpy(),
                out["labels"].cpu().numpy().astype(int) - 1)


# ---------------------------------------------------------------------------------------- evaluate
def _truth(sample: Sample, classes: Sequence[str]) -> ImageBoxes:
    keep = [b for b in sample.boxes if b.label in classes]
    return ImageBoxes.make([[b.x1, b.y1, b.x2, b.y2] for b in keep], [b.label for b in keep])


def _as_pred(res: DetectionResult) -> ImageBoxes:
    return ImageBoxes.make([[b.x1, b.y1, b.x2, b.y2] for b in res.boxes], [b.label for b in res.boxes],
                           [b.score for b in res.boxes])


def _image_path(s: Sample) -> Path:
    if s.path is None:
        raise DatasetError(f"sample {s.id!r} has no single image file; detection needs one image per sample", s.source or None)
    return Path(s.path)


def _score(preds: list[ImageBoxes], truths: list[ImageBoxes], classes: Sequence[str], threshold: float,
           n_resamples: int, seed: int = 0) -> dict:
    """SPEC detect metrics (each M) from predictions and truths of the same images."""
    maps = detection_map_ci(preds, truths, classes, n_resamples=n_resamples, seed=seed)
    per_class, counts = {}, {}
    for c in classes:
        y = np.array([c in t.labels for t in truths], dtype=bool)
        sens, spec = sens_spec_ci(y, image_scores(preds, c), threshold, n_resamples=n_resamples, seed=seed)
        per_class[c] = {"ap50": maps["ap50"][c], "sensitivity": sens, "specificity": spec}  # only M (report schema)
        counts[c] = {"positive": int(y.sum()), "negative": int((~y).sum())}
    return {"map50": maps["map50"], "map50_95": maps["map50_95"], "per_class": per_class,
            "images_per_class": counts, "threshold": float(threshold), "n_images": len(truths)}


def evaluate(card: ModelCard, dataset: SpineDataset, *, quiet: bool = False, n_resamples: int = 1000,
             predictor: Predictor | None = None) -> dict:
    """``{"metrics": SPEC detect metrics, "predictions": [one dict per image]}``; CIs over images."""
    from spine_models._progress import progress

    pred = predictor or Predictor(card)
    classes = list(card.classes or [])
    preds, truths, rows = [], [], []
    for s in progress(dataset.samples, total=len(dataset), desc="evaluate", quiet=quiet):
        res = pred.predict(_image_path(s))
        p, t = _as_pred(res), _truth(s, classes)
        preds.append(p)
        truths.append(t)
        rows.append({"id": s.id, "patient_id": s.patient_id, "findings": res.findings(),
                     "truth": {c: c in t.labels for c in classes}, "boxes": [b.to_dict() for b in res.boxes
                                                                            if b.score >= min(0.05, res.threshold)]})
    if not truths:
        raise DatasetError(f"dataset {dataset.name!r} holds no images to evaluate")
    metrics = _score(preds, truths, classes, pred.threshold, n_resamples)
    return {"metrics": metrics, "predictions": rows}


# ------------------------------------------------------------------------------------------ train
def _load_data(data: Any) -> SpineDataset:
    if isinstance(data, SpineDataset):
        return data
    if data is None or data == [] or data == "":
        raise ConfigError("detect config: 'data' is empty; give --data DIR (YOLO data.yaml, COCO json or synth folder)")
    from spine_models.data.adapters import load_dataset

    return load_dataset(data, task="detect")


def _classes(ds: SpineDataset, wanted: Sequence[str] | None) -> list[str]:
    present: list[str] = list(ds.box_classes)
    for s in ds.samples:
        for b in s.boxes:
            if b.label not in present:
                present.append(b.label)
    if wanted:
        missing = [c for c in wanted if c not in present]
        if missing:
            raise DatasetError(f"dataset {ds.name!r}: no boxes of class(es) {missing}; classes present: {present or 'none'}")
        return list(wanted)
    if not present:
        raise DatasetError(f"dataset {ds.name!r} holds no boxes; detection needs YOLO labels, a COCO json or the synth layout")
    order = {c: i for i, c in enumerate(DETECTION_CLASSES)}
    return sorted(present, key=lambda c: (order.get(c, len(order)), c))


def split_by_box_classes(ds: SpineDataset, split: Any, seed: int, classes: Sequence[str],
                         **split_kwargs: Any) -> dict[str, list[Sample]]:
    """Per-patient split (``data.splits``) stratified by which detection classes an image holds.

    Training uses it, and ``evaluate --split test`` rebuilds the same test part with it.

    Why not the samples' own ``label``: in the synth layout that is the classification class, while the
    detector needs implant and non-implant films in every part.
    """
    import dataclasses

    from spine_models.data.splits import split_dataset

    shown = [c for c in classes if c != "vertebra"] or list(classes)
    proxies, origin = [], {}
    for s in ds.samples:
        key = "+".join(c for c in shown if any(b.label == c for b in s.boxes)) or "none"
        p = dataclasses.replace(s, label=key)
        origin[id(p)] = s
        proxies.append(p)
    keys = sorted({p.label for p in proxies})
    parts = split_dataset(SpineDataset(ds.name, proxies, classes=keys), split, seed=seed, **split_kwargs)
    return {k: [origin[id(p)] for p in v.samples] for k, v in parts.items()}


def _cache_images(samples: Sequence[Sample], long_side: int, folder: Path, quiet: bool) -> list[tuple[Path, float, tuple[int, int]]]:
    """Write each sample as an 8-bit PNG resized to ``long_side``; (file, (h, w) original)."""
    import cv2

    from spine_models._progress import progress

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for s in progress(samples, total=len(samples), desc="prepare images", quiet=quiet):
        pixels, _ = read_pixels(_image_path(s))
        img, _ = prepare_image(pixels, long_side)
        f = folder / f"{_safe(s.id)}.png"
        cv2.imwrite(str(f), img)
        out.append((f, pixels.shape))
    return out


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def _write_yolo_view(parts: dict[str, list[Sample]], classes: list[str], imgsz: int, root: Path, quiet: bool) -> Path:
    """YOLO dataset (images/, labels/, data.yaml) of the train/val parts, images pre-resized to 8-bit."""
    import yaml

    if root.exists():
        shutil.rmtree(root)
    for name, samples in parts.items():
        cached = _cache_images(samples, imgsz, root / "images" / name, quiet)
        (root / "labels" / name).mkdir(parents=True, exist_ok=True)
        for s, (f, (h, w)) in zip(samples, cached):
            lines = []
            for b in s.boxes:
                if b.label not in classes:
                    continue
                x1, x2 = sorted((max(0.0, min(b.x1, w)), max(0.0, min(b.x2, w))))
                y1, y2 = sorted((max(0.0, min(b.y1, h)), max(0.0, min(b.y2, h))))
                if x2 - x1 < 1 or y2 - y1 < 1:
                    continue
                cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
                lines.append(f"{classes.index(b.label)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
            (root / "labels" / name / f"{f.stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"path": str(root.resolve()), "train": "images/train", "val": "images/val",
                                         "names": {i: c for i, c in enumerate(classes)}}, sort_keys=False))
    return data_yaml


class _UltralyticsBridge:
    """Forward Ultralytics trainer events to our callbacks; a stop request ends training between batches."""

    def __init__(self, cbs: CallbackList, history: list[dict]) -> None:
        self.cbs, self.history, self.stopped, self.finished = cbs, history, False, False
        self.best: dict[str, float] = {}
        self.step = 0
        self.t0 = time.perf_counter()

    def attach(self, yolo: Any) -> None:
        yolo.add_callback("on_train_epoch_start", self.epoch_start)
        yolo.add_callback("on_train_batch_end", self.batch_end)
        yolo.add_callback("on_fit_epoch_end", self.epoch_end)

    def epoch_start(self, trainer: Any) -> None:
        self.t0, self.step = time.perf_counter(), 0
        self.cbs.on_epoch_start(trainer.epoch, trainer.epochs)

    def batch_end(self, trainer: Any) -> None:
        loss = float(sum(v for v in trainer.tloss.values())) if isinstance(trainer.tloss, dict) else \
            float(trainer.tloss.sum()) if trainer.tloss is not None else float("nan")
        self.step += 1
        self.cbs.on_batch_end(self.step, len(trainer.train_loader), loss)
        if self.cbs.should_stop():
            self.stopped = trainer.stop = True

    def epoch_end(self, trainer: Any) -> None:
        m = {k: float(v) for k, v in (trainer.metrics or {}).items() if isinstance(v, (int, float, np.floating))}
        if self.finished:  # final_eval re-fires this hook with the best checkpoint's validation metrics
            self.best = m
            return
        self.finished = bool(trainer.stop)
        if isinstance(trainer.tloss, dict):
            m.update({f"train/{k}": float(v) for k, v in trainer.tloss.items()})
        m["time_s"] = round(time.perf_counter() - self.t0, 2)
        self.history.append({"epoch": trainer.epoch + 1, **m})
        self.cbs.on_epoch_end(trainer.epoch + 1, m)
        if self.cbs.should_stop():
            self.stopped = trainer.stop = True


def _train_yolo(cfg: dict, arch: str, classes: list[str], parts: dict[str, list[Sample]], out_dir: Path,
                cbs: CallbackList, history: list[dict], quiet: bool) -> Any:
    ensure_ultralytics_offline()
    import torch
    from ultralytics import YOLO

    from spine_models.models.detection import YOLO_YAMLS

    imgsz = int(cfg["imgsz"])
    data_yaml = _write_yolo_view(parts, classes, imgsz, out_dir / "yolo_data", quiet)
    yolo = YOLO(YOLO_YAMLS[arch], task="detect")
    bridge = _UltralyticsBridge(cbs, history)
    bridge.attach(yolo)
    device = cfg.get("device") or ("0" if torch.cuda.is_available() else "cpu")
    args = dict(data=str(data_yaml), epochs=int(cfg["epochs"]), imgsz=imgsz, batch=int(cfg["batch"]), device=device,
                workers=int(cfg["workers"]), amp=device != "cpu", plots=False, project=str(out_dir.resolve()),
                name="ultralytics", exist_ok=True, seed=int(cfg["seed"]), deterministic=True, pretrained=False,
                verbose=not quiet, patience=int(cfg["patience"]), val=True, single_cls=False, cache=False)
    if cfg.get("lr"):
        args["lr0"] = float(cfg["lr"])
    args.update(cfg.get("yolo_args") or {})
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    if quiet:
        LOGGER.setLevel(40)
    try:
        yolo.train(**args)
    finally:
        LOGGER.setLevel(level)
    if bridge.stopped:
        raise StopTraining("training stopped by a callback")
    last = Path(yolo.trainer.last)
    if last.exists():
        shutil.copyfile(last, out_dir / "last.pt")  # Ultralytics' own resumable checkpoint
    return yolo.model.float().cpu()


def _rcnn_batches(items: list[tuple[np.ndarray, np.ndarray, np.ndarray]], batch: int, rng: np.random.Generator,
                  augment: bool):
    import torch

    order = rng.permutation(len(items))
    for i in range(0, len(order), batch):
        imgs, targets = [], []
        for k in order[i:i + batch]:
            img, boxes, labels = items[k]
            boxes = boxes.copy()
            if augment and rng.random() < 0.5:
                img = img[:, ::-1]
                w = img.shape[1]
                boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
            if augment:
                gain = float(rng.uniform(0.8, 1.2))
                x = torch.from_numpy(np.ascontiguousarray(img)).float().div(255).mul(gain).clamp(0, 1)
            else:
                x = torch.from_numpy(np.ascontiguousarray(img)).float().div(255)
            imgs.append(x[None].expand(3, -1, -1))
            targets.append({"boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                            "labels": torch.as_tensor(labels, dtype=torch.int64)})
        yield imgs, targets


def _rcnn_items(samples: list[Sample], classes: list[str], long_side: int, quiet: bool):
    from spine_models._progress import progress

    items = []
    for s in progress(samples, total=len(samples), desc="prepare images", quiet=quiet):
        pixels, _ = read_pixels(_image_path(s))
        img, scale = prepare_image(pixels, long_side)
        h, w = img.shape
        keep = [b for b in s.boxes if b.label in classes]
        boxes = np.array([[b.x1, b.y1, b.x2, b.y2] for b in keep], dtype=np.float32).reshape(-1, 4) * scale.astype(np.float32)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        ok = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        labels = np.array([classes.index(b.label) + 1 for b in keep], dtype=np.int64)[ok]
        items.append((img, boxes[ok], labels))
    return items


def _train_rcnn(cfg: dict, arch: str, classes: list[str], parts: dict[str, list[Sample]], out_dir: Path,
                cbs: CallbackList, history: list[dict], arch_kwargs: dict, quiet: bool) -> Any:
    import torch

    from spine_models._env import get_device

    device = get_device(cfg.get("device"))
    torch.manual_seed(int(cfg["seed"]))
    rng = np.random.default_rng(int(cfg["seed"]))
    model = create_model(arch, task="detect", **arch_kwargs)
    init_from_run(model, cfg.get("init"), "detect", cbs.on_log)
    model = model.to(device)
    items = _rcnn_items(parts["train"], classes, int(cfg["imgsz"]), quiet)
    epochs, batch = int(cfg["epochs"]), int(cfg["batch"])
    params = [p for p in model.parameters() if p.requires_grad]
    kind = str(cfg.get("optimizer") or "sgd").lower()
    if kind == "sgd":  # torchvision's detection reference recipe (momentum 0.9, wd 1e-4) with linear warmup
        lr = float(cfg["lr"] or 0.01)
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    elif kind == "adamw":
        lr = float(cfg["lr"] or 2e-4)  # 1e-3 diverged (loss 188 at epoch 4) from scratch on drawn films
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    else:
        raise ConfigError(f"detect optimizer {kind!r}: use sgd or adamw (Faster R-CNN only; YOLO: yolo_args)")
    steps_per_epoch = math.ceil(len(items) / batch)
    total = max(1, epochs * steps_per_epoch)
    warm = min(100, total // 5)
    budget_s = float(cfg.get("max_minutes") or 0) * 60.0
    t_start = time.perf_counter()

    def lr_factor(i: int) -> float:
        """Linear warmup, then cosine to 0 over the planned steps or the time budget, whichever ends first:
        on a shared CPU the budget decides, and the model still ends annealed instead of cut at full lr."""
        ramp = (i + 1) / (warm + 1) if i < warm else 1.0
        frac = max(0, i - warm) / max(1, total - warm)
        if budget_s > 0:
            frac = max(frac, (time.perf_counter() - t_start) / budget_s)
        return ramp * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    step = 0
    out_of_time = False
    for epoch in range(epochs):
        cbs.on_epoch_start(epoch, epochs)
        model.train()
        t0, losses = time.perf_counter(), []
        for k, (imgs, targets) in enumerate(_rcnn_batches(items, batch, rng, bool(cfg["augment"]))):
            imgs = [x.to(device) for x in imgs]
            targets = [{kk: v.to(device) for kk, v in t.items()} for t in targets]
            loss_dict = model(imgs, targets)
            loss = sum(loss_dict.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"Faster R-CNN loss became {float(loss)} at epoch {epoch + 1}; lower lr (now {lr})")
            for g in opt.param_groups:
                g["lr"] = lr * lr_factor(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
            cbs.on_batch_end(k + 1, steps_per_epoch, losses[-1])
            if cbs.should_stop():
                raise StopTraining("training stopped by a callback")
            if budget_s > 0 and time.perf_counter() - t_start >= budget_s:
                out_of_time = True  # lr has annealed to 0 by now: stopping mid-epoch loses nothing
                break
        loss_mean = float(np.mean(losses)) if losses else float("nan")
        m = {"train/loss": loss_mean, "train_loss": loss_mean, "lr": lr * lr_factor(max(0, step - 1)), "steps": step,
             "time_s": round(time.perf_counter() - t0, 2)}
        history.append({"epoch": epoch + 1, **m})
        cbs.on_epoch_end(epoch + 1, m)
        torch.save({"epoch": epoch + 1, "step": step, "arch": arch, "arch_kwargs": arch_kwargs, "model": model.state_dict(),
                    "optimizer": opt.state_dict()}, out_dir / "last.pt")
        if out_of_time:
            cbs.on_log(f"time budget max_minutes={cfg['max_minutes']} reached after {step} steps (epoch {epoch + 1} of {epochs})")
            break
    return model.cpu().eval()


def _predict_all(pred: Predictor, samples: Sequence[Sample], classes: list[str], quiet: bool) -> tuple[list, list]:
    from spine_models._progress import progress

    preds, truths = [], []
    for s in progress(samples, total=len(samples), desc="validate", quiet=quiet):
        preds.append(_as_pred(pred.predict(_image_path(s))))
        truths.append(_truth(s, classes))
    return preds, truths


def choose_threshold(preds: list[ImageBoxes], truths: list[ImageBoxes], classes: list[str]) -> tuple[float, str]:
    """Score threshold maximising image-level Youden J of ``lumbar_implant`` (else the mean J over classes)."""
    def yt(c):
        return np.array([c in t.labels for t in truths], dtype=bool)

    if "lumbar_implant" in classes:
        y = yt("lumbar_implant")
        if y.any() and not y.all():
            t, _ = youden_threshold(y, image_scores(preds, "lumbar_implant"))
            return t, "youden(lumbar_implant)"
    usable = [c for c in classes if yt(c).any() and not yt(c).all()]
    if not usable:
        return 0.25, "default 0.25 (validation has no image without / with each class)"
    cands = np.unique(np.concatenate([image_scores(preds, c) for c in usable]))
    cuts = np.unique(np.concatenate([(cands[:-1] + cands[1:]) / 2, [0.25]])) if len(cands) > 1 else np.array([0.25])
    cuts = cuts[cuts >= 0.01] if (cuts >= 0.01).any() else np.array([0.25])
    j = np.array([np.mean([sum(image_level_sens_spec(yt(c), image_scores(preds, c), t)) - 1 for c in usable]) for t in cuts])
    best = np.flatnonzero(j >= j.max() - 1e-12)
    return float(cuts[best[len(best) // 2]]), f"youden(mean of {', '.join(usable)})"


def train(cfg: dict, out_dir: str | Path, *, callbacks: list[Callback] | None = None, quiet: bool = False) -> Path:
    """Train a detector as ``cfg`` says (``spine_models/cfg/detect.yaml``); returns the card path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arch = str(cfg["model"])
    get_spec(arch, "detect")  # unknown names fail here, listing the valid ones
    cbs = CallbackList(list(callbacks or []))
    ds = _load_data(cfg["data"])
    classes = _classes(ds, cfg.get("classes"))
    split = split_by_box_classes(ds, str(cfg["split"]), int(cfg["seed"]), classes)
    parts = {k: [s for s in v if s.path is not None] for k, v in split.items()}
    if not parts.get("train"):
        raise DatasetError(f"dataset {ds.name!r}: the training split is empty ({len(ds)} images, split {cfg['split']})")
    notes = []
    if not parts.get("val"):
        parts["val"] = parts["train"]
        notes.append("validation split empty: threshold chosen on the training images")
    imgsz = int(cfg["imgsz"])
    arch_kwargs: dict[str, Any] = {"nc": len(classes)}
    if not is_yolo(arch):
        arch_kwargs.update(min_size=int(cfg["min_size"] or imgsz), max_size=int(cfg["max_size"] or imgsz))
    else:
        from spine_models.models.detection import YOLO_YAMLS

        if cfg.get("init") not in (None, "", "scratch"):
            raise ConfigError(f"detect config: init={cfg['init']!r} is for Faster R-CNN; YOLO models start from their "
                              "YAML with random weights")
        arch_kwargs["yaml"] = YOLO_YAMLS[arch]
    cbs.on_train_start(dict(cfg, data=str(cfg["data"]) if isinstance(cfg["data"], SpineDataset) else cfg["data"]))
    t0 = time.perf_counter()
    history: list[dict] = []
    fit_parts = {"train": parts["train"], "val": parts["val"]}
    if is_yolo(arch):
        model = _train_yolo(cfg, arch, classes, fit_parts, out_dir, cbs, history, quiet)
    else:
        model = _train_rcnn(cfg, arch, classes, fit_parts, out_dir, cbs, history, arch_kwargs, quiet)
    train_s = time.perf_counter() - t0

    model_id = str(cfg.get("id") or f"{arch}-{out_dir.name}")
    weights = (out_dir / "model.pt").resolve()
    preprocessing = {"long_side": imgsz, "letterbox": is_yolo(arch), "stride": 32, "bits": 8, "conf_min": float(cfg["conf_min"]),
                     "nms_iou": float(cfg["nms_iou"]), "max_det": int(cfg["max_det"])}
    card = ModelCard(id=model_id, task="detect", arch=arch, view=str(cfg["view"]), trained_on=ds.name, weights=str(weights),
                     sha256="", input_size=imgsz, train_command=str(cfg.get("train_command") or ""),
                     license="Apache-2.0" if not is_yolo(arch) else "AGPL-3.0 (Ultralytics)", classes=classes,
                     preprocessing=preprocessing, arch_kwargs=arch_kwargs, notes=notes,
                     normalization={"kind": "io.read_image display values [0, 1] -> uint8"},
                     created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    model = model.float().eval()
    pred = Predictor(card, device=cfg.get("device"), model=model)
    vp, vt = _predict_all(pred, parts["val"], classes, quiet)
    thr, how = choose_threshold(vp, vt, classes)
    card.thresholds = {"score": round(thr, 4)}
    card.notes.append(f"score threshold {thr:.3f} chosen on validation by {how}")
    pred.threshold = thr
    val_map = detection_map(vp, vt, classes)
    eval_name = "test" if parts.get("test") else "val"
    n_res = int(cfg["n_resamples"])
    ep, et = _predict_all(pred, parts[eval_name], classes, quiet) if eval_name == "test" else (vp, vt)
    card.metrics = _score(ep, et, classes, thr, n_res)
    card.data = {"split": eval_name, "n": len(et), "n_patients": len({s.patient_id for s in parts[eval_name]}),
                 "classes": classes, "split_ratios": str(cfg["split"]), "seed": int(cfg["seed"])}
    card.sha256 = save_checkpoint_file(weights, arch=arch, task="detect", state_dict=model.state_dict(),
                                       arch_kwargs=arch_kwargs, half=True)
    card.to_json(out_dir / "card.json")
    summary = {"arch": arch, "classes": classes, "epochs": len(history), "train_seconds": round(train_s, 1),
               "threshold": thr, "val_map50": val_map["map50"], "val_map50_95": val_map["map50_95"],
               "n": {k: len(v) for k, v in parts.items()}}
    (out_dir / "history.json").write_text(json.dumps({"epochs": history, "summary": summary}, indent=2, default=float) + "\n")
    cbs.on_train_end(summary)
    return out_dir / "card.json"
