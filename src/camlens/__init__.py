"""camlens: why did the CNN say that? Class activation maps, hooks and layer statistics.

The public surface is flat: ``camlens.explain``, ``camlens.find_target_layer``,
``camlens.describe``, ``camlens.Hook``/``Hooks``/``capture``, ``camlens.overlay``, ...
"""

from .errors import (
    CamlensError,
    HeadError,
    InPlaceModifiedError,
    InputError,
    LayerNotExecutedError,
    LayerNotFoundError,
    MultipleCallsError,
    NoGradientError,
)
from .explain import Explanation, explain, resolve_classes
from .heads import HeadVerdict, analyze_head
from .methods import fcmap as _fcmap  # noqa: F401  (registers "fcmap")
from .rewrite import FinetuneHistory, FullyConvolutional, GapLinearModel, finetune_head, fully_convolutional, replace_head
from .images import imagenet_classes, load_image, preprocess, sample_images
from .models import LoadedModel, load_model
from .visualize import apply_colormap, overlay, plot_explanation, save_figure, save_image
from .hooks import Captured, Hook, Hooks, capture, get_module
from .layers import ModelDescription, describe, find_target_layer, trace_model
from ._scoring import Scorer
from .methods import GRADIENT_METHODS, get_method, list_methods, register_method
from .postprocess import finalize_maps, normalize_maps, upsample_maps
from .stats import ActivationStats, LayerStats
from . import metrics  # noqa: F401  (camlens.metrics: faithfulness and localization)

__version__ = "0.1.0"

__all__ = [
    "CamlensError", "HeadError", "InPlaceModifiedError", "InputError", "LayerNotExecutedError",
    "LayerNotFoundError", "MultipleCallsError", "NoGradientError",
    "Explanation", "explain", "resolve_classes", "HeadVerdict",
    "analyze_head", "fully_convolutional", "replace_head", "finetune_head",
    "FullyConvolutional", "GapLinearModel", "FinetuneHistory",
    "Captured", "Hook", "Hooks", "capture", "get_module",
    "ModelDescription", "describe", "find_target_layer", "trace_model",
    "get_method", "list_methods", "register_method", "GRADIENT_METHODS", "Scorer",
    "finalize_maps", "normalize_maps", "upsample_maps",
    "imagenet_classes", "load_image", "preprocess", "sample_images", "LoadedModel", "load_model",
    "apply_colormap", "overlay", "plot_explanation", "save_figure", "save_image",
    "ActivationStats", "LayerStats",
    "__version__",
]
