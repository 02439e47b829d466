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
    parser.add_argument("--nproc", type=int, metavar="N",
                        help="train in N processes on this machine (DistributedDataParallel through torchrun: gloo on "
                             "CPU, NCCL with one GPU each; --batch is the global batch); classify and segment networks")
    parser.add_argument("--config", metavar="FILE", help="YAML file of settings (between the defaults and the flags)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="any setting of the task's defaults file; repeatable")
    parser.add_argument("--resume", action="store_true", help="continue from RUNDIR/last.pt")


def _values(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed arguments as ``spine_models.config.train_config`` takes them."""
    from spine_models.config import TRAIN_FLAGS
    from spine_models.errors import ConfigError

    flags = {k: getattr(args, k, None) for k in TRAIN_FLAGS}
    sets = list(args.set or [])
    for item in list(sets):  # the ranks of --nproc get it as --set (torchrun's own parser takes --nproc as its option)
        if item.startswith("nproc=") and flags.get("nproc") is None:
            sets.remove(item)
            try:
                flags["nproc"] = int(item.split("=", 1)[1])
            except ValueError:
                raise ConfigError(f"--set {item!r}: nproc should be an integer number of processes") from None
    return {"flags": flags, "data": list(args.data or []), "out": args.out, "config_file": args.config, "sets": sets,
            "resume": bool(args.resume), "quiet": bool(args.quiet)}


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
    from spine_models.engine.distributed import dist_info
    from spine_models.errors import ConfigError

    cfg = build_config(args)
    if not cfg.get("data"):
        raise ConfigError("no training data: pass --data DIR (repeatable)")
    out = Path(args.out or cfg.get("out") or f"runs/{args.task}")
    if args.resume and not (out / "last.pt").is_file():
        raise ConfigError(f"{out / 'last.pt'}: nothing to resume; run without --resume first")
    nproc = int(cfg.get("nproc") or 1)
    if nproc > 1 and not dist_info().distributed:
        return launch_group(args.task, cfg, nproc)

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
    if card_path is not None:  # None: a torchrun rank other than 0 (rank 0 writes and prints the card)
        print(str(card_path))
    return 0


def launch_group(task: str, cfg: dict[str, Any], nproc: int) -> int:
    """This same command (``cfg["train_command"]``) under ``torchrun`` with ``nproc`` ranks on this machine; its
    exit status is torchrun's (non-zero when any rank failed: torchrun then stops the others)."""
    import shlex
    import subprocess

    from spine_models.engine import trains_distributed
    from spine_models.engine.distributed import check_batch, torchrun_argv
    from spine_models.errors import ConfigError

    if not trains_distributed(task, cfg.get("model")):
        raise ConfigError(f"--nproc {nproc}: {task} model {cfg.get('model')!r} trains in one process (DDP covers the "
                          "classify and segment networks); drop --nproc")
    check_batch(int(cfg["batch"]), nproc)
    argv = shlex.split(cfg["train_command"])[1:]  # "train --task ... --nproc N ...": this command again, in each rank
    i = argv.index("--nproc")
    argv[i:i + 2] = ["--set", f"nproc={argv[i + 1]}"]  # torchrun would read --nproc as its --nproc-per-node
    return subprocess.call(torchrun_argv(nproc, ["spine_models.cli", *argv]), stdin=subprocess.DEVNULL)
