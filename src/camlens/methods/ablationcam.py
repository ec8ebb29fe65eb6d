"""Ablation-CAM (Desai & Ramaswamy, WACV 2020)."""

from __future__ import annotations

import torch

from ._combine import elementwise_sum, weighted_sum
from ._registry import register_method
from .gradcampp import _safe_divide


def ablation_weights(scores: torch.Tensor, ablated: torch.Tensor) -> torch.Tensor:
    """Ablation-CAM weights ``w_k = (y - y_k) / y``: the relative drop of the class score.

    Args:
        scores: (N, K) class scores of the unchanged model.
        ablated: (N, C, K) class scores with channel k of the target layer set to zero.

    Returns:
        (N, K, C); a class whose score is exactly 0 gets the plain drop ``y - y_k``.
    """
    y = scores.unsqueeze(1)
    drop = y - ablated
    return torch.where(y != 0, _safe_divide(drop, y), drop).transpose(1, 2)


@register_method("ablationcam", paper="Desai & Ramaswamy 2020, Ablation-CAM: Gradient-free Localization")
def ablationcam(activations: torch.Tensor, scorer, eigen_smooth: bool = False) -> torch.Tensor:
    """Ablation-CAM: channels weighted by how much the class score drops without them.

    ``y_k`` is the score with channel ``k`` of the target layer zeroed, ``w_k = (y - y_k) / y``,
    ``M = sum_k w_k A_k``. Channels that are already all zero are not re-run (``w_k = 0``).
    Only the layers after the target re-run on the ablated batch when the architecture allows.

    Args:
        activations: (N, C, h, w) output of the target layer.
        scorer: re-runs the model from modified activations (provided by :func:`camlens.explain`).
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.
    """
    n, c = activations.shape[:2]
    y = scorer.scores.float()  # in float32, as the ablated scores come back: an ablation that changes nothing drops 0
    ablated = y.unsqueeze(1).repeat(1, c, 1)
    for i in range(n):
        channels = activations[i].flatten(1).ne(0).any(dim=1).nonzero().flatten()
        base = activations[i]

        def make(sl, base=base, channels=channels):
            chunk = channels[sl]
            batch = base.unsqueeze(0).repeat(len(chunk), 1, 1, 1)
            batch[torch.arange(len(chunk)), chunk] = 0
            return batch

        if len(channels):
            ablated[i, channels] = scorer.score_activations(i, make, len(channels))  # stored as float32
    weights = ablation_weights(y, ablated)
    return weighted_sum(weights, activations, eigen_smooth)
