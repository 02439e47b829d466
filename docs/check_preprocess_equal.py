"""Run every shipped model on a few phantom films and dump, or compare two dumps (refactor checks).

Why: a change to the preprocessing path must leave every shipped model's output on a film the same. Run
``dump`` with one checkout's package on PYTHONPATH, then with the other's, then ``compare``:

    spine-models synth xray-ap --n 2 --out D/xray-ap --seed 5   # likewise xray-lat, mri-lumbar
    PYTHONPATH=OLD python docs/check_preprocess_equal.py dump D old.pkl
    PYTHONPATH=NEW python docs/check_preprocess_equal.py dump D new.pkl
    python docs/check_preprocess_equal.py compare old.pkl new.pkl   # exit 1 on any difference > 1e-5

Films: the X-ray PNGs, an odd-sized crop of each (taller than a U-Net input but with fewer pixels: both
resize rules are exercised) and the middle T2 SAG slice of each MRI study.
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["films", "dump", "compare"]


def films(root: Path) -> dict[str, tuple[str, Any]]:
    """name -> (kind "xray" | "mri", a path or a 2-D array)."""
    from spine_models.io import read_image

    out: dict[str, tuple[str, Any]] = {}
    for kind in ("xray-ap", "xray-lat"):
        for p in sorted((root / kind / "images").glob("*.png")):
            out[p.name] = ("xray", str(p))
            out[p.name + ":odd"] = ("xray", np.ascontiguousarray(read_image(p).pixels[100:640, 60:260]))
    for series in sorted((root / "mri-lumbar").glob("*/T2_SAG")):
        slices = sorted(series.glob("*.dcm"))
        out[f"{series.parent.name}/T2_SAG"] = ("mri", str(slices[len(slices) // 2]))
    return out


def _flat(res: Any) -> dict[str, Any]:
    """The numbers a Result holds: probabilities, maps, masks, boxes, measurements, grades."""
    out: dict[str, Any] = {}
    for k, v in vars(res).items():
        if k in ("elapsed_ms", "device", "source"):
            continue
        if isinstance(v, dict):
            for kk, vv in v.items():
                out[f"{k}.{kk}"] = vv
        else:
            out[k] = v
    return out


def dump(root: Path, out: Path) -> None:
    from spine_models.engine.predictor import load_predictor
    from spine_models.models.cards import list_cards

    results: dict[str, Any] = {}
    fs = films(root)
    for card in list_cards():
        kind = "mri" if card.view == "mri" else "xray"
        pred = load_predictor(card)
        for name, (k, src) in fs.items():
            if k != kind:
                continue
            opts = {"cam": True} if card.task == "classify" else {}
            try:
                res = pred.predict(src, **opts)
            except Exception as exc:  # a model that does not take this film: the error must match too
                results[f"{card.id}|{name}"] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            results[f"{card.id}|{name}"] = _flat(res)
        print(card.id, "done", file=sys.stderr)
    out.write_bytes(pickle.dumps(results))


def _diff(a: Any, b: Any) -> float:
    """Largest absolute difference (inf when the structure differs)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return float("inf")
        return max([_diff(a[k], b[k]) for k in a] or [0.0])
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return float("inf")
        return max([_diff(x, y) for x, y in zip(a, b)] or [0.0])
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return float("inf")
        if a.size == 0:
            return 0.0
        return float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.dtype != object else _diff(a.tolist(), b.tolist())
    if hasattr(a, "__dict__") and hasattr(b, "__dict__"):
        return _diff(vars(a), vars(b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if a != a and b != b:  # both NaN
            return 0.0
        return abs(float(a) - float(b))
    return 0.0 if a == b else float("inf")


def compare(old: Path, new: Path, tol: float = 1e-5) -> int:
    a, b = pickle.loads(old.read_bytes()), pickle.loads(new.read_bytes())
    bad = 0
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            print(f"MISSING {key}")
            bad += 1
            continue
        worst = max(((_diff(a[key][f], b[key].get(f)), f) for f in a[key]), default=(0.0, ""))
        if set(a[key]) != set(b[key]):
            worst = (float("inf"), f"fields {sorted(set(a[key]) ^ set(b[key]))}")
        status = "ok" if worst[0] <= tol else "DIFF"
        bad += status != "ok"
        print(f"{status:4} {key}: max |diff| {worst[0]:.3g} ({worst[1]})")
    print(f"{len(set(a) | set(b))} model x film results, {bad} differ by more than {tol}")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "dump":
        dump(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit("usage: check_preprocess_equal.py dump DATA_DIR OUT.pkl | compare OLD.pkl NEW.pkl")
