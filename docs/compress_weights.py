"""Store a shipped model's weights as int8 (per-output-channel scales) to keep weights/ under its size budget.

    .venv/bin/python docs/compress_weights.py --id mri_disc_state_resnet18_synth

Why: weights/ stays under 100 MB (it lives in git history forever). Storage only: inference dequantizes to float32
(models.cards.dequantize_state), so every engine is unchanged; the card's sha256 follows the new file and a note says
so. The card's figures must then be re-measured with its own evaluation data (`spine-models evaluate`, then
`docs/ship_model.py --refresh --id ID --report REPORT.json`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--id", required=True, help="shipped model id (weights/<id>.pt + .json)")
    a = ap.parse_args(argv)
    import torch

    from spine_models.models.cards import ModelCard, load_state, save_checkpoint_file

    card_path = REPO / "weights" / f"{a.id}.json"
    card = ModelCard.from_json(card_path)
    pt = card.weights_path()
    blob = torch.load(pt, map_location="cpu", weights_only=True)
    if blob.get("int8"):
        print(f"{pt.name} is already int8")
        return 0
    before = pt.stat().st_size
    sd, kw = load_state(card)
    sha = save_checkpoint_file(pt, arch=blob["arch"], task=blob["task"], state_dict=sd, arch_kwargs=kw, int8=True)
    d = json.loads(card_path.read_text())
    d["sha256"] = sha
    d["notes"] = [*(d.get("notes") or []), f"weights stored as int8 with per-output-channel scales "
                  f"(docs/compress_weights.py; {before / 1e6:.1f} -> {pt.stat().st_size / 1e6:.1f} MB); dequantized to "
                  "float32 at load; metrics re-measured after it"]
    card_path.write_text(json.dumps(d, indent=2) + "\n")
    print(f"{pt.name}: {before / 1e6:.1f} -> {pt.stat().st_size / 1e6:.1f} MB, sha256 {sha[:12]}…")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
