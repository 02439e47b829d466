"""Classification engine: ``train`` / ``Predictor`` / ``evaluate`` (see ``spine_models/engine/__init__.py``).

The studies' recipes as configuration (``spine_models/cfg/classify.yaml``):

- ``mode: frozen`` trains the head only (transfer learning; backbone batch-norm statistics stay fixed),
  ``mode: finetune`` trains everything; ``freeze_epochs: K`` runs K frozen epochs at ``head_lr`` before
  fine-tuning (the Xception study's schedule). ``lr: null`` picks 1e-3 for frozen/scratch training and
  1e-5 for fine-tuning pretrained weights (the MRI study).
- ``init: scratch | imagenet | <checkpoint path>`` — ImageNet only from a local file; a checkpoint
  path (an earlier run's ``model.pt``/``best.pt``/``last.pt``) is the MRI study's same-domain transfer.
- Data: ``load_dataset(cfg["data"])`` split per patient with ``split_dataset`` (ratios ``split``, seed
  ``seed``); augmentation (``augment`` preset) is applied to the train part only, after the split; the
  test part is used once, at the end, for the card's metrics.
- Binary tasks: the decision threshold on P(positive) is chosen on the validation part (Youden's J)
  and stored in the card as ``thresholds["binary"]``.
- Model selection: ``val_metric: balanced_accuracy`` (ties broken by lower validation loss: the score is
  ``balanced_accuracy - 0.001 * min(val_loss, 10)``), ``loss``, ``accuracy`` or ``auc``.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from spine_models.config import check_cfg
from spine_models.engine.base import TASK_OPTIONS, BasePredictor, Film
from spine_models.engine.callbacks import Callback
from spine_models.data.records import LABEL_FROM, VIEW_CLASSES, relabel
from spine_models.data.torch_datasets import ClassificationTorchDataset, load_pixels
from spine_models.data.transforms import Normalization, PreprocessConfig, preprocess
from spine_models.engine.composite import CompositePredictor, CompositeTrainer, is_composite
from spine_models.engine.runtime import Network, network_for
from spine_models.engine.trainer import BaseTrainer, write_card
from spine_models.errors import ConfigError, DatasetError, SpineInputError
from spine_models.models.cards import ModelCard, load_state

__all__ = ["train", "ClassifyTrainer", "Predictor", "evaluate", "crop_locator", "load_pixels", "vertebra_mask", "logits_to_probs",
           "input_hw",
           "youden_threshold", "build_model_for", "relabel", "dataset_for_card", "LABEL_FROM", "VIEW_CLASSES"]


# ----------------------------------------------------------------------------------------------------
# preprocessing shared by training and inference: data.transforms.PreprocessConfig / preprocess, and the
# data.torch_datasets classes; what is engine-side is only the segmenter that places a crop

def vertebra_mask(pixels: np.ndarray, model: str) -> np.ndarray:
    """The ``vertebra`` mask of ``pixels`` by segmentation model ``model`` (shared per process): the
    segmenter ``spine_models.data.roi.locate`` places a crop with, at training and at inference alike."""
    from spine_models.engine.predictor import shared_predictor

    seg = shared_predictor(model)
    if "vertebra" not in (seg.card.structures or []):
        from spine_models.data.roi import DEFAULT_CROP_MODEL

        raise ConfigError(f"crop_model={seg.card.id!r} has no 'vertebra' structure; use a lateral U-Net such as {DEFAULT_CROP_MODEL}")
    return seg.predict(pixels, measure=False).masks["vertebra"]


def _locate_crop(pre: PreprocessConfig, pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    from spine_models.data.roi import locate

    return locate(pixels, pre.crop, pre.crop_model, side_in_bodies=pre.crop_side, segment=vertebra_mask)


def crop_locator(pre: PreprocessConfig) -> Callable[[np.ndarray], tuple[int, int, int, int] | None] | None:
    """pixels -> the crop box ``pre.crop`` asks for (None: no crop); picklable for DataLoader workers."""
    import functools

    return None if pre.crop == "none" else functools.partial(_locate_crop, pre)


def input_hw(size: Any) -> int | tuple[int, int]:
    """A card's / config's input size as the model takes it: an int (square) or (height, width)."""
    if isinstance(size, (list, tuple)):
        return (int(size[0]), int(size[1])) if len(size) == 2 and size[0] != size[1] else int(size[0])
    return int(size)


# ----------------------------------------------------------------------------------------------------
# helpers

def logits_to_probs(logits: torch.Tensor) -> torch.Tensor:
    """(N, C) softmax, or for one-logit (sigmoid) models (N, 2) = [1-p, p]."""
    if logits.shape[-1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def youden_threshold(y_true: np.ndarray, p_pos: np.ndarray) -> float:
    """Threshold on P(positive) maximising sensitivity + specificity - 1 (0.5 when undefined): the
    middle of the best gap between scores (``spine_models.metrics.detection.youden_threshold``, the one
    rule for both tasks). Why not the ROC point itself: that is the weakest positive's score, so a
    validation part that separates perfectly put the cut at 0.9951 and a test positive at 0.9950 failed."""
    from spine_models.metrics.detection import youden_threshold as _youden

    t, _ = _youden(np.asarray(y_true).astype(bool), np.asarray(p_pos, dtype=np.float64), floor=1e-6)
    return float(min(max(t, 1e-6), 1 - 1e-6))


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y, pred)) if len(y) else float("nan")


def build_model_for(card: ModelCard) -> nn.Module:
    from spine_models.models import create_model

    sd, kwargs = load_state(card)
    model = create_model(card.arch, task="classify", **{**kwargs, "pretrained": None})
    model.load_state_dict(sd)
    return model


def dataset_for_card(card: ModelCard, dataset: Any) -> Any:
    """``dataset`` labelled as the card's model learned it: a view model's samples carry ap / lat, so the
    report's class counts, its test split and the metadata audit all judge the view question."""
    label_from = (card.preprocessing or {}).get("label_from", "class")
    if label_from == "class":
        return dataset
    return replace(dataset, samples=relabel(dataset.samples, label_from), classes=list(card.classes or VIEW_CLASSES))


