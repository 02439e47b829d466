"""Fit how a vertebra model's box is drawn from each body's corners (card key ``vertebra_box``) to the convention of
vertebra-box datasets, on training films; report it on validation films; never on test films.

    .venv/bin/python docs/tune_vertebra_box.py --model seg_vertebra_corners_aasce \
        --data ../shared/data/cadma-vertebra --out docs/vertebra_box_tuning.json [--write weights/X.json]

Why: the corner model reads each vertebral *body's* four corners (AASCE's experts marked bodies), and its box was
their extent. Annotators of vertebra boxes (the YOLO layout: cadma-vertebra, and SPEC's external vertebra tests) draw
the whole vertebra: on cadma-vertebra's validation films their boxes are a median 1.25 times as wide as the body read
along its axis, and on tilted vertebrae they do not span the tilted body's full extent, so many found vertebrae missed
IoU 0.5 (88 % of the boxes had a predicted box at IoU 0.1, 59 % at 0.5). ``engine.landmarks.vertebra_box`` draws the
box about the body with a width and a height factor and a share of the tilt's growth; the grid below is scored by
vertebra AP50 (``metrics.detection``, as ``spine-models evaluate`` computes ``per_class.vertebra.ap50``) on the
*training* part of the model's recorded patient split of the folder (the U-Net's) (the boxes' convention, not the model, is fitted:
the model's own reading of these films is what it is), the best setting (ties: nearer the body's own box) is then
reported on the validation part beside the body's own box. Landmark folders are unaffected: there ``spine-models
evaluate`` compares the bodies' boxes with the expert corners' extent.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

__all__ = ["main", "WIDTHS", "HEIGHTS", "TILT_SHARES"]

WIDTHS = (1.0, 1.1, 1.2, 1.3, 1.4)
HEIGHTS = (0.9, 1.0, 1.1, 1.2, 1.3)
TILT_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _reads(pred: Any, samples: list[Any]) -> list[dict[str, Any]]:
    from spine_models.engine.segment import _truth_boxes

    out = []
    for s in samples:
        res = pred.predict(s.path)
        out.append({"corners": [v["corners"] for v in res.vertebrae], "scores": [v["score"] for v in res.vertebrae],
                    "truth": _truth_boxes(s), "patient": s.patient_id})
    return out


def _ap50(reads: list[dict[str, Any]], convention: dict[str, float] | None, n_resamples: int = 0) -> Any:
    from spine_models.engine.landmarks import vertebra_box
    from spine_models.metrics.detection import ImageBoxes, detection_map, detection_map_ci

    pred = [ImageBoxes.make([vertebra_box(c, convention) for c in r["corners"]], ["vertebra"] * len(r["corners"]),
                            r["scores"]) for r in reads]
    truth = [ImageBoxes.make(r["truth"], ["vertebra"] * len(r["truth"])) for r in reads]
    if n_resamples:
        return detection_map_ci(pred, truth, ["vertebra"], n_resamples=n_resamples,
                                groups=[r["patient"] for r in reads])["ap50"]["vertebra"]
    return float(detection_map(pred, truth, ["vertebra"], iou_thresholds=[0.5])["ap50"]["vertebra"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the corner model (shipped id or card)")
    ap.add_argument("--data", required=True, help="a YOLO vertebra folder (cadma-vertebra)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--write", help="card file to store the chosen vertebra_box in")
    args = ap.parse_args(argv)

    from spine_models.data.adapters import load_dataset
    from spine_models.engine.landmarks import VertebraCornerPredictor
    from spine_models.models.hub import resolve_card
    from spine_models.report.evaluation import split_part

    card = resolve_card(args.model)
    card = dataclasses.replace(card, preprocessing={k: v for k, v in (card.preprocessing or {}).items() if k != "vertebra_box"})
    data = load_dataset(args.data, task="segment")
    pred = VertebraCornerPredictor(card)
    train, val = (_reads(pred, split_part(card, data, part).samples) for part in ("train", "val"))
    rows = []
    for w, h, t in itertools.product(WIDTHS, HEIGHTS, TILT_SHARES):
        conv = {"width": w, "height": h, "tilt_share": t}
        rows.append({"vertebra_box": conv, "train_ap50": round(_ap50(train, conv), 4)})
    body = _ap50(train, None)
    best = max(rows, key=lambda r: (r["train_ap50"], -abs(r["vertebra_box"]["width"] - 1) - abs(r["vertebra_box"]["height"] - 1)
                                    - abs(r["vertebra_box"]["tilt_share"] - 1)))
    out = {"model": card.id, "sha256": card.sha256, "data": Path(args.data).name,
           "films": {"train": len(train), "val": len(val)},
           "body_box": {"train_ap50": round(body, 4), "val_ap50": _ap50(val, None, args.resamples)},
           "best": {**best, "val_ap50": _ap50(val, best["vertebra_box"], args.resamples)},
           "rows": sorted(rows, key=lambda r: -r["train_ap50"])}
    print(json.dumps({k: out[k] for k in ("films", "body_box", "best")}))
    from spine_models.models.cards import store_choice

    store_choice(args.out, out, args.write, {"vertebra_box": best["vertebra_box"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
