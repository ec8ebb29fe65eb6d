"""explain(): one forward and one backward feeding every requested method and class.

``explain`` (the engine and :class:`Explanation`), ``_scoring`` (the re-run forwards of the
gradient-free methods), ``_downstream`` (only the layers after the target, for Ablation-CAM),
``_outputs`` (which output to explain), ``targets`` (what to explain: class scores, masks, boxes, ...),
``_learner`` (fastai Learners, duck-typed), ``dataset`` (explain_dataset: a whole folder or Dataset,
streamed into a run folder), ``_ray`` (its Ray driver).
"""

from ._scoring import Scorer
from . import targets
from .dff import Concepts, dff
from .explain import Explanation, explain, explain_detections, resolve_classes
from .dataset import explain_dataset

__all__ = ["Concepts", "Explanation", "dff", "explain", "explain_detections", "resolve_classes", "Scorer",
           "targets", "explain_dataset"]
