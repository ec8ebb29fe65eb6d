"""ROAD: RemOve And Debias (Rong et al., "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022).

Deletion metrics replace pixels with a constant, and the model may then react to the *shape*
of the hole rather than to the missing evidence (the mask leaks the class). ROAD fills the
removed pixels by *noisy linear imputation*: each removed pixel becomes the weighted mean of
its 8 neighbours (edges 1/6, corners 1/12), all removed pixels at once (a sparse linear
system), plus a little Gaussian noise. Then, for several shares of the pixels:

- MoRF (most relevant first removed): the score should fall; lower is better.
- LeRF (least relevant first removed): the score should stay; higher is better.
- combined: ``(LeRF - MoRF) / 2`` averaged over the shares, higher is better
  (pytorch-grad-cam's ``ROADCombined``).

The linear system is built vectorised in torch and solved by scipy's sparse direct solver
(needs scipy, which the dev and demo extras bring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.errors import InputError
from ..core.modes import evaluation_mode
from ._common import ScoreFn, chunks, flatten_pairs, forward_logits, score_fn

__all__ = ["RoadScores", "noisy_linear_imputation", "removed_count", "road"]

DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


_OFFSETS = ((1, 1, 1 / 12), (0, 1, 1 / 6), (-1, 1, 1 / 12), (1, -1, 1 / 12), (0, -1, 1 / 6), (-1, -1, 1 / 12),
            (1, 0, 1 / 6), (-1, 0, 1 / 6))  # (dy, dx, weight) of Rong et al.'s imputer


def _solve_one(image: torch.Tensor, removed: torch.Tensor):
    """The imputed values (n, C) of one (C, H, W) image's ``removed`` (H, W) pixels (a sparse direct solve)."""
    try:
        from scipy.sparse import csc_matrix
        from scipy.sparse.linalg import spsolve
    except ImportError:
        raise InputError("ROAD's noisy linear imputation solves a sparse linear system with scipy: pip install scipy "
                         "(it comes with the dev and demo extras)") from None
    c, h, w = image.shape
    flat = removed.flatten()
    unknown = flat.nonzero().flatten()
    n = unknown.numel()
    variable = torch.full((h * w,), -1, dtype=torch.long)
    variable[unknown] = torch.arange(n)
    ys, xs = unknown // w, unknown % w
    values = image.reshape(c, -1).double()
    rows, cols, data = [torch.arange(n)], [torch.arange(n)], []
    diagonal = torch.zeros(n, dtype=torch.float64)
    rhs = torch.zeros(n, c, dtype=torch.float64)
    for dy, dx, weight in _OFFSETS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        which = inside.nonzero().flatten()
        neighbour = ny[which] * w + nx[which]
        diagonal[which] -= weight
        is_unknown = flat[neighbour]
        rows.append(which[is_unknown])
        cols.append(variable[neighbour[is_unknown]])
        data.append(torch.full((int(is_unknown.sum()),), weight, dtype=torch.float64))
        known = ~is_unknown
        rhs.index_add_(0, which[known], -weight * values[:, neighbour[known]].T)
    matrix = csc_matrix((torch.cat([diagonal] + data).numpy(), (torch.cat(rows).numpy(), torch.cat(cols).numpy())),
                        shape=(n, n))
    solution = spsolve(matrix, rhs.numpy())
    return torch.as_tensor(solution, dtype=torch.float64).reshape(n, c)


