"""Task-independent training loop pieces: seeding, one epoch, prediction, checkpoints, resume, early stop.

Why shared: classification and segmentation (and any later task) need the same guarantees — a full
checkpoint every epoch, exact resume, early stopping on a validation metric, callbacks that can stop a
run cleanly, seeded runs. :func:`fit` owns the epoch loop; a task supplies the model, the loaders,
a loss, an optimizer and a ``validate(model) -> dict`` function.

Reproducibility: every epoch reseeds python/numpy/torch and the DataLoader generator from
``(seed, epoch)``, so an interrupted run resumed from ``last.pt`` replays the interrupted epoch exactly
(the RNG states are stored in the checkpoint too, for inspection). Checkpoints are written atomically
(temp file + rename) and load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import copy
import gc
import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import numpy as np
import torch
from torch import nn

from spine_models._atomic import atomic_path, atomic_write_text
from spine_models._progress import progress
from spine_models.engine import distributed as D
from spine_models.engine.callbacks import Callback, CallbackList, as_callback_list, with_time_budget
from spine_models.errors import ConfigError
from spine_models.models.cards import ModelCard, save_checkpoint_file

__all__ = [
    "init_from_run",
    "seed_everything",
    "epoch_seed",
    "make_generator",
    "seed_worker",
    "to_device",
    "forward_batch",
    "train_one_epoch",
    "predict_loader",
    "EarlyStopping",
    "save_checkpoint",
    "load_checkpoint",
    "FitResult",
    "fit",
    "write_json",
    "WarmupCosineLR",
    "BaseTrainer",
    "new_card",
    "write_card",
    "read_history_file",
]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices); cheap determinism switches for cuDNN."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919) % (2**31 - 1)


def make_generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: numpy/python seeds follow torch's per-worker seed."""
    s = torch.initial_seed() % (2**32)
    np.random.seed(s)
    random.seed(s)


def to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, (list, tuple)):
        return type(x)(to_device(v, device) for v in x)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    return x


def forward_batch(model: nn.Module, x: Any) -> torch.Tensor:
    """``model(x)``, or ``model(*x)`` for multi-input models (two-view: ``(ap, lat)``)."""
    return model(*x) if isinstance(x, (list, tuple)) else model(x)


