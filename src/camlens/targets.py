"""``camlens.targets``: what :func:`camlens.explain` explains (``target=``).

See :mod:`camlens.engine.targets`: ``ClassScore``, ``SegmentationMask``, ``BoxScore``,
``Detections``, ``Similarity``, ``Regression``, or any callable ``outputs -> (N,) or (N, K)``.
"""

from .engine.targets import (
    Bound,
    BoxScore,
    ClassScore,
    Detections,
    FunctionTarget,
    Regression,
    SegmentationMask,
    Similarity,
    Target,
)

__all__ = ["Target", "Bound", "ClassScore", "SegmentationMask", "BoxScore", "Detections", "Similarity",
           "Regression", "FunctionTarget"]