def noisy_linear_imputation(
    images: torch.Tensor, removed: torch.Tensor, noise: float = 0.01, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill the ``removed`` pixels of (B, C, H, W) ``images`` by noisy linear imputation (ROAD).

    Every removed pixel equals the weighted mean of its in-image neighbours (weights 1/6 for
    the 4 edge neighbours, 1/12 for the 4 corners; removed neighbours are unknowns too): the
    sparse linear system of Rong et al.'s ``NoisyLinearImputer``, built vectorised and solved
    directly (scipy's sparse LU, float64; iterative solvers need hundreds of sweeps on large
    holes), then ``noise * N(0, 1)`` is added to the filled pixels.

    Args:
        images: (B, C, H, W) images in the model's input space.
        removed: (B, 1, H, W) or (B, H, W) bool, True where a pixel is removed. An image needs at
            least one kept pixel.
        noise: standard deviation of the noise added to the imputed pixels.
        generator: random generator of the noise (``None``: torch's global one).

    Returns:
        (B, C, H, W) images, kept pixels unchanged.

    Example:
        >>> x = torch.tensor([[[[0.0, 0.0, 0.0], [0.0, 5.0, 0.0], [1.0, 1.0, 1.0]]]])
        >>> hole = torch.zeros(1, 1, 3, 3, dtype=torch.bool); hole[..., 1, 1] = True
        >>> noisy_linear_imputation(x, hole, noise=0.0)[0, 0, 1, 1]  # (1/12 + 1/6 + 1/12) * 1
        tensor(0.3333)
    """
    if images.dim() != 4:
        raise InputError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    if removed.dim() == 4 and removed.shape[1] == 1:
        removed = removed[:, 0]
    if removed.dim() != 3 or tuple(removed.shape) != (images.shape[0], *images.shape[-2:]):
        raise InputError(f"removed must be (B, 1, H, W) for images {tuple(images.shape)}, got {tuple(removed.shape)}")
    removed = removed.bool().cpu()
    if bool(removed.flatten(1).all(dim=1).any()):
        raise InputError("noisy linear imputation needs at least one kept pixel per image; remove less than all")
    out = images.detach().clone()
    for i in range(images.shape[0]):
        if not bool(removed[i].any()):
            continue
        filled = _solve_one(images[i].detach().cpu(), removed[i]).to(images.device, images.dtype)
        if noise:
            filled = filled + noise * torch.randn(filled.shape, generator=generator, dtype=images.dtype,
                                                  device=images.device)
        where = removed[i].flatten().nonzero().flatten().to(images.device)
        out[i].view(images.shape[1], -1)[:, where] = filled.T
    return out


def removed_count(fraction: float, total: int) -> int:
    """Pixels removed for a ``fraction``: those at or above the ``100 (1 - fraction)`` percentile.

    As ``np.percentile`` (linear interpolation) thresholds a tie-free map in pytorch-grad-cam:
    ``total - ceil((1 - fraction) (total - 1))``.
    """
    return total - math.ceil((1 - fraction) * (total - 1) - 1e-9)


@dataclass
class RoadScores:
    """ROAD scores of P (image, class) pairs.

    Attributes:
        fractions: (T,) shares of the pixels removed.
        full: (P,) score of the intact image.
        morf: (P, T) score with the most relevant share removed (and imputed).
        lerf: (P, T) score with the least relevant share removed.
    """

    fractions: torch.Tensor
    full: torch.Tensor
    morf: torch.Tensor
    lerf: torch.Tensor

    @property
    def morf_mean(self) -> float:
        """Mean MoRF score over pairs and shares, lower is better."""
        return float(self.morf.mean())

    @property
    def lerf_mean(self) -> float:
        """Mean LeRF score over pairs and shares, higher is better."""
        return float(self.lerf.mean())

    @property
    def combined(self) -> float:
        """``(LeRF - MoRF) / 2`` averaged over pairs and shares (pytorch-grad-cam's ROADCombined), higher is better."""
        return (self.lerf_mean - self.morf_mean) / 2

    def __repr__(self) -> str:
        return (f"RoadScores(pairs={self.full.numel()}, fractions={self.fractions.numel()}, morf={self.morf_mean:.4f}, "
                f"lerf={self.lerf_mean:.4f}, combined={self.combined:.4f})")


def road(
    model: nn.Module, inputs: torch.Tensor, maps: Any, classes: Any = None, *,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS, noise: float = 0.01, seed: int = 0,
    score: str | ScoreFn = "softmax", batch_size: int = 32, progress: bool = False,
) -> RoadScores:
    """ROAD (Rong et al. 2022): scores after removing the most / least relevant pixels, imputed.

    For each share ``f`` in ``fractions`` the ``f`` most relevant pixels of the map (MoRF) or
    the ``f`` least relevant (LeRF) are removed and filled by :func:`noisy_linear_imputation`,
    and the class score is recorded. Pixels are ranked most relevant first, equal values in raster
    order (as in :func:`~camlens.metrics.deletion_curve`). pytorch-grad-cam's
    ``ROADMostRelevantFirst(percentile=p)`` and ``ROADLeastRelevantFirst(percentile=p)`` remove the
    share ``f = 1 - p / 100`` (:func:`removed_count`); the default shares are its default percentiles.

    Args:
        model: classifier returning (N, classes); run in eval mode, flags restored.
        inputs: (N, C, H, W) normalised images.
        maps: (N, H, W), (N, K, H, W) with (N, K) ``classes``, or an Explanation.
        classes: (N,) or (N, K); ``None``: the Explanation's, else top-1.
        fractions: shares of the pixels removed, each in (0, 1).
        noise: imputation noise (Rong et al.: 0.01), drawn from a generator seeded with ``seed``.
        score: ``"softmax"`` (default), ``"logit"``, ``"sigmoid"`` or a callable on logits.
        batch_size: imputed images per forward pass.
        progress: show a progress bar.

    Returns:
        :class:`RoadScores`; ``.morf_mean``, ``.lerf_mean`` and ``.combined``.
    """
    fractions = tuple(float(f) for f in fractions)
    if not fractions or any(not 0 < f < 1 for f in fractions):
        raise InputError(f"fractions={fractions!r}: give shares of the pixels strictly between 0 and 1")
    image_index, flat_maps, cls = flatten_pairs(inputs, maps, classes, model, batch_size=batch_size)
    pairs, height, width = flat_maps.shape
    total = height * width
    order = flat_maps.flatten(1).argsort(dim=1, descending=True, stable=True)  # most relevant first
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(total, device=order.device).expand_as(order))
    rank = rank.view(pairs, 1, height, width)
    counts = torch.tensor([removed_count(f, total) for f in fractions], device=inputs.device)
    points = len(fractions)
    to_score = score_fn(score)
    generator = torch.Generator(device=inputs.device).manual_seed(seed)
    jobs_total = pairs * points * 2
    results = torch.empty(jobs_total, device=inputs.device)
    with evaluation_mode(model), torch.no_grad():
        full = torch.cat([to_score(forward_logits(model, inputs[image_index[job]])).gather(1, cls[job, None])[:, 0]
                          for job in chunks(pairs, batch_size)])
        for job in tqdm(list(chunks(jobs_total, batch_size)), desc="ROAD", unit="batch", leave=False, disable=not progress):
            flat = torch.arange(job.start, job.stop, device=inputs.device)
            lerf, rest = flat // (pairs * points), flat % (pairs * points)
            p, t = rest // points, rest % points
            r = rank[p]
            removed = torch.where(lerf.view(-1, 1, 1, 1).bool(), r >= total - counts[t].view(-1, 1, 1, 1),
                                  r < counts[t].view(-1, 1, 1, 1))
            x = noisy_linear_imputation(inputs[image_index[p]], removed, noise, generator)
            results[job] = to_score(forward_logits(model, x)).gather(1, cls[p, None])[:, 0]
    results = results.view(2, pairs, points)
    return RoadScores(torch.tensor(fractions), full, results[0], results[1])
