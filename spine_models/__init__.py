"""spine_models: spine imaging AI — reading, phantoms, models, metrics, explanations, measurements."""
from __future__ import annotations

from spine_models._env import configure_offline

configure_offline()

__version__ = "0.1.0"
__all__ = ["__version__"]
