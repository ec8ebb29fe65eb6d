"""Score-CAM (Wang et al., CVPRW 2020) and its smoothed (SS-CAM) and integrated (IS-CAM) variants.

Each channel's upsampled, min-max normalised activation map masks the input; the class
score of the masked input, soft-maxed over channels, weights the channel.

What makes it fast without changing the result (see :class:`camlens.Scorer` for the batching):

- masks are compared at the layer's resolution: channels whose normalised map is identical
  (in particular every constant or dead channel, whose mask is all zero) are scored once;
- masked forwards run batched under ``torch.inference_mode``; on the CPU in cache-sized
  chunks, on a copy of the model with BatchNorm and zero padding folded into the
  convolutions, in ``channels_last`` memory format.

Exact mode still needs one forward per distinct mask, as the reference algorithm does, so
its speed is bounded by the model's forward throughput: on 2 CPU cores it is 1.2-1.5x faster
than the faster of pytorch-grad-cam and torchcam on a random-weight resnet18 (all 512 masks
distinct) and 3-6.5x on the pretrained EfficientNet-Lite0's head (754 of 1280 channels dead
for the cat photo); see the README's performance section.

Fast mode (``top_k=``): only the ``top_k`` channels with the largest Grad-CAM contribution
``relu(mean_ij dS/dA_k) * mean_ij A_k`` (one backward through the head) are scored; the others
get weight 0. Measured agreement with the exact map (Pearson r, benchmarks/bench_methods.py,
a real photo at 224x224): r = 0.994 with ``top_k=64`` of 512 channels for resnet18 (random
weights; 8x fewer masked forwards), r = 0.998 with 64 of 1280 for the pretrained
EfficientNet-Lite0 at its head. It is a heuristic: check it on your model with the benchmark
before relying on it.
"""

from __future__ import annotations

import torch

from ..core.errors import InputError
from ..core.postprocess import normalize_maps, upsample_maps
from ._combine import elementwise_sum, weighted_sum
from ._registry import register_method

__all__ = ["masks_from_activations", "scorecam", "sscam", "iscam", "score_weights"]