def _view_of(samples: Sequence[Any], two_view: bool) -> str:
    if two_view:
        return "any"
    views = {(s.view or "").lower() for s in samples}
    if views == {"ap"}:
        return "ap"
    if views == {"lat"}:
        return "lat"
    if views and all(v.startswith("mri") for v in views):
        return "mri"
    return "any"


def _resolve_lr(cfg: dict) -> tuple[float, float]:
    """(backbone lr, head lr)."""
    pretrained = cfg["init"] not in ("scratch", "", None)
    lr = cfg.get("lr")
    if lr is None:
        lr = 1e-5 if (cfg["mode"] == "finetune" and pretrained) else 1e-3
    head_lr = cfg.get("head_lr")
    if head_lr is None:
        head_lr = 1e-3 if cfg["mode"] == "frozen" or cfg["freeze_epochs"] > 0 else lr
    for k, v in (("lr", lr), ("head_lr", head_lr)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (0 < float(v) < 10):
            raise ConfigError(f"classify config: {k}={v!r} should be a positive number like 1e-3")
    return float(lr), float(head_lr)


def _validate_cfg(cfg: dict) -> None:
    check_cfg("classify", cfg)  # the keys with a few allowed values, and epochs/batch, from config's tables
    from spine_models.data.roi import CROPS

    if cfg["crop"] not in CROPS:
        raise ConfigError(f"classify config: crop={cfg['crop']!r}; valid: {', '.join(CROPS)}")
    side = cfg.get("crop_side")
    if side is not None and (isinstance(side, bool) or not isinstance(side, (int, float)) or not 2.0 <= side <= 12.0):
        raise ConfigError(f"classify config: crop_side={side!r}; give the crop's side in body heights, 2 to 12 (default 5.5)")
    if cfg["label_from"] not in LABEL_FROM:
        raise ConfigError(f"classify config: label_from={cfg['label_from']!r}; valid: {', '.join(LABEL_FROM)}")
    sz = cfg["imgsz"]
    parts = list(sz) if isinstance(sz, (list, tuple)) else [sz]
    if len(parts) not in (1, 2) or any(not isinstance(v, int) or isinstance(v, bool) or v < 8 for v in parts):
        raise ConfigError(f"classify config: imgsz={sz!r}; use a side in pixels (224) or [height, width] "
                          f"(e.g. [448, 224] for portrait films), each at least 8")
    if not cfg["data"]:
        raise ConfigError("classify config: no data; pass --data DIR (repeatable)")


def _class_weights(cfg: dict, train_samples: Sequence[Any], classes: list[str]) -> torch.Tensor | None:
    cw = cfg["class_weights"]
    if cw in (None, "none", False):
        return None
    counts = np.array([sum(1 for s in train_samples if s.label == c) for c in classes], dtype=np.float64)
    if cw == "balanced":
        w = np.where(counts > 0, counts.sum() / (len(classes) * np.maximum(counts, 1)), 0.0)
    elif isinstance(cw, (list, tuple)) and len(cw) == len(classes):
        w = np.asarray(cw, dtype=np.float64)
    else:
        raise ConfigError(f"classify config: class_weights={cw!r}; use none, balanced, or a list of {len(classes)} numbers")
    return torch.tensor(w, dtype=torch.float32)


def _make_loss(n_out: int, weights: torch.Tensor | None, smoothing: float, device: torch.device) -> Callable:
    if n_out == 1:
        pos_weight = None if weights is None or weights[0] <= 0 else (weights[1] / weights[0]).reshape(1).to(device)
        bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        return lambda out, y: bce(out[:, 0], y.float())
    ce = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device), label_smoothing=smoothing)
    return lambda out, y: ce(out, y)


