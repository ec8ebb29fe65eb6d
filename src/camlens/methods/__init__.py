"""CAM methods as pure torch functions, registered by name (see :mod:`._registry`)."""

from . import ablationcam as _ablationcam  # noqa: F401  (each import registers its methods)
from . import cam as _cam  # noqa: F401
from . import dff as _dff  # noqa: F401
from . import eigen as _eigen  # noqa: F401
from . import elementwise as _elementwise  # noqa: F401
from . import fem as _fem  # noqa: F401
from . import finercam as _finercam  # noqa: F401
from . import fullgrad as _fullgrad  # noqa: F401
from . import gradcam as _gradcam  # noqa: F401
from . import gradcampp as _gradcampp  # noqa: F401
from . import guided as _guided  # noqa: F401
from . import kpca as _kpca  # noqa: F401
from . import layercam as _layercam  # noqa: F401
from . import scorecam as _scorecam  # noqa: F401
from . import shapleycam as _shapleycam  # noqa: F401
from . import xgradcam as _xgradcam  # noqa: F401
from ._registry import Method, get_method, list_methods, register_method
from .ablationcam import ablationcam
from .cam import cam
from .dff import dff
from .eigen import eigencam, eigengradcam
from .elementwise import gradcam_elementwise, randomcam
from .fem import fem
from .finercam import finercam
from .fullgrad import fullgrad
from .gradcam import gradcam
from .gradcampp import gradcampp, smoothgradcampp
from .guided import guided_backprop, guided_gradcam
from .kpca import kpcacam
from .layercam import hirescam, layercam
from .scorecam import iscam, scorecam, sscam
from .shapleycam import shapleycam
from .xgradcam import xgradcam

GRADIENT_METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigengradcam")

__all__ = [
    "Method", "get_method", "list_methods", "register_method", "GRADIENT_METHODS",
    "ablationcam", "cam", "eigencam", "eigengradcam", "gradcam", "gradcampp", "smoothgradcampp",
    "hirescam", "layercam", "iscam", "scorecam", "sscam", "xgradcam",
    "gradcam_elementwise", "randomcam", "fem", "kpcacam", "shapleycam", "finercam", "fullgrad",
    "guided_backprop", "guided_gradcam", "dff",
]
