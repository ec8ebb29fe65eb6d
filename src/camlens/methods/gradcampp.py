"""Grad-CAM++ (Chattopadhay et al., WACV 2018) and its noise-averaged variant, Smooth Grad-CAM++."""

from __future__ import annotations

import torch

from ._combine import elementwise_sum, weighted_sum
from ._registry import register_method

__all__ = ["gradcampp", "gradcampp_weights", "smoothgradcampp"]


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` where the denominator is non-zero, else 0 (never NaN/inf)."""
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, torch.ones_like(denominator)), 0.0)


def gradcampp_weights(
    activations: torch.Tensor, grad: torch.Tensor, grad2: torch.Tensor, grad3: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM++ channel weights from the first three derivatives (eq. 19 of the paper).

    ``alpha = g2 / (2 g2 + sum_ij A * g3)`` (0 where the denominator is 0),
    ``w_k = sum_ij alpha * relu(g)``.

    With the exponential of the score as the target (the paper's choice), the 2nd and 3rd
    derivatives of a piecewise-linear network are ``g**2`` and ``g**3`` times ``exp(S)``, which
    cancels in alpha and only scales ``w`` by a positive constant per class.

    Args:
        activations: (N, C, h, w).
        grad, grad2, grad3: (N, K, C, h, w) first derivative and the (possibly averaged)
            second and third powers standing for the 2nd and 3rd derivatives.

    Returns:
        (N, K, C) channel weights.
    """
    sum_a = activations.sum(dim=(-2, -1), keepdim=True).unsqueeze(1)
    alpha = _safe_divide(grad2, 2 * grad2 + sum_a * grad3)
    return (alpha * grad.clamp_min(0)).sum(dim=(-2, -1))


@register_method("gradcampp", paper="Chattopadhay et al. 2018, Grad-CAM++: Generalized Gradient-based Visual Explanations")
def gradcampp(activations: torch.Tensor, gradients: torch.Tensor, eigen_smooth: bool = False) -> torch.Tensor:
    """Grad-CAM++: channels weighted by positive gradients times the closed-form alpha.

    ``alpha_k(i, j) = g^2 / (2 g^2 + sum_ab A_k(a, b) g^3)``, ``w_k = sum_ij alpha relu(g)``,
    ``M = sum_k w_k A_k`` (the exp-score trick; see :func:`gradcampp_weights`).

    Args:
        activations: (N, C, h, w) output of the target layer.
        gradients: (N, K, C, h, w) gradient of each of K class scores w.r.t. the activations.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.

    Example:
        >>> import torch
        >>> a = torch.ones(1, 1, 1, 2); g = torch.full((1, 1, 1, 1, 2), 0.5)
        >>> gradcampp(a, g)  # alpha = .25 / (.5 + 2 * .125) = 1/3, w = 2 * 1/3 * .5
        tensor([[[[0.3333, 0.3333]]]])
    """
    weights = gradcampp_weights(activations, gradients, gradients.pow(2), gradients.pow(3))
    return weighted_sum(weights, activations, eigen_smooth)


@register_method("smoothgradcampp", paper="Omeiza et al. 2019, Smooth Grad-CAM++")
def smoothgradcampp(
    activations: torch.Tensor, scorer, samples: int = 8, noise_std: float = 0.3, seed: int = 0,
    eigen_smooth: bool = False,
) -> torch.Tensor:
    """Smooth Grad-CAM++: Grad-CAM++ with derivatives averaged over noisy copies of the input.

    ``g, g^2, g^3`` are averaged over ``samples`` inputs ``x + N(0, noise_std^2)`` (in the
    normalised input space, like torchcam), then fed to :func:`gradcampp_weights` with the
    clean image's activations. The noise is drawn from a generator seeded with ``seed``, so the
    result is deterministic.

    Args:
        activations: (N, C, h, w) target-layer output on the clean inputs.
        scorer: re-runs the model (provided by :func:`camlens.explain`); its
            ``gradients(x)`` gives (N, K, C, h, w) gradients of the explained classes for ``x``.
        samples: number of noisy copies.
        noise_std: standard deviation of the Gaussian noise.
        seed: seed of the noise generator.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.
    """
    generator = torch.Generator(device=scorer.inputs.device).manual_seed(seed)
    g1 = g2 = g3 = None
    for _ in range(samples):
        noise = torch.randn(scorer.inputs.shape, generator=generator, device=scorer.inputs.device)
        grad = scorer.gradients(scorer.inputs + noise_std * noise.to(scorer.inputs.dtype))
        square = grad * grad
        if g1 is None:
            g1, g2, g3 = grad.clone(), square, square * grad
        else:
            g1 += grad
            g2 += square
            g3 += square * grad
    weights = gradcampp_weights(activations, g1 / samples, g2 / samples, g3 / samples)
    return weighted_sum(weights, activations, eigen_smooth)
