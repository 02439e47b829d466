"""Write phantom films in the SPEC synth layout, deterministically.

Why deterministic: the same arguments must give byte-identical files (MANIFEST sha256), whatever
the worker count, so every film is rendered from its own seeded RNG and files are written with fixed
encoder settings; the manifest and CSVs are sorted.
"""
from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spine_models._progress import progress
from spine_models.data.phantom.xray import (AP_STRUCTURES, BOX_CLASSES, DIFFICULTIES, LAT_STRUCTURES, VERTEBRAE,
                                            make_patient, render_film)
from spine_models.errors import ConfigError
from spine_models.io.digest import sha256_file

__all__ = ["GENERATOR_VERSION", "LABEL_COLUMNS", "generate_xray", "write_png", "write_manifest"]

GENERATOR_VERSION = "xray-phantom-2"
LABEL_COLUMNS = ["id", "patient_id", "view", "class", "cobb_deg", "slip_percent", "meyerding_grade", "implant",
                 "pixel_spacing_mm", "difficulty", "cobb_upper_end", "cobb_lower_end", "curve_type", "slip_level",
                 "facing", "width", "height"]
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def write_png(path: Path, array: np.ndarray) -> None:
    """PNG with fixed encoder settings (so the bytes depend only on the pixels)."""
    ok, buf = cv2.imencode(".png", array, _PNG)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    path.write_bytes(buf.tobytes())


def write_manifest(out_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """MANIFEST.json: ``meta`` plus the sha256 of every other file under ``out_dir`` (sorted)."""
    files = {f.relative_to(out_dir).as_posix(): sha256_file(f)
             for f in sorted(out_dir.rglob("*")) if f.is_file() and f.name != "MANIFEST.json"}
    manifest = {**meta, "files": files}
    (out_dir / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def _one(job: tuple[int, int, str, str, float, int, int, str]) -> dict[str, Any]:
    seed, index, view, difficulty, implant_fraction, height, width, out = job
    out_dir = Path(out)
    p = make_patient(seed, index, difficulty, implant_fraction)
    film = render_film(p, view, height=height, width=width, difficulty=difficulty)
    sid = f"{p.patient_id}-{view}"
    write_png(out_dir / "images" / f"{sid}.png", film.image)
    write_png(out_dir / "yolo" / "images" / f"{sid}.png", (film.image >> 8).astype(np.uint8))
    for name, m in film.masks.items():
        write_png(out_dir / "masks" / name / f"{sid}.png", m)
    H, W = film.image.shape
    yolo_lines = []
    for cls, x1, y1, x2, y2 in film.boxes:
        yolo_lines.append(f"{BOX_CLASSES.index(cls)} {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} {(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}")
    (out_dir / "yolo" / "labels" / f"{sid}.txt").write_text("\n".join(yolo_lines) + ("\n" if yolo_lines else ""))
    row = {"id": sid, "patient_id": p.patient_id, "view": view, "implant": int(p.implant), "difficulty": difficulty,
           "width": W, "height": H, **film.labels}
    names = VERTEBRAE
    lm = [[sid, names[i], *[f"{v:.2f}" for v in film.corners[i].reshape(-1)]] for i in range(18)]
    return {"row": row, "landmarks": lm, "boxes": film.boxes, "size": (W, H)}


def _init_worker() -> None:
    """One OpenCV thread per worker process: the processes already fill the cores."""
    cv2.setNumThreads(1)


def generate_xray(out_dir: str | Path, view: str, n: int, seed: int, *, difficulty: str = "standard",
                  implant_fraction: float = 0.25, height: int = 1024, width: int = 512, workers: int | None = None,
                  quiet: bool = False) -> dict[str, Any]:
    """Render ``n`` films of ``view`` ("ap" | "lat") into ``out_dir`` (SPEC synth layout); returns the manifest."""
    if view not in ("ap", "lat"):
        raise ConfigError(f"view {view!r}: use 'ap' or 'lat'")
    if difficulty not in DIFFICULTIES:
        raise ConfigError(f"--difficulty {difficulty!r}: use one of {', '.join(DIFFICULTIES)}")
    if n < 1:
        raise ConfigError(f"--n {n}: give at least 1 film")
    if not 0.0 <= implant_fraction <= 1.0:
        raise ConfigError(f"--implant-fraction {implant_fraction}: use a fraction between 0 and 1")
    if height < 128 or width < 64:
        raise ConfigError(f"--size {height}x{width}: films must be at least 128x64")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: output folder is not empty; choose a new --out (films are never overwritten)")
    structures = AP_STRUCTURES if view == "ap" else LAT_STRUCTURES
    for sub in ["images", "yolo/images", "yolo/labels", *[f"masks/{s}" for s in structures]]:
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(int(seed), i, view, difficulty, float(implant_fraction), int(height), int(width), str(out)) for i in range(n)]
    workers = workers if workers is not None else min(os.cpu_count() or 1, 4, max(1, n // 4))
    if workers > 1:
        # forkserver/spawn, not fork: a forked child inherits OpenCV's thread pool in a broken state and can hang
        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as ex:
            results = list(progress(ex.map(_one, jobs, chunksize=4), total=n, desc=f"synth {view}", quiet=quiet))
    else:
        results = [_one(j) for j in progress(jobs, total=n, desc=f"synth {view}", quiet=quiet)]
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LABEL_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in results:
            w.writerow({k: r["row"].get(k, "") for k in LABEL_COLUMNS})
    with open(out / "landmarks.csv", "w", newline="") as f:
        w2 = csv.writer(f, lineterminator="\n")
        w2.writerow(["id", "vertebra", "x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"])
        for r in results:
            w2.writerows(r["landmarks"])
    (out / "yolo" / "data.yaml").write_text(
        "# YOLO view of this phantom set. Class ids: 0 lumbar_implant, 1 scoliosis, 2 vertebra\n"
        "# (the implant/scoliosis study's label map is 1 Lum, 2 sco: COCO ids in coco.json keep it).\n"
        "path: .\ntrain: images\nval: images\nnames:\n  0: lumbar_implant\n  1: scoliosis\n  2: vertebra\n")
    coco: dict[str, Any] = {"info": {"description": f"Spine Lab phantom {GENERATOR_VERSION} {view}", "version": GENERATOR_VERSION},
                            "categories": [{"id": i + 1, "name": c, "supercategory": "spine"} for i, c in enumerate(BOX_CLASSES)],
                            "images": [], "annotations": []}
    ann_id = 1
    for k, r in enumerate(results, start=1):
        W, H = r["size"]
        coco["images"].append({"id": k, "file_name": f"images/{r['row']['id']}.png", "width": W, "height": H})
        for cls, x1, y1, x2, y2 in r["boxes"]:
            coco["annotations"].append({"id": ann_id, "image_id": k, "category_id": BOX_CLASSES.index(cls) + 1,
                                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                        "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0})
            ann_id += 1
    (out / "coco.json").write_text(json.dumps(coco, indent=None, separators=(",", ":")) + "\n")
    counts: dict[str, int] = {}
    for r in results:
        counts[r["row"]["class"]] = counts.get(r["row"]["class"], 0) + 1
    meta = {"generator": "spine_models.data.phantom", "generator_version": GENERATOR_VERSION,
            "kind": f"xray-{view}", "arguments": {"n": n, "seed": seed, "difficulty": difficulty,
                                                  "implant_fraction": implant_fraction, "height": height, "width": width},
            "seed": seed, "counts": counts, "implants": sum(int(r["row"]["implant"]) for r in results),
            "structures": structures, "box_classes": BOX_CLASSES}
    return write_manifest(out, meta)