# ----------------------------------------------------------------------------------------------------
# train

def train(cfg: dict, out_dir: str | Path, *, callbacks: Callback | list[Callback] | None = None, quiet: bool = False) -> Path:
    """Train a classifier per ``cfg`` (see the module docstring); returns ``out_dir/card.json``."""
    if is_composite(cfg["model"]):  # measurement / view-routed classifiers: no epochs, no network of their own
        return _CompositeTrainer(cfg, out_dir, callbacks=callbacks, quiet=quiet).train()
    return ClassifyTrainer(cfg, out_dir, callbacks=callbacks, quiet=quiet).train()


class _CompositeTrainer(CompositeTrainer):
    """A composite judged like a network: :func:`evaluate` on the test part into its card (here, so that the
    composite module never imports this one)."""

    def finish(self, model: Any, result: Any) -> Path:
        return _test_and_save(self.make_card(result), self.parts["test"], self.out, self.cfg, quiet=self.quiet,
                              note_empty=False)


class ClassifyTrainer(BaseTrainer):
    """Classifiers on the one Trainer contract (``engine.trainer.BaseTrainer``): the studies' recipes (frozen /
    fine-tune phases, head and body learning rates, cosine factor) as the epoch hook, validation by balanced
    accuracy (or loss / accuracy / AUC), a Youden threshold for binary tasks, test metrics into the card."""

    task = "classify"
    distributed = True  # torchrun / --nproc: DDP over the one fit (engine.distributed)

    def __init__(self, cfg: dict, out_dir: str | Path, *, callbacks: Any = None, quiet: bool = False) -> None:
        from spine_models.models import get_spec

        cfg = dict(cfg)
        if cfg.get("imgsz") is None:
            size = get_spec(cfg["model"], task="classify").input_size
            cfg["imgsz"] = int(size if isinstance(size, int) else size[0])
        _validate_cfg(cfg)
        super().__init__(cfg, out_dir, callbacks=callbacks, quiet=quiet)

    def get_dataset(self) -> None:
        from spine_models._env import configure_offline, get_device
        from spine_models.data.adapters import load_dataset
        from spine_models.data.splits import split_dataset, split_provenance
        from spine_models.engine import trainer as T

        configure_offline()
        cfg, cb, seed = self.cfg, self.callbacks, self.seed
        self.size = size = input_hw(cfg["imgsz"])
        T.seed_everything(seed)
        self.device = get_device(cfg.get("device") or None)
        self.data = data = cfg["data"] if isinstance(cfg["data"], list) else [cfg["data"]]
        ds = load_dataset(data, task="classify")
        self.label_from = label_from = str(cfg["label_from"])
        self.labelled = labelled = relabel(ds.samples, label_from)
        if len(labelled) < len(ds.samples):
            cb.on_log(f"{len(ds.samples) - len(labelled)} samples without a {label_from} label left out")
        if label_from == "view":
            classes = [c for c in VIEW_CLASSES if any(s.label == c for s in labelled)]
        else:
            classes = list(ds.classes) or sorted({s.label for s in labelled})
        self.ds = ds = replace(ds, samples=labelled, classes=classes)
        self.classes = classes
        if len(classes) < 2:
            raise DatasetError(f"{', '.join(map(str, data))}: classification needs at least two classes, found {classes}")
        self.two_view = two_view = bool(cfg["two_view"])
        if two_view and not all(s.views for s in labelled):
            raise DatasetError(f"{', '.join(map(str, data))}: two_view=true needs the two-view patient layout (DIR/<label>/<patient>/ap+lat)")
        self.parts = parts = split_dataset(ds, cfg["split"], seed=seed, group_near_duplicates=bool(cfg["group_near_duplicates"]))
        if cfg["leakage_check"]:
            from spine_models.data.leakage import check_leakage
            from spine_models.errors import LeakageError

            try:
                check_leakage(parts)
            except LeakageError as exc:  # the user's data, not our bug: exit 2 with the message
                raise DatasetError(f"{exc} (or train anyway with --set leakage_check=false)") from None
        self.provenance = split_provenance(parts)
        for name in ("train", "val"):
            if not len(parts[name]):
                raise DatasetError(f"{', '.join(map(str, data))}: the {name} part is empty after a per-patient split "
                                   f"{cfg['split']}; add data or change --set split=")

        if cfg["crop"] != "none":
            from spine_models.data.roi import DEFAULT_CROP_MODEL, SIDE_IN_BODIES

            cfg["crop_model"] = cfg.get("crop_model") or DEFAULT_CROP_MODEL
            cfg["crop_side"] = float(cfg.get("crop_side") or SIDE_IN_BODIES)
        self.pre = pre = PreprocessConfig(size if isinstance(size, tuple) else (size, size), int(cfg["in_chans"]),
                                          cfg["resize_mode"], Normalization.from_dict(cfg["normalization"]), prescale=2.0,
                                          roi=bool(cfg["roi"]), crop=str(cfg["crop"]), crop_model=cfg.get("crop_model"),
                                          crop_side=cfg.get("crop_side"))
        self.augment = augment = None
        if cfg["augment"] not in ("none", "", None):
            from spine_models.data.transforms import augmentation_preset

            self.augment = augment = augmentation_preset(cfg["augment"], size)
        locate = crop_locator(pre)
        train_set = ClassificationTorchDataset(parts["train"].samples, classes, cfg=pre, locate=locate, augment=augment,
                                               two_view=two_view, cache=cfg["cache"])
        self.val_set = val_set = ClassificationTorchDataset(parts["val"].samples, classes, cfg=pre, locate=locate,
                                                            two_view=two_view, cache=cfg["cache"])
        self.generator = gen = T.make_generator(seed)
        workers = int(cfg["workers"])

        def _worker_init(worker_id: int) -> None:
            T.seed_worker(worker_id)
            if augment is not None and hasattr(augment, "set_random_seed"):
                augment.set_random_seed(torch.initial_seed() % (2**32))

        self.train_loader = torch.utils.data.DataLoader(
            train_set, batch_size=int(cfg["batch"]), shuffle=True, generator=gen, num_workers=workers,
            worker_init_fn=_worker_init if workers else None, persistent_workers=workers > 0,
            drop_last=len(train_set) > int(cfg["batch"]) and len(train_set) % int(cfg["batch"]) == 1)
        self.val_loader = torch.utils.data.DataLoader(val_set, batch_size=int(cfg["batch"]), shuffle=False,
                                                      num_workers=workers, persistent_workers=workers > 0)
        cb.on_log(f"train {len(train_set)} / val {len(val_set)} / test {len(parts['test'])} samples; classes {classes}; "
                  f"device {self.device}")

    def get_model(self) -> nn.Module:
        from spine_models.engine import trainer as T
        from spine_models.models import create_model
        from spine_models.models.classification import get_classifier

        cfg, device, two_view = self.cfg, self.device, self.two_view
        init = cfg["init"]
        pretrained = None if init in ("scratch", "", None) else init
        self.arch_kwargs = {"num_classes": len(self.classes), "in_chans": int(cfg["in_chans"]), "dropout": float(cfg["dropout"])}
        model = create_model(cfg["model"], task="classify", pretrained=pretrained, **self.arch_kwargs).to(device)
        if getattr(model, "two_view", False) != two_view:
            raise ConfigError(f"model {cfg['model']} {'is' if getattr(model, 'two_view', False) else 'is not'} a two-view model "
                              f"but two_view={two_view}; use twoview_* models with --set two_view=true")
        self.report = report = getattr(model, "pretrained_report", None)
        if report:
            self.callbacks.on_log(f"init {init}: loaded {report['loaded']}/{report['total']} tensors")
        head_ids = {id(p) for p in get_classifier(model).parameters()}
        self.head_params = [p for p in model.parameters() if id(p) in head_ids]
        self.body_params = [p for p in model.parameters() if id(p) not in head_ids]
        self.head_modules = set(get_classifier(model).modules())
        with torch.no_grad():
            model.eval()
            x0, _ = self.val_set[0]
            x0 = tuple(t[None].to(device) for t in x0) if two_view else x0[None].to(device)
            n_out = T.forward_batch(model, x0).shape[-1]
        self.loss_fn = _make_loss(n_out, _class_weights(cfg, self.parts["train"].samples, self.classes),
                                  float(cfg["label_smoothing"]), device)
        return model

    def get_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        cfg = self.cfg
        self.lr, self.head_lr = _resolve_lr(cfg)
        groups = [{"params": self.head_params, "lr": self.head_lr, "name": "head"},
                  {"params": self.body_params, "lr": self.lr, "name": "body"}]
        wd = float(cfg["weight_decay"])
        if cfg["optimizer"] == "adam":
            self.optimizer = torch.optim.Adam(groups, weight_decay=wd)
        elif cfg["optimizer"] == "adamw":
            self.optimizer = torch.optim.AdamW(groups, weight_decay=wd)
        else:
            self.optimizer = torch.optim.SGD(groups, momentum=0.9, weight_decay=wd)
        return self.optimizer

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(output, target)

    def phase(self, epoch: int) -> str:
        freeze_epochs = int(self.cfg["epochs"]) if self.cfg["mode"] == "frozen" else int(self.cfg["freeze_epochs"])
        return "frozen" if epoch < freeze_epochs else "finetune"

    def on_epoch_start(self, epoch: int) -> dict[str, Any]:
        """The recipe of this epoch (it depends on ``epoch`` only, so resume replays it): frozen or fine-tuning
        phase, the head and body learning rates, the augmentation seed."""
        from spine_models.engine import trainer as T

        cfg, lr, head_lr, optimizer = self.cfg, self.lr, self.head_lr, self.optimizer
        epochs = int(cfg["epochs"])
        freeze_epochs = epochs if cfg["mode"] == "frozen" else int(cfg["freeze_epochs"])
        self.current_epoch = epoch
        frozen = self.phase(epoch) == "frozen"
        for p in self.body_params:
            p.requires_grad_(not frozen)
        factor = 0.5 * (1 + math.cos(math.pi * epoch / epochs)) if cfg["scheduler"] == "cosine" else 1.0
        # fine-tuning after frozen epochs: everything at lr (the Xception recipe); fine-tuning from the start
        # with head_lr set: a discriminative rate (new head faster than a pretrained backbone)
        ft_head = head_lr if cfg.get("head_lr") is not None and freeze_epochs == 0 else lr
        optimizer.param_groups[0]["lr"] = (head_lr if frozen else (ft_head if cfg["mode"] == "finetune" else head_lr)) * factor
        optimizer.param_groups[1]["lr"] = lr * factor
        if self.augment is not None and hasattr(self.augment, "set_random_seed"):
            self.augment.set_random_seed(T.epoch_seed(self.seed, epoch))
        return {"phase": self.phase(epoch)}

    def set_train_mode(self, m: nn.Module) -> None:
        m.train()
        if self.phase(self.current_epoch) == "frozen":  # frozen backbone: keep its batch-norm statistics
            for mod in m.modules():
                if mod not in self.head_modules:
                    mod.train(False)
            for mod in self.head_modules:
                mod.train(True)

    def validate(self, m: nn.Module) -> dict[str, float]:
        from spine_models.engine import trainer as T
        from spine_models.metrics.classification import auc_ovr  # the report's macro AUC, NaN when a class is absent

        logits, y = T.predict_loader(m, self.val_loader, self.device)
        with torch.no_grad():
            vloss = float(self.loss_fn(logits, y))
        probs = logits_to_probs(logits).numpy()
        y_np = y.numpy().astype(int)
        pred = probs.argmax(1)
        ba = _balanced_accuracy(y_np, pred)
        res = {"val_loss": vloss, "val_accuracy": float((pred == y_np).mean()), "val_balanced_accuracy": ba,
               "val_auc": auc_ovr(y_np, probs)}
        res["val_score"] = {"balanced_accuracy": ba - 1e-3 * min(vloss, 10.0), "loss": vloss,
                            "accuracy": res["val_accuracy"] - 1e-3 * min(vloss, 10.0), "auc": res["val_auc"]}[self.cfg["val_metric"]]
        return res

    def fit_options(self) -> dict[str, Any]:
        self.current_epoch = 0
        return {"val_metric": "val_score", "mode": "min" if self.cfg["val_metric"] == "loss" else "max",
                "patience": int(self.cfg["patience"]), "resume": self.cfg.get("resume") or False,
                "on_epoch_start": self.on_epoch_start, "set_train_mode": self.set_train_mode, "generator": self.generator}

    def finish(self, model: nn.Module, result: Any) -> Path:
        from spine_models.engine import trainer as T

        cfg, classes, seed, report = self.cfg, self.classes, self.seed, self.report
        model.load_state_dict(result.best_state)
        for p in model.parameters():
            p.requires_grad_(True)
        thresholds: dict[str, float] = {}
        if len(classes) == 2:
            logits, y = T.predict_loader(model, self.val_loader, self.device)
            thresholds["binary"] = youden_threshold(y.numpy(), logits_to_probs(logits).numpy()[:, 1])
        size, label_from = self.size, self.label_from
        init = cfg["init"]
        card = T.new_card(
            self.out, task="classify", arch=cfg["model"], state_dict=model.state_dict(), arch_kwargs=self.arch_kwargs,
            half=bool(cfg["half"]), id=cfg.get("name") or self.out.resolve().name,
            view=cfg.get("view") or ("any" if label_from == "view" else _view_of(self.labelled, self.two_view)),
            trained_on=f"{self.ds.name} ({', '.join(map(str, self.data))})",
            input_size=list(size) if isinstance(size, tuple) else size,
            train_command=cfg.get("train_command") or "", license=cfg["license"], classes=classes, metrics={},
            in_chans=int(cfg["in_chans"]), normalization=dict(cfg["normalization"]),
            preprocessing={"resize_mode": cfg["resize_mode"], "roi": bool(cfg["roi"]), "two_view": self.two_view,
                           **({"crop": cfg["crop"], "crop_model": cfg["crop_model"], "crop_side": cfg["crop_side"]}
                              if cfg["crop"] != "none" else {}),
                           "augment": cfg["augment"], "label_from": label_from, **self.pre.to_dict()},
            thresholds=thresholds,
            notes=[f"best epoch {result.best_epoch} of {result.epochs_run} ({result.stopped_by}); val_metric {cfg['val_metric']}",
                   f"mode {cfg['mode']}, init {init}, freeze_epochs {cfg['freeze_epochs']}, seed {seed}"]
                  + ([f"init loaded {report['loaded']}/{report['total']} tensors from {report['source']}"] if report else []),
            data={"split": self.provenance, "evaluated_on": "test"},
        )
        return _test_and_save(card, self.parts["test"], self.out, cfg, quiet=self.quiet, device=self.device)


