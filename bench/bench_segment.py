"""U-Net latency (and training speed) at 512x256 on this CPU. Prints figures; not a test.

    .venv/bin/python bench/bench_segment.py                    # predict latency, batch 1, each U-Net
    .venv/bin/python bench/bench_segment.py --train-epoch 200  # + estimated seconds per epoch on 200 films
    .venv/bin/python bench/bench_segment.py --shipped          # the shipped weights/seg_*.json U-Nets, network
                                                               #   alone and end to end (1024x512 film -> masks)

Why: the issue's target is U-Net <= 250 ms for 512x256 on 2 CPU cores, and the lead budgets the
shipped AP / lateral U-Nets (<= 30 min each) from the per-epoch time. Random weights: latency does
not depend on them. The epoch estimate times real optimiser steps (forward + backward + Adam) on
batches of 4 and scales to N films; decoding is excluded (the engine caches resized films).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _latency(model, size, runs: int, warmup: int = 2) -> list[float]:
    import torch

    x = torch.rand(1, 1, *size)
    model.eval()
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            torch.sigmoid(model(x))
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000)
    return times


def _gflop(model, size) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        model.eval()(torch.rand(1, 1, *size))
    return fc.get_total_flops() / 1e9


def _train_step_s(model, size, batch: int, steps: int, loss_name: str) -> float:
    import torch

    from spine_models.models.segmentation import build_loss

    loss_fn = build_loss(loss_name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    x = torch.rand(batch, 1, *size)
    y = (torch.rand(batch, model_out(model, size), *size) > 0.9).float()
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def model_out(model, size) -> int:
    import torch

    with torch.inference_mode():
        return int(model.eval()(torch.rand(1, 1, *size)).shape[1])


def main(argv: list[str] | None = None) -> int:
    """Runs the bench with the per-film memo off: repeated calls on one film must time the model, not the memo."""
    from spine_models.engine.film_memo import film_memo

    with film_memo.disabled():
        return _main(argv)


def _main(argv: list[str] | None = None) -> int:
    import torch

    from spine_models.models.registry import create_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["unet_study", "unet_resnet18", "unet_resnet34", "unet_mobilenet_v2"])
    ap.add_argument("--size", nargs=2, type=int, default=[512, 256], metavar=("H", "W"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--structures", type=int, default=5, help="output channels (AP 3, lateral 5)")
    ap.add_argument("--train-epoch", type=int, default=0, metavar="N", help="estimate seconds per epoch on N films")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="timed optimiser steps for the epoch estimate")
    ap.add_argument("--loss", default="dice_bce")
    ap.add_argument("--shipped", action="store_true", help="bench the shipped weights/seg_*.json models instead")
    a = ap.parse_args(argv)
    if a.shipped:
        return _bench_shipped(a)
    torch.set_num_threads(a.threads)
    size = tuple(a.size)
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# load average {load:.1f} on {os.cpu_count()} cores (other processes inflate these figures)")
    print(f"# U-Net latency, input {size[0]}x{size[1]} (HxW), batch 1, {a.threads} threads, torch {torch.__version__}")
    for name in a.models:
        torch.manual_seed(0)
        m = create_model(name, task="segment", num_classes=a.structures)
        n_par = sum(p.numel() for p in m.parameters()) / 1e6
        gflop = _gflop(m, size)
        t = _latency(m, size, a.runs)
        print(f"{name:17s} {n_par:6.2f} M params {gflop:5.1f} GFLOP  median {statistics.median(t):7.1f} ms  "
              f"min {min(t):7.1f} ms  (target <= 250 ms)")
        if a.train_epoch:
            step = _train_step_s(m, size, a.batch, a.steps, a.loss)
            steps = int(np.ceil(a.train_epoch / a.batch))
            print(f"{'':17s} train step (batch {a.batch}) {step:6.2f} s -> ~{step * steps / 60:5.1f} min per epoch "
                  f"on {a.train_epoch} films")
    return 0


def _bench_shipped(a: argparse.Namespace) -> int:
    """Latency of each shipped segment card: the network at its input size, and Predictor.predict end to
    end on a 1024x512 film (resize, network, masks back at full size), without and with measurements."""
    import os

    import torch

    from spine_models.engine.segment import Predictor
    from spine_models.models.cards import list_cards

    torch.set_num_threads(a.threads)
    cards = [c for c in list_cards() if c.task == "segment"]
    if not cards:
        print("no shipped segment models in weights/ (weights/seg_*.json)")
        return 1
    print(f"# load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {a.threads} threads, torch {torch.__version__}")
    film = np.random.default_rng(0).random((1024, 512)).astype(np.float32)
    for c in cards:
        p = Predictor(c, device="cpu")
        size = tuple(p.size)
        net = _latency(p.model, size, a.runs)
        e2e, meas = [], []
        for i in range(a.runs + 1):
            t0 = time.perf_counter()
            p.predict(film, measure=False)
            if i:
                e2e.append((time.perf_counter() - t0) * 1000)
        for i in range(3):
            t0 = time.perf_counter()
            p.predict(film, measure=True)
            meas.append((time.perf_counter() - t0) * 1000)
        print(f"{c.id:14s} {c.arch:14s} view {c.view:3s} net {size[0]}x{size[1]} median {statistics.median(net):6.1f} ms | "
              f"predict 1024x512 {statistics.median(e2e):6.1f} ms, + measurements {statistics.median(meas):6.1f} ms "
              f"(target <= 250 ms for the network)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
