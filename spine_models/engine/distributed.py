"""Training past one process: ``torchrun`` + DistributedDataParallel around the one :func:`engine.trainer.fit`.

Why this shape (the torchvision references are the model): the epoch loop stays one loop; under ``torchrun``
every rank builds the same data and model, trains on its shard of each epoch (``DistributedSampler``, the global
``batch`` split across the ranks so one process and N processes take the same optimiser steps), DDP averages the
gradients, rank 0 alone validates (and broadcasts the metrics, so every rank takes the same early-stopping
decision), writes ``last.pt`` / ``best.pt`` / ``history.json``, tests and writes the card. A stop asked by any rank
(a time budget) is agreed by all before it acts, so no rank waits forever in a collective.

Backends: gloo on CPU, NCCL on CUDA (each rank on GPU ``LOCAL_RANK``). ``spine-models train ... --nproc N``
re-runs the same command under ``torchrun --standalone --nproc-per-node N`` (:func:`torchrun_argv`); several
machines run ``torchrun --nnodes ... --rdzv-endpoint ...`` themselves (README). A rank that dies takes the group
down: ``torchrun`` stops the other ranks and exits non-zero.
"""
from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import torch
from torch import nn

from spine_models.engine.callbacks import Callback, CallbackList
from spine_models.errors import ConfigError

