"""How a method's weighted activations become a map: a channel sum, or their first principal component.

Every method that weights the target layer's channels ends in :func:`weighted_sum` (channel
weights, (N, K, C)) or :func:`elementwise_sum` (a weight per activation, (N, K, C, h, w)).
``eigen_smooth=True`` (pytorch-grad-cam's option of the same name) replaces the sum over
channels by the projection of each pixel's weighted channel vector on their first principal
component (:func:`camlens.methods.eigen.first_component`), which keeps the dominant pattern
and drops the noise of the other components. The sign of a principal component is arbitrary:
camlens fixes it to agree with the plain channel sum (pytorch-grad-cam keeps the SVD's sign).
"""

from __future__ import annotations

import torch

from .eigen import first_component

__all__ = ["weighted_sum", "elementwise_sum"]


def elementwise_sum(weighted: torch.Tensor, eigen_smooth: bool = False) -> torch.Tensor:
    """(N, K, C, h, w) weighted activations -> (N, K, h, w): channel sum or first component."""
    summed = weighted.sum(dim=2)
    return first_component(weighted, summed) if eigen_smooth else summed


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor, eigen_smooth: bool = False) -> torch.Tensor:
    """``sum_c weights[n, k, c] * activations[n, c]``: (N, K, C), (N, C, h, w) -> (N, K, h, w).

    With ``eigen_smooth`` the first principal component of ``weights * activations`` instead.
    """
    weights = weights.to(activations.dtype)
    if not eigen_smooth:
        return torch.einsum("nkc,nchw->nkhw", weights, activations)
    return elementwise_sum(weights[..., None, None] * activations.unsqueeze(1), True)
