"""Every page runs under app.py's router, even the first deep link after a server start.

Why: Streamlit treats a ``pages/`` folder beside the main script as a version-1 multipage app until some session has
run ``st.navigation``. So the first session after a start that opens a deep link (``/compare``) ran that page file
alone — file-name navigation, no sidebar, and none of app.py's setup (offline settings, page config) — and kept doing
so on every rerun. A page that finds itself there hands the run to app.py, which opens the same page by its URL.
"""
from __future__ import annotations

import streamlit as st

__all__ = ["ensure_router"]


def ensure_router() -> None:
    """Call first in every page script: a no-op under app.py's ``st.navigation``; a session's first run outside it
    restarts in app.py. Only a first run: it has no widget interaction a restart could drop (Streamlit's AppTest
    re-enters the pages/ mode on every run of a session that has been routed, and keeps working as before)."""
    from streamlit.runtime.pages_manager import PagesManager

    from ui.state import K

    if PagesManager.uses_pages_directory and not st.session_state.get(K.ROUTED):
        PagesManager.uses_pages_directory = False  # what st.navigation sets on its first call: main script from now on
        st.rerun()