def _rng_state() -> dict[str, Any]:
    """RNG states as plain tensors/lists so ``weights_only=True`` loading accepts them."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


StepFn = Callable[[nn.Module, Any, Any], torch.Tensor]


def train_one_epoch(model: nn.Module, loader: Iterable, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
                    optimizer: torch.optim.Optimizer, device: torch.device, *, callbacks: Callback | None = None,
                    quiet: bool = True, desc: str = "train", set_train_mode: Callable[[nn.Module], None] | None = None,
                    step_scheduler: Any = None, grad_clip: float | None = None, step_fn: StepFn | None = None) -> float:
    """One pass over ``loader`` (batches ``(x, y)``); returns the mean loss. Stops early (returning NaN)
    when a callback's ``should_stop`` turns true, so a cancelled job never writes a half epoch; a callback's
    ``end_epoch`` ends it early as a finished epoch (a spent time budget).

    ``step_fn(model, x, y) -> loss`` replaces ``loss_fn(forward_batch(model, x), y)`` for models that compute their
    own loss (torchvision detectors take the targets and return a dict of losses)."""
    cb = callbacks or CallbackList()
    if step_fn is None and loss_fn is None:
        raise ConfigError("train_one_epoch needs loss_fn or step_fn; pass the task's loss")
    (set_train_mode or (lambda m: m.train()))(model)
    total, count = 0.0, 0
    steps = len(loader) if hasattr(loader, "__len__") else 0
    for step, (x, y) in enumerate(progress(loader, total=steps or None, desc=desc, quiet=quiet), start=1):
        x, y = to_device(x, device), to_device(y, device)
        optimizer.zero_grad(set_to_none=True)
        loss = step_fn(model, x, y) if step_fn is not None else loss_fn(forward_batch(model, x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower the learning rate")
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if step_scheduler is not None:
            step_scheduler.step()
        n = len(y) if hasattr(y, "__len__") else 1
        total += float(loss.detach()) * n
        count += n
        cb.on_batch_end(step, steps, float(loss.detach()))
        if cb.should_stop():
            return float("nan")
        if cb.end_epoch():
            break
    return total / max(count, 1)


def _batch_len(batch: Any) -> int:
    """Samples in an ``(inputs, targets)`` batch."""
    return len(batch[1])


@torch.no_grad()
def predict_loader(model: nn.Module, loader: Iterable, device: torch.device, *, quiet: bool = True,
                   desc: str = "predict", run: Callable[[Any], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs, targets) concatenated over ``loader`` in eval mode; the model's mode is restored. ``run``: what runs
    ``model`` on a batch when not torch itself (``engine.runtime.Network``: an evaluation runs the card's runtime)."""
    was = {m: m.training for m in model.modules()}
    model.eval()
    outs, ys = [], []
    try:
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "__len__"):  # count samples (a page shows films/s), not batches
            total, count = len(dataset), _batch_len
        else:
            total, count = (len(loader) if hasattr(loader, "__len__") else None), None
        for x, y in progress(loader, total=total, desc=desc, quiet=quiet, count=count):
            outs.append(forward_batch(run or model, to_device(x, device)).float().cpu())
            ys.append(y.cpu() if isinstance(y, torch.Tensor) else torch.as_tensor(y))
    finally:
        for m, t in was.items():
            m.training = t
    if not outs:
        return torch.empty(0), torch.empty(0)
    return torch.cat(outs), torch.cat(ys)


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without improving ``best`` by more than ``min_delta``."""

    patience: int = 10
    mode: str = "max"
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ConfigError(f"early stopping mode {self.mode!r} should be 'max' or 'min'")

    def improved(self, value: float) -> bool:
        if value is None or not np.isfinite(value):
            return self.best is None
        if self.best is None:
            return True
        return value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta

    def step(self, value: float, epoch: int) -> bool:
        """Record ``value``; True when it is the new best."""
        if self.improved(value):
            self.best = float(value) if value is not None and np.isfinite(value) else self.best
            self.best_epoch = epoch
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = d["best"], d["best_epoch"], d["bad_epochs"]


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _plain(obj: Any) -> Any:
    """cfg/history to JSON-safe python (so the checkpoint loads with weights_only=True)."""
    return json.loads(json.dumps(obj, default=_json_default))


def save_checkpoint(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None, scheduler: Any,
                    epoch: int, early: EarlyStopping, history: list[dict], cfg: dict, extra: dict | None = None) -> None:
    """Full training state after ``epoch`` (0-based, completed), written atomically."""
    ckpt = {
        "format": "spine-models-train/1",
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "early_stopping": early.state_dict(),
        "history": _plain(history),
        "cfg": _plain(cfg),
        "rng": _rng_state(),
        "extra": _plain(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no checkpoint to resume from; start without --resume")
    ckpt = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "spine-models-train/1":
        raise ConfigError(f"{p}: not a spine-models training checkpoint (last.pt of a run folder)")
    return ckpt


@dataclass
class FitResult:
    history: list[dict]
    best_epoch: int
    best_metric: float | None
    best_state: dict[str, torch.Tensor]
    stopped_by: str  # "epochs" | "early_stopping" | "callback"
    epochs_run: int
    extra: dict[str, Any] = field(default_factory=dict)


def fit(model: nn.Module, *, train_loader: Any, validate: Callable[[nn.Module], dict[str, float]],
        loss_fn: Callable, optimizer: torch.optim.Optimizer, device: torch.device, epochs: int, out_dir: Path,
        cfg: dict, seed: int = 0, val_metric: str = "val_loss", mode: str = "min", patience: int = 0,
        scheduler: Any = None, callbacks: Callback | None = None, quiet: bool = False, resume: bool | str | Path = False,
        on_epoch_start: Callable[[int], dict[str, Any] | None] | None = None,
        set_train_mode: Callable[[nn.Module], None] | None = None,
        generator: torch.Generator | None = None, grad_clip: float | None = None, step_fn: StepFn | None = None,
        scheduler_interval: str = "epoch") -> FitResult:
    """The epoch loop. Writes ``last.pt`` (every epoch), ``best.pt`` (state dict of the best epoch) and
    ``history.json`` into ``out_dir``.

    ``validate(model)`` returns metrics (must contain ``val_metric``); ``on_epoch_start(epoch)`` lets a
    task change what trains (e.g. unfreeze after ``freeze_epochs``) — it must depend on ``epoch`` only,
    so resume reproduces it; ``scheduler`` is stepped once per epoch (``scheduler_interval="epoch"``) or after
    every optimizer step (``"step"``: warmup schedules); ``generator`` (the train DataLoader's) is reseeded per
    epoch; ``step_fn`` is the task's forward + loss when it is not ``loss_fn(model(x), y)``.
    """
    if scheduler_interval not in ("epoch", "step"):
        raise ConfigError(f"scheduler_interval {scheduler_interval!r} should be 'epoch' or 'step'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cb = callbacks if isinstance(callbacks, CallbackList) else CallbackList([callbacks] if callbacks else [])
    distributed = D.active()  # under torchrun (engine.distributed): DDP, rank-0 files, agreed stops
    main = D.is_main()
    ddp: nn.Module | None = None
    ddp_trainable: tuple[bool, ...] = ()
    if distributed:
        cb = D.SyncedCallbacks(cb)
    early = EarlyStopping(patience=patience, mode=mode)
    history: list[dict] = []
    start = 0
    best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if resume:
        ckpt = load_checkpoint(resume if isinstance(resume, (str, Path)) and not isinstance(resume, bool) else last_path)
        model.load_state_dict(ckpt["model"])
        start = int(ckpt["epoch"]) + 1
        # the task's epoch hook may change param groups / requires_grad: replay it before loading the optimizer
        if on_epoch_start is not None and start > 0:
            on_epoch_start(start - 1)
        if ckpt["optimizer"] is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt["scheduler"] is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        early.load_state_dict(ckpt["early_stopping"])
        history = list(ckpt["history"])
        _set_rng_state(ckpt["rng"])
        if best_path.is_file():
            best_state = torch.load(best_path, map_location="cpu", weights_only=True)
        cb.on_log(f"resumed from {last_path} after epoch {start}")
    cb.on_train_start(cfg)
    stopped_by = "epochs"
    if early.should_stop and start > 0:
        stopped_by = "early_stopping"
    epoch = start - 1
    for epoch in range(start, epochs if stopped_by == "epochs" else start):
        es = epoch_seed(seed, epoch)
        seed_everything(es)
        if generator is not None:
            generator.manual_seed(es)
        info = on_epoch_start(epoch) if on_epoch_start is not None else None
        cb.on_epoch_start(epoch, epochs)
        t0 = time.perf_counter()
        train_model, train_mode = model, set_train_mode
        if distributed:  # wrapped after the epoch hook, again whenever it froze or unfroze parameters
            D.set_epoch(train_loader, epoch)
            trainable = tuple(p.requires_grad for p in model.parameters())
            if ddp is None or trainable != ddp_trainable:
                ddp, ddp_trainable = None, trainable
                gc.collect()  # the old wrapper's gradient hooks go with it before the new one registers its own
                ddp = D.wrap(model, device)
            train_model, train_mode = ddp, _ddp_train_mode(model, set_train_mode)
        train_loss = train_one_epoch(train_model, train_loader, loss_fn, optimizer, device, callbacks=cb,
                                     quiet=quiet or not main, desc=f"epoch {epoch + 1}/{epochs}",
                                     set_train_mode=train_mode, grad_clip=grad_clip, step_fn=step_fn,
                                     step_scheduler=scheduler if scheduler_interval == "step" else None)
        if cb.should_stop():
            stopped_by = "callback"
            epoch -= 1  # this epoch did not complete; last.pt holds the previous one
            break
        if distributed:  # rank 0 validates the (identical) weights; every rank gets its metrics
            train_loss = D.all_mean(train_loss)
            metrics = D.broadcast_object(dict(validate(model)) if main else None)
        else:
            metrics = dict(validate(model))
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        row = {"epoch": epoch + 1, "train_loss": train_loss, **metrics,
               "lr": [g["lr"] for g in optimizer.param_groups], "time_s": round(time.perf_counter() - t0, 3)}
        if info:
            row.update(info)
        history.append(_plain(row))
        if val_metric not in metrics:
            raise ConfigError(f"val_metric {val_metric!r} is not computed; available: {', '.join(sorted(metrics))}")
        if early.step(metrics[val_metric], epoch):
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            if main:
                with atomic_path(best_path) as tmp:
                    torch.save(best_state, tmp)
        if main:
            save_checkpoint(last_path, model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch, early=early,
                            history=history, cfg=cfg)
            write_json(out_dir / "history.json", history)
        cb.on_epoch_end(epoch, row)
        if early.should_stop:
            stopped_by = "early_stopping"
            cb.on_log(f"early stopping after epoch {epoch + 1}: no {val_metric} improvement for {early.patience} epochs")
            break
        if cb.should_stop():
            stopped_by = "callback"
            break
    if distributed:
        D.check_in_sync(model)
    summary = {"best_epoch": early.best_epoch + 1, "best_metric": early.best, "stopped_by": stopped_by,
               "epochs_run": epoch + 1}
    cb.on_train_end(summary)
    return FitResult(history, early.best_epoch + 1, early.best, best_state, stopped_by, epoch + 1)


def _ddp_train_mode(model: nn.Module, set_train_mode: Callable[[nn.Module], None] | None) -> Callable[[nn.Module], None]:
    """The task's train-mode hook applied to the network inside DDP (it compares its own submodules), the wrapper
    following the network's mode."""
    def apply(wrapper: nn.Module) -> None:
        (set_train_mode or (lambda m: m.train()))(model)
        wrapper.training = model.training
    return apply


def init_from_run(model: nn.Module, init: str | None, task: str, log: Callable[[str], None]) -> None:
    """Load every matching tensor of an earlier run's ``model.pt`` / ``last.pt`` into ``model``.

    Why: continuing or transferring a detector or U-Net (same-domain transfer, or more steps for a run a
    time budget cut short) needs the same partial load as classification; a head of another size is
    skipped and reported. ``init`` "scratch" (or empty) does nothing; nothing is ever downloaded.
    """
    if not init or init == "scratch":
        return
    p = Path(init)
    if not p.is_file():
        raise ConfigError(f"{task} config: init={init!r}: {task} models start from 'scratch' or from an earlier "
                          "run's model.pt / last.pt path (no pretrained weights are downloaded)")
    from spine_models.models.classification import load_matching_state, read_state_file

    report = load_matching_state(model, read_state_file(p), source=str(p))  # the classifiers' partial load
    log(f"init: loaded {report['loaded']}/{report['total']} tensors from {p}")


class WarmupCosineLR:
    """Linear warmup, then cosine to 0 over the planned steps or a wall-clock budget, whichever ends first.

    Why the budget: on a shared CPU the budget decides how many steps run, and the model should still end annealed
    instead of cut at full lr. The factor is set just before each optimizer step (an optimizer pre-step hook), so it
    reads the clock at that step; :func:`fit` calls ``step()`` after each optimizer step
    (``scheduler_interval="step"``) to count it."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, budget_s: float = 0.0) -> None:
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.total, self.warm, self.budget_s = max(1, int(total_steps)), max(0, int(warmup_steps)), float(budget_s)
        self.steps = 0
        self.t0 = time.perf_counter()
        optimizer.register_step_pre_hook(self._apply)

    def factor(self, i: int) -> float:
        ramp = (i + 1) / (self.warm + 1) if i < self.warm else 1.0
        frac = max(0, i - self.warm) / max(1, self.total - self.warm)
        if self.budget_s > 0:
            frac = max(frac, (time.perf_counter() - self.t0) / self.budget_s)
        return ramp * 0.5 * (1 + np.cos(np.pi * min(1.0, frac)))

    def _apply(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        f = float(self.factor(self.steps))
        for g, base in zip(optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f

    def step(self) -> None:
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.steps, self.base_lrs = int(d["steps"]), list(d["base_lrs"])


# ---------------------------------------------------------------------------------------------- cards
def new_card(out_dir: str | Path, *, task: str, arch: str, state_dict: dict[str, Any], arch_kwargs: dict[str, Any],
             half: bool = True, **fields: Any) -> ModelCard:
    """The one way training makes a card: the weights saved as ``out_dir/model.pt`` (the shipped format), the card's
    ``weights`` (absolute), ``sha256``, ``arch_kwargs`` and ``created`` (UTC) filled the same for every task;
    ``fields`` are the other :class:`ModelCard` fields (id, view, trained_on, input_size, license, classes or
    structures, ...). Why one place: every card a task writes has the same keys and the same provenance."""
    weights = (Path(out_dir) / "model.pt").resolve()
    weights.parent.mkdir(parents=True, exist_ok=True)
    sha = save_checkpoint_file(weights, arch=arch, task=task, state_dict=state_dict, arch_kwargs=arch_kwargs, half=half)
    fields.setdefault("train_command", "")
    fields.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return ModelCard(task=task, arch=arch, weights=str(weights), sha256=sha, arch_kwargs=dict(arch_kwargs), **fields)


def write_card(card: ModelCard, out_dir: str | Path) -> Path:
    """``out_dir/card.json``, written once the card is final (metrics, thresholds): the run folder's model card."""
    path = Path(out_dir) / "card.json"
    card.to_json(path)
    return path


def read_history_file(path: str | Path) -> list[dict[str, Any]]:
    """Per-epoch rows of a ``history.json``: the list every trainer writes, or the ``{"epochs": [...], "summary"}``
    form detection runs wrote before (old run folders still open); [] when absent or unreadable."""
    try:
        h = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    if isinstance(h, dict):
        h = h.get("epochs")
    return [r for r in h if isinstance(r, dict)] if isinstance(h, list) else []


# -------------------------------------------------------------------------------------------- trainer
class BaseTrainer:
    """One training run of one task around the one :func:`fit` (Ultralytics' ``BaseTrainer`` and the torchvision
    references are the model): the loop, checkpoints, resume, early stopping, callbacks and the time budget live in
    ``fit``; a task overrides only what differs.

    Hooks, called by :meth:`train` in this order: :meth:`get_dataset` (split, datasets, loaders: sets
    ``self.train_loader``), :meth:`get_model`, :meth:`get_optimizer`, :meth:`get_scheduler`, then :meth:`run` (the
    fit hook: ``fit`` with :meth:`step` as the forward + loss and :meth:`validate` per epoch; YOLO overrides it to
    drive the Ultralytics trainer), then :meth:`finish` (test metrics and the card, via :func:`new_card` /
    :func:`write_card`). Every run folder gets ``history.json`` (a list of per-epoch dicts) and ``summary.json``."""

    task: ClassVar[str] = ""
    cut_epochs: ClassVar[bool] = False  # a spent time budget also ends an epoch early (step-annealed schedules)
    scheduler_interval: ClassVar[str] = "epoch"
    # trains under torchrun (engine.distributed: DDP, sharded train loader, rank-0 files); others run in one process
    distributed: ClassVar[bool] = False

    def __init__(self, cfg: dict[str, Any], out_dir: str | Path, *, callbacks: Any = None, quiet: bool = False) -> None:
        from spine_models.engine.callbacks import TimeBudget

        self.cfg = dict(cfg)
        self.out = Path(out_dir)
        self.rank = D.dist_info()
        self.quiet = quiet or not self.rank.main
        # the caller's callbacks (a stop request from them is a cancellation); under torchrun rank 0's only
        self.user_callbacks = D.rank_callbacks(as_callback_list(callbacks), TimeBudget)
        self.callbacks = with_time_budget(self.user_callbacks, self.cfg.get("max_minutes"), self.quiet,
                                          cut_epochs=self.cut_epochs)
        self.seed = int(self.cfg.get("seed") or 0)
        self.device = torch.device("cpu")
        self.train_loader: Any = None
        self.summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ hooks a task overrides
    def get_dataset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define get_dataset (sets self.train_loader)")

    def get_model(self) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must define get_model")

    def get_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError(f"{type(self).__name__} must define get_optimizer")

    def get_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        return None

    def loss(self, output: Any, target: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define loss (or step)")

    def step(self, model: nn.Module, x: Any, y: Any) -> torch.Tensor:
        """The training step's loss: ``loss(model(x), y)``; detectors that take targets override it."""
        return self.loss(forward_batch(model, x), y)

    def validate(self, model: nn.Module) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} must define validate (model -> metrics)")

    def fit_options(self) -> dict[str, Any]:
        """Extra :func:`fit` arguments (val_metric, mode, patience, on_epoch_start, set_train_mode, generator, ...)."""
        return {}

    def cfg_record(self) -> dict[str, Any]:
        """The configuration stored in ``last.pt``."""
        return dict(self.cfg)

    def finish(self, model: nn.Module, result: "FitResult") -> Path:
        raise NotImplementedError(f"{type(self).__name__} must define finish (model, fit result -> card path)")

    # ------------------------------------------------------------------ the run
    def run(self, model: nn.Module) -> "FitResult":
        """The fit hook: :func:`fit` over ``self.train_loader`` with this task's step, validation and schedule (under
        torchrun each rank's shard of it)."""
        optimizer = self.get_optimizer(model)
        scheduler = self.get_scheduler(optimizer)
        if D.active():
            self.train_loader = D.shard_loader(self.train_loader, self.seed)
        return fit(model, train_loader=self.train_loader, validate=self.validate, loss_fn=None, step_fn=self.step,
                   optimizer=optimizer, device=self.device, epochs=int(self.cfg["epochs"]), out_dir=self.out,
                   cfg=self.cfg_record(), seed=self.seed, scheduler=scheduler, scheduler_interval=self.scheduler_interval,
                   callbacks=self.callbacks, quiet=self.quiet, **self.fit_options())

    def train(self) -> Path | None:
        """data -> model -> fit -> card; returns the card path (None on a torchrun rank other than 0, which writes
        nothing)."""
        if self.rank.distributed:
            if not self.distributed:
                raise ConfigError(f"{type(self).__name__} ({self.task}, model {self.cfg.get('model')}) trains in one "
                                  "process; run it without --nproc / torchrun")
            D.check_batch(int(self.cfg.get("batch") or 1), self.rank.world_size)
            D.init_distributed(self.cfg.get("device"))
        finished = False
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.get_dataset()
            model = self.get_model()
            t0 = time.perf_counter()
            result = self.run(model)
            card_path = self._write_outputs(model, result, time.perf_counter() - t0) if self.rank.main else None
            finished = True
            return card_path
        finally:
            D.cleanup(finished)

    def _write_outputs(self, model: nn.Module, result: "FitResult", seconds: float) -> Path:
        """Rank 0's end of training: the summary and the card (``finish``); returns the card path."""
        self.summary.update({"task": self.task, "best_epoch": result.best_epoch, "best_metric": result.best_metric,
                             "stopped_by": result.stopped_by, "epochs_run": result.epochs_run,
                             "train_seconds": round(seconds, 1)})
        if self.rank.distributed:
            self.summary["processes"] = self.rank.world_size
        card_path = self.finish(model, result)
        write_json(self.out / "summary.json", _plain(self.summary))
        return card_path
