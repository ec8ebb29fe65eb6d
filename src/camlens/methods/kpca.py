"""KPCA-CAM (Karmani et al. 2024): Eigen-CAM with kernel PCA."""

from __future__ import annotations

import torch

from ..core.errors import InputError
from ._registry import register_method

__all__ = ["kernel_matrix", "kernel_first_component", "kpcacam"]

_KERNELS = ("sigmoid", "rbf", "poly", "linear", "cosine")


def kernel_matrix(x: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None,
                  coef0: float = 1.0, degree: int = 3) -> torch.Tensor:
    """Kernel between the rows of ``x``: (B, P, C) -> (B, P, P), scikit-learn's definitions.

    ``sigmoid``: tanh(gamma <x, y> + coef0); ``rbf``: exp(-gamma |x - y|^2); ``poly``:
    (gamma <x, y> + coef0)^degree; ``linear``: <x, y>; ``cosine``: <x, y> / (|x| |y|) (0 for a zero row).
    ``gamma=None`` is 1 / C, as in scikit-learn.
    """
    if kernel not in _KERNELS:
        raise InputError(f"kernel={kernel!r} is not known; use one of {', '.join(_KERNELS)}")
    gamma = 1.0 / x.shape[-1] if gamma is None else float(gamma)
    dot = x @ x.transpose(-1, -2)
    if kernel == "sigmoid":
        return torch.tanh(gamma * dot + coef0)
    if kernel == "poly":
        return (gamma * dot + coef0) ** degree
    if kernel == "linear":
        return dot
    if kernel == "cosine":  # rows scaled to unit length first: a zero row gives 0, as in scikit-learn
        unit = x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        return unit @ unit.transpose(-1, -2)
    square = x.pow(2).sum(dim=-1, keepdim=True)
    return torch.exp(-gamma * (square + square.transpose(-1, -2) - 2 * dot).clamp_min(0))


def kernel_first_component(features: torch.Tensor, reference: torch.Tensor, kernel: str = "sigmoid",
                           gamma: float | None = None) -> torch.Tensor:
    """First kernel principal component of each pixel's channel vector: (..., C, h, w) -> (..., h, w).

    As scikit-learn's ``KernelPCA(n_components=1).fit_transform`` on the pixel-centred (h*w, C)
    matrix: the kernel matrix is double-centred, its top eigenvector ``u`` (eigenvalue ``l``)
    gives the map ``sqrt(l) u``; float64. The sign, arbitrary, is fixed to correlate positively
    with ``reference`` (..., h, w).
    """
    *lead, c, h, w = features.shape
    x = features.reshape(-1, c, h * w).transpose(1, 2).double()
    x = x - x.mean(dim=1, keepdim=True)
    gram = kernel_matrix(x, kernel, gamma)
    gram = gram - gram.mean(dim=1, keepdim=True) - gram.mean(dim=2, keepdim=True) + gram.mean(dim=(1, 2), keepdim=True)
    values, vectors = torch.linalg.eigh(gram)
    projection = vectors[..., -1] * values[..., -1:].clamp_min(0).sqrt()
    ref = reference.reshape(-1, h * w).double()
    agreement = (projection * (ref - ref.mean(dim=1, keepdim=True))).sum(dim=1, keepdim=True)
    sign = torch.where(agreement < 0, -1.0, 1.0)
    return (projection * sign).reshape(*lead, h, w).to(features.dtype)


@register_method("kpcacam", paper="Karmani et al. 2024, KPCA-CAM: Visual Explainability of Deep Computer Vision Models using Kernel PCA")
def kpcacam(activations: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None,
            eigen_smooth: bool = False) -> torch.Tensor:
    """KPCA-CAM: the first kernel principal component of the activations (class-agnostic).

    Eigen-CAM with the covariance replaced by a kernel between pixels (default ``sigmoid``, as
    pytorch-grad-cam's KPCA_CAM; also ``rbf``, ``poly``, ``linear``, ``cosine``), which can
    follow non-linear structure of the features; sign fixed to agree with the mean activation.

    Args:
        activations: (N, C, h, w) output of the target layer.
        kernel: the kernel (see :func:`kernel_matrix`).
        gamma: kernel coefficient; ``None``: 1 / C.
        eigen_smooth: accepted for a uniform interface; the map already is a first component.

    Returns:
        (N, 1, h, w) maps before ReLU and normalisation.
    """
    return kernel_first_component(activations, activations.mean(dim=1), kernel, gamma).unsqueeze(1)
