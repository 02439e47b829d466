"""Each shipped network's forward latency against its own FLOP bound on this machine, and against DenseNet-121 at
224 px, in one run. Prints figures; not a test.

    nice -n 15 .venv/bin/python bench/bench_flops.py                 # 2 threads, every shipped network
    .venv/bin/python bench/bench_flops.py --threads 2 --reps 30 --model seg_unet_ap

Why: the issue's target is every shipped CNN at >= 40 % of this machine's fp32 FLOP bound, or a note saying what
bounds it, with the measurement that shows it. Measured here, in the same process:
- the peak: fp32 matmul (n x n, ``torch.mm``) at the same thread count, GFLOP/s = 2 n^3 / time, best of sizes;
- memory bandwidth: a large tensor copy (read + write), GB/s;
- dispatch cost: one tiny ``torch.add`` (what every op pays before it computes), microseconds;
- per network, batch 1 at the card's input size: FLOPs (``torch.utils.flop_counter.FlopCounterMode``: convolutions
  and matmuls, 2 per multiply-add), the forward's median latency, the bound (FLOPs / peak), the share reached; the
  number of ops run (profiler) x the dispatch cost (the dispatch floor); the activation and weight bytes (forward
  hooks) / bandwidth (the memory floor); and the op kinds taking most of the time (profiler), which name the bound.
Figures on a shared machine are noisy (another process training takes cores): quote them from a quiet machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

__all__ = ["main", "matmul_peak_gflops", "bandwidth_gbs", "dispatch_us", "count_flops", "shipped_networks"]


def _median_ms(fn: Any, reps: int) -> float:
    """Median wall time of ``fn`` in milliseconds (bench_classify.time_ms, the benches' one timer)."""
    from bench.bench_classify import time_ms

    return time_ms(fn, reps)[0]


def matmul_peak_gflops(sizes: tuple[int, ...] = (512, 1024, 2048)) -> tuple[float, int]:
    """The best fp32 matmul rate over ``sizes`` (GFLOP/s) and the size that reached it."""
    best, best_n = 0.0, 0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        reps = max(3, int(2e10 / (2 * n**3)))  # about 20 GFLOP of work per size
        ms = _median_ms(lambda: torch.mm(a, b), reps)
        rate = 2 * n**3 / (ms / 1000) / 1e9
        if rate > best:
            best, best_n = rate, n
    return best, best_n


def bandwidth_gbs(mb: int = 256) -> float:
    """Copy bandwidth: bytes read + written per second (GB/s)."""
    a = torch.empty(mb * 2**20 // 4)
    a.uniform_()
    b = torch.empty_like(a)
    ms = _median_ms(lambda: b.copy_(a), 10)
    return 2 * a.numel() * 4 / (ms / 1000) / 1e9


def dispatch_us() -> float:
    """One tiny op's wall time (microseconds): the floor every op of a network pays."""
    x, y = torch.ones(1), torch.ones(1)
    n = 20000
    for _ in range(1000):
        torch.add(x, y)
    t0 = time.perf_counter()
    for _ in range(n):
        torch.add(x, y)
    return (time.perf_counter() - t0) / n * 1e6


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return int(fc.get_total_flops())


def memory_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes a forward must move at least once: every leaf module's output written and read again, plus the weights."""
    total = [0]

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor):
                total[0] += 2 * t.numel() * t.element_size()

    _forward_with_hook(model, x, hook, [m for m in model.modules() if not list(m.children())])
    return total[0] + sum(p.numel() * p.element_size() for p in model.parameters())


def _forward_with_hook(model: nn.Module, x: torch.Tensor, hook: Callable[..., None], modules: list[nn.Module]) -> None:
    """One no-grad forward with ``hook`` on ``modules``, removed again even when the forward fails."""
    hs = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hs:
            h.remove()


def op_profile(model: nn.Module, x: torch.Tensor, top: int = 3) -> tuple[int, list[tuple[str, float]]]:
    """(ops run in one forward, the ``top`` op kinds by share of self CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model(x)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    n_ops = sum(e.count for e in events if e.self_cpu_time_total > 0)
    kinds = sorted(((e.key[6:], e.self_cpu_time_total / total) for e in events), key=lambda kv: -kv[1])[:top]
    return n_ops, kinds


def depthwise_share(model: nn.Module, x: torch.Tensor) -> float:
    """Share of the forward's FLOPs in depthwise (grouped) convolutions, which run far below the matmul peak."""
    flops = {"dw": 0, "all": 0}

    def hook(m: nn.Conv2d, _i: Any, out: torch.Tensor) -> None:
        f = 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        flops["all"] += f
        if m.groups > 1:
            flops["dw"] += f

    _forward_with_hook(model, x, hook, [m for m in model.modules() if isinstance(m, nn.Conv2d)])
    return flops["dw"] / max(1, flops["all"])


def shipped_networks(only: list[str] | None = None) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(id, eval-mode network with its shipped weights, a batch-1 input at the card's size) for every shipped card
    whose network is one plain module (classify CNNs, U-Nets, the corner and disc-grading networks); composites and
    detectors (their own benches: bench_detect) are left out with a line saying so."""
    from spine_models.models import create_model
    from spine_models.models.cards import list_cards, load_state

    out = []
    for card in list_cards():
        if only and card.id not in only:
            continue
        size = card.input_size
        hw = (size, size) if isinstance(size, int) else tuple(size)
        try:
            sd, kw = load_state(card)
        except (OSError, ValueError, KeyError) as exc:
            print(f"  {card.id}: skipped ({exc})")
            continue
        kw = {k: v for k, v in kw.items() if not k.endswith("sha256") and k not in ("locator", "seg", "view", "experts")}
        try:
            if card.task == "classify":
                model = create_model(card.arch, task="classify", **{**kw, "pretrained": None})
            elif card.task == "segment":
                model = create_model(card.arch, task="segment", **kw)
            else:
                print(f"  {card.id}: {card.task} model, timed in bench_detect.py")
                continue
            model.load_state_dict(sd)
        except (TypeError, KeyError, RuntimeError, ValueError) as exc:
            print(f"  {card.id}: no single network to time ({type(exc).__name__}: {str(exc)[:80]})")
            continue
        in_ch = int(card.in_chans or kw.get("in_chans") or 1)
        out.append((card.id, model.float().eval(), torch.rand(1, in_ch, *hw)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--model", action="append", help="shipped model id (repeatable; default every one)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    print(f"threads {args.threads}, torch {torch.__version__}, load average {load:.2f} "
          "(a shared machine: figures are noisy, quote them from a quiet one)")
    if load > (os.cpu_count() or 1):
        print(f"WARNING: load average {load:.1f} > {os.cpu_count()} cores: other processes hold the cores, intra-op "
              "threads wait on each other and latencies here can be many times a quiet machine's; --threads 1 suffers least")
    peak, n = matmul_peak_gflops()
    bw = bandwidth_gbs()
    disp = dispatch_us()
    print(f"fp32 matmul peak {peak:.1f} GFLOP/s (n={n}); copy bandwidth {bw:.1f} GB/s; dispatch {disp:.1f} us per op")

    import torchvision

    dense = torchvision.models.densenet121(weights=None).eval()
    xd = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        dense_ms = _median_ms(lambda: dense(xd), args.reps)
    dense_gf = count_flops(dense, xd) / 1e9
    print(f"densenet121 @224 (weights=None): {dense_ms:.1f} ms, {dense_gf:.2f} GFLOP, "
          f"{100 * dense_gf / peak * 1000 / dense_ms:.0f} % of the bound")
    print()
    hdr = (f"{'model':38s} {'input':>9s} {'GFLOP':>6s} {'ms':>7s} {'bound':>6s} {'%peak':>6s} {'vs dn121':>8s} "
           f"{'ops':>5s} {'disp ms':>7s} {'MB':>6s} {'mem ms':>6s}  what bounds it")
    print(hdr)
    for mid, model, x in shipped_networks(args.model):
        with torch.no_grad():
            ms = _median_ms(lambda: model(x), args.reps)
        gf = count_flops(model, x) / 1e9
        bound = gf / peak * 1000
        n_ops, kinds_all = op_profile(model, x, top=50)
        kinds = kinds_all[:3]
        disp_ms = n_ops * disp / 1000
        mem = memory_bytes(model, x)
        mem_ms = mem / (bw * 1e9) * 1000
        dw = depthwise_share(model, x)
        share = bound / ms
        if share >= 0.4:
            why = "compute (at >= 40 % of the matmul peak)"
        else:
            parts = []
            if disp_ms > 0.25 * ms:
                parts.append(f"dispatch: {n_ops} ops x {disp:.0f} us = {100 * disp_ms / ms:.0f} % of the time")
            if mem_ms > ms:
                parts.append(f"memory unclear: {mem / 1e6:.0f} MB at the measured {bw:.1f} GB/s would take longer than the "
                             "forward did (activations stay in cache, or the copy was measured under load)")
            elif mem_ms > 0.25 * ms:
                parts.append(f"memory: {mem / 1e6:.0f} MB at {bw:.1f} GB/s = {100 * mem_ms / ms:.0f} % of the time")
            if dw > 0.05:
                parts.append(f"depthwise convs: {100 * dw:.0f} % of the FLOPs (low arithmetic intensity)")
            share_of = dict(kinds_all)
            bn = share_of.get("native_batch_norm", 0.0) + share_of.get("batch_norm", 0.0)
            if bn > 0.05:
                parts.append(f"batch-norm as its own pass {100 * bn:.0f} % (folding it into the convs removes it: ONNX Runtime does)")
            slow = share_of.get("_slow_conv2d_forward", 0.0)
            if slow > 0.05:
                parts.append(f"convs off oneDNN (_slow_conv2d_forward) {100 * slow:.0f} %")
            parts.append("top ops " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in kinds))
            why = "; ".join(parts)
        print(f"{mid:38s} {'x'.join(map(str, x.shape[2:])):>9s} {gf:6.2f} {ms:7.1f} {bound:6.1f} {100 * share:5.0f}% "
              f"{dense_ms / ms:7.2f}x {n_ops:5d} {disp_ms:7.1f} {mem / 1e6:6.0f} {mem_ms:6.1f}  {why}")
    print("\nbound = FLOPs / matmul peak; vs dn121 = DenseNet-121@224 latency / this network's (>1: faster); disp ms = ops "
          "run x dispatch cost (a floor no kernel speed removes); mem ms = activation + weight bytes / copy bandwidth. "
          "Full analysis of one real film with every default model: bench/bench_analysis.py (models) and bench/bench_app.py (the page).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
