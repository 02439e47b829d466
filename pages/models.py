"""Models: every shipped model's card — data, metrics with CIs, licence, intended use, limitations."""
from __future__ import annotations

import streamlit as st

from spine_models.models.cards import is_real_validated
from ui import render
from ui.models import NO_MODELS_HINT, shipped_cards
from ui.router import ensure_router

ensure_router()

st.title("Models")
st.caption("Every model in weights/ with its card. Metrics are on the held-out test part of the data named; "
           "95% confidence intervals by bootstrap. Each card names where it was validated (real films or phantom "
           "only) and credits every data source with its licence. Research use only — not a medical device.")
cards = shipped_cards()
if not cards:
    st.info(NO_MODELS_HINT)
for card in cards:
    where = "validated on real films" if is_real_validated(card) else "phantom only"
    with st.expander(f"{card.id} — {card.task}, {card.arch}, view {card.view} · {where}", expanded=len(cards) <= 3):
        render.card_summary(card)
