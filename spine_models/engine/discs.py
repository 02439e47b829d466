"""Disc grading on sagittal MR slices: the ``disc_grading`` composite (disc locator U-Net + multi-head grader).

Why a composite of two networks: finding discs needs the whole slice (where is the column, which end holds the
sacrum); grading a disc needs its own pixels at full detail. The locator is an ordinary ``segment`` model
(structures ``disc`` and ``disc_caudal``, trained with ``spine-models train --task segment``); the grader is trained
here on crops cut at the discs' boxes by the one crop function (:func:`spine_models.data.disc_crops.disc_crop`),
pinned to its locator by sha256 like every composite.

Training data (disc-grading layout): on slices whose boxes were recovered from the upstream crops, those boxes and
levels; on the other slices of training patients, the locator's own discs where it names their levels
(``pseudo_boxes``) — the gradings are per patient and level, so any slice of the patient with a named disc gives a
target. Held-out patients (the locator's recorded split, ``split_method: hash``) are never used.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from spine_models.config import CHOICES, check_cfg
from spine_models.data.disc_crops import CROP_MARGIN, CROP_SIZE, column_up, disc_crop
from spine_models.data.spider import FINDINGS, GRADABLE_FINDINGS, LUMBAR_LEVELS, grading_targets
from spine_models.data.vertebra_targets import DISC_CORE, disc_boxes
from spine_models.engine.base import TASK_OPTIONS, BasePredictor, Film
from spine_models.engine.predictor import segment_component, segment_predictor
from spine_models.engine.runtime import network_for
from spine_models.engine.trainer import BaseTrainer, new_card, write_card
from spine_models.errors import ConfigError, DatasetError
from spine_models.measure.discs import DiscRead, discs_from_probs
from spine_models.models.cards import ModelCard, load_state
from spine_models.models.grading import PFIRRMANN_GRADES, cam_layers, split_outputs
from spine_models.models.registry import create_model
from spine_models.results.discs import DiscGrade, DiscGradingResult

__all__ = ["ARCH", "PFIRRMANN_LOSSES", "ordinal_soft_targets", "is_disc_model", "DiscGradingPredictor", "Predictor", "grade", "grader_batch", "grades_from_logits", "train", "DiscGraderTrainer", "evaluate", "truth_discs", "grading_metrics"]

ARCH = "disc_grading"
PFIRRMANN_LOSSES = CHOICES["segment"]["grader_loss"]  # ce: cross-entropy | sord: soft ordinal labels (neighbours share mass)


def is_disc_model(card: ModelCard) -> bool:
    """A disc grader (``disc_grading``) or a disc locator (a segment model with a ``disc`` structure)."""
    return card.arch == ARCH or (card.task == "segment" and "disc" in (card.structures or []))


def read_discs(locator: Any, pixels: np.ndarray) -> tuple[DiscRead, np.ndarray]:
    """The locator's disc read on a slice and its (K, H, W) probability maps at slice resolution."""
    probs = locator.probabilities(pixels)
    st = list(locator.structures)
    core = tuple((locator.card.preprocessing or {}).get("disc_core", DISC_CORE))
    read = discs_from_probs(probs[st.index("disc")], probs[st.index("disc_caudal")] if "disc_caudal" in st else None,
                            threshold=locator.threshold, core=core)
    return read, probs


def truth_discs(sample: Any) -> list[tuple[str, tuple[float, float, float, float]]]:
    """(level, box) of a sample's level-labelled disc boxes, L5-S1 upwards (empty when the levels are uncertain)."""
    from spine_models.data.spider import IVD_LEVELS

    if not sample.meta.get("levels_certain"):
        return []
    out = []
    for lvl in IVD_LEVELS.values():
        bs = disc_boxes(sample.boxes, lvl)
        if bs:
            out.append((lvl, bs[0]))
    return out


