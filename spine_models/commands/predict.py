"""`spine-models predict FILE...`: run the shipped models that fit each file (or the named ones).

Fit (``engine.predictor.card_fits``, the app's rule): a card's ``view`` "any" and "ap"/"lat" fit X-rays
(anything not an MR series), "mri" fits DICOM MR. An X-ray's view is its DICOM ViewPosition, else the shipped view model's answer
when it is sure (``engine.predictor.infer_view``); a known view runs only that view's ap/lat models. One unreadable file prints one error line and the rest still run; the exit
status is 2 at the end if any file failed (1 if one hit an internal error); the JSON (and CSV) is always written,
even when the run is interrupted: entries are streamed as each film finishes.

Batches (issue 18): a FOLDER stands for the image files under it; films are read ahead by a DataLoader
(``--workers``, ``data.film_loader``) and each model runs on up to ``--batch-size`` films per network call
(``BasePredictor.predict_batch``); ``--out results.csv`` streams one row per film and model, so memory does not
grow with the number of films. Progress (films/s) goes to stderr. Grad-CAM maps are made only for ``--html``
(nothing else shows them).
Outputs name files by a neutral id (``file-<hash>.<ext>`` plus ``index``, the position on the command
line) unless ``--show-names``: file names are often a patient's name or ID.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from spine_models._memory import give_back_memory
from spine_models.errors import SpineInputError

HELP = ("predict with the shipped models (or --model ID/RUNDIR) on image files or folders of them; --json / "
        "--out results.csv|.json for machine output")

__all__ = ["HELP", "add_arguments", "run", "image_kind", "fitting_cards", "load_image", "get_predictor", "CSV_COLUMNS",
           "csv_rows"]

#: one row per film and model (a film that failed: one row with ``error``); values a reader must not take as a
#: finding (a measurement that failed or is implausible) are empty, ``*_status`` says why
CSV_COLUMNS = ("index", "file", "kind", "view", "model", "task", "prediction", "probability", "cobb_deg", "cobb_status",
               "slip_percent", "slip_status", "summary", "validation", "elapsed_ms", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="radiographs or DICOM files, or folders of them")
    parser.add_argument("--model", action="append", default=None, metavar="ID",
                        help="model id, run folder or card.json (repeatable); default: every shipped model that fits")
    parser.add_argument("--json", action="store_true", help="print a JSON array (one object per file)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument("--show-names", action="store_true",
                        help="write real file names in the output (default: neutral ids file-<hash>; names can identify a patient)")
    parser.add_argument("--html", metavar="DIR", default=None,
                        help="also write a one-page clinician report (HTML) per file into DIR")
    parser.add_argument("--out", metavar="PATH", default=None,
                        help="write the results to PATH: .csv (one row per film and model) or .json (the --json array)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="processes reading films ahead (default: 0 for under 8 files or when the networks' CPU threads "
                             "take every core, else up to 2)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="films per network call (default 8)")


def load_image(path: str | Path, show_name: bool | None = None) -> Any:
    """A ``spine_models.io`` Radiograph (the shared reader raises SpineInputError on bad files)."""
    from spine_models.io import read_image

    return read_image(path, show_name=show_name)


def image_kind(image: Any, named: list[Any] | None = None) -> str:
    """"mri" for an MR DICOM, or for a file without a modality (PNG/JPG) read with MRI models only (``--model``
    naming MRI cards: the user says what it is); else "xray"."""
    modality = str(getattr(image, "modality", "") or "").upper()
    if modality == "MR" or (not modality and named and all(c.view == "mri" for c in named)):
        return "mri"
    return "xray"


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


class _Sinks:
    """Where entries go as each film finishes: the JSON array (stdout with --json, a file with --out x.json) and the
    CSV rows (--out x.csv). Streamed and flushed per film, closed by :meth:`close` whatever happened."""

    def __init__(self, json_stdout: bool, out: str | None) -> None:
        import csv

        self.streams: list[Any] = [sys.stdout] if json_stdout else []
        self._files: list[Any] = []
        self.csv = None
        self.n = 0
        if out:
            path = Path(out)
            suffix = path.suffix.lower()
            if suffix not in (".csv", ".json"):
                raise SpineInputError(f"--out {out}: use a .csv or .json file name", out)
            if not path.parent.is_dir():
                raise SpineInputError(f"--out {out}: folder {path.parent} does not exist; create it first", out)
            f = open(path, "w", newline="" if suffix == ".csv" else None, encoding="utf-8")
            self._files.append(f)
            if suffix == ".csv":
                self.csv = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
                self.csv.writeheader()
            else:
                self.streams.append(f)
        for s in self.streams:
            s.write("[")

    def add(self, entry: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        text = json.dumps(entry, indent=2, default=str)
        for s in self.streams:
            s.write(("," if self.n else "") + "\n" + text)
            s.flush()
        if self.csv is not None:
            self.csv.writerows(rows)
            self._files[0].flush()
        self.n += 1

    def close(self) -> None:
        for s in self.streams:
            s.write("\n]\n" if self.n else "]\n")
            s.flush()
        for f in self._files:
            f.close()


_TASK_OF_TYPE = {"ClassificationResult": "classify", "SegmentationResult": "segment", "DetectionResult": "detect",
                 "DiscGradingResult": "discs"}


def csv_rows(entry: dict[str, Any], summaries: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The CSV rows of one film's JSON entry: one per model result (a failed film: one row naming its error)."""
    base = {"index": entry.get("index"), "file": entry.get("file"), "kind": entry.get("kind"), "view": entry.get("view")}
    if "error" in entry:
        return [{**base, "error": entry["error"]}]
    rows = []
    for k, r in enumerate(entry.get("results") or []):
        probs = r.get("probs") or {}
        meas = r.get("measurements") or {}
        task = r.get("task") or _TASK_OF_TYPE.get(str(r.get("type")), r.get("type"))
        row = {**base, "model": r.get("model_id"), "task": task, "prediction": r.get("prediction"),
               "probability": round(max(probs.values()), 4) if probs and r.get("prediction") else None,
               "validation": r.get("validation"), "summary": summaries[k] if k < len(summaries) else "",
               "elapsed_ms": round(float(r["elapsed_ms"]), 1) if isinstance(r.get("elapsed_ms"), (int, float)) else None}
        for kind, key in (("cobb", "cobb_deg"), ("slip", "slip_percent")):
            m = meas.get(kind)
            if isinstance(m, dict):
                row[key] = m.get(key)
                row[f"{kind}_status"] = m.get("status") or ("measured" if m.get(key) is not None else m.get("note"))
        rows.append(row)
    return rows


