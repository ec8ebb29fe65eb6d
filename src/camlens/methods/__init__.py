"""CAM methods as pure torch functions, registered by name (see :mod:`._registry`)."""

from . import cam as _cam  # noqa: F401  (registers "cam")
from . import gradcam as _gradcam  # noqa: F401  (registers "gradcam")
from ._registry import Method, get_method, list_methods, register_method
from .cam import cam
from .gradcam import gradcam

__all__ = ["Method", "get_method", "list_methods", "register_method", "cam", "gradcam"]
