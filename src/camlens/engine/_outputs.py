"""What a model returned, reduced to the class scores that are explained."""

from __future__ import annotations

from typing import Any

import torch

from ..core.errors import InputError
from ..core.hooks import first_tensor

__all__ = ["logits_of"]


def logits_of(output: Any) -> torch.Tensor:
    """The (N, classes) scores in a model's output (a tensor, a tuple's first tensor, or ``.logits``)."""
    tensor = first_tensor(getattr(output, "logits", output))
    if tensor is None or tensor.dim() != 2:
        shape = None if tensor is None else tuple(tensor.shape)
        raise InputError(f"the model must return class scores of shape (N, classes); it returned {shape}")
    return tensor
