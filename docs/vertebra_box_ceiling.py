"""Where a vertebra model's AP50 on a vertebra-box folder is lost, on validation films only: missed vertebrae, boxes
drawn otherwise than the annotators drew them, and how much of that a better box could win back at best.

    .venv/bin/python docs/vertebra_box_ceiling.py --model seg_vertebra_corners_aasce \
        --data ../shared/data/cadma-vertebra --out docs/vertebra_box_ceiling.json

Why: issue 14's target is AP50 >= 0.90 on a YOLO vertebra folder, and the model reaches ~0.6. Before building a box
stage (a learned box refinement was tried ad hoc: validation AP50 0.600 -> 0.605, it learned nothing beyond the mean
offset) one should know what a perfect box would give. On the validation part of the model's recorded split this
reports: AP50 as the model draws its boxes; the share of annotated boxes with a predicted box at IoU 0.1 / 0.3 / 0.5
(found at all / found but drawn otherwise), and where the missed ones sit (above the highest or below the lowest
found vertebra, or between found ones); AP50 when every predicted box matched to an annotated one (IoU >= 0.2)
is replaced by that box (the ceiling of any box re-drawing, with the same found vertebrae and scores); AP50 with
each film's boxes scaled by the one height (and width) factor that fits that film best (an oracle of a per-film
drawing style); and how annotators' boxes sit against the model's: the spread of log(annotated / predicted height)
between films and within a film, and how much consecutive annotated boxes overlap.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

__all__ = ["main", "ceiling"]

MATCH_IOU = 0.2  # a predicted box this close to an annotated one is "the same vertebra, drawn otherwise"


def _matches(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(best IoU of each predicted box with an annotated one, its index)."""
    from spine_models.metrics.detection import box_iou

    if not len(pred) or not len(truth):
        return np.zeros(len(pred)), np.zeros(len(pred), int)
    m = box_iou(pred, truth)
    return m.max(1), m.argmax(1)


def _ap50(films: list[dict[str, Any]], boxes: list[np.ndarray]) -> float:
    from spine_models.metrics.detection import ImageBoxes, detection_map

    pred = [ImageBoxes.make(b.tolist(), ["vertebra"] * len(b), f["scores"]) for f, b in zip(films, boxes)]
    truth = [ImageBoxes.make(f["truth"].tolist(), ["vertebra"] * len(f["truth"])) for f in films]
    return round(float(detection_map(pred, truth, ["vertebra"], iou_thresholds=[0.5])["ap50"]["vertebra"]), 4)


def _scaled(f: dict[str, Any], by_height: bool, by_width: bool) -> np.ndarray:
    """The film's boxes scaled about their centres by its best single height (width) factor (geometric mean of the
    matched pairs' ratios)."""
    p, t = f["boxes"], f["truth"]
    best, idx = _matches(p, t)
    keep = best >= MATCH_IOU
    if not keep.any():
        return p
    q, g = p[keep], t[idx[keep]]
    fh = float(np.exp(np.mean(np.log((g[:, 3] - g[:, 1]) / (q[:, 3] - q[:, 1]))))) if by_height else 1.0
    fw = float(np.exp(np.mean(np.log((g[:, 2] - g[:, 0]) / (q[:, 2] - q[:, 0]))))) if by_width else 1.0
    c = (p[:, :2] + p[:, 2:]) / 2
    half = (p[:, 2:] - p[:, :2]) / 2 * np.array([fw, fh])
    return np.hstack([c - half, c + half])


def ceiling(films: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of the module docstring for films ``{"boxes", "scores", "truth"}`` (boxes as (N, 4) arrays)."""
    best_truth, log_h, within, overlaps = [], [], [], []
    redrawn, missed = [], {"beyond_the_ends": 0, "between_found": 0}
    for f in films:
        p, t = f["boxes"], f["truth"]
        best, idx = _matches(t, p)  # each annotated box's best predicted box
        best_truth += best.tolist() if len(p) else [0.0] * len(t)
        found = (best >= 0.1)[np.argsort(t[:, 1])] if len(p) else np.zeros(len(t), bool)  # top to bottom
        for i in np.flatnonzero(~found):
            missed["between_found" if found[:i].any() and found[i + 1:].any() else "beyond_the_ends"] += 1
        pb, pi = _matches(p, t)
        keep = pb >= MATCH_IOU
        redrawn.append(np.where(keep[:, None], t[pi] if len(t) else p, p) if len(p) else p)
        if keep.sum() >= 2:
            r = np.log((t[pi[keep], 3] - t[pi[keep], 1]) / (p[keep, 3] - p[keep, 1]))
            log_h.append(float(r.mean()))
            within.append(float(r.std()))
        if len(t) >= 3:
            s = t[np.argsort(t[:, 1])]
            h = s[:-1, 3] - s[:-1, 1]
            overlaps.append(float(np.median((s[:-1, 3] - s[1:, 1]) / h)))
    bt = np.asarray(best_truth)
    return {"films": len(films), "annotated_boxes": int(len(bt)), "predicted_boxes": int(sum(len(f["boxes"]) for f in films)),
            "ap50": _ap50(films, [f["boxes"] for f in films]),
            "annotated_found_at_iou": {str(k): round(float((bt >= k).mean()), 4) for k in (0.1, 0.3, 0.5)},
            "annotated_missed_at_iou_0.1": missed,
            "ap50_matched_boxes_redrawn_as_annotated": _ap50(films, redrawn),
            "ap50_per_film_height_factor": _ap50(films, [_scaled(f, True, False) for f in films]),
            "ap50_per_film_height_and_width_factor": _ap50(films, [_scaled(f, True, True) for f in films]),
            "log_height_ratio_sd_between_films": round(float(np.std(log_h)), 4),
            "log_height_ratio_sd_within_film_mean": round(float(np.mean(within)), 4),
            "consecutive_annotated_boxes_overlap_median": round(float(np.median(overlaps)), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a vertebra model (shipped id or card)")
    ap.add_argument("--data", required=True, help="a YOLO vertebra folder (cadma-vertebra)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from spine_models.data.adapters import load_dataset
    from spine_models.engine import predictor_class
    from spine_models.engine.segment import _truth_boxes
    from spine_models.models.hub import resolve_card
    from spine_models.report.evaluation import split_part

    card = resolve_card(args.model)
    pred = predictor_class(card)(card)
    films = []
    for s in split_part(card, load_dataset(args.data, task="segment"), "val").samples:
        res = pred.predict(s.path)
        films.append({"boxes": np.asarray([v["box"] for v in res.vertebrae], float).reshape(-1, 4),
                      "scores": [v["score"] for v in res.vertebrae],
                      "truth": np.asarray(_truth_boxes(s), float).reshape(-1, 4)})
    out = {"model": card.id, "sha256": card.sha256, "data": Path(args.data).name, "part": "val",
           "command": "python docs/vertebra_box_ceiling.py " + " ".join(sys.argv[1:] if argv is None else argv),
           **ceiling(films)}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