def masks_from_activations(activations: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Score-CAM masks: each channel bilinearly upsampled to ``size``, min-max normalised.

    A constant (e.g. dead) channel gives an all-zero mask, never NaN.

    Args:
        activations: (N, C, h, w).
        size: (H, W) of the input.

    Returns:
        (N, C, H, W) in [0, 1].
    """
    return normalize_maps(upsample_maps(activations.float(), size))


def score_weights(scores: torch.Tensor) -> torch.Tensor:
    """Score-CAM weights: softmax over channels of the masked inputs' class scores.

    Args:
        scores: (N, C, K) score of each class for the input masked by each channel
            (``-inf`` for a channel not scored, which then gets weight 0).

    Returns:
        (N, K, C) weights summing to 1 over channels.
    """
    return torch.softmax(scores.transpose(1, 2).float(), dim=-1)


def _selected_channels(activations: torch.Tensor, scorer, top_k: int | None) -> torch.Tensor:
    """(N, C) bool: the channels to score (all, or the top_k by Grad-CAM contribution)."""
    n, c = activations.shape[:2]
    if top_k is None or top_k >= c:
        return torch.ones(n, c, dtype=torch.bool, device=activations.device)
    contribution = scorer.channel_importance()  # (N, K, C)
    best = contribution.amax(dim=1).topk(int(top_k), dim=1).indices
    return torch.zeros(n, c, dtype=torch.bool, device=activations.device).scatter_(1, best, True)


def _score_channels(activations, scorer, top_k, scales=(1.0,), noise_std=0.0, samples=1, seed=0):
    """(N, C, K) mean class score of the input masked by each channel's mask (times each scale).

    Channels whose normalised low-resolution maps are identical are scored once.
    """
    n, c, h, w = activations.shape
    low = normalize_maps(activations.float()).flatten(2)  # identical here <=> identical masks
    selected = _selected_channels(activations, scorer, top_k)
    generator = torch.Generator(device=scorer.inputs.device).manual_seed(seed)
    out = torch.full((n, c, scorer.classes.shape[1]), float("-inf"), device=activations.device)
    for i in range(n):
        channels = selected[i].nonzero().flatten()
        unique, inverse = torch.unique(low[i, channels], dim=0, return_inverse=True)
        low_maps = unique.view(1, -1, h, w)
        masks = scorer.masks(low_maps)  # (M, H, W)
        image = scorer.inputs[i]
        if noise_std > 0:
            noise = torch.randn((samples, *masks.shape), generator=generator, device=masks.device) * noise_std
        total = 0
        for s in range(samples):
            for scale in scales:
                def make(sl, s=s, scale=scale):
                    m = masks[sl] if noise_std == 0 else masks[sl] + noise[s, sl]
                    return image * (scale * m).unsqueeze(1).to(image.dtype)

                total = total + scorer.score_inputs(i, make, masks.shape[0])
        out[i, channels] = (total / (samples * len(scales)))[inverse].float()
    return out


@register_method("scorecam", paper="Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for CNNs")
def scorecam(activations: torch.Tensor, scorer, top_k: int | None = None, eigen_smooth: bool = False) -> torch.Tensor:
    """Score-CAM: channels weighted by the softmax of the scores of the inputs they mask.

    ``H_k = normalise(upsample(A_k))``, ``s_k = S_c(x * H_k)``, ``w = softmax_k(s)``,
    ``M = sum_k w_k A_k``. (The paper's baseline score ``S_c(x_b)`` is the same for every
    channel and cancels in the softmax.) Exact by default; ``top_k`` gives the fast mode
    described in the module docstring.

    Args:
        activations: (N, C, h, w) output of the target layer.
        scorer: re-runs the model on masked inputs (provided by :func:`camlens.explain`).
        top_k: score only this many channels per image (fast mode); ``None``: all.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.
    """
    weights = score_weights(_score_channels(activations, scorer, top_k))
    return weighted_sum(weights, activations, eigen_smooth)


@register_method("sscam", paper="Wang et al. 2020, SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization")
def sscam(
    activations: torch.Tensor, scorer, samples: int = 10, noise_std: float = 2.0,
    seed: int = 0, top_k: int | None = None, eigen_smooth: bool = False,
) -> torch.Tensor:
    """SS-CAM: Score-CAM with each channel's score averaged over noisy masks.

    ``s_k = mean_i S_c(x * (H_k + d_i))``, ``d_i ~ N(0, noise_std^2)`` per pixel (torchcam's
    defaults: std 2.0 on the [0, 1] mask); ``w = softmax_k(s)``. Seeded, so deterministic.

    Args:
        activations: (N, C, h, w) output of the target layer.
        scorer: re-runs the model on masked inputs (provided by :func:`camlens.explain`).
        samples: noisy masks per channel.
        noise_std: standard deviation of the mask noise.
        seed: seed of the noise generator.
        top_k: score only this many channels per image (fast mode); ``None``: all.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.
    """
    if noise_std < 0:
        raise InputError(f"noise_std={noise_std} is a standard deviation: it must be >= 0")
    scores = _score_channels(activations, scorer, top_k, noise_std=noise_std, samples=samples, seed=seed)
    return weighted_sum(score_weights(scores), activations, eigen_smooth)


@register_method("iscam", paper="Naidu et al. 2020, IS-CAM: Integrated Score-CAM for axiomatic-based explanations")
def iscam(
    activations: torch.Tensor, scorer, samples: int = 10, top_k: int | None = None, eigen_smooth: bool = False
) -> torch.Tensor:
    """IS-CAM: Score-CAM with each channel's score integrated along growing masks.

    As in the paper's algorithm (and torchcam), the mask is accumulated: step ``i`` scores
    ``x * c_i H_k`` with ``c_i = sum_{j <= i} j / samples``; ``s_k`` is the mean over the
    ``samples`` steps and ``w = softmax_k(s)``.

    Args:
        activations: (N, C, h, w) output of the target layer.
        scorer: re-runs the model on masked inputs (provided by :func:`camlens.explain`).
        samples: integration steps.
        top_k: score only this many channels per image (fast mode); ``None``: all.
        eigen_smooth: first principal component of the weighted activations instead of their sum.

    Returns:
        (N, K, h, w) maps before ReLU and normalisation.
    """
    scales = tuple(sum(j / samples for j in range(1, i + 1)) for i in range(1, samples + 1))
    scores = _score_channels(activations, scorer, top_k, scales=scales)
    return weighted_sum(score_weights(scores), activations, eigen_smooth)
