"""Finer-CAM (Zhang et al. 2025): what tells a class apart from the classes most like it."""

from __future__ import annotations

import torch

from ..core.errors import InputError
from ._combine import weighted_sum
from ._registry import register_method

__all__ = ["comparison_index", "finer_targets", "finercam"]


def comparison_index(logits: torch.Tensor, classes: torch.Tensor, similar: int = 3,
                     comparison_classes: list[int] | None = None) -> torch.Tensor:
    """(N, K, J) classes to compare each explained class with.

    ``comparison_classes``: these J classes for every image and class. ``None``: the ``similar``
    classes whose scores are closest to the explained class's (``|z_j - z_c|`` smallest, the
    class itself left out), as pytorch-grad-cam's FinerCAM picks them (its ranks 1, 2, 3).
    """
    n, num_classes = logits.shape
    if comparison_classes is not None:
        values = [comparison_classes] if isinstance(comparison_classes, int) else list(comparison_classes)
        if not values or any(not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < num_classes for v in values):
            raise InputError(f"comparison_classes={comparison_classes!r}: expected class indices in 0..{num_classes - 1}")
        return torch.tensor(values, device=logits.device).expand(n, classes.shape[1], len(values))
    if not 1 <= similar < num_classes:
        raise InputError(f"similar={similar} must be between 1 and {num_classes - 1} (the model outputs {num_classes} classes)")
    target = logits.gather(1, classes)  # (N, K)
    distance = (logits.unsqueeze(1) - target.unsqueeze(2)).abs()  # (N, K, classes)
    distance = distance.scatter(2, classes.unsqueeze(2), float("inf"))  # never the class itself
    return distance.argsort(dim=2, stable=True)[..., :similar]


def finer_targets(logits: torch.Tensor, classes: torch.Tensor, comparison: torch.Tensor, alpha: float) -> torch.Tensor:
    """(N, K) Finer-CAM targets ``sum_j p_j (z_c - alpha z_j) / sum_j p_j`` (p: softmax of the logits).

    As pytorch-grad-cam's ``FinerWeightedTarget`` (the probabilities are part of the target,
    so their gradient counts too).
    """
    probs = logits.softmax(dim=1)
    n, k, j = comparison.shape
    z_c = logits.gather(1, classes).unsqueeze(2)
    z_j = logits.gather(1, comparison.reshape(n, k * j)).view(n, k, j)
    p_j = probs.gather(1, comparison.reshape(n, k * j)).view(n, k, j)
    return (p_j * (z_c - alpha * z_j)).sum(dim=2) / (p_j.sum(dim=2) + 1e-9)


@register_method("finercam", paper="Zhang et al. 2025, Finer-CAM: Spotting the Difference Reveals Finer Details for Visual Explanation")
def finercam(activations: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor, logit_gradients,
             comparison_classes: list[int] | None = None, similar: int = 3, alpha: float = 1.0,
             eigen_smooth: bool = False) -> torch.Tensor:
    """Finer-CAM: Grad-CAM of the class's score minus its most similar classes' scores.

    The target is ``sum_j p_j (z_c - alpha z_j) / sum_j p_j`` over the comparison classes ``j``
    (:func:`finer_targets`; by default the 3 classes scored closest to ``c``), so what the class
    shares with its look-alikes cancels and what tells them apart stays: for fine-grained
    models (bird species, car models). ``alpha=0`` gives Grad-CAM. Its gradient comes from the
    main pass's graph (one more backward through the head per class).

    Args:
        activations: (N, C, h, w) output of the target layer.
        logits: (N, classes) the model's scores.
        classes: (N, K) the explained classes.
        logit_gradients: gradients of any function of the logits (provided by :func:`camlens.explain`).
        comparison_classes: class indices to compare with; ``None``: the ``similar`` closest.
        similar: how many closest classes when ``comparison_classes`` is ``None``.
        alpha: weight of the comparison classes' scores.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.
    """
    comparison = comparison_index(logits, classes, similar, comparison_classes)
    gradients = logit_gradients(lambda z: finer_targets(z, classes, comparison, alpha))
    return weighted_sum(gradients.mean(dim=(3, 4)), activations, eigen_smooth)
