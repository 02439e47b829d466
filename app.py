"""Spine Lab: the Streamlit app's router and shared sidebar (run: `streamlit run app.py`).

Pages live in pages/ and stay thin; models load only in ui/ (behind st.cache_resource).
"""
from __future__ import annotations

import streamlit as st

from spine_models._env import configure_offline

configure_offline()
st.set_page_config(page_title="Spine Lab", page_icon=":material/radiology:", layout="wide")

from ui.models import NO_MODELS_HINT, device_label, shipped_cards, warm_up  # noqa: E402  (after set_page_config)
from ui.state import K  # noqa: E402

# Each page file is named as its url_path: before the app's first run Streamlit knows pages only by their pages/ file
# names, so a first deep link (/mri) to a differently named file opened under a "Page not found" dialog.
PAGES = [
    st.Page("pages/analyse.py", title="Analyse X-ray", icon=":material/radiology:", url_path="analyse"),
    st.Page("pages/mri.py", title="MRI study", icon=":material/view_in_ar:", url_path="mri"),
    st.Page("pages/compare.py", title="Compare models", icon=":material/compare:", url_path="compare"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("pages/models.py", title="Models", icon=":material/badge:", url_path="models"),
]


def _start() -> None:
    """The root URL opens Analyse X-ray under its own path. Why: Streamlit serves its default page at "/" only,
    so a bookmarked /analyse showed "Page not found"; with this hidden start page every page has its deep link."""
    st.switch_page(PAGES[0])


page = st.navigation([st.Page(_start, title="Spine Lab", default=True), *PAGES], position="hidden")
st.session_state[K.ROUTED] = True  # pages opened before any router run restart here (ui.router)

with st.sidebar:
    st.markdown("### Spine Lab")
    for p in PAGES:  # the navigation itself (hidden above so the start page does not show as an entry)
        st.page_link(p, label=p.title, icon=p.icon)
    st.caption("Research use only — not a medical device.")
    st.markdown(f"**Device:** {device_label()}")
    try:
        cards = shipped_cards()
    except ValueError as exc:  # a damaged card file in weights/: say which, keep the app usable
        cards = []
        st.error(f"Could not read the shipped model cards: {exc}")
    if cards:
        if warm_up(cards):  # the default models load in the background once per server start
            st.caption("Loading the default models in the background (first start only)…")
        st.markdown(f"**Shipped models:** {len(cards)}")
        st.caption(", ".join(c.id for c in cards))
    else:
        st.warning(NO_MODELS_HINT)

page.run()
