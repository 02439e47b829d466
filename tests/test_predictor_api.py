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


def test_one_resolver_and_one_loaded_object_per_weight_file():
    """The app, the CLI and a composite get the same loaded U-Net (issue 13: one resolve_card, one cache)."""
    import spine_models.commands.predict as cli_predict
    from spine_models.engine import predictor
    from spine_models.engine.composite import CompositePredictor
    from spine_models.models import hub
    from spine_models.models.cards import find_card
    from ui.models import get_predictor

    assert predictor.resolve_card is hub.resolve_card
    card = find_card("seg_unet_ap")
    seg = predictor.shared_predictor("seg_unet_ap")
    assert seg is predictor.shared_predictor(card) is cli_predict.get_predictor(card) is get_predictor(card)
    measure = predictor.shared_predictor("xray_ap_cobb_measure_synth")
    routed = predictor.shared_predictor("xray_3class_routed_synth")
    assert isinstance(measure, CompositePredictor) and measure.seg is seg
    assert routed.experts["ap"] is measure and routed.view_model is get_predictor(find_card(routed.kw["view"]))
    # a fresh load (its own device or a test's) is a new object; the cache is keyed by id, sha256 and weight file
    assert predictor.load_predictor(card) is not seg
    assert predictor.loaded_key(card)[:3] == hub.predictor_key(card)
