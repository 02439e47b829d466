"""Run the shipped AP U-Net + Cobb measurement on real scoliosis films and save a few small overlays.

    .venv/bin/python docs/make_real_overlays.py                       # 6 films, 3 overlays saved in docs/
    .venv/bin/python docs/make_real_overlays.py --n 6 --look /tmp/look  # + every overlay at full size to inspect

Why: the AP U-Net is fine-tuned on real films of other sources (aasce-ap, cadma-vertebra); this shows honestly what it does on real
films (Fraiwan et al., "A dataset of scoliosis, spondylolisthesis, and normal vertebrae X-ray
images", Mendeley Data doi:10.17632/xkt857dsxk.1, CC BY 4.0). The films stay outside the repository;
only small derived overlays (credited) are written. Film names carry age and sex, so outputs are
numbered, never named after the source file. Films are picked deterministically (sorted names,
evenly spaced), so a rerun gives the same overlays.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CREDIT = "Fraiwan et al., CC BY 4.0"
COLORS = {"vertebra": (230, 60, 60), "spinous_process": (60, 200, 60), "pedicle": (60, 120, 255)}

__all__ = ["main", "overlay"]


def overlay(pixels: np.ndarray, res, cobb, height: int) -> np.ndarray:
    """RGB uint8: the film | masks + Cobb endplate lines, scaled to ``height``, with the credit."""
    import cv2

    from spine_models.results.base import to_rgb_uint8

    film = np.ascontiguousarray(to_rgb_uint8(pixels))
    drawn = film.astype(np.float32)
    for s, m in res.masks.items():
        m = m.astype(bool)
        drawn[m] = drawn[m] * 0.55 + np.array(COLORS.get(s, (255, 200, 0)), np.float32) * 0.45
    drawn = cobb.plot(drawn.astype(np.uint8)) if cobb is not None else drawn.astype(np.uint8)
    h, w = film.shape[:2]
    new_w = max(1, round(w * height / h))
    panels = [cv2.resize(p, (new_w, height), interpolation=cv2.INTER_AREA) for p in (film, drawn)]
    out = np.concatenate([panels[0], np.full((height, 4, 3), 255, np.uint8), panels[1]], axis=1)
    band = np.full((34, out.shape[1], 3), 255, np.uint8)
    txt = res.measurements.get("cobb", {})
    angle = txt.get("cobb_deg")
    label = (f"{res.model_id}: {txt.get('n_vertebrae', 0)} bodies, Cobb "
             f"{'n/a' if angle is None else f'{angle:.0f} deg'}"
             f"{'' if txt.get('reliable', True) else ' - flagged unreliable'}")
    scale = max(0.3, min(0.45, out.shape[1] / 900))
    cv2.putText(band, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(band, f"film: {CREDIT}", (4, 29), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([out, band], axis=0)


def _save_small(rgb: np.ndarray, path: Path, max_kb: int) -> int:
    """PNG under ``max_kb``: palette-quantised, shrunk until it fits."""
    from PIL import Image

    img = Image.fromarray(rgb)
    while True:
        q = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        q.save(path, optimize=True)
        kb = path.stat().st_size // 1024
        if kb <= max_kb or img.height < 200:
            return kb
        img = img.resize((round(img.width * 0.85), round(img.height * 0.85)), Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    from spine_models.engine.segment import Predictor, cobb_from_mask, read_pixels

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/fraiwan-ap/scoliosis"))
    ap.add_argument("--model", default=str(REPO / "weights/seg_unet_ap.json"))
    ap.add_argument("--n", type=int, default=6, help="films to run")
    ap.add_argument("--save", type=int, default=3, help="overlays written to docs/ (the first ones run)")
    ap.add_argument("--out", default=str(REPO / "docs"))
    ap.add_argument("--look", default="", help="folder for every overlay at a larger size (inspection)")
    ap.add_argument("--height", type=int, default=560)
    ap.add_argument("--max-kb", type=int, default=150)
    a = ap.parse_args(argv)
    files = sorted(p for p in Path(a.data).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"{a.data}: no JPEG/PNG films; pass --data the fraiwan-ap/scoliosis folder")
    pick = [files[int(i)] for i in np.linspace(0, len(files) - 1, min(a.n, len(files)))]
    pred = Predictor(a.model)
    rows = []
    for k, f in enumerate(pick, 1):
        pixels, _, _ = read_pixels(f)
        res = pred.predict(pixels)
        lm, cobb = cobb_from_mask(res.masks["vertebra"])  # the Predictor's own measurement path
        rgb = overlay(pixels, res, cobb, a.height)
        row = {"film": k, "size": list(pixels.shape), "bodies": len(lm),
               "cobb_deg": res.measurements.get("cobb", {}).get("cobb_deg"),
               "curves": [(c.name, round(c.angle_deg, 1), c.upper_end, c.lower_end) for c in (cobb.curves if cobb else [])],
               "reliable": res.measurements.get("cobb", {}).get("reliable"),
               "warnings": res.measurements.get("cobb", {}).get("warnings"),
               "mask_area_frac": {s: round(float(m.mean()), 4) for s, m in res.masks.items()},
               "ms": round(res.elapsed_ms)}
        if k <= a.save:
            p = Path(a.out) / f"seg_real_overlay_{k}.png"
            row["saved"] = str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)
            row["kb"] = _save_small(rgb, p, a.max_kb)
        if a.look:
            import cv2

            Path(a.look).mkdir(parents=True, exist_ok=True)
            big = overlay(pixels, res, cobb, 900)
            cv2.imwrite(str(Path(a.look) / f"real_{k}.png"), big[..., ::-1])
        rows.append(row)
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
