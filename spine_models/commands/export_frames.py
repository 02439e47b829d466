"""`spine-models export-frames`: MRI volumes → 2-D images (the chosen frames, or all of them)."""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["HELP", "add_arguments", "run"]

HELP = ("write the MRI study's chosen frames (mid-sagittal <id>_3, discs <id>_12 … <id>_51) or every "
        "frame (--all) of DICOM studies as 16-bit PNG or single-frame de-identified DICOM")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", metavar="STUDY", help="a DICOM study folder, or a folder of studies")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument("--format", dest="fmt", choices=["png", "dcm"], default="png",
                        help="png: 16-bit grayscale (default); dcm: single-frame DICOM, geometry kept")
    parser.add_argument("--all", action="store_true", help="every frame of every series, not only the chosen ones")


def run(args: argparse.Namespace) -> int:
    from spine_models.data.mri import export_frames

    problems: list[str] = []
    written = export_frames(args.study, args.out, fmt=args.fmt, frames="all" if args.all else "selected",
                            quiet=args.quiet, problems=problems)
    sys.stdout.write(json.dumps({"written": len(written), "out": str(args.out), "index": "frames.csv",
                                 "problems": problems}) + "\n")
    return 0
