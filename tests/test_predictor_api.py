"""Public engine.predictor API (issue 13): the view gate takes the shipped cards as list_cards() gives them."""
from __future__ import annotations

import numpy as np


def test_infer_view_accepts_cards_from_list_cards():
    from spine_models.engine.predictor import infer_view, shared_predictor
    from spine_models.io.radiograph import Radiograph
    from spine_models.models.cards import list_cards

    cards = list_cards()
    img = Radiograph(pixels=np.random.default_rng(0).random((256, 128)).astype(np.float32), bits=8, format="png",
                     name="x", photometric="MONOCHROME2")
    view, note = infer_view(img, cards)          # raised TypeError: unhashable type 'ModelCard'
    assert view in (None, "ap", "lat") and isinstance(note, str)
    gate = next(c for c in cards if c.task == "classify" and list(c.classes or []) == ["ap", "lat"])
    assert shared_predictor(gate) is shared_predictor(gate)   # loaded once
