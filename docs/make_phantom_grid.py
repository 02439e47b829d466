"""Render docs/phantom_grid.png: phantom AP and lateral films, an MRI axial disc slice, and (when
../shared is present) a real AP film from Fraiwan et al. (CC BY 4.0) for comparison.

    .venv/bin/python docs/make_phantom_grid.py
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from spine_models.data.phantom.mri import make_patient as make_mri_patient, render_axial, render_sagittal
from spine_models.data.phantom.xray import make_patient, render_film
from spine_models.io import read_image

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "fraiwan-ap" / "scoliosis"
H = 512


def _tile(img: np.ndarray, title: str) -> np.ndarray:
    a = img.astype(np.float32)
    a = (a - a.min()) / max(float(a.max() - a.min()), 1e-6)
    a = (a * 255).astype(np.uint8)
    a = cv2.resize(a, (max(1, round(a.shape[1] * H / a.shape[0])), H), interpolation=cv2.INTER_AREA)
    a = cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    cv2.rectangle(a, (0, 0), (a.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(a, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.pad(a, ((0, 0), (0, 6), (0, 0)), constant_values=255)


def main() -> None:
    tiles = []
    for idx in (2, 7):  # one scoliotic, one other patient of seed 1
        p = make_patient(1, idx, implant_fraction=0.5)
        ap, lat = render_film(p, "ap"), render_film(p, "lat")
        tiles.append(_tile(ap.image, f"phantom AP, Cobb {ap.labels['cobb_deg']:.0f} deg"))
        slip = lat.labels["slip_percent"]
        tiles.append(_tile(lat.image, f"phantom lateral, slip {slip:.0f}%"))
    mp = make_mri_patient("SYN-MRI-0001", 1, 0)
    tiles.append(_tile(render_sagittal(mp, 8), "phantom MRI T2 sagittal"))
    tiles.append(_tile(render_axial(mp, 8), "phantom MRI T2 axial L4-L5"))
    if REAL.is_dir():
        film = sorted(REAL.glob("*.jpg"))[3]
        tiles.append(_tile(read_image(film).pixels, "real AP (Fraiwan et al., CC BY 4.0)"))
    grid = np.hstack(tiles)
    out = ROOT / "docs" / "phantom_grid.jpg"
    cv2.imwrite(str(out), grid, [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
