"""Detector latency (and optionally training speed) on this CPU. Prints figures; not a test.

    .venv/bin/python bench/bench_detect.py                      # predict latency at 512 px, both families
    .venv/bin/python bench/bench_detect.py --train-epoch        # + seconds per training epoch on N films
    .venv/bin/python bench/bench_detect.py --train-epoch --data SYNTH_DIR   # on the phantom instead of drawn films
    .venv/bin/python bench/bench_detect.py --shipped [--imgsz 512]          # the shipped detectors (trained weights)

Why: the issue's target is YOLO <= 60 ms at 512 px on 2 CPU cores, and the lead budgets shipped-weight
training (<= 30 min each) from the per-epoch times. Random weights: latency does not depend on them
(except NMS, which sees few boxes above ``conf_min`` either way).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _drawn_films(n: int, h: int, w: int, seed: int = 0):
    """Phantom-like 16-bit films: a column of vertebral blocks, screws + rods as implants on ~25 %."""
    import cv2

    from spine_models.data.records import BoxLabel, Sample, SpineDataset

    rng = np.random.default_rng(seed)
    root = Path(tempfile.mkdtemp(prefix="bench_detect_"))
    samples = []
    for i in range(n):
        img = rng.normal(0.2, 0.03, (h, w)).astype(np.float32)
        cx = w // 2 + int(rng.integers(-w // 20, w // 20))
        for k in range(17):
            y = int(h * 0.05 + k * h * 0.052)
            cv2.rectangle(img, (cx - w // 12, y), (cx + w // 12, y + int(h * 0.04)), 0.45, -1)
        img = cv2.GaussianBlur(img, (0, 0), 2)
        boxes = []
        if i % 4 == 0:
            y1 = int(h * rng.uniform(0.55, 0.7))
            y2 = y1 + int(h * 0.18)
            for dx in (-w // 10, w // 10):
                cv2.rectangle(img, (cx + dx - 4, y1), (cx + dx + 4, y2), 0.95, -1)
            boxes.append(BoxLabel(cx - w // 10 - 10, y1 - 6, cx + w // 10 + 10, y2 + 6, "lumbar_implant"))
        p = root / f"F{i:04d}.png"
        cv2.imwrite(str(p), (np.clip(img, 0, 1) * 65535).astype(np.uint16))
        samples.append(Sample(id=p.stem, patient_id=p.stem, path=p, boxes=boxes))
    return SpineDataset("drawn", samples, box_classes=["lumbar_implant"])


def bench_latency(imgsz: int, reps: int) -> None:
    import torch

    from spine_models.engine.detect import Predictor
    from spine_models.models.cards import ModelCard
    from spine_models.models.registry import create_model

    film = np.random.default_rng(0).random((1024, 512)).astype(np.float32)
    for arch in ("yolov8n", "yolo11n", "fasterrcnn_mobilenet_v3"):
        kw = {"nc": 2} if arch.startswith("yolo") else {"nc": 2, "min_size": imgsz, "max_size": imgsz}
        card = ModelCard(id=arch, task="detect", arch=arch, view="any", trained_on="-", weights="-", sha256="",
                         input_size=imgsz, train_command="", license="-", classes=["lumbar_implant", "scoliosis"],
                         thresholds={"score": 0.5})
        p = Predictor(card, device="cpu", model=create_model(arch, task="detect", **kw))
        t0 = time.perf_counter()
        p.predict(film)
        first = (time.perf_counter() - t0) * 1000
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            p.predict(film)
            times.append((time.perf_counter() - t0) * 1000)
        print(f"{arch:26s} predict 1024x512 film @ {imgsz}: median {statistics.median(times):6.1f} ms "
              f"(min {min(times):.1f}, first call {first:.0f} ms, torch threads {torch.get_num_threads()})")


def bench_shipped(imgsz: int | None, reps: int) -> None:
    """Latency of every shipped detector on a phantom AP film with an implant (trained weights: NMS sees
    the few boxes a real prediction has, unlike random weights). ``imgsz`` overrides the card's input."""
    import dataclasses

    import torch

    from spine_models.data.phantom.xray import make_patient, render_film
    from spine_models.engine.detect import Predictor
    from spine_models.models.cards import list_cards

    film = render_film(make_patient(7, 0, implant_fraction=1.0), "ap").image.astype(np.float32) / 65535.0
    for card in [c for c in list_cards() if c.task == "detect"]:
        size = int(imgsz or card.input_size)
        kw = dict(card.arch_kwargs or {})
        if "min_size" in kw:
            kw.update(min_size=size, max_size=size)
        p = Predictor(dataclasses.replace(card, input_size=size, arch_kwargs=kw), device="cpu")
        p.predict(film)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            res = p.predict(film)
            times.append((time.perf_counter() - t0) * 1000)
        print(f"{card.id:34s} predict 1024x512 phantom film @ {size} (card: {card.input_size}): median "
              f"{statistics.median(times):6.1f} ms (min {min(times):.1f}; {len(res.boxes)} boxes; "
              f"torch threads {torch.get_num_threads()})")


def bench_epoch(data: str | None, n: int, imgsz: int, rcnn_n: int) -> None:
    from spine_models.config import load_config
    from spine_models.engine import detect

    if data:
        from spine_models.data.adapters import load_dataset

        ds = load_dataset(data, task="detect")
    else:
        ds = _drawn_films(n, 1024, 512)
    for arch, count, extra in (("yolov8n", n, {}), ("fasterrcnn_mobilenet_v3", rcnn_n, {"min_size": imgsz, "max_size": imgsz})):
        sub = type(ds)(ds.name, ds.samples[:count], box_classes=ds.box_classes)
        cfg = load_config("detect", {"model": arch, "data": sub, "epochs": 1, "imgsz": imgsz, "batch": 8,
                                     "split": "8:1:1", "n_resamples": 100, **extra})
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            card = detect.train(cfg, Path(tmp) / "run", quiet=True)
            total = time.perf_counter() - t0
            import json

            hist = json.loads((card.parent / "history.json").read_text())
            ep = hist["epochs"][0]["time_s"]
            n_train = hist["summary"]["n"]["train"]
        print(f"{arch:26s} 1 epoch on {n_train} training films ({count} total) @ {imgsz}: {ep:.1f} s/epoch "
              f"(= {ep / n_train * 1000:.0f} ms/film); whole train() incl. image prep, validation, card: {total:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Runs the bench with the per-film memo off: repeated calls on one film must time the model, not the memo."""
    from spine_models.engine.film_memo import film_memo

    with film_memo.disabled():
        return _main(argv)


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgsz", type=int, default=512)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--train-epoch", action="store_true", help="also time one training epoch of each family")
    ap.add_argument("--data", help="a synth/YOLO/COCO folder to train on (default: drawn 1024x512 films)")
    ap.add_argument("--n", type=int, default=200, help="films for the YOLO epoch")
    ap.add_argument("--rcnn-n", type=int, default=200, help="films for the Faster R-CNN epoch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shipped", action="store_true", help="bench the shipped weights/det_*.json models instead")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    if a.shipped:
        bench_shipped(a.imgsz, a.reps)
        return 0
    bench_latency(a.imgsz, a.reps)
    if a.train_epoch:
        bench_epoch(a.data, a.n, a.imgsz, a.rcnn_n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