def _test_and_save(card: ModelCard, test: Any, out: Path, cfg: dict, *, quiet: bool, device: Any = None,
                   note_empty: bool = True) -> Path:
    """Evaluate ``card`` once on the test part (its metrics and ``test_predictions.json``) and write
    ``out/card.json``. One ending for networks and composites: both are judged by :func:`evaluate`."""
    from spine_models.engine.trainer import write_json

    if len(test):
        ev = evaluate(card, test, quiet=quiet, n_resamples=int(cfg["eval_resamples"]), device=device)
        card.metrics = ev["metrics"]
        write_json(out / "test_predictions.json", ev["predictions"])
    elif note_empty:
        card.notes.append("test part empty: no test metrics")
    return write_card(card, out)


# ----------------------------------------------------------------------------------------------------
# inference

class Predictor(BasePredictor):
    """A trained classifier from its card: ``predict(image, cam=True, shap=False) -> ClassificationResult``.

    Composite cards (``measure_cobb``, ``measure_slip``, ``view_routed``) are run by
    ``spine_models.engine.composite.CompositePredictor``; ``engine.predictor.load_predictor`` picks the class."""

    task = "classify"
    OPTIONS = TASK_OPTIONS["classify"]

    def __init__(self, card: ModelCard, device: str | torch.device | None = None) -> None:
        if is_composite(card.arch):
            raise ConfigError(f"model {card.id!r} is a composite ({card.arch}); load it with "
                              "spine_models.engine.predictor.load_predictor (or composite.CompositePredictor)")
        super().__init__(card, device)
        self.model = build_model_for(card).to(self.device).eval()
        self.pre = PreprocessConfig.from_card(card)
        self._locate = crop_locator(self.pre)
        self.two_view = bool(getattr(self.model, "two_view", False))
        self.threshold = card.thresholds.get("binary") if len(card.classes or []) == 2 else None
        # probabilities (and SHAP's many calls) through the card's runtime; Grad-CAM needs torch's gradients
        self.net = Network(self.model, "torch", "two-view models run on torch") if self.two_view else \
            network_for(card, self.model, (1, self.pre.in_chans, *self.pre.size), self.device)

    # ------------------------------------------------------------------ stages
    def read(self, image: Any, **_: Any) -> Film:
        """Full-resolution pixels and the name (``load_pixels``: a sample's own frame of a volume); two-view
        models get ``extra["views"]`` (ap, lat pixels) and no single film."""
        if self.two_view:
            if isinstance(image, dict):
                views = image
            elif getattr(image, "views", None):
                views = image.views
            else:
                raise SpineInputError(f"model {self.card.id} needs two views: pass {{'ap': image, 'lat': image}}")
            if not {"ap", "lat"} <= set(views):
                raise SpineInputError(f"model {self.card.id} needs 'ap' and 'lat' views, got {sorted(views)}")
            ap, lat = load_pixels(views["ap"]), load_pixels(views["lat"])
            return Film(None, "two-view", extra={"views": (ap, lat), "shape": ap.shape[:2]})
        pixels = load_pixels(image)
        name = str(getattr(image, "name", "") or getattr(image, "id", "") or (image if isinstance(image, (str, Path)) else ""))
        return Film(pixels, Path(name).name if name else "", extra={"shape": pixels.shape[:2]})

    def preprocess(self, film: Film, **_: Any) -> Any:
        """The model input (a tuple of two for two-view models) by ``data.transforms.preprocess``; the crop box on
        the film in ``film.extra["box"]`` and the way back to the film in ``film.extra["geometry"]`` (two-view: the AP's).
        The same crop and two-step downscale as training/evaluation (``prescale``): a direct full-resolution -> 224
        resize changed P(positive) by up to 0.2 on real films."""
        if film.pixels is None:
            film.extra["box"] = None
            done = [preprocess(p, self.pre) for p in film.extra["views"]]
            film.extra["geometry"] = done[0][1]
            return tuple(x.to(self.device) for x, _ in done)
        box = self._locate(film.pixels) if self._locate is not None else None
        x, film.extra["geometry"] = preprocess(film.pixels, self.pre, box)
        film.extra["box"] = box
        return x.to(self.device)

    def infer(self, x: Any, **_: Any) -> np.ndarray:
        """Class probabilities of one input (a two-view pair too)."""
        from spine_models.engine.trainer import forward_batch

        with torch.no_grad():
            return logits_to_probs(forward_batch(self.net if not self.two_view else self.model, x).float()).cpu().numpy()[0]

    def forward(self, xb: Any, **_: Any) -> np.ndarray:
        """Class probabilities of a stacked batch of single-view inputs, one row each (``predict_batch``)."""
        with torch.no_grad():
            return logits_to_probs(self.net(xb).float()).cpu().numpy()  # the card's runtime (engine.runtime)

    def postprocess(self, raw: np.ndarray, film: Film, x: Any, *, cam: bool = True, shap: bool = False,
                    shap_evals: int = 300, shap_progress: Callable[[int, int], None] | None = None,
                    **_: Any) -> Any:
        """The result, with the Grad-CAM / SHAP maps of the top class placed back on the film when asked."""
        from spine_models.results import ClassificationResult

        shape, geo = film.extra["shape"], film.extra["geometry"]
        classes = list(self.card.classes or [])
        res = ClassificationResult(model_id=self.card.id, source=film.name, image_size=tuple(int(v) for v in shape),
                                   device=str(self.device), classes=classes, probs=[float(p) for p in raw],
                                   threshold=self.threshold)
        top = classes.index(res.top_class)
        if cam:
            from spine_models.explain import gradcam

            heat = gradcam(self.model, x, target_class=top)  # two-view: the AP map
            res.cam = np.clip(geo.heatmap_to_film(heat), 0, 1)
        if shap and not self.two_view:
            from spine_models.explain import shap_partition

            x_hwc = x[0].permute(1, 2, 0).cpu().numpy()
            res.shap = geo.heatmap_to_film(shap_partition(self._nhwc_predict, x_hwc, max_evals=shap_evals, class_index=top,
                                                          progress_callback=shap_progress))
        return res

    def predict_proba(self, images: Sequence[Any]) -> np.ndarray:
        """(N, C) probabilities for several images (no explanations); each film's row is kept per film
        (``engine.film_memo``), so the view gate asked by the app and by the routed model runs once."""
        from spine_models.engine.film_memo import film_memo

        out = []
        for im in images:
            film = self.read(im)
            key = self.memo_key(film, {}, "proba")
            row = film_memo.get(key) if key is not None else None
            if row is None:
                row = self.infer(self.preprocess(film))
                if key is not None:
                    film_memo.put(key, row)
            out.append(row)
        return np.stack(out) if out else np.zeros((0, len(self.card.classes or [])))

    def memo_settings(self) -> tuple:
        """The preprocessing and threshold a result depends on besides the weights."""
        return (repr(self.pre), self.threshold)

    @torch.no_grad()
    def _nhwc_predict(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2).to(self.device)
        return logits_to_probs(self.net(x).float()).cpu().numpy()


