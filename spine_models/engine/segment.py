"""Segment engine: train / Predictor / evaluate for the U-Nets, plus the measurements on their masks.

Why here: one place turns a film into per-structure masks at the film's own resolution and then into
clinical numbers (Cobb on AP, slip % / Meyerding / disc heights on lateral), so the CLI, the app and
the evaluation report all see the same thing. The split is per patient and made before any
augmentation; augmentation touches the train part only.

Preprocessing (identical at train and inference, ``data.transforms.preprocess`` with the card's
``PreprocessConfig``): the 2-D film in [0, 1] is resized ("stretch") to the model's (H, W) and min-max
normalised per image; targets are the masks resized with area averaging (``data.torch_datasets``).
Predictions are sigmoid probabilities put back on the film by the preprocessing's ``Geometry`` (bilinear)
and thresholded.
"""
from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from spine_models.config import CHOICES, defaults as cfg_defaults
from spine_models.data.records import Sample, SpineDataset
from spine_models.data.torch_datasets import SegmentationTorchDataset, read_mask, structure_targets
from spine_models.data.transforms import PreprocessConfig, augmentation_preset, preprocess
from spine_models.data.vertebra_targets import DISC_STRUCTURES, has_disc_truth, has_vertebra_truth
from spine_models.engine.base import TASK_OPTIONS, BasePredictor, Film
from spine_models.engine.callbacks import Callback
from spine_models.engine.runtime import network_for
from spine_models.engine.trainer import BaseTrainer, init_from_run, new_card, write_card
from spine_models.errors import ConfigError, DatasetError
from spine_models.io.pixels import as_pixels
from spine_models.metrics.segmentation import mae_metric, mask_scores, score_mask, segmentation_metrics
from spine_models.models.cards import ModelCard, load_state
from spine_models.models.registry import create_model, get_spec
from spine_models.measure.cobb import LEVELS
from spine_models.results.segmentation import SegmentationResult

__all__ = ["STRUCTURES", "train", "train_parts", "SegmentTrainer", "Predictor", "evaluate", "score_mask", "read_pixels",
           "read_mask", "structure_targets", "resolve_size", "measure_masks", "cobb_from_mask", "full_height", "vertebra_instances",
           "TTA_MODES"]

# SPEC segmentation structures per view, in SPEC order
STRUCTURES: dict[str, tuple[str, ...]] = {
    "ap": ("vertebra", "spinous_process", "pedicle"),
    "lat": ("vertebra", "spinous_process", "disc_height", "anterior_line", "posterior_line"),
}


MIN_BODIES_COBB = 4  # fewer separate bodies than this: the mask cannot show a curve

# ----------------------------------------------------------------------------------------- images
def read_pixels(image: Any) -> tuple[np.ndarray, str, tuple[float, float] | None]:
    """(float32 HxW in [0, 1], de-identified name, pixel spacing (row, col) mm or None)."""
    return as_pixels(image)


