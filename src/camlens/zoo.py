"""Kept so that ``import camlens.zoo`` goes on working: the models now live in :mod:`camlens.io.zoo`."""

from .io.zoo import *  # noqa: F401,F403
from .io.zoo import __all__  # noqa: F401
