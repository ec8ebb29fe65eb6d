"""explain(): one forward and one backward feeding every requested method and class.

``explain`` (the engine and :class:`Explanation`), ``_scoring`` (the re-run forwards of the
gradient-free methods), ``_downstream`` (only the layers after the target, for Ablation-CAM),
``_outputs`` (which output to explain), ``targets`` (what to explain: class scores, masks, boxes, ...), ``_learner`` (fastai Learners, duck-typed).
"""

from ._scoring import Scorer
from . import targets
from .explain import Explanation, explain, explain_detections, resolve_classes

__all__ = ["Explanation", "explain", "explain_detections", "resolve_classes", "Scorer", "targets"]
