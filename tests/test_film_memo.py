"""Per-film memo (issue 13): the full analysis of one AP film runs the AP U-Net once, with the same results."""
from __future__ import annotations

import numpy as np
import pytest

from spine_models.engine.film_memo import FilmMemo, film_digest, film_memo


def _plain(results: list) -> list[dict]:
    out = []
    for r in results:
        d = r.to_dict()
        d.pop("elapsed_ms", None)
        arrays = {k: np.asarray(v) for k, v in (getattr(r, "masks", None) or {}).items()}
        for k in ("cam", "shap"):
            if getattr(r, k, None) is not None:
                arrays[k] = np.asarray(getattr(r, k))
        out.append((d, arrays))
    return out


def test_full_analysis_of_one_ap_film_runs_the_ap_unet_once(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from spine_models.data.phantom.xray import make_patient, render_film
    from spine_models.engine.predictor import shared_predictor
    from spine_models.io.radiograph import Radiograph
    from spine_models.models.cards import list_cards
    from ui import analysis

    film = render_film(make_patient(5, 0), "ap", height=512, width=256).image.astype(np.float32)
    rad = Radiograph(pixels=film, bits=16, format="png", name="film.png", photometric="MONOCHROME2")
    cards = list_cards()
    rad, _ = analysis.infer_view(rad, cards)
    chosen = analysis.fitting_cards(cards, rad)
    ids = {c.id for c in chosen}
    users = {"seg_unet_ap", "seg_vertebra_corners_aasce", "xray_ap_cobb_measure_synth", "xray_3class_routed_synth"}
    assert users <= ids, ids

    from spine_models.engine.landmarks import VertebraCornerPredictor

    calls: list[int] = []
    looks: list[int] = []  # the corner model's second looks at the column: the U-Net runs on that crop too
    zoomed = VertebraCornerPredictor._zoomed
    monkeypatch.setattr(VertebraCornerPredictor, "_zoomed", lambda self, *a, **k: looks.append(1) or zoomed(self, *a, **k))
    unet = shared_predictor("seg_unet_ap")
    run = unet.net.forward  # the network on whichever runtime its card chose (engine.runtime): torch or ONNX Runtime
    unet.net.forward = lambda x: calls.append(1) or run(x)
    try:
        with monkeypatch.context() as m:  # before: nothing kept, every user of the U-Net runs it
            m.setattr(film_memo, "max_entries", 0)
            before, _ = analysis.run_models(rad, chosen)
        assert len(calls) == len(users) + len(looks)  # each model that reads the U-Net's masks ran it again
        calls.clear()
        looks.clear()
        film_memo.clear()
        after, _ = analysis.run_models(rad, chosen)
        assert len(calls) == 1 + len(looks)  # once on the film (and once on a crop the corner model looked at again)
        assert film_memo.hits >= 2
    finally:
        unet.net.forward = run
    for (d0, a0), (d1, a1) in zip(_plain(before), _plain(after)):
        assert d0 == d1
        assert a0.keys() == a1.keys() and all(np.array_equal(a0[k], a1[k]) for k in a0)


def test_memo_keys_on_pixels_and_options_and_hands_out_copies() -> None:
    memo = FilmMemo(max_entries=2)
    a = np.zeros((8, 4), np.float32)
    k = memo.key("m", a, "name", None, True)
    assert memo.key("m", a.copy(), "name", None, True) == k            # the same pixels, another array: a hit
    assert memo.key("m", a + 1, "name", None, True) != k               # other pixels
    assert memo.key("m", a, "name", None, False) != k                  # other options
    assert film_digest(a) != film_digest(a.reshape(4, 8))               # shape is part of the digest
    res = {"masks": {"v": np.ones((2, 2), bool)}, "measurements": {"cobb": {"cobb_deg": 12.0}}}
    memo.put(k, res)
    got = memo.get(k)
    got["measurements"]["cobb"]["cobb_deg"] = 99.0                     # a caller edits its copy ...
    assert memo.get(k)["measurements"]["cobb"]["cobb_deg"] == 12.0     # ... not the stored one
    assert memo.get(k)["masks"]["v"] is res["masks"]["v"]              # arrays are shared, not copied
    for i in range(3):
        memo.put(("other", i), {"x": i})
    assert len(memo) == 2 and memo.get(k) is None                       # least recently used dropped first
    small = FilmMemo(max_bytes=10)
    small.put("big", {"m": np.zeros(100, np.uint8)})
    assert small.get("big") is None                                     # larger than the byte budget: not kept
