"""AP vertebra levels: a learned reader names the bodies a ``vertebra_corners`` model found (C7, T1..L5, S1).

Why: the corner model names its bodies by counting up from the lowest one found, which is right only when the film
shows exactly T1..L5 (and the sacrum as one body more). On held-out AASCE films that held for about half of the bodies:
a C7 found above T1, a sacrum read as L5 or one missed body shifts every name, and no count can tell these apart.
The ``vertebra_levels`` network (:class:`~spine_models.models.corners.VertebraLevelNet`) looks at a wide patch around
each body (the first and last ribs, the pelvis, the neck) and answers a level distribution; ``measure.decode_levels``
then names the column in order. It trains on the corner model's own bodies of the training films (labelled by the
experts' bodies they match) and on the experts' bodies with one more at each end (where C7 and the sacrum lie), with
the corner model's split, so held-out patients stay unseen by every stage.

A trained reader rides in a corner card (``preprocessing.level_reader``: its card under ``weights/components/``, pinned
by sha256); a run folder of this architecture runs as its corner model with the reader attached (:class:`Predictor`).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spine_models.data.torch_datasets import LevelPatchDataset
from spine_models.data.vertebra_patches import WORK_HEIGHT, LevelFilm, extended_column, level_patches, work_image
from spine_models.engine.landmarks import (LEVELS_ARCH, VertebraCornerPredictor, is_corner_model, landmark_parts,
                                          without_level_reader)
from spine_models.engine.trainer import BaseTrainer
from spine_models.errors import ConfigError, DatasetError
from spine_models.measure.cobb import COLUMN_LEVELS, LEVELS, decode_levels
from spine_models.models.cards import ModelCard
from spine_models.models.registry import create_model

__all__ = ["ARCH", "LevelTrainer", "train", "Predictor", "evaluate", "label_bodies", "level_accuracy"]

ARCH = LEVELS_ARCH


def label_bodies(found: np.ndarray, truth: np.ndarray, truth_levels: list[int]) -> np.ndarray:
    """Level index per found body (N, 4, 2), top to bottom: the level of the expert's body it matches
    (``metrics.landmarks.match_vertebrae``); unmatched above the experts' top body: one level above it (C7 when the
    experts start at T1), below their lowest: one below (the sacrum after L5); unmatched between them: -1 (unknown)."""
    from spine_models.metrics.landmarks import match_vertebrae

    pairs = dict(match_vertebrae(list(found), list(truth)))
    top, bottom = float(truth[0][:, 1].mean()), float(truth[-1][:, 1].mean())
    out = []
    for i, b in enumerate(found):
        y = float(b[:, 1].mean())
        if i in pairs:
            out.append(truth_levels[pairs[i]])
        elif y < top and truth_levels[0] > 0:
            out.append(truth_levels[0] - 1)
        elif y > bottom and truth_levels[-1] < len(COLUMN_LEVELS) - 1:
            out.append(truth_levels[-1] + 1)
        else:
            out.append(-1)
    return np.asarray(out, int)


def level_accuracy(decoded: list[int], labels: np.ndarray) -> float:
    """Share of a film's bodies matched to an expert's T1..L5 body whose decoded level is that body's (NaN: none)."""
    lab = np.asarray(labels)
    keep = (lab >= 1) & (lab <= len(LEVELS))
    return float(np.mean(np.asarray(decoded)[keep] == lab[keep])) if keep.any() else float("nan")