def _run_models(pred: Any, images: list[Any], opts: dict[str, Any], batch_size: int) -> list[Any]:
    """One model on several films: batched through ``BasePredictor.predict_batch`` (with ``opts``), else one
    ``predict(image)`` per film (a plain object with only ``predict``: tests' fakes, old plug-ins)."""
    from spine_models.engine.base import BasePredictor

    if isinstance(pred, BasePredictor):
        return pred.predict_batch(images, batch_size=batch_size, **opts)
    return [pred.predict(im) for im in images]


def run(args: argparse.Namespace) -> int:
    from spine_models.commands.info import name_argument
    from spine_models.data.film_loader import film_batches, image_files
    from spine_models.engine.predictor import infer_view
    from spine_models.errors import WeightsNotAvailableError
    from spine_models.io import IMAGE_EXTENSIONS
    from spine_models.io.deid import display_name
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
    if args.batch_size < 1:
        raise SpineInputError(f"--batch-size {args.batch_size}: use 1 or more")
    files = image_files(args.files, IMAGE_EXTENSIONS)  # a folder stands for its image files
    quiet = bool(getattr(args, "quiet", False))
    predictors: dict[str, Any] = {}

    def predictor(card: Any) -> Any:  # one load per model for the whole run (the view model included)
        if card.id not in predictors:
            predictors[card.id] = get_predictor(card, device=args.device)
        return predictors[card.id]

    show = True if getattr(args, "show_names", False) else None
    opts = {"cam": bool(args.html)}  # Grad-CAM only where it is shown (the HTML report)
    counts = {"failed": 0, "internal": 0}
    sinks = _Sinks(bool(args.json), args.out)
    bar = None
    if not quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), unit="film", desc="predict", file=sys.stderr, leave=False, dynamic_ncols=True)

    def fail(item: Any, shown: str, message: str, kind: str, exc: BaseException | None = None) -> None:
        counts["failed"] += 1
        f = item.path
        if kind == "input":
            line = name_argument(exc if exc is not None else SpineInputError(message), f, show)
            sys.stderr.write(f"spine-models predict: error: {line}\n")  # the user's own argument
            entry = {"file": shown, "index": item.index, "error": message.replace(str(f), shown)}
        else:
            counts["internal"] += 1
            sys.stderr.write(f"spine-models predict: internal error on {f}: {message}; the other files go on\n")
            entry = {"file": shown, "index": item.index, "error": f"internal error ({message}); please report it"}
        pending.append((item.index, entry, csv_rows(entry), []))

    def read(path: str) -> Any:
        return load_image(path, show_name=show)

    pending: list[tuple[int, dict[str, Any], list[dict[str, Any]], list[str]]] = []  # this batch's entries

    def flush() -> None:  # a batch's entries in file order
        for _, entry, rows, lines in sorted(pending, key=lambda t: t[0]):
            sinks.add(entry, rows)
            if not args.json:
                sys.stdout.write("".join(lines))
        pending.clear()

    import time

    t0 = time.perf_counter()
    try:
        for batch in film_batches(files, read, batch_size=args.batch_size, num_workers=args.workers,
                                  device=args.device):
            plans = []  # (item, shown, image, kind, view, cards)
            for item in batch:
                shown = display_name(Path(item.path).name or item.path, show=show)  # what the JSON and reports carry
                if not item.ok:
                    fail(item, shown, item.error or "", item.error_kind or "input")
                    continue
                try:
                    image = item.image
                    kind = image_kind(image, cards if named else None)
                    view, view_note = (None, "") if named or kind != "xray" else infer_view(image, cards, get=predictor)
                    use = cards if named else fitting_cards(cards, kind, view)
                    if view_note and not quiet:
                        sys.stderr.write(f"spine-models predict: {Path(item.path).name}: {view_note}\n")
                    if not use:
                        raise SpineInputError(f"no shipped model fits a {kind} image; pass --model ID", item.path)
                except SpineInputError as exc:
                    fail(item, shown, str(exc), "input", exc)
                    continue
                except Exception as exc:  # noqa: BLE001 - a bug on one file: reported, the batch and its JSON go on
                    import traceback

                    traceback.print_exc(file=sys.stderr)
                    fail(item, shown, type(exc).__name__, "internal")
                    continue
                plans.append((item, shown, image, kind, view, use))
            _predict_plans(plans, predictor, opts, args, pending, fail)
            flush()
            give_back_memory()  # the batch's films and activations are freed: their pages go back (spine_models._memory)
            if bar is not None:
                bar.update(len(batch))
    finally:
        flush()
        sinks.close()
        if bar is not None:
            bar.close()
            took = time.perf_counter() - t0
            sys.stderr.write(f"spine-models predict: {sinks.n} film(s) in {took:.1f} s, {sinks.n / max(took, 1e-9):.2f} films/s "
                             "(model loading included)\n")
    if counts["failed"]:
        sys.stderr.write(f"spine-models predict: {counts['failed']} of {len(files)} file(s) failed\n")
        return 1 if counts["internal"] else 2
    return 0


