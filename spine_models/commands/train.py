"""`spine-models train`: train a classifier, detector or segmenter into a run folder.

The run folder gets ``last.pt`` (full checkpoint, every epoch; ``--resume`` continues from it),
``best.pt``, ``history.json`` (per-epoch rows), ``summary.json``, ``model.pt`` (shipped weight format) and ``card.json`` whose
``train_command`` is this command line, rebuilt from the parsed arguments.
"""
from __future__ import annotations

import argparse
from typing import Any

from spine_models.config import TRAIN_MODES

HELP = "train a model (--task classify|detect|segment) on --data into --out RUNDIR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=["classify", "detect", "segment"], help="what to train")
    parser.add_argument("--model", help="architecture name (see spine_models.models.list_models)")
    parser.add_argument("--data", action="append", metavar="DIR", help="dataset folder/ZIP/file; repeat to concatenate")
    parser.add_argument("--out", metavar="RUNDIR", help="run folder (checkpoints, history, model card)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--imgsz", type=int, help="input size in pixels")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--mode", choices=list(TRAIN_MODES), help="classify: train the head only or everything")
    parser.add_argument("--init", help="scratch | imagenet (local file only) | path to an earlier run's model.pt")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="cpu | cuda | cuda:N (default: CUDA when available)")
    parser.add_argument("--config", metavar="FILE", help="YAML file of settings (between the defaults and the flags)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="any setting of the task's defaults file; repeatable")
    parser.add_argument("--resume", action="store_true", help="continue from RUNDIR/last.pt")


def _values(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed arguments as ``spine_models.config.train_config`` takes them."""
    from spine_models.config import TRAIN_FLAGS

    return {"flags": {k: getattr(args, k, None) for k in TRAIN_FLAGS}, "data": list(args.data or []), "out": args.out,
            "config_file": args.config, "sets": list(args.set or []), "resume": bool(args.resume),
            "quiet": bool(args.quiet)}


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run's config, ``train_command`` (this command line, rebuilt) included."""
    from spine_models.config import train_config

    return train_config(args.task, **_values(args))


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from spine_models.engine import task_module
    from spine_models.engine.callbacks import Callback
    from spine_models.errors import ConfigError

    cfg = build_config(args)
    if not cfg.get("data"):
        raise ConfigError("no training data: pass --data DIR (repeatable)")
    out = Path(args.out or cfg.get("out") or f"runs/{args.task}")
    if args.resume and not (out / "last.pt").is_file():
        raise ConfigError(f"{out / 'last.pt'}: nothing to resume; run without --resume first")

    class _Log(Callback):
        def on_log(self, message: str) -> None:
            if not args.quiet:
                sys.stderr.write(f"{message}\n")

        def on_epoch_end(self, epoch: int, metrics: dict) -> None:
            if not args.quiet:
                shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()
                         if k in ("epoch", "train_loss", "val_loss", "val_balanced_accuracy", "val_accuracy", "val_auc",
                                  "time_s", "phase")}
                sys.stderr.write(json.dumps(shown) + "\n")

    card_path = task_module(args.task, arch=cfg.get("model")).train(cfg, out, callbacks=[_Log()], quiet=args.quiet)
    print(str(card_path))
    return 0
