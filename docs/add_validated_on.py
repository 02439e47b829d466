"""Fill every shipped card's ``sources`` and ``validated_on`` (SPEC "Model cards") from what the card already says.

    .venv/bin/python docs/add_validated_on.py            # rewrite weights/*.json (never the .pt files)
    .venv/bin/python docs/add_validated_on.py --check    # exit 1 when a card is out of date (nothing written)

Why a script: the figures in ``validated_on`` are copied from the card's own ``metrics`` (which come from a
``spine-models evaluate`` report, docs/ship_model.py), so re-running it after a refresh keeps them in step, and no
figure is typed by hand. Rules:
- ``sources``: kept when the card has them, else every known source its ``trained_on`` names
  (``spine_models.models.provenance.SOURCES``: the four real folders, and ``phantom`` for phantom/synthetic data);
  ``trained_on`` then ends in one "sources with licences: …" clause.
- ``license``: kept unless it is less restrictive than the most restrictive source licence; then that licence leads.
- ``validated_on``: entries written by hand are kept; this script's own entries (``"from"`` names it) are rebuilt:
  a real entry when the card's evaluation data is one of the real folders (with the shortcut audit's verdict),
  else a phantom entry named by the phantom version and training seeds, with 1–3 headline figures each.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "updated", "phantom_name", "GENERATED"]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GENERATED = "card metrics (docs/add_validated_on.py)"


def phantom_name(trained_on: str) -> tuple[str, list[str]]:
    """("phantom xray-phantom-2 xray-ap seed 11", evaluation seeds) from a phantom card's ``trained_on``: the
    generator version, the synth kinds and ``--seed`` values before "evaluated", and the seeds named after it."""
    cut = re.search(r"evaluated", trained_on, re.I)
    train, after = (trained_on[:cut.start()], trained_on[cut.end():]) if cut else (trained_on, "")
    version = re.search(r"xray-phantom-\d+|spine-models \d+\.\d+\.\d+", trained_on)
    kinds = list(dict.fromkeys(re.findall(r"\b(xray-ap|xray-lat|mri-lumbar)\b", train)))
    seeds = list(dict.fromkeys(re.findall(r"--seed (\d+)", train)))
    evals = re.findall(r"--seed (\d+)", after)
    for m in re.finditer(r"seeds? (\d+)(?: \([^)]*\))?(?: / (\d+))?", after):
        evals += [g for g in m.groups() if g]
    name = " ".join(["phantom", *( [version.group(0)] if version else []), *kinds])
    if seeds:
        name += f" seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"
    return name, list(dict.fromkeys(evals))


def _entry(card: dict[str, Any]) -> dict[str, Any]:
    from spine_models.models.provenance import REAL_SOURCES, headline_metrics

    ev = (card.get("data") or {}).get("evaluation") or {}
    parts = {Path(p.strip()).name for p in str(ev.get("path", "")).split(",")}
    real = [s for s in REAL_SOURCES if s in parts]
    entry: dict[str, Any] = {"data": ", ".join(real), "real": True} if real else {"real": False}
    if not real:
        name, evals = phantom_name(str(card.get("trained_on", "")))
        entry["data"] = name
    entry["metrics"] = headline_metrics(card.get("metrics") or {})
    slices = card.get("arch") == "disc_grading" or "disc" in (card.get("structures") or [])
    unit = "sagittal slices" if slices else "discs" if card.get("view") == "mri" else "films"
    desc = f"{ev['n']} {unit}" if "n" in ev else "the card's evaluation data"
    if ev.get("split") and ev["split"] != "all":
        desc += f", held-out {ev['split']} part (per-patient split)"
    if not real and evals:
        desc += f", unseen seed{'s' if len(evals) > 1 else ''} {', '.join(evals)}"
    entry["evaluation"] = desc
    audit = card.get("audit") or {}
    if real and "shortcut_warning" in audit:
        entry["shortcut_warning"] = bool(audit["shortcut_warning"])
        base = (audit.get("metadata_baseline") or {}).get("balanced_accuracy")
        if audit["shortcut_warning"] and base:
            entry["metadata_baseline_balanced_accuracy"] = base
    entry["from"] = GENERATED
    return entry


def updated(card: dict[str, Any]) -> dict[str, Any]:
    """The card with ``sources``, ``trained_on``, ``license`` and ``validated_on`` brought up to date (a copy)."""
    from spine_models.models.provenance import (license_rank, most_restrictive_license, sources_in_text,
                                                trained_on_with_licences)

    card = json.loads(json.dumps(card))
    sources = card.get("sources") or sources_in_text(str(card.get("trained_on", "")))
    if not sources:
        raise SystemExit(f"{card.get('id')}: trained_on names no known source ({card.get('trained_on')!r}); "
                         "set the card's sources (docs/ship_model.py --source NAME)")
    card["sources"] = sources
    card["trained_on"] = trained_on_with_licences(str(card.get("trained_on", "")), sources)
    need = most_restrictive_license(sources)
    have = license_rank(str(card.get("license", "")))
    if have is not None and have < license_rank(need):
        card["license"] = f"{need} (the most restrictive of its sources; was: {card['license']})"
    keep = [e for e in card.get("validated_on") or [] if e.get("from") != GENERATED]
    card["validated_on"] = keep + [_entry(card)]
    return card


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=str(REPO / "weights"), help="folder of the cards (default: weights/)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a card is out of date")
    args = ap.parse_args(argv)
    from spine_models.models.cards import ModelCard, validation_badge

    stale = []
    for path in sorted(Path(args.weights).glob("*.json")):
        old = json.loads(path.read_text())
        card = ModelCard.from_dict(updated(old))  # validates the new fields
        if card.to_dict() != old:
            stale.append(path.name)
            if not args.check:
                card.to_json(path)
        print(f"{path.name}: {validation_badge(card)}")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run: python docs/add_validated_on.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
