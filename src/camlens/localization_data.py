"""Kept so that ``import camlens.localization_data`` goes on working: see :mod:`camlens.metrics.data`."""

from .metrics.data import *  # noqa: F401,F403
from .metrics.data import __all__  # noqa: F401