__all__ = ["DistInfo", "dist_info", "init_distributed", "active", "is_main", "world_size", "wrap", "shard_loader",
           "set_epoch", "all_mean", "broadcast_object", "barrier", "cleanup", "SyncedCallbacks", "rank_callbacks",
           "torchrun_argv", "check_batch", "check_in_sync", "exit_rank"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a ``torchrun`` group (rank 0 of 1 outside one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """The group from ``torchrun``'s environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    try:
        return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                        int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK should be integers (got {os.environ.get('RANK')!r}, "
                          f"{os.environ.get('WORLD_SIZE')!r}, {os.environ.get('LOCAL_RANK')!r}); launch with torchrun") from None


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the ``torchrun`` group once (no-op outside one): NCCL when CUDA is used, else gloo."""
    import torch.distributed as dist

    info = dist_info()
    if not info.distributed or dist.is_initialized():
        return info
    use_cuda = torch.cuda.is_available() and not str(device or "").startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(info.local_rank)  # "cuda" in the config then means this rank's GPU
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    return info


def active() -> bool:
    """True inside an initialised group of more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0, or no group: the process that writes files."""
    import torch.distributed as dist

    return not active() or dist.get_rank() == 0


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DDP (parameters broadcast from rank 0 now). Built again whenever ``requires_grad`` changes (a
    frozen phase ending): DDP only reduces the gradients of parameters that required them when it was built."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def check_batch(batch: int, nproc: int) -> int:
    """The per-process batch: the global ``batch`` split evenly over ``nproc`` processes."""
    if nproc < 1:
        raise ConfigError(f"nproc={nproc}: at least 1 process")
    if batch % nproc or batch // nproc < 1:
        raise ConfigError(f"batch {batch} does not split evenly over {nproc} processes (batch is the global batch); "
                          f"pass a multiple of {nproc}")
    return batch // nproc


def shard_loader(loader: Any, seed: int) -> Any:
    """The train loader with a ``DistributedSampler`` (shuffled by ``seed`` + epoch) and the per-rank batch; a
    wrapper holding a DataLoader in ``.loader`` (``max_steps``) gets its loader replaced in a copy."""
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler

    if not isinstance(loader, DataLoader):
        inner = getattr(loader, "loader", None)
        if not isinstance(inner, DataLoader):
            raise ConfigError(f"train loader {type(loader).__name__} holds no DataLoader; this trainer runs in one process")
        out = copy.copy(loader)
        out.loader = shard_loader(inner, seed)
        return out
    n, rank = dist.get_world_size(), dist.get_rank()
    per_rank = check_batch(int(loader.batch_size), n)
    sampler = DistributedSampler(loader.dataset, num_replicas=n, rank=rank, shuffle=True, seed=int(seed))
    shard = len(sampler)
    # drop a last batch of one (batch-norm cannot train on it), as the one-process loaders do
    drop_last = bool(loader.drop_last) or (shard > per_rank and shard % per_rank == 1)
    return DataLoader(loader.dataset, batch_size=per_rank, sampler=sampler, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=drop_last,
                      worker_init_fn=loader.worker_init_fn, persistent_workers=loader.num_workers > 0)


def set_epoch(loader: Any, epoch: int) -> None:
    """Reshuffle a sharded loader for ``epoch`` (the same permutation on every rank)."""
    for obj in (loader, getattr(loader, "loader", None)):
        sampler = getattr(obj, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
            return


def all_mean(value: float) -> float:
    """The mean of ``value`` over the ranks (a per-rank training loss -> the epoch's loss)."""
    import torch.distributed as dist

    if not active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def _comm_device() -> torch.device:
    """Where a collective's tensors live: this rank's GPU under NCCL, else the CPU (gloo)."""
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _any(flag: bool) -> bool:
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (validation metrics)."""
    import torch.distributed as dist

    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_in_sync(model: nn.Module, tol: float = 1e-6) -> float:
    """The largest difference between this rank's parameters and rank 0's; raises when above ``tol``. Why: DDP keeps
    ranks equal only for the parameters it reduces, so a schedule that changed ``requires_grad`` behind its back
    would train N different models silently."""
    import torch.distributed as dist

    if not active():
        return 0.0
    dev = _comm_device()
    params = [p.detach().float().reshape(-1).to(dev) for p in model.parameters()]
    flat = torch.cat(params) if params else torch.zeros(1, device=dev)
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = torch.tensor([float((flat - ref).abs().max())], dtype=torch.float64, device=dev)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    if float(diff.item()) > tol:
        raise RuntimeError(f"the ranks' parameters differ by {float(diff.item()):.3g} after training (DDP lost sync); "
                           "report it with the train command")
    return float(diff.item())


def barrier() -> None:
    import torch.distributed as dist

    if active():
        dist.barrier()


def cleanup(finished: bool = False) -> None:
    """Leave the group (end of training on this rank). ``finished``: this rank got here normally, so it first waits
    for the others (rank 0 may still be testing and writing the card). Why: a rank that tears its connections down
    while a peer still holds them, or that leaves DDP's reducer (and the gloo work it holds) to be freed during
    interpreter shutdown, can abort natively ("terminate called without an active exception") and fail a run
    whose files were all written. So: barrier, collect the wrapper's reference cycles now, then destroy."""
    import gc

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if finished and dist.get_world_size() > 1:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()


def exit_rank(code: int) -> None:
    """End a ``torchrun`` rank: flush what it printed, then leave without the interpreter's teardown (as
    ``multiprocessing`` children do). Why: the group is destroyed and every file is written (atomically, by rank 0),
    and native threads of the communication libraries can still abort during static destruction, turning a
    finished run into a failed one."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be said on it
            pass
    os._exit(int(code))


class SyncedCallbacks(CallbackList):
    """``callbacks`` whose stop requests are agreed across the ranks: every rank calls ``should_stop`` /
    ``end_epoch`` at the same points of the loop, and all stop if any asks (a time budget read off each rank's own
    clock, a cancelled rank 0)."""

    def __init__(self, callbacks: CallbackList) -> None:
        super().__init__(callbacks.callbacks)

    def should_stop(self) -> bool:
        return _any(super().should_stop())

    def end_epoch(self) -> bool:
        return _any(super().end_epoch())


def rank_callbacks(callbacks: CallbackList, keep: type[Callback]) -> CallbackList:
    """On ranks other than 0, only the callbacks of type ``keep`` (the time budget): logs, progress files and the
    caller's watchers live on rank 0."""
    if dist_info().main:
        return callbacks
    return CallbackList([c for c in callbacks.callbacks if isinstance(c, keep)])


def torchrun_argv(nproc: int, target: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run`` on this machine: ``nproc`` ranks (one rendezvous on a free port) running
    ``python -m <target...>``."""
    if nproc < 2:
        raise ConfigError(f"nproc={nproc}: torchrun is for 2 or more processes")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc-per-node", str(int(nproc)), "--max-restarts", "0", "-m", *target]
