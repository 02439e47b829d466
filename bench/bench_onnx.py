"""Torch (the reference) against ONNX Runtime for each shipped classifier and U-Net: the largest difference on real
films and both latencies, in one run. Prints figures; not a test.

    nice -n 15 .venv/bin/python bench/bench_onnx.py                   # every shipped classify CNN and U-Net, 6 films per source
    .venv/bin/python bench/bench_onnx.py --films 12 --threads 2 --model seg_unet_ap

Why: the issue asks for a faster inference path chosen by measurement and checked against torch on real films
within a stated tolerance. Each network is exported from its shipped weights (spine_models.models.onnx_runtime);
each film goes through the model's own Predictor preprocessing (read, resize, normalise) and then through both
runtimes. Reported: the largest absolute difference of the probabilities (softmax for classifiers, sigmoid for
U-Nets), whether every classifier's top class and every U-Net mask pixel (at the card's threshold) agree, and the
median batch-1 latency of each runtime at --threads, with torch's channels_last and bfloat16-autocast variants
beside them (bf16 only where the CPU has avx512_bf16). Tolerance used for "match": probabilities within 1e-4.
Real films: ../shared/data/fraiwan-ap and aasce-ap (X-ray models), spider-mri (MRI models); skipped when absent.
A shared machine makes the latencies noisy: quote them from a quiet one. ``--record`` writes the card's ``runtime``
field (engine.runtime: the path and the figures it was validated with) for each model that matched and ran faster.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

__all__ = ["main"]

TOL = 1e-4
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _films(view: str, n: int) -> list[Path]:
    if view == "mri":
        dirs = [DATA / "spider-mri" / "images"]
    else:
        dirs = [DATA / "fraiwan-ap" / "normal", DATA / "fraiwan-ap" / "scoliosis", DATA / "aasce-ap" / "images"]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[: max(1, n // len(dirs))]
    return out


def _median_ms(fn: Any, reps: int) -> float:
    """Median wall time of ``fn`` in milliseconds (bench_classify.time_ms, the benches' one timer)."""
    from bench.bench_classify import time_ms

    return time_ms(fn, reps)[0]


def _record(card, args: argparse.Namespace, runtime: dict) -> None:
    """The card's ``runtime`` field, written through the card writer into its own JSON (weights untouched)."""
    from spine_models.models.cards import ModelCard, weights_dir

    path = (args.weights or weights_dir()) / f"{card.id}.json"
    stored = ModelCard.from_json(path)
    stored.runtime = runtime
    stored.to_json(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--films", type=int, default=6, help="real films per view")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--model", action="append", help="shipped model id (repeatable; default every CNN and U-Net)")
    ap.add_argument("--weights", type=Path, help="cards folder (default: the shipped weights/)")
    ap.add_argument("--record", action="store_true",
                    help="write the card's runtime field (onnxruntime, with these figures) for every model within the "
                         "tolerance and faster on ONNX Runtime; run it on a quiet machine")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    import onnxruntime

    from spine_models.engine import predictor_class
    from spine_models.engine.composite import is_composite
    from spine_models.models.cards import list_cards
    from spine_models.models.onnx_runtime import OrtNetwork, export_onnx

    print(f"threads {args.threads}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, load average "
          f"{os.getloadavg()[0]:.2f} (a shared machine: latencies are noisy); match = probabilities within {TOL:g}")
    bf16_ok = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    print(f"bf16 on this CPU (avx512_bf16): {bf16_ok}")
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"WARNING: load average {load:.1f} > {os.cpu_count()} cores: torch's intra-op threads wait on each other "
              "under contention far more than ONNX Runtime's; the speed-up here overstates a quiet machine's")
    print(f"{'model':38s} {'films':>5s} {'max |dp|':>9s} {'agree':>7s} {'torch ms':>9s} {'ch-last':>7s} {'bf16 ms':>7s} "
          f"{'bf16 |dp|':>8s} {'ort ms':>7s} {'ort vs torch':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for card in list_cards(args.weights):
            if args.model and card.id not in args.model:
                continue
            plain = (card.task == "classify" and not is_composite(card.arch)) or \
                    (card.task == "segment" and card.arch.startswith("unet"))
            if not plain:
                continue
            films = _films("mri" if card.view == "mri" else "xray", args.films)
            if not films:
                print(f"{card.id:38s} skipped: no real films under {DATA}")
                continue
            if card.task == "segment":  # a disc locator's own Predictor builds on the U-Net Predictor: time that
                from spine_models.engine.segment import Predictor as UNetPredictor

                pred = UNetPredictor(card, device="cpu")
            else:
                pred = predictor_class(card)(card, device="cpu")
            net = pred.model
            xs = []
            for f in films:
                film = pred.read(str(f))
                x = pred.preprocess(film)
                x = x[0] if isinstance(x, tuple) else x
                xs.append(torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)[:1].float().cpu())
            onnx_net = OrtNetwork(export_onnx(net, xs[0], Path(tmp) / f"{card.id}.onnx"), threads=args.threads)
            squash = (lambda t: torch.softmax(t.float(), 1)) if card.task == "classify" else (lambda t: torch.sigmoid(t.float()))
            worst, agree = 0.0, []
            for x in xs:
                with torch.inference_mode():
                    pt = squash(net(x))
                po = squash(onnx_net(x))
                worst = max(worst, float((pt - po).abs().max()))
                if card.task == "classify":
                    agree.append(float(pt.argmax(1).eq(po.argmax(1)).float().mean()))
                else:
                    thr = float((card.thresholds or {}).get("mask", 0.5))
                    agree.append(float(((pt > thr) == (po > thr)).float().mean()))
            with torch.inference_mode():
                t_ms = _median_ms(lambda: net(xs[0]), args.reps)
                cl = net.to(memory_format=torch.channels_last)
                xcl = xs[0].contiguous(memory_format=torch.channels_last)
                cl_ms = _median_ms(lambda: cl(xcl), args.reps)
                net.to(memory_format=torch.contiguous_format)
                bf_ms, bf_dp = float("nan"), float("nan")
                if bf16_ok:
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        bf_ms = _median_ms(lambda: net(xs[0]), args.reps)
                        bf_dp = max(float((squash(net(x)) - squash(onnx_net(x))).abs().max()) for x in xs)
            o_ms = _median_ms(lambda: onnx_net(xs[0]), args.reps)
            flag = "" if worst <= TOL else "  (outside the tolerance)"
            if args.record and worst <= TOL and o_ms < t_ms:
                flag += "  recorded"
                _record(card, args, {"path": "onnxruntime", "tolerance": TOL, "max_abs_prob_diff": worst,
                                     "agree": float(np.mean(agree)), "films": [f.parent.name + "/" + f.name for f in films],
                                     "threads": args.threads, "torch_ms": round(t_ms, 1), "onnxruntime_ms": round(o_ms, 1),
                                     "load_average": round(os.getloadavg()[0], 2), "onnxruntime_version": onnxruntime.__version__,
                                     "command": "python bench/bench_onnx.py " + " ".join(sys.argv[1:] if argv is None else argv)})
            print(f"{card.id:38s} {len(xs):5d} {worst:9.2e} {100 * float(np.mean(agree)):6.2f}% {t_ms:9.1f} {cl_ms:7.1f} "
                  f"{bf_ms:7.1f} {bf_dp:8.1e} {o_ms:7.1f} {t_ms / o_ms:7.2f}x{flag}")
    print("max |dp|, agree: ONNX Runtime against torch fp32; ch-last: torch with channels_last weights and input; bf16: "
          "torch under CPU autocast to bfloat16, bf16 |dp| its largest probability difference")
    print("agree: share of films whose top class (classifiers) / of mask pixels at the card's threshold (U-Nets) is the same")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
