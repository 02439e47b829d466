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

__all__ = ["HELP", "add_arguments", "run", "describe", "name_argument"]

_SPEC_KEYS = ("format", "kind", "width", "height", "bits", "photometric", "pixel_spacing_mm", "frames")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="PNG, JPEG, TIFF, BMP or DICOM file; or a DICOM study folder / ZIP")
    parser.add_argument("--header", action="store_true", help="also print the de-identified technical DICOM header fields")
    parser.add_argument("--show-names", action="store_true",
                        help="show real file / member / folder names in the output (default: neutral ids, names can identify a patient)")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N", help="refuse images declaring more pixels (default 100000000 or env SPINE_MODELS_MAX_PIXELS)")


def name_argument(exc: BaseException, argument: str | Path, show: bool | None = None) -> BaseException:
    """The same error, naming the file as the user typed it instead of its neutral id.

    Why: the SPEC's exit-2 line names the file; the library only knows a neutral id (names can be a
    patient's), and the argument is the user's own text echoed to their own terminal. Names of
    members inside a folder or ZIP stay neutral.
    """
    from spine_models.io.deid import display_name

    text = str(exc)
    shown = str(argument)
    neutral = display_name(Path(shown).name or shown, show=show)
    text = text.replace(neutral, shown, 1) if neutral in text else f"{shown}: {text}"
    exc.args = (" ".join(text.split()),)
    return exc


def describe(path: str | Path, *, header: bool = False, max_pixels: int | None = None, show_names: bool | None = None) -> dict:
    """The JSON object ``info`` prints (SPEC fields first, then modality, view, name, notes)."""
    from spine_models.io import read_image, read_study

    target = Path(path)
    if target.is_dir() or (target.is_file() and target.suffix.lower() == ".zip"):
        study = read_study(target, max_pixels=max_pixels, show_names=show_names)
        out = study.to_dict()
        out.update({"format": "DICOM-STUDY", "kind": "mri" if any(s.modality == "MR" for s in study.series) else "xray"})
        return out
    image = read_image(target, max_pixels=max_pixels, show_name=show_names)
    full = image.to_dict()
    out = {key: full[key] for key in _SPEC_KEYS}
    out.update({"modality": full["modality"], "view": full["view"], "name": full["name"], "spacing_source": full["spacing_source"]})
    if full["notes"]:
        out["notes"] = full["notes"]
    if header:
        out["header"] = full["header"]
    return out


def run(args: argparse.Namespace) -> int:
    from spine_models.errors import SpineInputError

    show = True if getattr(args, "show_names", False) else None
    try:
        info = describe(args.file, header=args.header, max_pixels=args.max_pixels, show_names=show)
    except SpineInputError as exc:
        name_argument(exc, args.file, show)
        raise
    # allow_nan=False: a NaN would make invalid JSON; the readers replace or refuse them, so this is a bug if it fires
    sys.stdout.write(json.dumps(info, indent=2, allow_nan=False) + "\n")
    return 0
