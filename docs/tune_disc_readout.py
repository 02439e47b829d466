"""Choose the disc locator's read-out (mask threshold, box scale) on the *validation* patients, never the test ones.

    .venv/bin/python docs/tune_disc_readout.py --model RUN_OR_ID --data ../shared/data/spider-mri [--write]

Why: a disc's box is read from its found ellipse (``measure.discs``: extent / ``disc_core``); how the network's
ellipses come out (a little fat or thin, by threshold) decides whether the box reaches IoU 0.5 with the upstream
box. The grid is scored by disc AP50 on the validation part of the model's recorded split; the chosen values go into
the card's preprocessing (``disc_core``) and thresholds (``mask``), and the test part is scored once, afterwards.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--write", action="store_true", help="write the chosen read-out into the run folder's card.json")
    a = ap.parse_args(argv)

    from spine_models.data.adapters import load_dataset
    from spine_models.data.vertebra_targets import DISC_CORE, disc_boxes
    from spine_models.engine.discs import _locator
    from spine_models.engine.segment import read_pixels
    from spine_models.measure.discs import discs_from_probs
    from spine_models.metrics.detection import ImageBoxes, detection_map
    from spine_models.models.hub import resolve_card
    from spine_models.report.evaluation import split_part

    card = resolve_card(a.model)
    ds = split_part(card, load_dataset([a.data], task="segment"), "val")
    loc = _locator(card, None)
    cached = []
    for s in ds.samples:
        truth = disc_boxes(s.boxes)
        if truth:
            cached.append((loc.probabilities(read_pixels(s.path)[0]), truth, s.meta.get("levels_certain")))
    print(f"validation slices with boxes: {len(cached)}")
    st = list(loc.structures)
    best = None
    for thr in (0.4, 0.5, 0.6):
        for sx in (0.85, 0.9, 0.95, 1.0):
            for sy in (0.7, 0.775, 0.85, 0.925, 1.0):
                core = (DISC_CORE[0] / sx, DISC_CORE[1] / sy)
                preds, gts, named = [], [], []
                for probs, truth, _certain in cached:
                    r = discs_from_probs(probs[st.index("disc")], probs[st.index("disc_caudal")], threshold=thr, core=core)
                    preds.append(ImageBoxes.make([d.box for d in r.discs], ["disc"] * len(r.discs), [d.score for d in r.discs]))
                    gts.append(ImageBoxes.make(truth, ["disc"] * len(truth)))
                    named.append(r.levels_reliable)
                ap50 = detection_map(preds, gts, ["disc"])["ap50"]["disc"]
                print(f"threshold {thr:.1f} box scale x{sx:.2f} y{sy:.2f}: AP50 {ap50:.3f}, levels named on {np.mean(named) * 100:.0f} %")
                if best is None or ap50 > best[0] + 1e-9:
                    best = (ap50, thr, sx, sy, core)
    assert best is not None
    ap50, thr, sx, sy, core = best
    print(f"best on validation: threshold {thr}, box scale x{sx} y{sy} (disc_core {core[0]:.4f}, {core[1]:.4f}): AP50 {ap50:.3f}")
    if a.write:
        path = Path(a.model) / "card.json"
        if not path.is_file():
            raise SystemExit(f"--write needs a run folder with card.json; {a.model} is not one")
        import json

        d = json.loads(path.read_text())
        d["thresholds"] = {**(d.get("thresholds") or {}), "mask": thr}
        d["preprocessing"] = {**(d.get("preprocessing") or {}), "disc_core": [round(core[0], 4), round(core[1], 4)]}
        d["notes"] = [*(d.get("notes") or []), f"read-out (mask threshold {thr}, disc_core {core[0]:.4f}, {core[1]:.4f}) chosen "
                      f"on {len(cached)} validation slices by docs/tune_disc_readout.py (validation disc AP50 {ap50:.3f})"]
        path.write_text(json.dumps(d, indent=2) + "\n")
        print(f"wrote the read-out into {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
