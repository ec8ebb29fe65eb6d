"""camlens: why did the CNN say that? Class activation maps, hooks and layer statistics.

The code is laid out by job, one folder each (see the README's "How the code is laid out"):
core <- methods <- io <- viz <- engine <- {metrics, stats} <- cli; integrations on top.

The public surface is flat: ``camlens.explain``, ``camlens.find_target_layer``,
``camlens.describe``, ``camlens.Hook``/``Hooks``/``capture``, ``camlens.overlay``, ...
"""

from .core.errors import (
    CamlensError,
    HeadError,
    InPlaceModifiedError,
    InputError,
    LayerNotExecutedError,
    LayerNotFoundError,
    ModelCallError,
    MultipleCallsError,
    NoGradientError,
)
from .engine import Concepts, Explanation, Scorer, dff, explain, explain_dataset, explain_detections, resolve_classes
from .io.run import Run, open_run
from .core.heads import HeadVerdict, analyze_head
from .methods import fcmap as _fcmap  # noqa: F401  (registers "fcmap")
from .core.rewrite import FinetuneHistory, FullyConvolutional, GapLinearModel, finetune_head, fully_convolutional, replace_head
from .io.images import imagenet_classes, load_image, preprocess, sample_images
from .io.models import LoadedModel, load_model
from .viz.overlay import apply_colormap, overlay, plot_explanation, save_figure, save_image
from .viz.signals import draw_detections, plot_signal
from .core.hooks import Captured, Hook, Hooks, capture, get_module
from .core.layers import ModelDescription, describe, find_target_layer
from .core.trace import trace_model
from .methods import GRADIENT_METHODS, get_method, list_methods, register_method
from .core.postprocess import finalize_maps, normalize_maps, upsample_maps
from .stats import ActivationStats, LayerStats
from . import metrics  # noqa: F401  (camlens.metrics: faithfulness and localization)
from . import targets  # noqa: F401  (camlens.targets: ClassScore, SegmentationMask, BoxScore, ...)
from .core.layouts import Layout

__version__ = "0.1.0"

__all__ = [
    "CamlensError", "HeadError", "InPlaceModifiedError", "InputError", "LayerNotExecutedError",
    "LayerNotFoundError", "ModelCallError", "MultipleCallsError", "NoGradientError",
    "Explanation", "explain", "explain_detections", "resolve_classes", "HeadVerdict", "Layout", "targets",
    "explain_dataset", "open_run", "Run", "Concepts", "dff",
    "analyze_head", "fully_convolutional", "replace_head", "finetune_head",
    "FullyConvolutional", "GapLinearModel", "FinetuneHistory",
    "Captured", "Hook", "Hooks", "capture", "get_module",
    "ModelDescription", "describe", "find_target_layer", "trace_model",
    "get_method", "list_methods", "register_method", "GRADIENT_METHODS", "Scorer",
    "finalize_maps", "normalize_maps", "upsample_maps",
    "imagenet_classes", "load_image", "preprocess", "sample_images", "LoadedModel", "load_model",
    "apply_colormap", "overlay", "plot_explanation", "save_figure", "save_image", "plot_signal", "draw_detections",
    "ActivationStats", "LayerStats",
    "__version__",
]
