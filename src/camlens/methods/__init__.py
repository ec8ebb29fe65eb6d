"""CAM methods as pure torch functions, registered by name (see :mod:`._registry`)."""

from . import ablationcam as _ablationcam  # noqa: F401  (each import registers its methods)
from . import cam as _cam  # noqa: F401
from . import eigen as _eigen  # noqa: F401
from . import gradcam as _gradcam  # noqa: F401
from . import gradcampp as _gradcampp  # noqa: F401
from . import layercam as _layercam  # noqa: F401
from . import scorecam as _scorecam  # noqa: F401
from . import xgradcam as _xgradcam  # noqa: F401
from ._registry import Method, get_method, list_methods, register_method
from .ablationcam import ablationcam
from .cam import cam
from .eigen import eigencam, eigengradcam
from .gradcam import gradcam
from .gradcampp import gradcampp, smoothgradcampp
from .layercam import hirescam, layercam
from .scorecam import iscam, scorecam, sscam
from .xgradcam import xgradcam

GRADIENT_METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigengradcam")

__all__ = [
    "Method", "get_method", "list_methods", "register_method", "GRADIENT_METHODS",
    "ablationcam", "cam", "eigencam", "eigengradcam", "gradcam", "gradcampp", "smoothgradcampp",
    "hirescam", "layercam", "iscam", "scorecam", "sscam", "xgradcam",
]
