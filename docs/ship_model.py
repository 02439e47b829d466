"""Copy a trained run (classify, detect or segment) into ``weights/<id>.pt`` + ``weights/<id>.json`` (the shipped model card).

    .venv/bin/python docs/ship_model.py --run /tmp/wc/ap --id ap_scoliosis_resnet18_fraiwan \
        --report /tmp/wc/ap/report_test.json --trained-on "fraiwan-ap (Fraiwan et al., Mendeley Data V1)" \
        --license "CC-BY-4.0" --limitation "..." --note "..."

Why: the run folder's card names its weights by absolute path and carries the test metrics computed at
the end of training; the shipped card names ``weights/<id>.pt`` and takes its metrics and audit from the
evaluation report (`spine-models evaluate --split test`), so the card shows the same figures as the report.
The run's ``train_command`` is kept verbatim (the exact command that produced the weights).

    .venv/bin/python docs/ship_model.py --refresh --id seg_unet_ap --report NEW_REPORT.json \
        --drop-limitation "above the 2 degree" --note "..."

``--refresh`` re-evaluates an already shipped model (e.g. after a measurement fix): the weights stay, the
card's metrics, audit and evaluation provenance are replaced by the new report's.

    .venv/bin/python docs/ship_model.py --refresh --id seg_unet_ap --inference tta=hflip

    .venv/bin/python docs/ship_model.py --run RUN --id vertebra_levels_aasce --component-of seg_vertebra_corners_aasce \
        --key level_reader --trained-on "..." --source aasce-ap

``--component-of ID --key KEY`` ships a run that only works inside another shipped model (the level reader of a corner
model) into ``weights/components/<id>.pt`` + ``.json`` (a folder the app does not list as models) and stores
``{"card": "weights/components/<id>.json", "sha256": ...}`` under the named card's ``preprocessing.KEY``. That card's
metrics are then stale: evaluate it again and ``--refresh --report`` it.

    .venv/bin/python docs/ship_model.py --run RUN --id seg_vertebra_corners_aasce --keep-shipped \
        --report R.json --trained-on "..." --source aasce-ap --drop-limitation "The Cobb angle is" --limitation "..."

``--keep-shipped`` (with ``--run``) replaces a shipped model's weights with a retrained network of the same recipe and
keeps what was chosen after training: the shipped card's preprocessing keys the run's card does not set (read-out
settings stored by docs/tune_*.py ``--write``, a level reader), its limitations and notes (edited by
``--drop-limitation`` / ``--limitation`` / ``--note``) and its runtime record only if the weights are the same.

``--inference KEY=VALUE`` (with ``--refresh``) changes an inference-only setting of a shipped card (e.g. a
segment model's ``tta``): it goes into the card's preprocessing and, as ``--set KEY=VALUE``, into its
train command (training with it gives the same weights and this card). The card's metrics are then
stale: evaluate the model again and ``--refresh --report`` it.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="run folder with card.json and model.pt (not with --refresh)")
    ap.add_argument("--id", required=True, help="shipped model id (file stem in weights/)")
    ap.add_argument("--report", help="evaluation report JSON whose metrics/audit go into the card")
    ap.add_argument("--trained-on", help="required unless --refresh")
    ap.add_argument("--license", help="required unless --refresh or --source (then the most restrictive source licence)")
    ap.add_argument("--source", action="append", default=[], metavar="NAME",
                    help="a data source of the weights (aasce-ap, cadma-vertebra, fraiwan-ap, spider-mri, phantom); "
                         "repeat per source: fills the card's sources, names them with licences in trained_on; "
                         "then run docs/add_validated_on.py for validated_on")
    ap.add_argument("--limitation", action="append", default=[])
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--refresh", action="store_true", help="keep the shipped weights; replace the card's metrics from --report")
    ap.add_argument("--drop-limitation", action="append", default=[], metavar="TEXT",
                    help="with --refresh: drop limitations / notes containing TEXT (no longer true)")
    ap.add_argument("--view", choices=("ap", "lat", "mri", "any"), help="override the card's view")
    ap.add_argument("--extra", help="JSON file merged into the card's 'data' (e.g. pretraining provenance)")
    ap.add_argument("--component-of", metavar="ID", help="ship into weights/components/ as a component of this shipped card")
    ap.add_argument("--key", help="with --component-of: the preprocessing key of that card that names the component")
    ap.add_argument("--keep-shipped", action="store_true",
                    help="with --run: keep the shipped card's post-training preprocessing keys, limitations and notes")
    ap.add_argument("--inference", action="append", default=[], metavar="KEY=VALUE",
                    help="with --refresh: set an inference-only setting (segment: tta=none|hflip); then re-evaluate")
    args = ap.parse_args(argv)

    from spine_models.models.cards import ModelCard, sha256_file

    if args.refresh:
        return _refresh(args)
    if not (args.run and args.trained_on and (args.license or args.source)):
        ap.error("--run, --trained-on and --license (or --source) are required (or use --refresh)")
    run = Path(args.run)
    card = ModelCard.from_json(run / "card.json")
    if bool(args.component_of) != bool(args.key):
        ap.error("--component-of and --key go together")
    home = "weights/components" if args.component_of else "weights"
    dst = REPO / home / f"{args.id}.pt"
    dst.parent.mkdir(exist_ok=True)
    shutil.copyfile(run / "model.pt", dst)
    sha = sha256_file(dst)
    if sha != card.sha256:
        raise SystemExit(f"{run / 'model.pt'}: sha256 differs from its card ({card.sha256}); the run folder changed")
    size_mb = dst.stat().st_size / 1e6
    if size_mb > 50:
        raise SystemExit(f"{dst}: {size_mb:.1f} MB is over the 50 MB limit for shipped weights")
    card.id = args.id
    card.weights = f"{home}/{args.id}.pt"
    card.trained_on = args.trained_on
    card.license = args.license
    if args.source:
        _apply_sources(card, args.source)
    if args.view:
        card.view = args.view
    if args.report:
        _take_report(card, args.report)
    if args.extra:
        card.data = {**(card.data or {}), **json.loads(Path(args.extra).read_text())}
    if args.keep_shipped:
        _keep_shipped(card, REPO / home / f"{args.id}.json")
    _edit_text(card, args)
    card.to_json(REPO / home / f"{args.id}.json")
    print(f"{home}/{args.id}.pt ({size_mb:.1f} MB, sha256 {sha[:12]}…) + {home}/{args.id}.json")
    if args.component_of:
        owner_path = REPO / "weights" / f"{args.component_of}.json"
        owner = ModelCard.from_json(owner_path)
        owner.preprocessing = {**(owner.preprocessing or {}), args.key: {"card": f"{home}/{args.id}.json", "sha256": sha}}
        owner.to_json(owner_path)
        print(f"weights/{args.component_of}.json: preprocessing.{args.key} names it; its metrics are stale until you "
              f"evaluate it and run --refresh --id {args.component_of} --report REPORT.json")
    return 0


def _edit_text(card: Any, args: argparse.Namespace) -> None:
    """The card's limitations and notes less those holding a ``--drop-limitation`` text, plus ``--limitation`` /
    ``--note``: how both shipping and ``--refresh`` edit a card's text."""
    card.limitations = [x for x in card.limitations if not any(d in x for d in args.drop_limitation)] + args.limitation
    card.notes = [x for x in card.notes if not any(d in x for d in args.drop_limitation)] + args.note


