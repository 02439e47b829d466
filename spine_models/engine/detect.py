"""Detect engine: train / Predictor / evaluate for YOLO (Ultralytics) and Faster R-CNN (torchvision).

Why one engine for two families: the study compared them on the same data and the same report, so
both read the same :class:`SpineDataset`, see the same 8-bit image (long side resized to ``imgsz``),
get a score threshold chosen the same way on validation (image-level Youden), and are scored by
the same functions in ``metrics/detection.py``. Both train through one :class:`DetectTrainer`
(``engine.trainer.BaseTrainer``): Faster R-CNN in the engines' one ``fit`` loop, YOLO behind a hook that drives
Ultralytics' own trainer on a YOLO view of the split written into the run folder.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from spine_models.data.records import Sample, SpineDataset
from spine_models.data.transforms import PreprocessConfig, preprocess
from spine_models.data.transforms import fit_long_side as prepare_image  # the 8-bit long-side image both families train on
from spine_models.engine.base import TASK_OPTIONS, BasePredictor, Film
from spine_models.engine.callbacks import Callback, CallbackList, StopTraining
from spine_models.engine.trainer import (BaseTrainer, FitResult, WarmupCosineLR, init_from_run, new_card, write_card,
                                         write_json)
from spine_models.errors import ConfigError, DatasetError
from spine_models.io.pixels import as_pixels
from spine_models.metrics.detection import (ImageBoxes, detection_map, detection_map_ci, image_level_sens_spec,
                                            image_scores, sens_spec_ci, youden_threshold)
from spine_models.models.cards import ModelCard, load_state
from spine_models.models.detection import ensure_ultralytics_offline, is_yolo
from spine_models.models.registry import create_model, get_spec
from spine_models.results.detection import Box, DetectionResult

__all__ = ["DETECTION_CLASSES", "train", "DetectTrainer", "Predictor", "evaluate", "choose_threshold", "prepare_image", "read_pixels", "split_by_box_classes"]

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


def _train_yolo(yolo: Any, cfg: dict, classes: list[str], parts: dict[str, list[Sample]], out_dir: Path,
                cbs: CallbackList, quiet: bool) -> list[dict]:
    """Drive the Ultralytics trainer on a YOLO view of the split; our callbacks follow it through the bridge.
    Returns the per-epoch history rows."""
    import torch

    imgsz = int(cfg["imgsz"])
    data_yaml = _write_yolo_view(parts, classes, imgsz, out_dir / "yolo_data", quiet)
    history: list[dict] = []
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
    last = Path(yolo.trainer.last)
    if last.exists():
        shutil.copyfile(last, out_dir / "last.pt")  # Ultralytics' own resumable checkpoint
    return history


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


class DetectTrainer(BaseTrainer):
    """Both detector families on the one Trainer contract (``engine.trainer.BaseTrainer``).

    Faster R-CNN trains in :func:`~spine_models.engine.trainer.fit`: ``DetectionTorchDataset`` with the
    ``flip-gain`` albumentations preset (boxes follow the flip), torchvision's loss dict summed as the step, the
    warmup + cosine lr (``WarmupCosineLR``, stepped per optimizer step, annealed by ``max_minutes`` when set) and
    the time budget as fit's ``with_time_budget`` (a spent budget ends the epoch: the lr is 0 by then). There is
    no per-epoch model selection (the score threshold is chosen on validation after training), so the validation
    metric is the step count and the last epoch is kept, as before. YOLO overrides :meth:`run` to drive the
    Ultralytics trainer (its own loop, loss and validation) through ``_UltralyticsBridge``."""

    task = "detect"
    scheduler_interval = "step"

    def __init__(self, cfg: dict, out_dir: str | Path, *, callbacks: Any = None, quiet: bool = False) -> None:
        # Faster R-CNN's epoch ends where the budget does (its lr is 0 there); Ultralytics' trainer cannot end an
        # epoch early, so for YOLO the budget looks one epoch ahead, as for the other tasks
        self.cut_epochs = not is_yolo(str(cfg["model"]))
        super().__init__(cfg, out_dir, callbacks=callbacks, quiet=quiet)

    def get_dataset(self) -> None:
        from torch.utils.data import DataLoader

        from spine_models._env import get_device
        from spine_models.data.torch_datasets import DetectionTorchDataset, detection_collate
        from spine_models.engine.trainer import make_generator, seed_worker

        cfg = self.cfg
        self.arch = str(cfg["model"])
        get_spec(self.arch, "detect")  # unknown names fail here, listing the valid ones
        self.yolo = is_yolo(self.arch)
        self.ds = ds = _load_data(cfg["data"])
        self.classes = classes = _classes(ds, cfg.get("classes"))
        split = split_by_box_classes(ds, str(cfg["split"]), self.seed, classes)
        parts = {k: [s for s in v if s.path is not None] for k, v in split.items()}
        if not parts.get("train"):
            raise DatasetError(f"dataset {ds.name!r}: the training split is empty ({len(ds)} images, split {cfg['split']})")
        self.notes: list[str] = []
        if not parts.get("val"):
            parts["val"] = parts["train"]
            self.notes.append("validation split empty: threshold chosen on the training images")
        self.parts = parts
        self.imgsz = imgsz = int(cfg["imgsz"])
        self.arch_kwargs: dict[str, Any] = {"nc": len(classes)}
        if self.yolo:
            from spine_models.models.detection import YOLO_YAMLS

            if cfg.get("init") not in (None, "", "scratch"):
                raise ConfigError(f"detect config: init={cfg['init']!r} is for Faster R-CNN; YOLO models start from their "
                                  "YAML with random weights")
            self.arch_kwargs["yaml"] = YOLO_YAMLS[self.arch]
            return
        self.arch_kwargs.update(min_size=int(cfg["min_size"] or imgsz), max_size=int(cfg["max_size"] or imgsz))
        self.device = get_device(cfg.get("device"))
        self.augment = None
        if cfg["augment"]:
            from spine_models.data.transforms import augmentation_preset

            self.augment = augmentation_preset("flip-gain", targets="bboxes", seed=self.seed)
        self.generator = make_generator(self.seed)
        train_set = DetectionTorchDataset(parts["train"], classes, imgsz, augment=self.augment)
        workers = int(cfg["workers"])
        self.train_loader = DataLoader(train_set, batch_size=int(cfg["batch"]), shuffle=True, generator=self.generator,
                                       collate_fn=detection_collate, num_workers=workers,
                                       worker_init_fn=seed_worker if workers else None)

    def get_model(self) -> Any:
        """A torchvision detector (``init`` loads an earlier run's matching tensors), or the Ultralytics ``YOLO``
        object built from its YAML (random weights; its trainer builds the network)."""
        if self.yolo:
            ensure_ultralytics_offline()
            from ultralytics import YOLO

            return YOLO(self.arch_kwargs["yaml"], task="detect")
        model = create_model(self.arch, task="detect", **self.arch_kwargs)
        init_from_run(model, self.cfg.get("init"), "detect", self.callbacks.on_log)
        return model.to(self.device)

    def get_optimizer(self, model: Any) -> Any:
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        kind = str(self.cfg.get("optimizer") or "sgd").lower()
        if kind == "sgd":  # torchvision's detection reference recipe (momentum 0.9, wd 1e-4) with linear warmup
            return torch.optim.SGD(params, lr=float(self.cfg["lr"] or 0.01), momentum=0.9, weight_decay=1e-4)
        if kind == "adamw":  # 1e-3 diverged (loss 188 at epoch 4) from scratch on drawn films
            return torch.optim.AdamW(params, lr=float(self.cfg["lr"] or 2e-4), weight_decay=1e-4)
        raise ConfigError(f"detect optimizer {kind!r}: use sgd or adamw (Faster R-CNN only; YOLO: yolo_args)")

    def get_scheduler(self, optimizer: Any) -> WarmupCosineLR:
        """Linear warmup (at most 100 steps, a fifth of the run), then cosine to 0 over the planned steps or the time
        budget, whichever ends first: on a shared CPU the budget decides, and the model still ends annealed."""
        total = max(1, int(self.cfg["epochs"]) * len(self.train_loader))
        self.scheduler = WarmupCosineLR(optimizer, total, min(100, total // 5), float(self.cfg.get("max_minutes") or 0) * 60.0)
        return self.scheduler

    def step(self, model: Any, x: Any, y: Any) -> Any:
        """torchvision detectors take the targets in train mode and return their losses: the step's loss is their sum."""
        return sum(model(x, y).values())

    def validate(self, model: Any) -> dict[str, float]:
        return {"steps": float(self.scheduler.steps)}  # see the class docstring: the last epoch is the model

    def fit_options(self) -> dict[str, Any]:
        def on_epoch_start(epoch: int) -> None:
            from spine_models.engine.trainer import epoch_seed

            if self.augment is not None:
                self.augment.set_random_seed(epoch_seed(self.seed, epoch))

        return {"val_metric": "steps", "mode": "max", "patience": 0, "generator": self.generator, "grad_clip": 10.0,
                "on_epoch_start": on_epoch_start}

    def cfg_record(self) -> dict[str, Any]:
        data = self.cfg["data"]
        return dict(self.cfg, data=str(data) if isinstance(data, SpineDataset) else data)

    def run(self, model: Any) -> FitResult:
        """Faster R-CNN: :func:`fit`; YOLO: the Ultralytics trainer, its epochs reported as the same history rows.
        A stop asked by the caller's callbacks (not the time budget) ends the run without a card."""
        if self.yolo:
            self.callbacks.on_train_start(self.cfg_record())
            fit_parts = {"train": self.parts["train"], "val": self.parts["val"]}
            history = _train_yolo(model, self.cfg, self.classes, fit_parts, self.out, self.callbacks, self.quiet)
            write_json(self.out / "history.json", history)
            net = model.model.float().cpu()
            stopped = "callback" if self.callbacks.should_stop() else "epochs"
            result = FitResult(history, len(history), None, net.state_dict(), stopped, len(history))
            self.callbacks.on_train_end({"best_epoch": result.best_epoch, "stopped_by": stopped, "epochs_run": len(history)})
        else:
            result = super().run(model)
        if self.user_callbacks.should_stop():
            raise StopTraining("training stopped by a callback")
        return result

    def finish(self, model: Any, result: FitResult) -> Path:
        """Weights and card (``new_card``), the score threshold chosen on validation, test (or validation) metrics."""
        cfg, classes, parts, imgsz = self.cfg, self.classes, self.parts, self.imgsz
        net = model.model if self.yolo else model
        net = net.float().cpu().eval()
        net.load_state_dict(result.best_state)
        preprocessing = {"long_side": imgsz, "letterbox": self.yolo, "stride": 32, "bits": 8,
                         "conf_min": float(cfg["conf_min"]), "nms_iou": float(cfg["nms_iou"]), "max_det": int(cfg["max_det"])}
        card = new_card(self.out, task="detect", arch=self.arch, state_dict=net.state_dict(), arch_kwargs=self.arch_kwargs,
                        half=True, id=str(cfg.get("id") or f"{self.arch}-{self.out.name}"), view=str(cfg["view"]),
                        trained_on=self.ds.name, input_size=imgsz, train_command=str(cfg.get("train_command") or ""),
                        license="Apache-2.0" if not self.yolo else "AGPL-3.0 (Ultralytics)", classes=classes,
                        preprocessing=preprocessing, notes=list(self.notes),
                        normalization={"kind": "io.read_image display values [0, 1] -> uint8"})
        pred = Predictor(card, device=cfg.get("device"), model=net)
        vp, vt = _predict_all(pred, parts["val"], classes, self.quiet)
        thr, how = choose_threshold(vp, vt, classes)
        card.thresholds = {"score": round(thr, 4)}
        card.notes.append(f"score threshold {thr:.3f} chosen on validation by {how}")
        pred.threshold = thr
        val_map = detection_map(vp, vt, classes)
        eval_name = "test" if parts.get("test") else "val"
        ep, et = _predict_all(pred, parts[eval_name], classes, self.quiet) if eval_name == "test" else (vp, vt)
        card.metrics = _score(ep, et, classes, thr, int(cfg["n_resamples"]))
        card.data = {"split": eval_name, "n": len(et), "n_patients": len({s.patient_id for s in parts[eval_name]}),
                     "classes": classes, "split_ratios": str(cfg["split"]), "seed": self.seed}
        self.summary.update({"arch": self.arch, "classes": classes, "epochs": len(result.history), "threshold": thr,
                             "val_map50": val_map["map50"], "val_map50_95": val_map["map50_95"],
                             "n": {k: len(v) for k, v in parts.items()}})
        return write_card(card, self.out)


def train(cfg: dict, out_dir: str | Path, *, callbacks: list[Callback] | None = None, quiet: bool = False) -> Path:
    """Train a detector as ``cfg`` says (``spine_models/cfg/detect.yaml``); returns the card path."""
    return DetectTrainer(cfg, out_dir, callbacks=callbacks, quiet=quiet).train()
