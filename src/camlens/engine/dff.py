"""``camlens.dff``: Deep Feature Factorization (Collins et al. 2018) of a model's activations, labelled."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.errors import InputError
from ..core.hooks import get_module, parse_layer_name
from ..core.modes import evaluation_mode
from ..core.postprocess import finalize_maps
from ..methods.dff import factorize
from ._outputs import logits_of
from .explain import _check_inputs, _resolve_layers

__all__ = ["Concepts", "dff"]


@dataclass
class Concepts:
    """The result of :func:`dff`: k concepts shared by the images.

    Attributes:
        vectors: (C, k) each concept's direction in the target layer's channel space.
        maps: (N, k, H, W) in [0, 1] at the input's resolution: where each concept is.
        raw: (N, k, h, w) the NMF strengths at the layer's resolution.
        scores: (k, classes) the model's output when the target layer outputs the concept
            vector at every position (what the concept alone says).
        labels: per concept, its ``top`` classes and their probabilities (softmax of ``scores``).
        target_layer: the layer factorised.
    """

    vectors: torch.Tensor
    maps: torch.Tensor
    raw: torch.Tensor
    scores: torch.Tensor
    labels: list[list[tuple[int, float]]]
    target_layer: str

    def label_text(self, names=None) -> list[str]:
        """One line per concept: ``"tabby 0.61, tiger cat 0.20"`` (``names``: a list or a function of the class index)."""
        name = names if callable(names) else (lambda c: names[c]) if names is not None else str  # noqa: E731
        return [", ".join(f"{name(c)} {p:.2f}" for c, p in concept) for concept in self.labels]

    def figure(self, image, index: int = 0, names=None, alpha: float = 0.6):
        """The image with each pixel coloured by its strongest concept (a matplotlib Figure)."""
        from ..viz.concepts import plot_concepts

        return plot_concepts(image, self.maps[index], self.label_text(names), alpha=alpha)

    def __repr__(self) -> str:
        return f"Concepts(k={self.vectors.shape[1]}, target_layer={self.target_layer!r}, maps={tuple(self.maps.shape)})"


class _Store:
    def __init__(self) -> None:
        self.output = None

    def __call__(self, module, args, output):
        if self.output is None:
            self.output = output.detach()


class _Constant:
    def __init__(self, value: torch.Tensor) -> None:
        self.value, self.done = value, False

    def __call__(self, module, args, output):
        if not self.done:
            self.done = True
            return self.value
        return None


def dff(model: nn.Module, inputs: torch.Tensor, k: int = 5, target_layer=None, *, top: int = 2,
        iterations: int = 200, seed: int = 0) -> Concepts:
    """Deep Feature Factorization: k concepts in the activations of ``inputs``, labelled by the model.

    The target layer's activations of all images are factorised together into ``k`` non-negative
    concepts (:func:`camlens.methods.dff.factorize`, torch multiplicative-update NMF); each concept
    is labelled by running the layers after the target with the concept vector at every position,
    so the label is the model's own reading of the concept (any head, not only GAP + linear).

    Args:
        model: a CNN classifier (evaluated in eval mode, flags restored).
        inputs: (N, C, H, W) normalised images.
        k: number of concepts.
        target_layer: as in :func:`camlens.explain` (``None``: found automatically).
        top: classes kept per concept label.
        iterations, seed: of the NMF.

    Returns:
        :class:`Concepts`; ``.figure(image)`` draws the concepts as colours.

    Example:
        >>> import torch, torchvision
        >>> concepts = dff(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64), k=3)
        >>> concepts.vectors.shape, concepts.maps.shape, len(concepts.labels)
        (torch.Size([512, 3]), torch.Size([1, 3, 64, 64]), 3)
    """
    _check_inputs(model, inputs)
    if isinstance(target_layer, (list, tuple)):
        raise InputError("dff factorises one layer; pass one target_layer")
    layer = _resolve_layers(model, inputs, target_layer)[0]
    base, _ = parse_layer_name(layer)
    module = get_module(model, base)
    store = _Store()
    handle = module.register_forward_hook(store)
    try:
        with evaluation_mode(model), torch.no_grad():
            model(inputs)
    finally:
        handle.remove()
    if not isinstance(store.output, torch.Tensor) or store.output.dim() != 4:
        raise InputError(f"dff needs a (N, C, h, w) feature map at {layer!r}; pick a convolutional layer")
    vectors, raw = factorize(store.output, k, iterations, seed)
    h, w = store.output.shape[-2:]
    constant = _Constant(vectors.T[:, :, None, None].expand(k, -1, h, w).contiguous())
    handle = module.register_forward_hook(constant)
    try:
        with evaluation_mode(model), torch.no_grad():
            scores = logits_of(model(inputs[:1].expand(k, *inputs.shape[1:])))
    finally:
        handle.remove()
    probs = scores.float().softmax(dim=1)
    best = probs.topk(min(top, probs.shape[1]), dim=1)
    labels = [[(int(c), float(p)) for c, p in zip(cs, ps)] for cs, ps in zip(best.indices, best.values)]
    return Concepts(vectors, finalize_maps(raw, tuple(inputs.shape[-2:])), raw, scores, labels, layer)
