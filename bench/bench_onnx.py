"""Torch (the reference) against ONNX Runtime for each shipped classifier, U-Net and corner network: the largest
difference on real films and both latencies, in one run. Prints figures; not a test.

    nice -n 15 .venv/bin/python bench/bench_onnx.py                   # every shipped classify CNN and U-Net, 6 films per source
    .venv/bin/python bench/bench_onnx.py --films 12 --threads 2 --model seg_unet_ap

Why: the issue asks for a faster inference path chosen by measurement and checked against torch on real films
within a stated tolerance. Each network is exported from its shipped weights (spine_models.models.onnx_runtime);
each film goes through the model's own Predictor preprocessing (read, resize, normalise) and then through both
runtimes. Reported: the largest absolute difference of the probabilities (softmax for classifiers, sigmoid for
U-Nets; for the corner network of ``vertebra_corners`` its raw outputs — corners in patch half-widths, endplate angles
in tens of degrees — on the patches of the bodies its U-Net finds on each film; for a corner card's level reader
(``--model`` its component id) its log-probabilities on the wide patches of the bodies the corner model reads; for a
disc grader its Pfirrmann and finding probabilities on the crops of the discs its locator names), whether
every classifier's top class, every U-Net mask pixel (at the card's threshold), every body's corners on the film (within
0.05 px), every film's decoded level names and every disc's grade and finding calls agree, and the
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


CORNER_PX = 0.05  # a body's corners on the film "agree" when every one moves less than this many pixels
COMPARED = {"classify": "softmax probabilities", "segment": "sigmoid probabilities",
            "corners": "corner-network outputs (corners in patch half-widths, endplate angles in tens of degrees)",
            "levels": "level log-probabilities (log-softmax) of the bodies the corner model reads, mirrored patches too",
            "grader": "Pfirrmann softmax and finding sigmoid probabilities of the discs the locator names (crop and mirror "
                      "averaged)"}


def _shown(film: Path, display_name: Any) -> str:
    """``folder/file-<hash>.jpg``: a film as the card records it (its class folder, its neutral id)."""
    return f"{film.parent.name}/{display_name(film.name, kind='image')}"


def _corner_patches(pred: Any, film_path: Path) -> tuple[torch.Tensor, list, float] | None:
    """(patches (N, 1, s, s), their matrices, the film's scale) of the bodies the composite's U-Net finds on a film
    (the blobs cut as the card says), as ``VertebraCornerPredictor.infer`` feeds its corner network; None without."""
    from spine_models.engine.landmarks import body_patches, split_bodies

    film = pred.read(str(film_path))
    base = pred.locator.predict(str(film_path))
    bodies = {v["name"]: np.asarray(v["corners"], float) for v in base.vertebrae}
    if not bodies:
        return None
    cut = split_bodies(base.masks["vertebra"], pred.locator.body_height) if pred.split_long else {}
    _, x, mats, scale = body_patches(film.pixels, cut or bodies, side=pred.side, size=pred.patch, height=pred.height)
    return x, mats, scale


def _level_patches(pred: Any, film_path: Path) -> tuple[torch.Tensor, int] | None:
    """(the level reader's input batch, as ``LevelReader.inputs`` builds it; the number of bodies) for the bodies a
    corner composite ``pred`` reads on a film (first look); None without bodies."""
    film = pred.read(str(film_path))
    bodies = pred._bodies(film.pixels, pred.locator.predict(str(film_path)))
    if not bodies:
        return None
    corners = np.stack([np.asarray(c, float).reshape(4, 2) for c in bodies.values()])
    return torch.from_numpy(pred.levels.inputs(film.pixels, corners)[0]), len(corners)


def _levels_agree(a: np.ndarray, b: np.ndarray, n: int, skip: float) -> list[float]:
    """1.0 when the two runtimes' log-probabilities decode to the same level names down the film's column."""
    from spine_models.measure import decode_levels

    mean = [o.reshape(-1, n, o.shape[-1]).mean(axis=0) for o in (a, b)]
    return [float(list(decode_levels(mean[0], skip_log_prob=skip)) == list(decode_levels(mean[1], skip_log_prob=skip)))]


def _corners_agree(a: np.ndarray, b: np.ndarray, mats: list, scale: float, size: int) -> list[float]:
    """Per body: 1.0 when the two outputs' four corners on the film are within ``CORNER_PX`` of each other."""
    from spine_models.data.vertebra_patches import decode_outputs, to_film

    film = [[to_film(decode_outputs(o, size)[0], m) / scale for o, m in zip(out, mats)] for out in (a, b)]
    return [float(np.abs(p - q).max() < CORNER_PX) for p, q in zip(*film)]


def _record(card, args: argparse.Namespace, runtime: dict, path: Path | None = None) -> None:
    """The card's ``runtime`` field, written through the card writer into its own JSON (weights untouched)."""
    from spine_models.models.cards import ModelCard, weights_dir

    path = path or (args.weights or weights_dir()) / f"{card.id}.json"
    stored = ModelCard.from_json(path)
    stored.runtime = runtime
    stored.to_json(path)


def _time_and_record(card: Any, args: argparse.Namespace, net: Any, onnx_net: Any, x0: torch.Tensor, worst: float,
                     agree: list[float], films: list[Path], compared: str, batch: str, rows: int, note: str,
                     path: Path | None = None) -> None:
    """A component network's last steps (level reader, disc grader): both runtimes' median latency on one input batch,
    its card's ``runtime`` record with ``--record`` (when within the tolerance and faster), and its printed row."""
    import onnxruntime

    from spine_models.io.deid import display_name

    with torch.inference_mode():
        t_ms = _median_ms(lambda: net(x0), args.reps)
    o_ms = _median_ms(lambda: onnx_net(x0), args.reps)
    flag = "" if worst <= TOL else "  (outside the tolerance)"
    if args.record and worst <= TOL and o_ms < t_ms:
        flag += "  recorded"
        _record(card, args, {"path": "onnxruntime", "tolerance": TOL, "compared": COMPARED[compared], "max_abs_diff": worst,
                             "agree": float(np.mean(agree)), "films": [_shown(f, display_name) for f in films],
                             "batch": batch, "threads": args.threads,
                             "torch_ms": round(t_ms, 1), "onnxruntime_ms": round(o_ms, 1),
                             "load_average": round(os.getloadavg()[0], 2), "onnxruntime_version": onnxruntime.__version__,
                             "command": "python bench/bench_onnx.py " + " ".join(sys.argv[1:])},
                path=path)
    print(f"{card.id:38s} {rows:5d} {worst:9.2e} {100 * float(np.mean(agree)):6.2f}% {t_ms:9.1f} {'':>7s} "
          f"{'':>7s} {'':>8s} {o_ms:7.1f} {t_ms / o_ms:7.2f}x{flag}  ({note})")


def _bench_levels(card: Any, corner: Any, args: argparse.Namespace, tmp: str) -> None:
    """The level reader ``card`` of the corner card ``corner``: torch against ONNX Runtime on the wide patches of the
    bodies the corner model reads on real films (both views of its ``hflip`` in one batch, as it runs); agree = the
    film's decoded level names are the same. ``--record`` writes the reader card's ``runtime``."""
    from spine_models.engine import predictor_class
    from spine_models.engine.landmarks import level_reader_file
    from spine_models.models.onnx_runtime import OrtNetwork, export_onnx

    films = _films("xray", args.films)
    if not films:
        print(f"{card.id:38s} skipped: no real films under {DATA}")
        return
    pred = predictor_class(corner)(corner, device="cpu")
    net, reader = pred.levels.model, pred.levels
    batches = [b for b in (_level_patches(pred, f) for f in films) if b is not None]
    if not batches:
        print(f"{card.id:38s} skipped: the corner model found no bodies on the {len(films)} films")
        return
    onnx_net = OrtNetwork(export_onnx(net, batches[0][0][:1], Path(tmp) / f"{card.id}.onnx"), threads=args.threads)
    worst, agree = 0.0, []
    for x, n in batches:
        with torch.inference_mode():
            pt = torch.log_softmax(net(x).float(), 1)
        po = torch.log_softmax(onnx_net(x).float(), 1)
        worst = max(worst, float((pt - po).abs().max()))
        agree += _levels_agree(pt.numpy(), po.numpy(), n, reader.skip)
    x0 = batches[0][0]
    _time_and_record(card, args, net, onnx_net, x0, worst, agree, films, "levels",
                     f"one film's bodies and their mirrors ({len(x0)} patches)", len(batches), f"a film's {len(x0)} patches",
                     path=level_reader_file(corner.preprocessing["level_reader"], corner.id))


def _bench_grader(card: Any, args: argparse.Namespace, tmp: str) -> None:
    """A disc grader (``disc_grading``): torch against ONNX Runtime on the crops (and their mirrors, one batch, as
    ``engine.discs.grade`` runs) of the discs its locator names on real sagittal slices; agree = share of discs whose
    Pfirrmann grade and finding calls (at the card's thresholds) are the same. ``--record`` writes its card's
    ``runtime``."""
    from spine_models.engine import predictor_class
    from spine_models.engine.discs import grader_batch, grades_from_logits
    from spine_models.engine.segment import read_pixels
    from spine_models.models.onnx_runtime import OrtNetwork, export_onnx

    films = _films("mri", args.films)
    if not films:
        print(f"{card.id:38s} skipped: no real slices under {DATA}")
        return
    pred = predictor_class(card)(card, device="cpu")
    net, nf = pred.model, len(pred.findings)
    thr = np.array([float(card.thresholds.get(f, 0.5)) for f in pred.findings])
    xs = []
    for f in films:
        crops = pred.infer(read_pixels(str(f))[0])["crops"]
        if crops is not None:
            xs.append(grader_batch(crops))
    if not xs:
        print(f"{card.id:38s} skipped: its locator named no discs on the {len(films)} slices")
        return
    onnx_net = OrtNetwork(export_onnx(net, xs[0][:1], Path(tmp) / f"{card.id}.onnx"), threads=args.threads)
    worst, agree = 0.0, []
    for x in xs:
        with torch.inference_mode():
            pt = grades_from_logits(net(x), nf)
        po = grades_from_logits(onnx_net(x), nf)
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in zip(pt, po)))
        agree += list(((pt[0].argmax(1) == po[0].argmax(1)) & ((pt[1] >= thr) == (po[1] >= thr)).all(1)).astype(float))
    x0 = xs[0]
    _time_and_record(card, args, net, onnx_net, x0, worst, agree, films, "grader",
                     f"one slice's discs and their mirrors ({len(x0)} crops)", len(xs), f"a slice's {len(x0)} crops")


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
    from spine_models.io.deid import display_name  # films are recorded under neutral ids, as every output names files
    from spine_models.models.cards import ModelCard, list_cards
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
    from spine_models.engine.landmarks import level_reader_file

    entries = [(c, None) for c in list_cards(args.weights)]
    # a corner card's level reader (a component, not listed with the cards): (its card, the corner card it serves)
    entries += [(ModelCard.from_json(level_reader_file(c.preprocessing["level_reader"], c.id)), c)
                for c, _ in list(entries) if c.arch == "vertebra_corners" and (c.preprocessing or {}).get("level_reader")]
    with tempfile.TemporaryDirectory() as tmp:
        for card, serves in entries:
            if args.model and card.id not in args.model:
                continue
            if serves is not None:
                _bench_levels(card, serves, args, tmp)
                continue
            if card.arch == "disc_grading":
                _bench_grader(card, args, tmp)
                continue
            corner = card.arch == "vertebra_corners"
            plain = (card.task == "classify" and not is_composite(card.arch)) or \
                    (card.task == "segment" and card.arch.startswith("unet")) or corner
            if not plain:
                continue
            films = _films("mri" if card.view == "mri" else "xray", args.films)
            if not films:
                print(f"{card.id:38s} skipped: no real films under {DATA}")
                continue
            if corner:  # the composite's own corner network, on the patches of the bodies its U-Net finds
                pred = predictor_class(card)(card, device="cpu")
            elif card.task == "segment":  # a disc locator's own Predictor builds on the U-Net Predictor: time that
                from spine_models.engine.segment import Predictor as UNetPredictor

                pred = UNetPredictor(card, device="cpu")
            else:
                pred = predictor_class(card)(card, device="cpu")
            net = pred.model
            xs, frames = [], []
            for f in films:
                if corner:
                    patches = _corner_patches(pred, f)
                    if patches is not None:
                        xs.append(patches[0])
                        frames.append(patches[1:])
                    continue
                film = pred.read(str(f))
                x = pred.preprocess(film)
                x = x[0] if isinstance(x, tuple) else x
                xs.append(torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)[:1].float().cpu())
            if not xs:
                print(f"{card.id:38s} skipped: its U-Net found no bodies on the {len(films)} films")
                continue
            onnx_net = OrtNetwork(export_onnx(net, xs[0][:1], Path(tmp) / f"{card.id}.onnx"), threads=args.threads)
            squash = (lambda t: torch.softmax(t.float(), 1)) if card.task == "classify" else \
                (lambda t: t.float()) if corner else (lambda t: torch.sigmoid(t.float()))
            worst, agree = 0.0, []
            for i, x in enumerate(xs):
                with torch.inference_mode():
                    pt = squash(net(x))
                po = squash(onnx_net(x))
                worst = max(worst, float((pt - po).abs().max()))
                if card.task == "classify":
                    agree.append(float(pt.argmax(1).eq(po.argmax(1)).float().mean()))
                elif corner:
                    agree += _corners_agree(pt.numpy(), po.numpy(), *frames[i], pred.patch)
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
                _record(card, args, {"path": "onnxruntime", "tolerance": TOL,
                                     "compared": COMPARED["corners" if corner else card.task], "max_abs_diff": worst,
                                     "agree": float(np.mean(agree)), "films": [_shown(f, display_name) for f in films],
                                     "threads": args.threads, "torch_ms": round(t_ms, 1), "onnxruntime_ms": round(o_ms, 1),
                                     "load_average": round(os.getloadavg()[0], 2), "onnxruntime_version": onnxruntime.__version__,
                                     "command": "python bench/bench_onnx.py " + " ".join(sys.argv[1:] if argv is None else argv)})
            print(f"{card.id:38s} {len(xs):5d} {worst:9.2e} {100 * float(np.mean(agree)):6.2f}% {t_ms:9.1f} {cl_ms:7.1f} "
                  f"{bf_ms:7.1f} {bf_dp:8.1e} {o_ms:7.1f} {t_ms / o_ms:7.2f}x{flag}")
    print("max |dp|, agree: ONNX Runtime against torch fp32; ch-last: torch with channels_last weights and input; bf16: "
          "torch under CPU autocast to bfloat16, bf16 |dp| its largest probability difference")
    print("agree: share of films whose top class (classifiers) / of mask pixels at the card's threshold (U-Nets) / of "
          f"bodies whose four corners on the film (corner networks, within {CORNER_PX} px) / of films whose decoded "
          "level names (level readers) / of discs whose Pfirrmann grade and finding calls (disc graders) are the same")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
