"""`spine-models predict FILE...`: run the shipped models that fit each file (or the named ones).

Fit (``engine.predictor.card_fits``, the app's rule): a card's ``view`` "any" and "ap"/"lat" fit X-rays
(anything not an MR series), "mri" fits DICOM MR. An X-ray's view is its DICOM ViewPosition, else the shipped view model's answer
when it is sure (``engine.predictor.infer_view``); a known view runs only that view's ap/lat models. One unreadable file prints one error line and the rest still run; the exit
status is 2 at the end if any file failed (1 if one hit an internal error); the JSON is always written.
Outputs name files by a neutral id (``file-<hash>.<ext>`` plus ``index``, the position on the command
line) unless ``--show-names``: file names are often a patient's name or ID.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HELP = "predict with the shipped models (or --model ID/RUNDIR) on image files; --json for machine output"

__all__ = ["HELP", "add_arguments", "run", "image_kind", "fitting_cards", "load_image", "get_predictor"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="radiographs or DICOM files")
    parser.add_argument("--model", action="append", default=None, metavar="ID",
                        help="model id, run folder or card.json (repeatable); default: every shipped model that fits")
    parser.add_argument("--json", action="store_true", help="print a JSON array (one object per file)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument("--show-names", action="store_true",
                        help="write real file names in the output (default: neutral ids file-<hash>; names can identify a patient)")
    parser.add_argument("--html", metavar="DIR", default=None,
                        help="also write a one-page clinician report (HTML) per file into DIR")


def load_image(path: str | Path, show_name: bool | None = None) -> Any:
    """A ``spine_models.io`` Radiograph (the shared reader raises SpineInputError on bad files)."""
    from spine_models.io import read_image

    return read_image(path, show_name=show_name)


def image_kind(image: Any) -> str:
    """"mri" for an MR DICOM, else "xray"."""
    modality = str(getattr(image, "modality", "") or "").upper()
    return "mri" if modality == "MR" else "xray"


def fitting_cards(cards: list[Any], kind: str, view: str | None = None) -> list[Any]:
    """Cards that fit an image kind ("xray" / "mri") and, for X-rays, a known view: the app's rule
    (``engine.predictor.card_fits``), so the CLI and the app run the same models on a file."""
    from types import SimpleNamespace

    from spine_models.engine.predictor import card_fits

    image = SimpleNamespace(modality="MR" if kind == "mri" else None, view=view)
    return [c for c in cards if card_fits(c, image)]


def get_predictor(card: Any, device: str | None = None) -> Any:
    """The engine's Predictor for a card (``engine.predictor.shared_predictor``: loaded once per process, the
    composites' components included; tests replace this seam)."""
    from spine_models.engine.predictor import shared_predictor

    return shared_predictor(card, device=device)


def _summary(result: Any) -> str:
    d = result.to_dict()
    if d.get("abstained"):  # a measuring classifier whose measurement failed: no probabilities to quote
        return str(d.get("note") or "no answer")
    if "prediction" in d:
        return f"{d['prediction']} (p={max(d['probs'].values()):.3f})"
    if "findings" in d:
        found = [c for c, v in d["findings"].items() if v]
        return ("found: " + ", ".join(found)) if found else "no findings above threshold"
    if "discs" in d:  # a disc model on a sagittal MR slice: one grade per named disc, or why there is none
        graded = [x for x in d["discs"] if x.get("pfirrmann")]
        if graded:
            return f"{len(d['discs'])} discs: " + ", ".join(f"{x['level']} Pfirrmann {x['pfirrmann']}" for x in graded)
        return f"{len(d['discs'])} discs" + (f" ({d['note']})" if d.get("note") else "")
    if "measurements" in d:
        from spine_models.measure import cobb_read, slip_read

        meas = d["measurements"] or {}
        reads = {"cobb": cobb_read, "slip": slip_read}  # a failed read says "cannot measure — why", never its number
        return "; ".join(f"{k}: {reads[k](v).text}" if k in reads else f"{k}: {v}"
                         for k, v in meas.items())[:200] or "segmented " + ", ".join(d.get("structures", []))
    return json.dumps(d)[:200]