def resolve_size(imgsz: Any, arch: str) -> tuple[int, int]:
    """(H, W) from cfg ``imgsz``: None = the arch's input, int N = N x N/2 (portrait film), or [H, W]."""
    if imgsz is None or imgsz == [] or imgsz == "":
        s = get_spec(arch, "segment").input_size
        return (int(s[0]), int(s[1])) if isinstance(s, (tuple, list)) else (int(s), int(s) // 2)
    if isinstance(imgsz, (int, float)):
        return int(imgsz), int(imgsz) // 2
    if isinstance(imgsz, (list, tuple)) and len(imgsz) == 2:
        return int(imgsz[0]), int(imgsz[1])
    raise ConfigError(f"segment config: imgsz={imgsz!r}; use null, an int (height; width = height/2) or [H, W]")


def _check_divisible(size: tuple[int, int], div: int = 32) -> None:
    if size[0] % div or size[1] % div:
        raise ConfigError(f"segment config: imgsz {size[0]}x{size[1]} must be multiples of {div} (U-Net pooling); "
                          f"e.g. {max(div, size[0] // div * div)}x{max(div, size[1] // div * div)}")


def _augmenter(name: str, size: tuple[int, int], seed: int):
    """The named preset (``data.transforms.augmentation_preset``), applied to the resized image and its masks
    together (train part only); None for ``none``. Seeded: the engine-local pipeline it replaced drew from an
    unseeded generator, so two runs with the same --seed trained different weights."""
    if name in ("none", "", None):
        return None
    return augmentation_preset(name, size, targets="mask", seed=seed)


# ---------------------------------------------------------------------------------------- training
def _select(ds: SpineDataset, view: str | None, structures: Sequence[str]) -> tuple[str | None, list[str], list[Sample]]:
    """The view to train, its structures (SPEC order first) and the samples that have masks for them."""
    with_masks = [s for s in ds.samples if s.path is not None and (s.masks or has_vertebra_truth(s) or has_disc_truth(s))]
    if not with_masks:
        raise DatasetError(f"{ds.root or ds.name}: no sample has masks, vertebra corners or vertebra boxes; "
                           "segmentation needs the synth layout (DIR/masks/<structure>/<id>.png), the landmark "
                           "layout (landmarks.csv) or YOLO vertebra boxes")
    views = Counter(s.view for s in with_masks)
    if view is None:
        view = views.most_common(1)[0][0]
    chosen = [s for s in with_masks if s.view == view or s.view is None or view is None]
    if not chosen:
        raise DatasetError(f"{ds.root or ds.name}: no {view!r} samples with masks; views present: {dict(views)}")
    present = set().union(*(s.masks.keys() for s in chosen))
    if any(has_vertebra_truth(s) for s in chosen):
        present.add("vertebra")
    if any(has_disc_truth(s) for s in chosen):
        present.update(DISC_STRUCTURES)
    if structures:
        missing = [s for s in structures if s not in present]
        if missing:
            raise ConfigError(f"segment config: structures {missing} have no masks in the data; present: {sorted(present)}")
        structs = list(structures)
    else:
        spec = STRUCTURES.get(view or "", ())
        structs = [s for s in spec if s in present] + sorted(present - set(spec))
    return view, structs, chosen


def train(cfg: dict, out_dir: str | Path, *, callbacks: Callback | list | None = None, quiet: bool = False) -> Path:
    """Load ``cfg["data"]``, split it per patient, train, evaluate on the test part; returns card.json."""
    return SegmentTrainer(cfg, out_dir, callbacks=callbacks, quiet=quiet).train()


def train_parts(parts: dict[str, SpineDataset], cfg: dict, out_dir: str | Path, *,
                callbacks: Callback | list | None = None, quiet: bool = False) -> Path:
    """Train on already-split parts ``{"train", "val", "test"}`` (tests and callers with their own split)."""
    return SegmentTrainer(cfg, out_dir, parts=parts, callbacks=callbacks, quiet=quiet).train()


class SegmentTrainer(BaseTrainer):
    """U-Nets on the one Trainer contract (``engine.trainer.BaseTrainer``): masks per structure, the configured
    loss, per-structure Dice on validation, test metrics by :func:`evaluate` into the card."""

    task = "segment"
    distributed = True  # torchrun / --nproc: DDP over the one fit (engine.distributed)

    def __init__(self, cfg: dict, out_dir: str | Path, *, parts: dict[str, SpineDataset] | None = None,
                 callbacks: Any = None, quiet: bool = False) -> None:
        cfg = {**cfg_defaults("segment"), **{k: v for k, v in cfg.items() if v is not None}}
        cfg["task"] = "segment"
        _check_tta(cfg["tta"], "segment config: tta")
        super().__init__(cfg, out_dir, callbacks=callbacks, quiet=quiet)
        self.parts = parts

    def log(self, msg: str) -> None:
        self.user_callbacks.on_log(msg)
        if not self.quiet:
            print(msg, file=sys.stderr)

    def _split(self) -> dict[str, SpineDataset]:
        from spine_models.data.adapters import load_dataset
        from spine_models.data.splits import split_dataset

        full = self.cfg
        if not full.get("data"):
            raise ConfigError("segment training needs --data DIR (a synth folder with masks/)")
        ds = load_dataset(full["data"], task="segment")
        parts = split_dataset(ds, full["split"], seed=int(full["seed"]), method=str(full["split_method"]))
        if full.get("leakage_check", True):
            from spine_models.data.leakage import check_leakage
            from spine_models.errors import LeakageError

            try:
                check_leakage(parts)
            except LeakageError as exc:  # the user's data, not our bug: exit 2 with the message
                raise DatasetError(f"{exc} (or train anyway with --set leakage_check=false)") from None
        return parts

    def get_dataset(self) -> None:
        from torch.utils.data import DataLoader

        from spine_models._env import get_device
        from spine_models.engine.trainer import make_generator, seed_worker
        from spine_models.models.segmentation import build_loss

        cfg = self.cfg
        self.arch = arch = cfg["model"]
        get_spec(arch, "segment")  # unknown names fail here with the valid ones
        if self.parts is None:
            self.parts = self._split()
        parts = self.parts
        self.view, self.structures, self.train_samples = _select(parts["train"], cfg.get("view"), cfg.get("structures") or [])
        view, structures, train_samples = self.view, self.structures, self.train_samples
        _, _, self.val_samples = _select(parts["val"], view, structures) if parts.get("val") and parts["val"].samples else (None, None, [])
        self.test_ds = parts.get("test")
        self.size = size = resolve_size(cfg.get("imgsz"), arch)
        _check_divisible(size, 32 if arch.startswith("unet_res") else 16 if arch == "unet_study" else 4)
        self.device = get_device(cfg.get("device"))
        self.norm = norm = dict(cfg.get("normalization") or {"kind": "minmax"})
        aug = _augmenter(cfg.get("augment", "none"), size, self.seed)
        self.bh = bh = _check_body_height(cfg["body_height"])
        self.pre = pre = PreprocessConfig.for_unet(size, norm, cfg["tta"])
        train_t = SegmentationTorchDataset(train_samples, structures, cfg=pre, augment=aug, cache=bool(cfg["cache"]),
                                           body_height=bh)
        val_t = SegmentationTorchDataset(self.val_samples or train_samples, structures, cfg=pre, cache=bool(cfg["cache"]),
                                         body_height=bh)
        if not self.val_samples:
            self.log("no validation samples with masks: validating on the train part (early stopping is then optimistic)")
        self.generator = make_generator(self.seed)
        workers = int(cfg.get("workers") or 0)
        self.train_loader = DataLoader(train_t, batch_size=int(cfg["batch"]), shuffle=True, num_workers=workers,
                                       generator=self.generator, worker_init_fn=seed_worker,
                                       drop_last=len(train_t) > int(cfg["batch"]))
        self.max_steps = int(cfg.get("max_steps") or 0)
        if self.max_steps > 0:
            self.train_loader = _Limited(self.train_loader, self.max_steps)
        self.val_loader = DataLoader(val_t, batch_size=int(cfg["batch"]), shuffle=False, num_workers=workers)
        self.loss_fn = build_loss(cfg["loss"], float(cfg["smooth"]))
        self.thr = float(cfg["threshold"])

    def get_model(self) -> Any:
        from spine_models.engine.trainer import seed_everything

        seed_everything(self.seed)
        model = create_model(self.arch, task="segment", num_classes=len(self.structures), in_chans=1).to(self.device)
        init_from_run(model, self.cfg.get("init"), "segment", self.log)
        return model

    def get_optimizer(self, model: Any) -> Any:
        import torch

        return torch.optim.Adam(model.parameters(), lr=float(self.cfg["lr"]), weight_decay=float(self.cfg["weight_decay"]))

    def loss(self, output: Any, target: Any) -> Any:
        return self.loss_fn(output, target)

    def validate(self, m: Any) -> dict[str, float]:
        """Validation loss and Dice (mean and per structure) at the card's mask threshold."""
        return _validate_segmenter(m, self.val_loader, self.loss_fn, self.structures, self.thr, self.device, self.max_steps)

    def fit_options(self) -> dict[str, Any]:
        vm = self.cfg["val_metric"]
        return {"val_metric": vm, "mode": "min" if vm.endswith("loss") else "max", "patience": int(self.cfg["patience"]),
                "resume": self.cfg.get("resume") or False, "generator": self.generator}

    def cfg_record(self) -> dict[str, Any]:
        return {**self.cfg, "structures": self.structures, "view": self.view, "imgsz": list(self.size)}

    def finish(self, model: Any, fr: Any) -> Path:
        from spine_models.engine.trainer import write_json

        cfg, out, arch, view, structures = self.cfg, self.out, self.arch, self.view, self.structures
        model.load_state_dict(fr.best_state)
        data_name = ", ".join(str(d) for d in (cfg.get("data") if isinstance(cfg.get("data"), list) else [cfg.get("data")]) if d) \
            or self.parts["train"].name
        card = new_card(
            out, task="segment", arch=arch, state_dict=model.state_dict(), arch_kwargs={"num_classes": len(structures), "in_chans": 1},
            id=cfg.get("id") or f"{arch}-{out.resolve().name}",
            view=("mri" if str(view or "").startswith("mri") else view or "any"), trained_on=data_name,
            input_size=list(self.size), train_command=cfg.get("train_command") or _reconstruct_command(cfg, out),
            license="Apache-2.0", structures=structures, in_chans=1, normalization=self.norm,
            preprocessing={"resize_mode": "stretch", "input_orientation": "HxW portrait", "masks": "resized back bilinear",
                           "tta": cfg["tta"], "body_height": self.bh, **self.pre.to_dict()},
            thresholds={"mask": self.thr},
            limitations=["Trained on the synthetic phantom unless trained_on says otherwise; real films differ."],
            notes=[f"loss {cfg['loss']}, best epoch {fr.best_epoch} of {fr.epochs_run} ({fr.stopped_by}), "
                   f"train time {self.summary['train_seconds']:.0f} s on {self.device}"],
        )
        test_ds = self.test_ds
        eval_ds = test_ds if test_ds is not None and any(s.masks for s in test_ds.samples) else None
        if eval_ds is not None:
            rep = evaluate(card, eval_ds, quiet=self.quiet, n_resamples=int(cfg["eval_resamples"]))
            card.metrics = rep["metrics"]
            write_json(out / "test_predictions.json", rep["predictions"])
        else:
            self.log("no test samples with masks: the card carries no metrics")
        try:
            from spine_models.data.splits import split_provenance
            card.data = {"split": split_provenance(self.parts), "evaluated_on": "test" if eval_ds is not None else None}
        except (ImportError, KeyError, StopIteration):
            card.data = {"n_train": len(self.train_samples), "n_val": len(self.val_samples)}
        return write_card(card, out)


def _validate_segmenter(m: Any, val_loader: Any, loss_fn: Any, structures: Sequence[str], thr: float, device: Any,
                        max_steps: int) -> dict[str, float]:
    """Validation loss and Dice per structure (pixels without truth ignored), the model's mode restored."""
    import torch

    with torch.no_grad():
        was = m.training
        m.eval()
        inter = np.zeros(len(structures))
        total = np.zeros(len(structures))
        dices: list[np.ndarray] = []
        losses = []
        for i, (x, y) in enumerate(val_loader):
            if max_steps and i >= max_steps:
                break
            logits = m(x.to(device)).float().cpu()
            losses.append(float(loss_fn(logits, y)))
            valid = (y >= 0).numpy()  # ignored pixels (no truth) count on neither side
            p = (torch.sigmoid(logits) > thr).numpy() & valid
            t = (y > 0.5).numpy()
            it = (p & t).sum((2, 3))
            su = p.sum((2, 3)) + t.sum((2, 3))
            d = np.where(su == 0, 1.0, 2 * it / np.maximum(su, 1))
            dices.append(np.where(valid.any((2, 3)), d, np.nan))
            inter += it.sum(0)
            total += su.sum(0)
        m.train(was)
        d = np.concatenate(dices) if dices else np.zeros((0, len(structures)))
        res = {"val_loss": float(np.mean(losses)) if losses else float("nan"),
               "val_dice": float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")}
        for k, s in enumerate(structures):
            col = d[:, k] if d.size else d
            res[f"val_dice_{s}"] = float(np.nanmean(col)) if np.isfinite(col).any() else float("nan")
        return res


class _Limited:
    """A DataLoader cut to ``n`` batches per epoch (``max_steps``)."""

    def __init__(self, loader: Any, n: int) -> None:
        self.loader, self.n = loader, n

    def __len__(self) -> int:
        return min(self.n, len(self.loader))

    def __iter__(self):
        for i, b in enumerate(self.loader):
            if i >= self.n:
                break
            yield b


def _reconstruct_command(cfg: dict, out: Path) -> str:
    data = cfg.get("data") or []
    data = data if isinstance(data, list) else [data]
    parts = ["spine-models", "train", "--task", "segment", "--model", str(cfg["model"])]
    for d in data:
        parts += ["--data", str(d)]
    parts += ["--out", str(out), "--epochs", str(cfg["epochs"]), "--seed", str(cfg["seed"])]
    return " ".join(parts)


# ---------------------------------------------------------------------------------------- inference
def cobb_from_mask(vertebra_mask: np.ndarray, pixel_spacing_mm: tuple[float, float] | None = None
                   ) -> tuple[dict[str, Any], Any]:
    """(body landmarks, CobbResult or None) from an AP vertebra mask: the one Cobb path of the engine.

    Body tilts from pixel moments, fused with the line through the body centres (measure.fuse_tilts):
    phantom AP test set (seed 911), shipped U-Net masks: Cobb MAE 3.03 -> 1.99 deg (tuned on seed 123).
    None when fewer than ``MIN_BODIES_COBB`` separate bodies are found.
    """
    from spine_models.measure import cobb_angle, vertebrae_from_mask

    lm = vertebrae_from_mask(vertebra_mask, orientation="moments")
    if len(lm) < MIN_BODIES_COBB:
        return lm, None
    return lm, cobb_angle(lm, pixel_spacing_mm=pixel_spacing_mm, angles="fused")


def full_height(landmarks: dict[str, Any], body_height: float) -> dict[str, Any]:
    """Bodies found on a mask of a model trained on bodies drawn at ``body_height`` of their height (card key
    ``body_height``), given their full height again about each centre."""
    if body_height == 1.0:
        return landmarks
    from spine_models.data.vertebra_targets import body_height_scaled

    return {k: [tuple(p) for p in body_height_scaled(c, 1.0 / body_height)] for k, c in landmarks.items()}


def vertebra_instances(landmarks: dict[str, Any], prob: np.ndarray) -> list[dict[str, Any]]:
    """One dict per body (name, 4 corners, box, score) from its corners and the vertebra probability map.

    ``score`` is the mean probability inside the body's quadrilateral: how sure the model is that a
    body sits there (it ranks the boxes for vertebra AP50 and tells a clinician which bodies are weak)."""
    import cv2

    from spine_models.metrics.landmarks import quad_box

    out = []
    h, w = prob.shape[:2]
    for name, corners in landmarks.items():
        c = np.asarray(corners, np.float64).reshape(4, 2)
        x1, y1, x2, y2 = quad_box(c)
        xa, ya = max(0, int(math.floor(x1))), max(0, int(math.floor(y1)))
        xb, yb = min(w, int(math.ceil(x2)) + 1), min(h, int(math.ceil(y2)) + 1)
        score = 0.0
        if xb > xa and yb > ya:
            poly = np.zeros((yb - ya, xb - xa), np.uint8)
            cv2.fillPoly(poly, [np.round(c - [xa, ya]).astype(np.int32)], 1)
            sel = prob[ya:yb, xa:xb][poly > 0]
            score = float(sel.mean()) if sel.size else 0.0
        out.append({"name": name, "corners": [[round(float(x), 1), round(float(y), 1)] for x, y in c],
                    "box": [round(v, 1) for v in (x1, y1, x2, y2)], "score": round(score, 4)})
    return out


def measure_masks(masks: dict[str, np.ndarray], view: str, pixel_spacing_mm: tuple[float, float] | None = None,
                  *, ap_read: tuple[dict[str, Any], Any] | None = None) -> dict[str, Any]:
    """Cobb (AP) or slip % + Meyerding + disc heights (lateral) from full-resolution masks.

    ``ap_read``: the ``cobb_from_mask`` result when the caller already has it (the Predictor keeps the
    corners for the result), so the bodies are not found twice."""
    from spine_models.measure import measured

    out: dict[str, Any] = {}
    vert = masks.get("vertebra")
    is_ap = view == "ap" or (view not in ("lat",) and "pedicle" in masks)
    if vert is None or not np.any(vert):
        if is_ap and vert is not None:  # say why there is no angle instead of leaving it out
            out["cobb"] = {"cobb_deg": None, "n_vertebrae": 0,
                           "note": "no vertebral body found: not an AP spine film, or one this model cannot read"}
        return out
    # each read is guarded: one that raises is a failed measurement of this film, never the end of the result
    if is_ap:
        out["cobb"] = measured("cobb", _cobb_measurement, vert, pixel_spacing_mm, ap_read)
    if view == "lat" or (view not in ("ap",) and "disc_height" in masks):
        out["slip"] = measured("slip", _slip_measurement, masks, pixel_spacing_mm)
    return out


def _cobb_measurement(vert: np.ndarray, pixel_spacing_mm: tuple[float, float] | None,
                      ap_read: tuple[dict[str, Any], Any] | None) -> dict[str, Any]:
    """The ``cobb`` measurement dict of an AP vertebra mask (an explained "cannot measure" when too few bodies)."""
    lm, res = ap_read if ap_read is not None else cobb_from_mask(vert, pixel_spacing_mm)
    if res is None:
        return {"cobb_deg": None, "n_vertebrae": len(lm),
                "note": f"only {len(lm)} separate vertebral bodies found; Cobb needs {MIN_BODIES_COBB}"}
    return {**res.to_dict(), "n_vertebrae": len(lm), **_plausibility(lm, res.max_angle, vert.shape)}


def _slip_measurement(masks: dict[str, np.ndarray], pixel_spacing_mm: tuple[float, float] | None) -> dict[str, Any]:
    """The ``slip`` measurement dict of lateral masks (slip_percent None with a note when fewer than 2 bodies)."""
    from spine_models.measure import slip_from_mask

    slip = slip_from_mask(masks["vertebra"], spinous_mask=masks.get("spinous_process"), pixel_spacing_mm=pixel_spacing_mm,
                          disc_mask=masks.get("disc_height"), posterior_line_mask=masks.get("posterior_line"))
    if slip["level"] is None:
        slip.update(slip_percent=None, meyerding_grade=None, meyerding=None,
                    note=f"only {len(slip['vertebrae'])} separate vertebral bodies found; slip needs 2")
    return slip


GAP_WARNING = "large gaps between bodies: parts of the column were not found"  # a plausibility warning (_plausibility)


def _plausibility(lm: dict[str, Any], cobb_deg: float, shape: tuple[int, ...]) -> dict[str, Any]:
    """``{"reliable": bool, "warnings": [...]}`` for a Cobb read off a predicted mask.

    Why: on real films the phantom-trained U-Nets mark specks on the skull, text and pelvis (seen on
    the Fraiwan films, docs/seg_real_overlays.md); the measurement then returns a confident-looking
    number. These checks catch what does not look like one spinal column: too few or too many
    bodies, bodies that do not stack into a column, and angles no Cobb measurement reaches."""
    warnings = []
    n = len(lm)
    if not 8 <= n <= len(LEVELS) + 1:
        warnings.append(f"{n} separate bodies found; a spine film shows about 10-18")
    cs = np.array([np.mean(np.asarray(c, float), axis=0) for c in lm.values()]) if lm else np.zeros((0, 2))
    if len(cs) >= 2:
        span = float(cs[:, 1].max() - cs[:, 1].min())
        if span < 0.35 * shape[0]:
            warnings.append(f"the bodies span {span / shape[0]:.0%} of the film height; a spine column spans more")
        gaps = np.diff(np.sort(cs[:, 1]))
        if len(gaps) and float(gaps.max()) > 4 * max(float(np.median(gaps)), 1.0):
            warnings.append(GAP_WARNING)
    if cobb_deg > 90:
        warnings.append(f"Cobb {cobb_deg:.0f} deg is beyond what the measurement can mean (> 90)")
    return {"reliable": not warnings, "warnings": warnings}


TTA_MODES = CHOICES["segment"]["tta"]


def _check_body_height(value: Any) -> float:
    """``body_height`` in (0.3, 1]: the share of each body's height drawn in corner targets."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not 0.3 < v <= 1.0:
        raise ConfigError(f"segment config: body_height={value!r}; use a number in (0.3, 1] (1 = full bodies)")
    return v


def _check_tta(value: Any, where: str) -> str:
    if value not in TTA_MODES:
        raise ConfigError(f"{where}={value!r}; valid: {', '.join(TTA_MODES)}")
    return str(value)


class Predictor(BasePredictor):
    """A trained segment model ready to run on films: ``Predictor(card).predict(image)``.

    ``predict(image, pixel_spacing_mm=None, measure=True, threshold=None)``: masks per structure at the film's
    own resolution, plus its measurements (Cobb on AP, slip on lateral; in mm when the spacing is known).

    ``tta`` (default: the card's ``preprocessing["tta"]``, else none): ``hflip`` averages the
    probabilities of the film and of its mirror image (mirrored back). Why: the U-Nets were trained with
    horizontal flips, and their outline errors on a film and on its mirror are partly independent, so
    the mean gives steadier outlines. Phantom figures without / with it (``spine-models evaluate``):
    seg_unet_ap Cobb MAE, tuning set xray-ap seed 21 (150 films) 1.56 -> 1.38 deg, its card set (seed 911)
    1.78 -> 1.45, seed 9912 1.34 -> 1.12; seg_unet_lat slip MAE, card set (seed 912) 6.22 -> 5.44 %. It
    costs a second forward pass.
    """

    task = "segment"
    OPTIONS = TASK_OPTIONS["segment"]

    def __init__(self, card: ModelCard | str | Path, device: Any = None, *, tta: str | None = None) -> None:
        if not isinstance(card, ModelCard):
            card = ModelCard.from_json(card)
        if card.task != "segment":
            raise ConfigError(f"model {card.id!r} is a {card.task} model, not a segment model")
        super().__init__(card, device)
        sd, kw = load_state(card)
        self.model = create_model(card.arch, task="segment", **kw)
        self.model.load_state_dict(sd)
        self.model.eval().to(self.device)
        self.structures = list(card.structures or [])
        self.threshold = float(card.thresholds.get("mask", 0.5))
        self.body_height = _check_body_height((card.preprocessing or {}).get("body_height", 1.0))
        tta = _check_tta((card.preprocessing or {}).get("tta", "none") if tta is None else tta, f"model {card.id!r}: tta")
        self.pre = replace(PreprocessConfig.from_card(card), tta=tta)
        self.size, self.tta = self.pre.size, self.pre.tta
        self.net = network_for(card, self.model, (1, self.pre.in_chans, *self.size), self.device)  # engine.runtime

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(K, H, W) float32 sigmoid probabilities at the film's original resolution (TTA as ``self.tta``)."""
        film = Film(pixels)
        raw = self.infer(self.preprocess(film))
        return film.extra["geometry"].maps_to_film(raw)

    # ------------------------------------------------------------------ stages
    def read(self, image: Any, *, pixel_spacing_mm: tuple[float, float] | float | None = None, **_: Any) -> Film:
        """The film, with ``pixel_spacing_mm`` (one number or (row, col)) in place of its own when given."""
        pixels, name, sp = read_pixels(image)
        if pixel_spacing_mm is not None:
            sp = (float(pixel_spacing_mm), float(pixel_spacing_mm)) if isinstance(pixel_spacing_mm, (int, float)) \
                else (float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1]))
        return Film(pixels, name, sp)

    def preprocess(self, film: Film, **_: Any) -> Any:
        """(1 or 2, 1, H, W) tensor: the stretched, normalised film (and its mirror for ``hflip`` TTA), by
        ``data.transforms.preprocess``; the way back in ``film.extra["geometry"]``."""
        x, film.extra["geometry"] = preprocess(film.pixels, self.pre)
        return x.to(self.device)

    def forward(self, xb: Any, **_: Any) -> np.ndarray:
        """(N, K, h, w) sigmoid probabilities of a stacked batch of input rows (a film and, with TTA, its mirror)."""
        import torch

        with torch.inference_mode():
            return torch.sigmoid(self.net(xb).float()).cpu().numpy()

    def collect(self, p: np.ndarray, **_: Any) -> np.ndarray:
        """(K, h, w) sigmoid probabilities of one film at the model's size (the mirror's mirrored back and averaged)."""
        return (p[0] + p[1][..., ::-1]) / 2 if self.tta == "hflip" else p[0]

    def postprocess(self, raw: np.ndarray, film: Film, x: Any, *, measure: bool = True, threshold: float | None = None,
                    **_: Any) -> SegmentationResult:
        """Masks at the film's resolution, the bodies found on AP films and the measurements."""
        pixels, sp = film.pixels, film.spacing
        probs = film.extra["geometry"].maps_to_film(raw)
        thr = self.threshold if threshold is None else float(threshold)
        masks = {s: probs[k] > thr for k, s in enumerate(self.structures)}
        ap_read, bodies = None, []
        vert = masks.get("vertebra")
        is_ap = self.card.view == "ap" or (self.card.view != "lat" and "pedicle" in masks)
        if measure and is_ap and vert is not None and np.any(vert):
            try:
                ap_read = cobb_from_mask(vert, sp)
            except Exception:  # noqa: BLE001 - measure_masks reads it again and records the failure in the result
                ap_read = None
        if ap_read is not None:
            ap_read = (full_height(ap_read[0], self.body_height), ap_read[1])
            bodies = vertebra_instances(ap_read[0], probs[self.structures.index("vertebra")])
        meas = measure_masks(masks, self.card.view, sp, ap_read=ap_read) if measure else {}
        if sp is not None:
            meas["pixel_spacing_mm"] = list(sp)
        return SegmentationResult(model_id=self.card.id, source=film.name, image_size=tuple(pixels.shape[:2]),
                                  device=str(self.device), structures=list(self.structures), masks=masks,
                                  measurements=meas, vertebrae=bodies)

    def memo_settings(self) -> tuple:
        """What besides the weights decides a result (a card edited in place or another ``tta`` is another entry)."""
        return (self.tta, self.threshold, self.body_height, self.card.view, tuple(self.structures), repr(self.pre))


# --------------------------------------------------------------------------------------- evaluation
def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _spacing(meta: dict) -> tuple[float, float] | None:
    v = meta.get("pixel_spacing_mm")
    if isinstance(v, (int, float)) and _finite(v):
        return float(v), float(v)
    if isinstance(v, str) and v:
        try:
            parts = [float(p) for p in v.replace("x", " ").replace(",", " ").replace(";", " ").split()]
        except ValueError:
            return None
        return (parts[0], parts[-1]) if parts else None
    return None


def _truth_boxes(s: Sample) -> list[tuple[float, float, float, float]]:
    """Vertebra boxes of a sample: around its corners (landmark layout) else its YOLO vertebra boxes."""
    from spine_models.data.vertebra_targets import vertebra_boxes
    from spine_models.metrics.landmarks import quad_box

    if s.landmarks:
        return [quad_box(c) for c in s.landmarks.values()]
    return vertebra_boxes(s.boxes)


def evaluate(card: ModelCard | str | Path, dataset: SpineDataset, *, quiet: bool = False,
             n_resamples: int = 1000) -> dict[str, Any]:
    """SPEC segment metrics on ``dataset``, CIs over patients.

    Mask folders: Dice/IoU per structure. Cobb truth (``cobb_deg`` or corners): ``cobb_mae_deg``,
    ``cobb_smape_percent``, ``cobb_within_5deg`` (metrics.landmarks) -- a film whose Cobb could not be read
    counts as 0 deg, so failures raise the error instead of leaving the average -- and
    ``cobb_not_shown_fraction``, the share of films the app answers "cannot measure" on. Corners
    (landmark layout): ``landmark_mre_px`` / ``landmark_mre_rel`` over the bodies matched to truth,
    ``vertebrae_matched_fraction``, ``vertebra_ap50`` (the predicted bodies' boxes, their corners' extent) and
    Dice/IoU of the vertebra mask against the filled corner quadrilaterals; YOLO vertebra boxes:
    ``per_class.vertebra.ap50`` (and ``vertebra_ap50``) of each vertebra's ``box``.
    Lateral slip truth: ``slip_mae_percent``."""
    from spine_models._progress import progress
    from spine_models.data.vertebra_targets import has_vertebra_truth
    from spine_models.measure import cobb_angle, cobb_read
    from spine_models.metrics.detection import ImageBoxes, detection_map_ci
    from spine_models.metrics.landmarks import LandmarkAccumulator, quad_box

    pred = card if isinstance(card, BasePredictor) else Predictor(card)  # a composite's Predictor (engine.landmarks) too
    view = pred.card.view
    ap_model = "vertebra" in pred.structures and view != "lat"
    samples = [s for s in dataset.samples if s.path is not None and (s.masks or (ap_model and has_vertebra_truth(s)))
               and (view in ("any", None) or s.view in (None, view))]
    if not samples:
        raise DatasetError(f"{dataset.root or dataset.name}: no {view} samples with masks, vertebra corners or "
                           f"vertebra boxes to evaluate model {pred.card.id!r}; this model takes the synth layout "
                           "(masks/), the landmark layout (landmarks.csv) or a YOLO layout with class vertebra")
    per_image: list[dict[str, dict[str, float]]] = []
    mask_groups: list[str] = []
    rows: list[dict[str, Any]] = []
    slip_p, slip_t, slip_g = [], [], []
    acc = LandmarkAccumulator()
    not_shown: list[float] = []
    box_pred: list[ImageBoxes] = []
    box_true: list[ImageBoxes] = []
    box_groups: list[str] = []
    any_yolo = False
    for s in progress(samples, total=len(samples), desc="evaluate", quiet=quiet):
        res = pred.predict(s.path, pixel_spacing_mm=_spacing(s.meta))
        row: dict[str, Any] = {"id": s.id, "patient_id": s.patient_id}
        truth = {}
        if s.masks:
            truth = {st: read_mask(p, res.image_size) for st, p in s.masks.items() if st in pred.structures}
        elif s.landmarks and "vertebra" in pred.structures:  # landmark layout: Dice against the corner quads
            from spine_models.data.vertebra_targets import quad_mask

            truth = {"vertebra": quad_mask(tuple(res.image_size), s.landmarks) > 0.5}
        if truth:
            sc = mask_scores({k: v for k, v in res.masks.items() if k in truth}, truth)
            per_image.append(sc)
            mask_groups.append(s.patient_id)
            row.update(dice={k: round(v["dice"], 4) for k, v in sc.items()},
                       iou={k: round(v["iou"], 4) for k, v in sc.items()})
        if ap_model:
            truth_c = _finite(s.meta.get("cobb_deg"))
            if truth_c is None and s.landmarks:
                truth_c = cobb_angle(s.landmarks).max_angle
            cobb = res.measurements.get("cobb")
            if truth_c is not None:
                got = (cobb or {}).get("cobb_deg")
                acc.add_cobb(None if got is None else float(got), truth_c, s.patient_id)
                not_shown.append(float(not cobb_read(cobb).ok))
                row.update(cobb_pred=None if got is None else round(float(got), 2), cobb_true=round(truth_c, 2),
                           cobb_shown=cobb_read(cobb).ok)
            if s.landmarks:
                row.update(acc.add_corners([v["corners"] for v in res.vertebrae], list(s.landmarks.values()),
                                           res.image_size[0], s.patient_id, pred_names=[v["name"] for v in res.vertebrae],
                                           truth_names=list(s.landmarks.keys())))
            tb = _truth_boxes(s)
            if tb:
                any_yolo = any_yolo or not s.landmarks
                box_true.append(ImageBoxes.make(tb, ["vertebra"] * len(tb)))
                # like with like: expert corners are the bodies', so a landmark folder's boxes are compared with the
                # bodies' boxes (the corners' extent); a YOLO folder's boxes with the model's vertebra box
                pb = [quad_box(v["corners"]) if s.landmarks else v["box"] for v in res.vertebrae]
                box_pred.append(ImageBoxes.make(pb, ["vertebra"] * len(res.vertebrae), [v["score"] for v in res.vertebrae]))
                box_groups.append(s.patient_id)
                row.update(vertebrae_found=len(res.vertebrae), vertebrae_true=len(tb))
        if "slip" in res.measurements:
            truth_s = _finite(s.meta.get("slip_percent"))
            if truth_s is not None:
                got = res.measurements["slip"]["slip_percent"]
                # failed measurement counts as "no slip"; a retrolisthesis reading compares as 0 because
                # the synth truth is the forward slip clipped at 0 (Meyerding grades forward slips only)
                p = max(0.0, float(got)) if got is not None else 0.0
                slip_p.append(p)
                slip_t.append(truth_s)
                slip_g.append(s.patient_id)
                row.update(slip_pred=round(p, 2), slip_true=round(truth_s, 2),
                           grade_pred=res.measurements["slip"]["meyerding_grade"],
                           grade_true=s.meta.get("meyerding_grade"))
        rows.append(row)
    metrics: dict[str, Any] = {"dice": {}, "iou": {}}  # SPEC keys; empty when no film has mask or corner truth
    if per_image:
        scored = [st for st in pred.structures if any(st in im for im in per_image)]
        metrics.update(segmentation_metrics(per_image, scored, groups=mask_groups, n_resamples=n_resamples))
    lm = acc.compute(n_resamples=n_resamples)
    lm.pop("cobb_failed_fraction", None)
    metrics.update(lm)
    if not_shown:
        from spine_models.metrics.bootstrap import bootstrap_ci

        metrics["cobb_not_shown_fraction"] = bootstrap_ci(lambda a: float(np.mean(a)), np.asarray(not_shown),
                                                          groups=acc.cobb_groups, n_resamples=n_resamples)
    if box_true:
        det = detection_map_ci(box_pred, box_true, ["vertebra"], n_resamples=n_resamples, groups=box_groups)
        metrics["vertebra_ap50"] = det["ap50"]["vertebra"]
        if any_yolo:
            metrics.setdefault("per_class", {})["vertebra"] = {"ap50": det["ap50"]["vertebra"]}
    if slip_t:
        metrics["slip_mae_percent"] = mae_metric(slip_p, slip_t, groups=slip_g, n_resamples=n_resamples)
    return {"metrics": metrics, "predictions": rows, "n": len(samples),
            "n_patients": len({s.patient_id for s in samples})}
