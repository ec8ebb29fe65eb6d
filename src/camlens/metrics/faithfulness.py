"""Does the model need what the map points at? Deletion/insertion and confidence drop.

- Deletion and insertion (Petsiuk et al., "RISE: Randomized Input Sampling for
  Explanation of Black-box Models", BMVC 2018): remove (or add) pixels in the order of
  the map, most salient first, and follow the class score. A faithful map makes the
  score fall fast on deletion (low AUC) and rise fast on insertion (high AUC).
- Average drop and increase in confidence (Chattopadhay et al., "Grad-CAM++", WACV
  2018): show the model only the explained part, ``x * map``, and compare the score.

All batched torch: every (pair, step) image is built on the fly from a rank map and
scored ``batch_size`` at a time, so memory stays at one batch of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.modes import evaluation_mode
from ..core.errors import InputError
from ._common import ScoreFn, chunks, flatten_pairs, forward_logits, make_baseline, score_fn

__all__ = ["Curves", "ConfidenceChange", "auc", "deletion_curve", "insertion_curve", "confidence_change"]


def auc(curve: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    """Area under curves by the trapezoid rule: (..., T) -> (...).

    ``x`` are the T abscissae (default: evenly spaced on [0, 1]), so a score that is 1
    everywhere has AUC 1.

    Example:
        >>> auc(torch.tensor([1.0, 0.5, 0.0]))
        tensor(0.5000)
        >>> auc(torch.tensor([0.0, 1.0, 1.0]), x=torch.tensor([0.0, 0.25, 1.0]))
        tensor(0.8750)
    """
    curve = torch.as_tensor(curve).float()
    if curve.shape[-1] < 2:
        raise InputError(f"a curve needs at least 2 points for an area, got {curve.shape[-1]}")
    if x is None:
        x = torch.linspace(0, 1, curve.shape[-1], device=curve.device)
    return torch.trapezoid(curve, torch.as_tensor(x, dtype=curve.dtype, device=curve.device), dim=-1)


@dataclass
class Curves:
    """Deletion or insertion curves of P (image, class) pairs.

    Attributes:
        mode: ``"deletion"`` or ``"insertion"``.
        fractions: (T,) share of the pixels removed (deletion) or inserted (insertion).
        scores: (P, T) the class score after each step.
        auc: (P,) area under each curve over ``fractions``.
    """

    mode: str
    fractions: torch.Tensor
    scores: torch.Tensor
    auc: torch.Tensor

    @property
    def mean_auc(self) -> float:
        return float(self.auc.mean())

    def __repr__(self) -> str:
        return f"Curves(mode={self.mode!r}, pairs={self.scores.shape[0]}, points={self.fractions.numel()}, mean_auc={self.mean_auc:.4f})"


def _step_pixels(step: int | float, total: int) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, float)):
        raise InputError(f"step must be a pixel count (int >= 1) or a fraction of the pixels (0 < float <= 1), got {step!r}")
    if isinstance(step, float):
        if not 0 < step <= 1:
            raise InputError(f"a fractional step must be in (0, 1], got {step}; for a pixel count pass an int")
        return max(1, round(step * total))
    if step < 1:
        raise InputError(f"step must be at least 1 pixel, got {step}")
    return step


def _rank(maps: torch.Tensor) -> torch.Tensor:
    """(P, H, W) maps -> (P, H, W) rank of each pixel, 0 = most salient; ties keep raster order."""
    flat = maps.flatten(1)
    order = flat.argsort(dim=1, descending=True, stable=True)
    positions = torch.arange(flat.shape[1], device=maps.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions).view_as(maps)


def _curves(
    mode: str, model: nn.Module, inputs: torch.Tensor, maps: Any, classes: Any, step: int | float,
    baseline: str | float | torch.Tensor, score: str | ScoreFn, batch_size: int, progress: bool,
) -> Curves:
    image_index, flat_maps, cls = flatten_pairs(inputs, maps, classes, model, batch_size=batch_size)
    pairs, height, width = flat_maps.shape
    total = height * width
    per_step = _step_pixels(step, total)
    counts = torch.arange(0, total + per_step, per_step, device=inputs.device).clamp(max=total).unique()
    points = counts.numel()
    rank = _rank(flat_maps).unsqueeze(1)  # (P, 1, H, W)
    base = make_baseline(inputs, baseline)
    to_score = score_fn(score)
    scores = torch.empty(pairs * points, device=inputs.device)
    jobs = list(chunks(pairs * points, batch_size))
    with evaluation_mode(model), torch.no_grad():
        for job in tqdm(jobs, desc=mode, unit="batch", leave=False, disable=not progress):
            flat = torch.arange(job.start, job.stop, device=inputs.device)
            p, t = flat // points, flat % points
            top = rank[p] < counts[t].view(-1, 1, 1, 1)  # (B, 1, H, W): the counts[t] most salient pixels
            image, filler = inputs[image_index[p]], base[image_index[p]]
            x = torch.where(top, image, filler) if mode == "insertion" else torch.where(top, filler, image)
            scores[job] = to_score(forward_logits(model, x)).gather(1, cls[p, None])[:, 0]
    fractions = counts.float() / total
    scores = scores.view(pairs, points)
    return Curves(mode, fractions, scores, auc(scores, fractions))


def deletion_curve(
    model: nn.Module, inputs: torch.Tensor, maps: Any, classes: Any = None, *, step: int | float = 0.05,
    baseline: str | float | torch.Tensor = "zeros", score: str | ScoreFn = "softmax", batch_size: int = 64,
    progress: bool = True,
) -> Curves:
    """Deletion curves (RISE, Petsiuk et al. 2018): lower AUC is better.

    Pixels are replaced by ``baseline``, most salient first, ``step`` at a time, and
    the class score is recorded after each step (the first point is the intact image,
    the last the whole baseline).

    Args:
        model: classifier returning (N, classes); run in eval mode, flags restored.
        inputs: (N, C, H, W) normalised images.
        maps: (N, H, W) one map per image, (N, K, H, W) with (N, K) ``classes``, or an
            :class:`~camlens.Explanation`. Maps are at the input's size (H, W).
        classes: (N,) or (N, K) class indices; ``None``: the Explanation's, else top-1.
        step: pixels per step (int; RISE uses 224 on 224x224) or a fraction of the
            pixels (float; 0.05 gives 21 points).
        baseline: ``"zeros"`` (RISE's deletion), ``"blur"``, ``"mean"``, a number or a tensor.
        score: ``"softmax"`` (probability, as in RISE), ``"logit"``, ``"sigmoid"`` or a callable.
        batch_size: perturbed images per forward pass.
        progress: show a progress bar.

    Returns:
        :class:`Curves` with fractions (T,), scores (P, T) and auc (P,), P = N*K.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = torch.nn.init.zeros_(model[1].weight); model[1].weight.data[0] = torch.tensor([4., 3., 2., 1.])
        >>> x = torch.ones(1, 1, 2, 2)
        >>> c = deletion_curve(model, x, model[1].weight[0].view(1, 2, 2), 0, step=1, score="logit", progress=False)
        >>> c.scores, c.auc
        (tensor([[10.,  6.,  3.,  1.,  0.]]), tensor([3.7500]))
    """
    return _curves("deletion", model, inputs, maps, classes, step, baseline, score, batch_size, progress)


def insertion_curve(
    model: nn.Module, inputs: torch.Tensor, maps: Any, classes: Any = None, *, step: int | float = 0.05,
    baseline: str | float | torch.Tensor = "blur", score: str | ScoreFn = "softmax", batch_size: int = 64,
    progress: bool = True,
) -> Curves:
    """Insertion curves (RISE, Petsiuk et al. 2018): higher AUC is better.

    Starts from ``baseline`` (RISE: a blurred copy of the image) and puts the original
    pixels back, most salient first. Arguments as in :func:`deletion_curve`.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = torch.nn.init.zeros_(model[1].weight); model[1].weight.data[0] = torch.tensor([4., 3., 2., 1.])
        >>> x = torch.ones(1, 1, 2, 2)
        >>> c = insertion_curve(model, x, model[1].weight[0].view(1, 2, 2), 0, step=1, baseline="zeros",
        ...                     score="logit", progress=False)
        >>> c.scores, c.auc
        (tensor([[ 0.,  4.,  7.,  9., 10.]]), tensor([6.2500]))
    """
    return _curves("insertion", model, inputs, maps, classes, step, baseline, score, batch_size, progress)


@dataclass
class ConfidenceChange:
    """Scores of P (image, class) pairs on the whole image and on the image masked by the map.

    Attributes:
        full: (P,) score on the image (Y in Chattopadhay et al.).
        masked: (P,) score on ``baseline + map * (image - baseline)`` (O).
    """

    full: torch.Tensor
    masked: torch.Tensor

    @property
    def drop(self) -> torch.Tensor:
        """(P,) relative drop max(0, Y - O) / Y (meant for positive scores, e.g. softmax)."""
        return (self.full - self.masked).clamp_min(0) / self.full

    @property
    def increase(self) -> torch.Tensor:
        """(P,) bool: the masked image scores higher than the whole image (O > Y)."""
        return self.masked > self.full

    @property
    def average_drop(self) -> float:
        """Average drop in percent, lower is better."""
        return 100.0 * float(self.drop.mean())

    @property
    def increase_in_confidence(self) -> float:
        """Share of pairs whose score rose, in percent; higher is better."""
        return 100.0 * float(self.increase.float().mean())

    def __repr__(self) -> str:
        return (f"ConfidenceChange(pairs={self.full.numel()}, average_drop={self.average_drop:.2f}%, "
                f"increase_in_confidence={self.increase_in_confidence:.2f}%)")


def confidence_change(
    model: nn.Module, inputs: torch.Tensor, maps: Any, classes: Any = None, *,
    baseline: str | float | torch.Tensor = "zeros", score: str | ScoreFn = "softmax", batch_size: int = 64,
    progress: bool = False,
) -> ConfidenceChange:
    """Average drop and increase in confidence (Grad-CAM++, Chattopadhay et al. 2018).

    The model sees ``baseline + map * (image - baseline)``: with the default zero
    baseline that is the paper's ``image * map``. Maps must be in [0, 1] (as
    ``Explanation.maps`` are). Arguments as in :func:`deletion_curve`.

    Returns:
        :class:`ConfidenceChange`; ``.average_drop`` and ``.increase_in_confidence`` in percent.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = torch.nn.init.zeros_(model[1].weight); model[1].weight.data[0] = torch.tensor([4., 3., 2., 1.])
        >>> change = confidence_change(model, torch.ones(1, 1, 2, 2), torch.tensor([[[1., .5], [0., 0.]]]), 0,
        ...                            score="logit")
        >>> change.full, change.masked, round(change.average_drop, 2)
        (tensor([10.]), tensor([5.5000]), 45.0)
    """
    image_index, flat_maps, cls = flatten_pairs(inputs, maps, classes, model, batch_size=batch_size)
    if flat_maps.numel() and (flat_maps.min() < 0 or flat_maps.max() > 1):
        raise InputError("confidence_change needs maps in [0, 1]; normalise them (camlens.normalize_maps) or pass Explanation.maps")
    base = make_baseline(inputs, baseline)
    to_score = score_fn(score)
    pairs = cls.numel()
    full = torch.empty(pairs, device=inputs.device)
    masked = torch.empty(pairs, device=inputs.device)
    with evaluation_mode(model), torch.no_grad():
        full_by_image = torch.cat([to_score(forward_logits(model, inputs[job])) for job in chunks(inputs.shape[0], batch_size)])
        full = full_by_image[image_index, cls]
        for job in tqdm(list(chunks(pairs, batch_size)), desc="confidence", unit="batch", leave=False, disable=not progress):
            image, filler = inputs[image_index[job]], base[image_index[job]]
            x = filler + flat_maps[job, None] * (image - filler)
            masked[job] = to_score(forward_logits(model, x)).gather(1, cls[job, None])[:, 0]
    return ConfidenceChange(full, masked)