def run(args: argparse.Namespace) -> int:
    from spine_models.engine.predictor import infer_view
    from spine_models.errors import SpineInputError, WeightsNotAvailableError
    from spine_models.measure import public_result
    from spine_models.models.cards import list_cards, weights_dir
    from spine_models.models.hub import resolve_card

    if args.model:
        cards = [resolve_card(m) for m in args.model]  # a bad --model is a usage error for the whole run
        named = True
    else:
        cards = list_cards()
        named = False
        if not cards:
            raise WeightsNotAvailableError(
                f"no shipped models yet in {weights_dir()}; train one with `spine-models train ...` "
                "and pass --model RUNDIR, or add weights/<id>.pt with its card")
    predictors: dict[str, Any] = {}

    def predictor(card: Any) -> Any:  # one load per model for the whole run (the view model included)
        if card.id not in predictors:
            predictors[card.id] = get_predictor(card, device=args.device)
        return predictors[card.id]

    from spine_models.commands.info import name_argument
    from spine_models.io.deid import display_name

    show = True if getattr(args, "show_names", False) else None
    outputs: list[dict[str, Any]] = []
    failed = internal = 0
    for index, f in enumerate(args.files, start=1):
        shown = display_name(Path(f).name or str(f), show=show)  # what the JSON and the reports carry
        try:
            image = load_image(f, show_name=show)
            kind = image_kind(image)
            view, view_note = (None, "") if named or kind != "xray" else infer_view(image, cards, get=predictor)
            use = cards if named else fitting_cards(cards, kind, view)
            if view_note and not getattr(args, "quiet", False):
                sys.stderr.write(f"spine-models predict: {Path(f).name}: {view_note}\n")
            if not use:
                raise SpineInputError(f"no shipped model fits a {kind} image; pass --model ID", f)
            results = []
            for card in use:
                results.append(predictor(card).predict(image))
        except SpineInputError as exc:
            failed += 1
            sys.stderr.write(f"spine-models predict: error: {name_argument(exc, f, show)}\n")  # the user's own argument
            outputs.append({"file": shown, "index": index, "error": str(exc).replace(str(f), shown)})
            continue
        except Exception as exc:  # noqa: BLE001 - a bug on one file: reported, the batch and its JSON go on
            failed += 1
            internal += 1
            import traceback

            traceback.print_exc(file=sys.stderr)
            sys.stderr.write(f"spine-models predict: internal error on {f}: {type(exc).__name__}; the other files go on\n")
            outputs.append({"file": shown, "index": index, "error": f"internal error ({type(exc).__name__}); please report it"})
            continue
        from spine_models.models.cards import is_real_validated, validation_badge
        from spine_models.report.findings import findings

        # the findings first (as on the page), then every result saying where its model was validated
        entry = {"file": shown, "index": index, "kind": kind, "view": view,
                 "findings": [x.to_dict() for x in findings(results, use)],
                 "results": [{**public_result(r.to_dict()), "validation": validation_badge(c),
                              "real_validated": is_real_validated(c)} for r, c in zip(results, use)]}
        outputs.append(entry)
        if args.html:
            from spine_models.report.clinician import write_clinician_report

            out_dir = Path(args.html)
            out_dir.mkdir(parents=True, exist_ok=True)
            header = image.to_dict() if hasattr(image, "to_dict") else {}
            write_clinician_report(out_dir / f"{Path(shown).stem}.html", results, image=getattr(image, "pixels", None),
                                   header=header, cards=use)
        if not args.json:
            for card, r in zip(use, results):
                sys.stdout.write(f"{shown}\t{card.id}\t{_summary(r)}\n")
    if args.json:
        sys.stdout.write(json.dumps(outputs, indent=2) + "\n")
    if failed:
        sys.stderr.write(f"spine-models predict: {failed} of {len(args.files)} file(s) failed\n")
        return 1 if internal else 2
    return 0