def _up_from(boxes: Sequence[tuple[float, float, float, float]]) -> tuple[float, float]:
    return column_up([((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes])


class DiscGradingPredictor(BasePredictor):
    """``predict(image, cam=False) -> DiscGradingResult``: discs found, named and graded on one sagittal slice.

    Stages (``engine.base``): read the slice, ``infer`` runs the locator and grades the crops cut at its named
    discs, ``postprocess`` assembles the result."""

    task = "segment"  # disc cards keep the SPEC task of their locator
    OPTIONS = TASK_OPTIONS["discs"]

    def __init__(self, card: ModelCard, device: Any = None) -> None:
        if not is_disc_model(card):
            raise ConfigError(f"model {card.id!r}: arch {card.arch!r} is neither {ARCH!r} nor a disc locator")
        super().__init__(card, device)
        self.model = None
        if card.arch != ARCH:  # a locator alone: discs and levels, no grades
            self.locator = segment_predictor(card, device)
            self.findings: list[str] = []
        else:
            sd, kw = load_state(card)
            self.locator = segment_component(kw, "locator", device)
            self.findings = list(kw.get("findings", FINDINGS))
            self.model = create_model(ARCH, task="segment", findings=self.findings, width=int(kw.get("width", 24)),
                                      members=int(kw.get("members", 1)))
            self.model.load_state_dict(sd)
            self.model.to(self.device).eval()
        self.size = tuple(card.input_size) if isinstance(card.input_size, (list, tuple)) else CROP_SIZE
        # the grader on the runtime its card (or SPINE_MODELS_RUNTIME) asks for; Grad-CAM stays on self.model (torch)
        self.net = network_for(card, self.model, (1, 1, *self.size), self.device) if self.model is not None else None
        self.margin = tuple(float(v) for v in (card.preprocessing or {}).get("crop_margin", CROP_MARGIN))
        self.structures = list(card.structures or ["disc", "disc_caudal"])

    def grade_crops(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Pfirrmann probabilities (N, 5), finding probabilities (N, F)) for crops (N, H, W) in [0, 1]."""
        return grade(self.model, crops, len(self.findings), self.device, net=self.net)

    def _cams(self, crops: np.ndarray, grades: np.ndarray) -> list[np.ndarray]:
        """Grad-CAM of each crop's predicted Pfirrmann grade (its logit, not a finding's) on the last conv block
        (every member's, averaged, for an ensemble)."""
        from spine_models.explain.gradcam import gradcam

        return [gradcam(self.model, torch.from_numpy(c[None, None].astype(np.float32)).to(self.device),
                        target_class=int(g), target_layer=cam_layers(self.model)).astype(np.float32)
                for c, g in zip(crops, grades)]

    def read(self, image: Any, **_: Any) -> Film:
        from spine_models.engine.segment import read_pixels

        pixels, name, sp = read_pixels(image)
        return Film(pixels, name, sp)

    def preprocess(self, film: Film, **_: Any) -> np.ndarray:
        return film.pixels  # the locator resizes the slice itself; crops are cut from the full-resolution slice

    def infer(self, pixels: np.ndarray, *, cam: bool = False, **_: Any) -> dict[str, Any]:
        """The locator's discs and maps, and for a grader the grades (and Grad-CAMs) of the crops at its discs."""
        read, probs = read_discs(self.locator, pixels)
        out: dict[str, Any] = {"read": read, "probs": probs, "crops": None, "pf": None, "fi": None, "cams": []}
        if read.discs:
            up = read.axis if read.levels_reliable else (0.0, -1.0)
            crops = np.stack([disc_crop(pixels, d.box, up, size=self.size, margin=self.margin) for d in read.discs])
            pf, fi = self.grade_crops(crops) if (read.levels_reliable and self.model is not None) else (None, None)
            cams = self._cams(crops, pf.argmax(1)) if (cam and pf is not None) else [None] * len(crops)
            out.update(crops=crops, pf=pf, fi=fi, cams=cams)
        return out

    def postprocess(self, raw: dict[str, Any], film: Film, x: Any, **_: Any) -> DiscGradingResult:
        read, probs, crops, pf, fi, cams = (raw[k] for k in ("read", "probs", "crops", "pf", "fi", "cams"))
        pixels = film.pixels
        thr = self.locator.threshold
        masks = {s: probs[k] > thr for k, s in enumerate(self.locator.structures)}
        grades: list[DiscGrade] = []
        note = read.note
        if read.discs:
            for i, d in enumerate(read.discs):
                g = DiscGrade(level=d.level, box=d.box, score=d.score)
                if pf is not None:
                    g.pfirrmann = int(np.argmax(pf[i])) + 1
                    g.pfirrmann_probs = [float(v) for v in pf[i]]
                    g.findings = {f: float(fi[i, j]) for j, f in enumerate(self.findings)}
                    g.calls = {f: bool(fi[i, j] >= float(self.card.thresholds.get(f, 0.5))) for j, f in enumerate(self.findings)}
                    g.cam = cams[i]
                    g.crop = crops[i] if cams[i] is not None else None
                grades.append(g)
            if not read.levels_reliable and self.model is not None:
                note = (note + "; " if note else "") + "discs are not graded without their levels"
        return DiscGradingResult(model_id=self.card.id, source=film.name, image_size=tuple(pixels.shape[:2]),
                                 device=str(self.device), structures=list(self.locator.structures), masks=masks,
                                 measurements={}, discs=grades, levels_reliable=read.levels_reliable, note=note,
                                 thresholds={f: float(self.card.thresholds.get(f, 0.5)) for f in self.findings})


Predictor = DiscGradingPredictor  # the engine-module contract (``card_engine(card).Predictor``)


# ------------------------------------------------------------------------------------------ training data
@dataclass
class _Disc:
    crop: np.ndarray  # (H, W) float16
    target: dict[str, int]
    patient: str
    series: str
    level: str
    source: str  # "truth" | "locator"


def collect_discs(samples: Sequence[Any], locator: Any | None, size: tuple[int, int], *,
                  pseudo: bool = True, quiet: bool = True,
                  margin: tuple[float, float] = CROP_MARGIN) -> list[_Disc]:
    """Graded disc crops of ``samples``: recovered boxes where a slice has them, else the locator's named discs."""
    from spine_models._progress import progress
    from spine_models.engine.segment import read_pixels

    out: list[_Disc] = []
    for s in progress(samples, desc="disc crops", quiet=quiet):
        grades = s.meta.get("gradings") or {}
        if not grades:
            continue
        truth = truth_discs(s)
        pixels = None
        if truth:
            pixels = read_pixels(s.path)[0]
            up = _up_from([b for _, b in truth])
            items = [(lvl, b, "truth") for lvl, b in truth]
        elif pseudo and locator is not None:
            pixels = read_pixels(s.path)[0]
            read, _ = read_discs(locator, pixels)
            if not read.levels_reliable:
                continue
            up = read.axis
            items = [(d.level, d.box, "locator") for d in read.discs if d.level]
        else:
            continue
        for lvl, box, src in items:
            if lvl in grades:
                out.append(_Disc(disc_crop(pixels, box, up, size=size, margin=margin).astype(np.float16), grading_targets(grades[lvl]),
                                 s.patient_id, s.id, lvl, src))
    return out


class _CropDataset(torch.utils.data.Dataset):
    def __init__(self, discs: Sequence[_Disc], findings: Sequence[str], augment: Any = None) -> None:
        self.discs, self.findings, self.augment = list(discs), list(findings), augment

    def __len__(self) -> int:
        return len(self.discs)

    def __getitem__(self, i: int):
        d = self.discs[i]
        x = d.crop.astype(np.float32)
        if self.augment is not None:
            x = self.augment(image=x)["image"]
        y = torch.tensor([d.target["pfirrmann"]] + [d.target[f] for f in self.findings], dtype=torch.float32)
        return torch.from_numpy(np.ascontiguousarray(x)[None]), y


def ordinal_soft_targets(grades: torch.Tensor, n: int = len(PFIRRMANN_GRADES), phi: float = 1.0) -> torch.Tensor:
    """Soft ordinal labels (SORD, Diaz & Marathe, CVPR 2019): ``softmax(-phi * (k - grade)^2)`` over the n classes.

    Why: Pfirrmann grades are ordered and neighbouring grades are confused by radiologists too; plain cross-entropy
    punishes a 3-for-4 as hard as a 1-for-5. Soft targets keep the 5-way softmax (so probabilities, argmax,
    Grad-CAM and the card stay as they are) while the loss respects the order."""
    k = torch.arange(n, dtype=torch.float32, device=grades.device)
    return torch.softmax(-float(phi) * (k[None] - grades.float()[:, None]) ** 2, dim=-1)


def _loss(findings: Sequence[str], pos_weight: torch.Tensor, kind: str = "ce", phi: float = 1.0) -> Any:
    if kind not in PFIRRMANN_LOSSES:
        raise ConfigError(f"grader_loss={kind!r}: use one of {', '.join(PFIRRMANN_LOSSES)}")
    ce = nn.CrossEntropyLoss()
    bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def f(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if logits.dim() == 3:  # an ensemble in training: each member's own loss (models.grading.DiscGraderEnsemble)
            return torch.stack([f(m, y) for m in logits]).sum()
        pf, fi = split_outputs(logits, len(findings))
        if kind == "sord":
            lp = -(ordinal_soft_targets(y[:, 0], pf.shape[-1], phi) * torch.log_softmax(pf, -1)).sum(-1).mean()
        else:
            lp = ce(pf, y[:, 0].long())
        return lp + bce(fi, y[:, 1:])
    return f


def _pair(value: Any, key: str) -> tuple[float, float]:
    """Two non-negative floats (a crop margin: share of the box's width, height on each side) or a one-line error."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r}: give two numbers, e.g. --set '{key}=[0.1,0.2]'") from None
    if a < 0 or b < 0:
        raise ConfigError(f"{key}={value!r}: margins are shares of the box and must be >= 0")
    return a, b


def _augmenter(name: str) -> Any:
    if name in ("none", "", None):
        return None
    from spine_models.data.transforms import augmentation_preset

    return augmentation_preset(name)


def grading_metrics(pf_true: np.ndarray, pf_prob: np.ndarray, f_true: np.ndarray, f_prob: np.ndarray,
                    findings: Sequence[str], thresholds: dict[str, float], groups: Sequence[str], *,
                    n_resamples: int = 1000) -> dict[str, Any]:
    """The disc-grading report keys (SPEC): Pfirrmann accuracy / within one grade / confusion matrix and per finding
    AUC, sensitivity and specificity at the card's threshold, each with a bootstrap CI over patients."""
    from spine_models.metrics.discs import finding_measures, pfirrmann_measures

    out = pfirrmann_measures(pf_true, pf_prob, groups=groups, n_resamples=n_resamples)
    out["per_class"] = {f: finding_measures(f_true[:, j], f_prob[:, j], thresholds.get(f, 0.5), groups=groups,
                                            n_resamples=n_resamples) for j, f in enumerate(findings)}
    return out


def grader_batch(crops: Any) -> torch.Tensor:
    """The grader's input for crops (N, H, W) in [0, 1]: the crops, then their mirror images — (2N, 1, H, W), one
    pass (anterior may be left or right)."""
    x = torch.from_numpy(np.asarray(crops, np.float32)[:, None])
    return torch.cat([x, torch.flip(x, dims=[-1])])


def grades_from_logits(out: torch.Tensor, n_findings: int) -> tuple[np.ndarray, np.ndarray]:
    """(Pfirrmann probabilities (N, 5), finding probabilities (N, F)) from the logits of a :func:`grader_batch`: each
    crop's and its mirror image's logits averaged, then softmax / sigmoid."""
    out = out.float()
    n = len(out) // 2
    a, b = split_outputs((out[:n] + out[n:]) / 2, n_findings)
    return torch.softmax(a, -1).cpu().numpy(), torch.sigmoid(b).cpu().numpy()


def grade(model: nn.Module, crops: Any, n_findings: int, device: Any, batch: int = 64,
          net: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(Pfirrmann probabilities (N, 5), finding probabilities (N, F)) of crops (N, H, W) in [0, 1], each the mean of
    the crop's and its mirror image's logits: the Predictor and training's validation. ``net``: the same network on
    another runtime (``engine.runtime.network_for``); default ``model`` on torch."""
    model.eval()
    forward = net if net is not None else model
    pfs, fis = [], []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            pf, fi = grades_from_logits(forward(grader_batch(crops[i:i + batch]).to(device)), n_findings)
            pfs.append(pf)
            fis.append(fi)
    if not pfs:
        return np.zeros((0, 5), np.float32), np.zeros((0, n_findings), np.float32)
    return np.concatenate(pfs), np.concatenate(fis)


def _predict_discs(model: nn.Module, discs: Sequence[_Disc], findings: Sequence[str], device: Any) -> tuple[np.ndarray, np.ndarray]:
    return grade(model, np.stack([d.crop for d in discs]) if discs else np.zeros((0, *CROP_SIZE)), len(findings), device)


def _targets(discs: Sequence[_Disc], findings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([d.target["pfirrmann"] for d in discs], int),
            np.array([[d.target[f] for f in findings] for d in discs], int).reshape(len(discs), len(findings)))


def train(cfg: dict, out_dir: str | Path, *, callbacks: Any = None, quiet: bool = False) -> Path:
    """Train the disc grader on the disc-grading layout behind a shipped/run locator; writes a run folder with a card."""
    return DiscGraderTrainer(cfg, out_dir, callbacks=callbacks, quiet=quiet).train()


class DiscGraderTrainer(BaseTrainer):
    """The disc grader on the one Trainer contract (``engine.trainer.BaseTrainer``): disc crops placed by the locator,
    Pfirrmann + finding losses, validation by mirror-averaged grading (:func:`grade`), Youden thresholds per finding."""

    task = "segment"

    def __init__(self, cfg: dict, out_dir: str | Path, *, callbacks: Any = None, quiet: bool = False) -> None:
        from spine_models.config import defaults

        super().__init__({**defaults("segment"), **{k: v for k, v in cfg.items() if v is not None}}, out_dir,
                         callbacks=callbacks, quiet=quiet)
        self.seed = int(self.cfg.get("seed", 0))
        check_cfg("segment", self.cfg)  # grader_loss, grader_members >= 1, ... from config's tables
        self.members = int(self.cfg.get("grader_members", 1))
        self.findings = list(self.cfg.get("grader_findings") or FINDINGS)
        if any(f not in GRADABLE_FINDINGS for f in self.findings) or len(set(self.findings)) != len(self.findings):
            raise ConfigError(f"grader_findings={self.findings}: name each once, from {', '.join(GRADABLE_FINDINGS)}")

    def get_dataset(self) -> None:
        from spine_models._env import get_device
        from spine_models.data.adapters import load_dataset
        from spine_models.data.splits import split_dataset
        from spine_models.engine.trainer import make_generator, seed_everything, seed_worker

        cfg, quiet = self.cfg, self.quiet
        if not cfg.get("locator"):
            raise ConfigError("disc_grading: set the disc locator with --set locator=<shipped id or run folder> "
                              "(a segment model with structures disc, disc_caudal)")
        seed_everything(self.seed)
        self.device = get_device(cfg.get("device"))
        self.locator = locator = segment_predictor(cfg["locator"])
        if "disc" not in locator.structures:
            raise ConfigError(f"disc_grading: locator {locator.card.id!r} has structures {locator.structures}; it needs disc")
        ds = load_dataset(cfg["data"] if isinstance(cfg["data"], list) else [cfg["data"]], task="segment")
        if not any(s.meta.get("gradings") for s in ds.samples):
            raise DatasetError("no gradings in the data; the disc grader needs the disc-grading layout (gradings.csv)", str(cfg["data"]))
        self.parts = parts = split_dataset(ds, ratios=cfg.get("split", "7:1:2"), seed=self.seed, stratify=False,
                                           method=str(cfg.get("split_method", "hash")))
        self.size = size = CROP_SIZE
        findings = self.findings
        t0 = time.perf_counter()
        pseudo = bool(cfg.get("pseudo_boxes", True))
        self.margin = margin = _pair(cfg.get("grader_margin", list(CROP_MARGIN)), "grader_margin")
        self.tr = tr = collect_discs(parts["train"].samples, locator, size, pseudo=pseudo, quiet=quiet, margin=margin)
        self.va = va = collect_discs(parts["val"].samples, locator, size, pseudo=pseudo, quiet=quiet, margin=margin)
        if len(tr) < 8 or len(va) < 2:
            raise DatasetError(f"too few graded discs to train on ({len(tr)} train, {len(va)} val)", str(cfg["data"]))
        if not quiet:
            print(f"graded disc crops: train {len(tr)} ({sum(d.source == 'truth' for d in tr)} from recovered boxes), "
                  f"val {len(va)}; {time.perf_counter() - t0:.0f} s", flush=True)
        _, ftr = _targets(tr, findings)
        pos = ftr.sum(0).clip(1)
        self.pos_weight = torch.tensor(np.clip((len(tr) - pos) / pos, 1.0, 10.0), dtype=torch.float32)
        self.width = int(cfg.get("grader_width", 24))
        self.generator = make_generator(self.seed)
        self.train_loader = torch.utils.data.DataLoader(
            _CropDataset(tr, findings, _augmenter(cfg.get("augment", "mri-disc"))), batch_size=int(cfg.get("batch", 32)),
            shuffle=True, generator=self.generator, num_workers=int(cfg.get("workers", 0)), worker_init_fn=seed_worker,
            drop_last=True)
        self.pv, self.fv = _targets(va, findings)
        self.loss_fn = _loss(findings, self.pos_weight.to(self.device), str(cfg.get("grader_loss", "ce")),
                             float(cfg.get("grader_sord_phi", 1.0)))

    def get_model(self) -> nn.Module:
        return create_model(ARCH, task="segment", findings=self.findings, width=self.width,
                             members=self.members).to(self.device)

    def get_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(model.parameters(), lr=float(self.cfg.get("lr", 1e-3)),
                                 weight_decay=float(self.cfg.get("weight_decay", 1e-4)))

    def get_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(self.cfg["epochs"])))

    def loss(self, output: Any, target: Any) -> torch.Tensor:
        return self.loss_fn(output, target)

    def validate(self, m: nn.Module) -> dict[str, float]:
        from spine_models.metrics.discs import auc

        p, f = _predict_discs(m, self.va, self.findings, self.device)
        acc = float((p.argmax(1) == self.pv).mean())
        aucs = [auc(self.fv[:, j], f[:, j]) for j in range(len(self.findings))]
        score = acc + float(np.nanmean(aucs))
        return {"val_pfirrmann_accuracy": acc, **{f"val_auc_{n}": a for n, a in zip(self.findings, aucs)}, "val_score": score}

    def fit_options(self) -> dict[str, Any]:
        return {"val_metric": "val_score", "mode": "max", "patience": int(self.cfg.get("patience", 15)),
                "generator": self.generator}

    def finish(self, model: nn.Module, res: Any) -> Path:
        from spine_models.engine.trainer import write_json
        from spine_models.metrics.detection import youden_threshold
        from spine_models.models.provenance import most_restrictive_license, sources_in_text

        cfg, out, findings, locator, va = self.cfg, self.out, self.findings, self.locator, self.va
        model.load_state_dict(res.best_state)
        p, f = _predict_discs(model, va, findings, self.device)
        thresholds = {n: float(youden_threshold(self.fv[:, j].astype(bool), f[:, j])[0]) for j, n in enumerate(findings)}
        kw = {"locator": str(cfg["locator"]), "locator_sha256": locator.card.sha256 or "", "findings": findings,
              "width": self.width, **({"members": self.members} if self.members > 1 else {})}
        srcs = sources_in_text(str(cfg["data"]))
        card = new_card(
            out, task="segment", arch=ARCH, state_dict=model.state_dict(), arch_kwargs=kw,
            id=str(cfg.get("id") or f"{ARCH}-{out.name}"), view="mri",
            trained_on=f"disc-grading layout {cfg['data']} ({len(self.tr)} training discs of {len(self.parts['train'].patients)} patients)",
            input_size=list(self.size), train_command=str(cfg.get("train_command", "")),
            license=most_restrictive_license(srcs) if srcs else locator.card.license,
            structures=list(locator.structures), thresholds=thresholds,
            preprocessing={"crop": "spine_models.data.disc_crops.disc_crop", "crop_size": list(self.size),
                           "crop_margin": list(self.margin), "tta": "hflip"},
            data={"split": {"method": str(cfg.get("split_method", "hash")), "ratios": cfg.get("split", "7:1:2"),
                            "seed": self.seed, "stratify": False}},
            sources=srcs,
            notes=[f"thresholds: Youden on the validation part ({len(va)} discs)",
                   "probabilities are uncalibrated model scores"])
        path = write_card(card, out)
        write_json(out / "val_predictions.json", {"pfirrmann_accuracy": float((p.argmax(1) == self.pv).mean()), "n": len(va)})
        return path


# ------------------------------------------------------------------------------------------ evaluation
def evaluate(card: ModelCard, dataset: Any, *, quiet: bool = False, n_resamples: int = 1000,
             predictor: Any = None) -> dict[str, Any]:
    """SPEC segment keys (``dice``/``iou`` of the disc channel on slices with recovered boxes) plus the disc-grading
    keys: ``disc_ap50``; ``disc_level_accuracy`` (named discs matched at IoU >= 0.5 to a recovered box whose level is
    certain: share named right); ``lumbar_discs_named_fraction`` (graded lumbar levels the model names on a slice);
    and the grading keys over every graded disc the model names. CIs over patients."""
    from spine_models._progress import progress
    from spine_models.data.vertebra_targets import disc_mask
    from spine_models.metrics.bootstrap import bootstrap_ci
    from spine_models.metrics.detection import ImageBoxes, detection_map_ci
    from spine_models.metrics.segmentation import dice

    pred = predictor or DiscGradingPredictor(card)
    findings = pred.findings
    preds_b, gts_b, box_groups, dices, dice_groups = [], [], [], [], []
    pf_t, pf_p, f_t, f_p, groups, rows = [], [], [], [], [], []
    n_graded_truth, n_named = 0, 0
    level_hits: list[float] = []
    level_groups: list[str] = []
    for s in progress(dataset.samples, desc="evaluate", quiet=quiet):
        r = pred.predict(s.path)
        truth = disc_boxes(s.boxes)
        if truth:
            preds_b.append(ImageBoxes.make([d.box for d in r.discs], ["disc"] * len(r.discs), [d.score for d in r.discs]))
            gts_b.append(ImageBoxes.make(truth, ["disc"] * len(truth)))
            box_groups.append(s.patient_id)
            h, w = r.image_size
            tm = disc_mask((h, w), truth) > 0.5
            dices.append(float(dice(r.masks["disc"], tm)))
            dice_groups.append(s.patient_id)
        grades = s.meta.get("gradings") or {}
        n_graded_truth += sum(1 for lvl in grades if lvl in LUMBAR_LEVELS)
        n_named += len({d.level for d in r.discs if d.level in LUMBAR_LEVELS and d.level in grades})
        tl = truth_discs(s)
        if tl:  # level names against the levels of the recovered boxes (IoU >= 0.5 match)
            from spine_models.metrics.detection import box_iou

            named = [d for d in r.discs if d.level]
            if named:
                iou = box_iou(np.array([d.box for d in named], float), np.array([b for _, b in tl], float))
                for i, d in enumerate(named):
                    j = int(np.argmax(iou[i]))
                    if iou[i, j] >= 0.5:
                        level_hits.append(float(d.level == tl[j][0]))
                        level_groups.append(s.patient_id)
        row = {"id": s.id, "patient_id": s.patient_id, "levels_reliable": r.levels_reliable, "discs": []}
        for d in r.discs:
            if d.level in grades and d.pfirrmann is not None:
                t = grading_targets(grades[d.level])
                pf_t.append(t["pfirrmann"])
                pf_p.append(d.pfirrmann_probs)
                f_t.append([t[f] for f in findings])
                f_p.append([d.findings[f] for f in findings])
                groups.append(s.patient_id)
                row["discs"].append({"level": d.level, "pfirrmann": d.pfirrmann, "truth_pfirrmann": t["pfirrmann"] + 1,
                                     **{f: round(d.findings[f], 4) for f in findings},
                                     **{f"truth_{f}": t[f] for f in findings}})
        rows.append(row)
    metrics: dict[str, Any] = {}
    if gts_b:
        det = detection_map_ci(preds_b, gts_b, ["disc"], n_resamples=n_resamples, groups=box_groups)
        metrics["disc_ap50"] = det["ap50"]["disc"]
        metrics["disc_ap50_95"] = det["ap50_95"]["disc"]
        dm = bootstrap_ci(lambda a: float(np.mean(a)), np.array(dices), groups=dice_groups, n_resamples=n_resamples)
        metrics["dice"] = {"disc": dm}
        metrics["iou"] = {"disc": bootstrap_ci(lambda a: float(np.mean(a / (2 - a))), np.array(dices), groups=dice_groups,
                                               n_resamples=n_resamples)}
    else:
        metrics["dice"], metrics["iou"] = {}, {}
    if pf_t:
        metrics.update(grading_metrics(np.array(pf_t), np.array(pf_p), np.array(f_t), np.array(f_p), findings,
                                       dict(card.thresholds), groups, n_resamples=n_resamples))
    if level_hits:
        metrics["disc_level_accuracy"] = bootstrap_ci(lambda a: float(np.mean(a)), np.array(level_hits), groups=level_groups,
                                                      n_resamples=n_resamples)
    metrics["n_discs_graded"] = len(pf_t)
    metrics["lumbar_discs_named_fraction"] = (n_named / n_graded_truth) if n_graded_truth else None
    return {"metrics": metrics, "predictions": rows}

