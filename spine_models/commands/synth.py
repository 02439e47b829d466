"""`spine-models synth KIND --n N --out DIR --seed S`: the synthetic spine phantom (SPEC synth layout)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spine_models.errors import ConfigError

HELP = "generate synthetic films with exact ground truth: xray-ap, xray-lat (PNG + masks + boxes + landmarks) or mri-lumbar (DICOM studies)"
KINDS = ("xray-ap", "xray-lat", "mri-lumbar")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give HEIGHTxWIDTH, e.g. 1024x512") from None
    return h, w


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="what to generate")
    parser.add_argument("--n", type=int, required=True, help="number of films (X-ray) or patients (MRI)")
    parser.add_argument("--out", required=True, help="output folder (new or empty)")
    parser.add_argument("--seed", type=int, required=True, help="same arguments -> byte-identical output")
    parser.add_argument("--difficulty", choices=("easy", "standard", "hard"), default="standard")
    parser.add_argument("--implant-fraction", type=float, default=0.25, help="share of X-ray films with implants (default 0.25)")
    parser.add_argument("--size", type=_size, default=(1024, 512), help="X-ray film HEIGHTxWIDTH in pixels (default 1024x512)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 4); output does not depend on it")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.kind == "mri-lumbar":
        from spine_models.data.phantom.mri import generate_mri

        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out}: output folder is not empty; choose a new --out (studies are never overwritten)")
        manifest = generate_mri(out, args.n, args.seed, args.difficulty, quiet=args.quiet)
    else:
        from spine_models.data.phantom.writer import generate_xray

        h, w = args.size
        manifest = generate_xray(out, "ap" if args.kind == "xray-ap" else "lat", args.n, args.seed,
                                 difficulty=args.difficulty, implant_fraction=args.implant_fraction, height=h, width=w,
                                 workers=args.workers, quiet=args.quiet)
    summary = {k: v for k, v in manifest.items() if k != "files"}
    summary["n_files"] = len(manifest.get("files", {}))
    summary["out"] = str(out)
    json.dump(summary, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0
