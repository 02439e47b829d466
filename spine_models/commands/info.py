"""`spine-models info FILE`: what an image is, as JSON, never identifying fields.

Why: the quickest check that a file reads at all, and of its size, bit depth and pixel spacing,
before training or predicting on it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "describe an image (or a DICOM study folder / ZIP) as JSON: format, kind, size, bits, spacing, frames"

__all__ = ["HELP", "add_arguments", "run", "describe"]

_SPEC_KEYS = ("format", "kind", "width", "height", "bits", "photometric", "pixel_spacing_mm", "frames")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="PNG, JPEG, TIFF, BMP or DICOM file; or a DICOM study folder / ZIP")
    parser.add_argument("--header", action="store_true", help="also print the de-identified technical DICOM header fields")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N", help="refuse images declaring more pixels (default 100000000 or env SPINE_MODELS_MAX_PIXELS)")


def describe(path: str | Path, *, header: bool = False, max_pixels: int | None = None) -> dict:
    """The JSON object ``info`` prints (SPEC fields first, then modality, view, name, notes)."""
    from spine_models.io import read_image, read_study

    target = Path(path)
    if target.is_dir() or (target.is_file() and target.suffix.lower() == ".zip"):
        study = read_study(target, max_pixels=max_pixels)
        out = study.to_dict()
        out.update({"format": "DICOM-STUDY", "kind": "mri" if any(s.modality == "MR" for s in study.series) else "xray"})
        return out
    image = read_image(target, max_pixels=max_pixels)
    full = image.to_dict()
    out = {key: full[key] for key in _SPEC_KEYS}
    out.update({"modality": full["modality"], "view": full["view"], "name": full["name"], "spacing_source": full["spacing_source"]})
    if full["notes"]:
        out["notes"] = full["notes"]
    if header:
        out["header"] = full["header"]
    return out


def run(args: argparse.Namespace) -> int:
    info = describe(args.file, header=args.header, max_pixels=args.max_pixels)
    sys.stdout.write(json.dumps(info, indent=2) + "\n")
    return 0
