"""The Streamlit app's helpers: model loaders (the only st.cache_resource), session-state keys, renderers.

Why a package apart from the pages: pages stay thin scripts that read like a description of the UI,
and every torch import lives behind these functions (so page scripts never import torch themselves).
"""
__all__: list[str] = []
