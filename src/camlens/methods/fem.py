"""FEM, the Feature Explanation Method (Fuad et al. 2020)."""

from __future__ import annotations

import torch

from ._combine import weighted_sum
from ._registry import register_method

__all__ = ["fem"]


@register_method("fem", paper="Fuad et al. 2020, Features understanding in 3D CNNs for actions recognition in video (FEM)")
def fem(activations: torch.Tensor, k: float = 2.0, eigen_smooth: bool = False) -> torch.Tensor:
    """FEM: each channel weighted by the share of its pixels above its mean + ``k`` standard deviations.

    ``t_c = mean_ij A_c + k std_ij A_c`` (population std), ``w_c = mean_ij [A_c(i, j) > t_c]``,
    ``M = sum_c w_c A_c``: channels with a few strong, localised responses count; the map does not
    depend on the class (no gradient).

    Args:
        activations: (N, C, h, w) output of the target layer.
        k: how many standard deviations above the mean a pixel must be (the k-sigma rule).
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, 1, h, w) maps before ReLU and normalisation.

    Example:
        >>> import torch
        >>> a = torch.tensor([0.0, 0.0, 0.0, 4.0]).reshape(1, 1, 2, 2)
        >>> fem(a, k=1.0)  # mean 1, std sqrt(3): only the 4 is above; w = 1/4
        tensor([[[[0., 0.],
                  [0., 1.]]]])
    """
    flat = activations.flatten(2)
    threshold = flat.mean(dim=2, keepdim=True) + k * flat.std(dim=2, unbiased=False, keepdim=True)
    weights = (flat > threshold).to(activations.dtype).mean(dim=2)
    return weighted_sum(weights.unsqueeze(1), activations, eigen_smooth)