def _keep_shipped(card: Any, path: Path) -> None:
    """What the shipped card at ``path`` chose after training, carried onto the retrained ``card``."""
    from spine_models.models.cards import ModelCard

    if not path.is_file():
        raise SystemExit(f"--keep-shipped: no shipped card at {path}; drop --keep-shipped to ship a new model")
    old = ModelCard.from_json(path)
    if old.arch != card.arch:
        raise SystemExit(f"--keep-shipped: the shipped {old.id!r} is a {old.arch!r} model, the run a {card.arch!r}")
    card.preprocessing = {**(old.preprocessing or {}), **(card.preprocessing or {})}
    card.limitations = list(old.limitations) + list(card.limitations)
    card.notes = list(old.notes) + list(card.notes)
    card.runtime = old.runtime if old.sha256 == card.sha256 else {}


def _apply_sources(card: Any, names: list[str]) -> None:
    """The card's sources from the one provenance table; its licence at least the most restrictive of them."""
    from spine_models.models.provenance import (license_rank, most_restrictive_license, source_entry,
                                                trained_on_with_licences)

    card.sources = [source_entry(n) for n in names]
    card.trained_on = trained_on_with_licences(card.trained_on, card.sources)
    need = most_restrictive_license(card.sources)
    have = license_rank(card.license or "")
    if not card.license:
        card.license = need
    elif have is not None and have < license_rank(need):
        raise SystemExit(f"--license {card.license!r} is less restrictive than the data's {need!r}; "
                         f"drop --license or name {need}")


def _take_report(card: Any, report: str) -> None:
    rep = json.loads(Path(report).read_text())
    card.metrics = rep["metrics"]
    card.audit = rep.get("audit", {})
    card.data = {**(card.data or {}), "evaluation": {k: rep["data"][k] for k in rep["data"]}}


def _inference_settings() -> dict[str, dict[str, tuple[str, ...]]]:
    """Per task, the card settings that only change inference (the engines own their valid values)."""
    from spine_models.engine.segment import TTA_MODES

    return {"segment": {"tta": TTA_MODES}}


def _set_inference(card: Any, items: list[str]) -> None:
    allowed = _inference_settings().get(card.task, {})
    for item in items:
        key, _, value = item.partition("=")
        if key not in allowed or value not in allowed[key]:
            valid = "; ".join(f"{k}={'|'.join(v)}" for k, v in allowed.items()) or "none"
            raise SystemExit(f"--inference {item!r}: not an inference setting of a {card.task} model (valid: {valid})")
        old = (card.preprocessing or {}).get(key, "none")
        card.preprocessing = {**(card.preprocessing or {}), key: value}
        card.train_command = f"{card.train_command.replace(f' --set {key}={old}', '')} --set {key}={value}"
        card.notes = [*card.notes, f"{key}={value} set after training (docs/ship_model.py --refresh --inference {item}): "
                                   f"an inference setting, the weights are unchanged"]


def _refresh(args: argparse.Namespace) -> int:
    from spine_models.models.cards import ModelCard, sha256_file

    path = REPO / "weights" / f"{args.id}.json"
    if not path.is_file() or not (args.report or args.inference):
        raise SystemExit(f"--refresh needs a shipped card ({path}) and --report (or --inference)")
    card = ModelCard.from_json(path)
    if sha256_file(REPO / card.weights) != card.sha256:
        raise SystemExit(f"{card.weights}: sha256 differs from its card; ship it anew instead of --refresh")
    if args.inference:
        _set_inference(card, args.inference)
        if not args.report:
            card.to_json(path)
            print(f"weights/{args.id}.json: {', '.join(args.inference)}; its metrics are stale until you evaluate it "
                  f"and run --refresh --id {args.id} --report REPORT.json")
            return 0
    _take_report(card, args.report)
    _edit_text(card, args)
    card.to_json(path)
    print(f"weights/{args.id}.json: metrics from {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