def _predict_plans(plans: list[tuple], predictor: Any, opts: dict[str, Any], args: argparse.Namespace,
                   pending: list[tuple], fail: Any) -> None:
    """Run each model once on the films of a batch that it fits, then write each film's entry (or its error)."""
    import traceback

    from spine_models.measure import public_result
    from spine_models.models.cards import is_real_validated, validation_badge
    from spine_models.report.findings import findings

    results: dict[int, dict[str, Any]] = {}  # film position -> card id -> result
    errors: dict[int, tuple[str, str, BaseException | None]] = {}  # film position -> (kind, message, exc)
    by_card: dict[str, tuple[Any, list[int]]] = {}
    for pos, (_, _, _, _, _, use) in enumerate(plans):
        for card in use:
            by_card.setdefault(card.id, (card, []))[1].append(pos)
    for card, positions in by_card.values():
        todo = [p for p in positions if p not in errors]
        if not todo:
            continue
        try:
            outs = _run_models(predictor(card), [plans[p][2] for p in todo], opts, args.batch_size)
        except Exception:  # noqa: BLE001 - one film of the batch is bad: find it by running them one by one
            outs = None
        for k, p in enumerate(todo):
            if outs is not None:
                results.setdefault(p, {})[card.id] = outs[k]
                continue
            try:
                results.setdefault(p, {})[card.id] = _run_models(predictor(card), [plans[p][2]], opts, 1)[0]
            except SpineInputError as exc:
                errors[p] = ("input", str(exc), exc)
            except Exception as exc:  # noqa: BLE001 - a bug on one film: reported on it, the others go on
                traceback.print_exc(file=sys.stderr)
                errors[p] = ("internal", f"{type(exc).__name__} in {card.id}", None)
    for pos, (item, shown, image, kind, view, use) in enumerate(plans):
        if pos in errors:
            ek, msg, exc = errors[pos]
            fail(item, shown, msg, ek, exc)
            continue
        try:
            res = [results[pos][c.id] for c in use]
            # the findings first (as on the page), then every result saying where its model was validated
            entry = {"file": shown, "index": item.index, "kind": kind, "view": view,
                     "findings": [x.to_dict() for x in findings(res, use)],
                     "results": [{**public_result(r.to_dict()), "validation": validation_badge(c),
                                  "real_validated": is_real_validated(c)} for r, c in zip(res, use)]}
            summaries = [_summary(r) for r in res]
            if args.html:
                from spine_models.report.clinician import write_clinician_report

                out_dir = Path(args.html)
                out_dir.mkdir(parents=True, exist_ok=True)
                header = image.to_dict() if hasattr(image, "to_dict") else {}
                write_clinician_report(out_dir / f"{Path(shown).stem}.html", res, image=getattr(image, "pixels", None),
                                       header=header, cards=use)
        except Exception as exc:  # noqa: BLE001 - a report of one film failed: that film's error, the batch goes on
            traceback.print_exc(file=sys.stderr)
            fail(item, shown, f"{type(exc).__name__} while reporting", "internal")
            continue
        pending.append((item.index, entry, csv_rows(entry, summaries),
                        [f"{shown}\t{card.id}\t{text}\n" for card, text in zip(use, summaries)]))