class LevelTrainer(BaseTrainer):
    """The level reader on the one Trainer contract (``engine.trainer.BaseTrainer``): wide patches around the corner
    model's bodies and the experts' (jittered, mirrored), cross-entropy over C7, T1..L5, S1; validation by the
    decoded level accuracy per film, the figure the evaluate report's ``vertebra_level_accuracy`` measures."""

    task = "segment"

    def __init__(self, cfg: dict, out_dir: str | Path, *, callbacks: Any = None, quiet: bool = False) -> None:
        from spine_models.config import defaults

        super().__init__({**defaults("segment"), **{k: v for k, v in cfg.items() if v is not None}}, out_dir,
                         callbacks=callbacks, quiet=quiet)

    def _films(self, samples: list[Any], *, with_truth: bool) -> list[LevelFilm]:
        """The corner model run on each film with expert corners; bodies labelled by :func:`label_bodies`."""
        from spine_models._progress import progress

        out = []
        for s in progress(samples, total=len(samples), desc="find bodies", quiet=self.quiet):
            names = [n for n in LEVELS if n in (s.landmarks or {})]
            if len(names) < 2 or s.path is None:
                continue
            res = self.locator.predict(s.path)
            found = sorted((np.asarray(v["corners"], float).reshape(4, 2) for v in res.vertebrae),
                           key=lambda c: float(c[:, 1].mean()))
            work, scale = work_image(self.locator.read(s.path).pixels, WORK_HEIGHT)
            truth = np.stack([np.asarray(s.landmarks[n], float).reshape(4, 2) for n in names])
            levels = [COLUMN_LEVELS.index(n) for n in names]
            bodies = np.stack(found) if found else np.zeros((0, 4, 2))
            labels = label_bodies(bodies, truth, levels) if found else np.zeros(0, int)
            if with_truth:  # the experts' bodies and one more at each end: what the corner model may find there
                ext = extended_column(truth)
                ext_levels = [levels[0] - 1] + levels + [levels[-1] + 1]
                keep = [i for i, lv in enumerate(ext_levels) if 0 <= lv < len(COLUMN_LEVELS)]
                bodies = np.concatenate([bodies, ext[keep]]) if len(bodies) else ext[keep]
                labels = np.concatenate([labels, np.asarray(ext_levels, int)[keep]])
            out.append(LevelFilm(work, bodies * scale, labels, str(s.patient_id)))
        return out

    def get_dataset(self) -> None:
        from spine_models._env import get_device
        from spine_models.engine.trainer import make_generator, seed_everything, seed_worker
        from spine_models.models.hub import resolve_card

        cfg = self.cfg
        if not cfg.get("locator"):
            raise ConfigError(f"{ARCH}: set the corner model with --set locator=<shipped id or run folder> "
                              "(a vertebra_corners model)")
        seed_everything(self.seed)
        self.device = get_device(cfg.get("device"))
        corner = resolve_card(cfg["locator"])
        if not is_corner_model(corner):
            raise ConfigError(f"{ARCH}: locator {corner.id!r} is a {corner.arch!r} model; the level reader names the "
                              "bodies of a vertebra_corners model")
        # its own names must not matter: the bodies are read as the corner model finds them, without a reader
        self.locator = VertebraCornerPredictor(without_level_reader(corner), self.device)
        rec = (corner.data or {}).get("split")
        self.ratios, self.method, self.parts = landmark_parts(ARCH, "corner model", rec if isinstance(rec, dict) else {},
                                                              cfg, self.seed)
        parts = self.parts
        t0 = time.perf_counter()
        self.tr = tr = self._films(parts["train"].samples, with_truth=True)
        self.va = va = self._films(parts["val"].samples, with_truth=False)
        if len(tr) < 2:
            raise DatasetError(f"too few films with corners to train on ({len(tr)} in the train part)", str(cfg["data"]))
        if not va:
            self.va = va = self._films(parts["train"].samples, with_truth=False)
            print(f"{ARCH}: no validation films with corners: validating on the train part (early stopping is then "
                  "optimistic)", file=sys.stderr)
        self.size, self.side = size, side = int(cfg["level_patch"]), float(cfg["level_side"])
        self.width, self.skip = int(cfg["level_width"]), float(cfg["level_skip_log_prob"])
        if not self.quiet:
            print(f"{ARCH}: {sum(int((f.labels >= 0).sum()) for f in tr)} training bodies on {len(tr)} films, "
                  f"{len(va)} validation films; {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        self.generator = make_generator(self.seed)
        data = LevelPatchDataset(tr, size=size, side=side, augment=cfg.get("augment", "light") != "none")
        self.train_loader = torch.utils.data.DataLoader(
            data, batch_size=int(cfg["batch"]), shuffle=True, generator=self.generator, num_workers=int(cfg["workers"]),
            worker_init_fn=seed_worker, drop_last=len(data) > int(cfg["batch"]))
        # validation patches as the reader sees them at inference: cut once, unjittered
        self.val_x = [torch.from_numpy(level_patches(f.image.astype(np.float32) / 255, f.bodies, side=side, size=size))
                      for f in va]

    def get_model(self) -> nn.Module:
        return create_model(ARCH, task="segment", n_levels=len(COLUMN_LEVELS), width=self.width).to(self.device)

    def get_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(model.parameters(), lr=float(self.cfg["lr"]), weight_decay=float(self.cfg["weight_decay"]))

    def get_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(self.cfg["epochs"])))

    def loss(self, output: Any, target: Any) -> torch.Tensor:
        return nn.functional.cross_entropy(output, target, label_smoothing=0.05)

    @torch.no_grad()
    def validate(self, m: nn.Module) -> dict[str, float]:
        was = m.training
        m.eval()
        acc = []
        for f, x in zip(self.va, self.val_x):
            if len(x) and len(x) <= len(COLUMN_LEVELS):
                lp = torch.log_softmax(m(x.to(self.device)).float(), dim=1).cpu().numpy()
                acc.append(level_accuracy(decode_levels(lp, skip_log_prob=self.skip), f.labels))
        m.train(was)
        a = np.asarray([v for v in acc if np.isfinite(v)])
        return {"val_level_accuracy": float(a.mean()) if a.size else 0.0,
                "val_films_all_right": float(np.mean(a == 1.0)) if a.size else 0.0}

    def fit_options(self) -> dict[str, Any]:
        return {"val_metric": "val_level_accuracy", "mode": "max", "patience": int(self.cfg["patience"]),
                "generator": self.generator}

    def finish(self, model: nn.Module, res: Any) -> Path:
        from spine_models.engine.trainer import new_card, write_card
        from spine_models.models.provenance import most_restrictive_license, sources_in_text

        cfg, out, corner, tr = self.cfg, self.out, self.locator.card, self.tr
        model.load_state_dict(res.best_state)
        kw = {"locator": str(cfg["locator"]), "locator_sha256": corner.sha256 or "", "width": self.width,
              "n_levels": len(COLUMN_LEVELS)}
        data = cfg["data"]
        srcs = sources_in_text(str(data))
        srcs += [x for x in (corner.sources or []) if x not in srcs]
        card = new_card(
            out, task="segment", arch=ARCH, state_dict=model.state_dict(), arch_kwargs=kw,
            id=str(cfg.get("id") or f"{ARCH}-{out.name}"), view="ap",
            trained_on=f"landmark layout {', '.join(map(str, data)) if isinstance(data, list) else data} "
                       f"({sum(int((f.labels >= 0).sum()) for f in tr)} labelled bodies on "
                       f"{len(tr)} films of {len(self.parts['train'].patients)} patients: the corner model {corner.id}'s "
                       "bodies and the experts' with one more at each end), behind the corner model",
            input_size=[self.size, self.size], train_command=str(cfg.get("train_command", "")),
            license=most_restrictive_license(srcs) if srcs else corner.license,
            classes=list(COLUMN_LEVELS), structures=["vertebra"], in_chans=1,
            normalization={"kind": "components"},  # patches: vertebra_patches.standardize
            preprocessing={"patch": "spine_models.data.vertebra_patches.level_patches", "level_side": self.side,
                           "level_patch": self.size, "work_height": WORK_HEIGHT, "skip_log_prob": self.skip},
            data={"split": {"method": self.method, "ratios": list(self.ratios), "seed": self.seed, "stratify": False,
                            "locator_split": (corner.data or {}).get("split")}},
            sources=srcs)
        return write_card(card, out)