# ----------------------------------------------------------------------------------------------------
# evaluation

def evaluate(card: ModelCard, dataset: Any, *, quiet: bool = False, n_resamples: int = 1000,
             device: str | torch.device | None = None, batch: int = 16) -> dict[str, Any]:
    """SPEC classify metrics (bootstrap CIs over patients) and per-sample predictions on ``dataset``."""
    from spine_models.engine.trainer import predict_loader
    from spine_models.metrics.classification import classification_metrics

    samples = relabel(dataset.samples, (card.preprocessing or {}).get("label_from", "class"))
    if not samples:
        raise DatasetError(f"dataset {getattr(dataset, 'name', '?')}: no labelled samples to evaluate")
    classes = list(card.classes or [])
    unknown = sorted({s.label for s in samples} - set(classes))
    if unknown:
        raise DatasetError(f"dataset {getattr(dataset, 'name', '?')}: labels {unknown} are not classes of model "
                           f"{card.id} ({', '.join(classes)})")
    pred = CompositePredictor(card, device) if is_composite(card.arch) else Predictor(card, device)
    if is_composite(card.arch):
        from spine_models._progress import progress

        probs = pred.predict_proba(progress(samples, total=len(samples), desc="evaluate", quiet=quiet))
        y_true = np.array([classes.index(s.label) for s in samples], dtype=int)
    else:
        ds = ClassificationTorchDataset(samples, classes, cfg=pred.pre, locate=pred._locate, two_view=pred.two_view, cache=False)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False)
        # through the card's runtime (engine.runtime), as the app and `predict` run it; torch when the card says so
        logits, y = predict_loader(pred.model, loader, pred.device, quiet=quiet, desc="evaluate",
                                   run=None if pred.two_view else pred.net)
        probs = logits_to_probs(logits).numpy()
        y_true = y.numpy().astype(int)
    groups = [s.patient_id for s in samples]
    metrics = classification_metrics(y_true, probs, classes, groups=groups, threshold=pred.threshold, n_resamples=n_resamples)
    if pred.threshold is not None:
        y_pred = (probs[:, 1] >= pred.threshold).astype(int)
    else:
        y_pred = probs.argmax(1)
    predictions = [{"id": s.id, "patient_id": s.patient_id, "truth": s.label, "pred": classes[int(k)],
                    "probs": {c: round(float(p), 6) for c, p in zip(classes, pr)}}
                   for s, k, pr in zip(samples, y_pred, probs)]
    return {"metrics": metrics, "predictions": predictions}