def train(cfg: dict, out_dir: str | Path, *, callbacks: Any = None, quiet: bool = False) -> Path:
    """Train a level reader behind a corner model (``--set locator=``) on films with corners (:class:`LevelTrainer`);
    returns the run's card.json."""
    return LevelTrainer(cfg, out_dir, callbacks=callbacks, quiet=quiet).train()


class Predictor(VertebraCornerPredictor):
    """A level reader's card runs as its corner model (``arch_kwargs.locator``, pinned by sha256) with the reader
    attached: ``spine-models evaluate --model RUN`` measures what shipping the reader would give."""

    def __init__(self, card: ModelCard, device: Any = None) -> None:
        from spine_models.engine.predictor import check_component
        from spine_models.models.hub import resolve_card

        kw = card.arch_kwargs or {}
        if not kw.get("locator"):
            raise ConfigError(f"model {card.id!r}: a {ARCH} card names its corner model in arch_kwargs.locator")
        corner = resolve_card(kw["locator"])
        check_component("locator", corner, str(kw.get("locator_sha256", "")))
        super().__init__(corner, device, levels=card)
        self.card = card


def evaluate(card: ModelCard, dataset: Any, *, quiet: bool = False, n_resamples: int = 1000,
             predictor: Any = None) -> dict[str, Any]:
    """The segment report of the corner model with this reader naming its bodies (``engine.segment.evaluate``)."""
    from spine_models.engine.segment import evaluate as seg_evaluate

    return seg_evaluate(predictor or Predictor(card), dataset, quiet=quiet, n_resamples=n_resamples)
