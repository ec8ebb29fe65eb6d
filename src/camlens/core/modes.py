"""Context managers that leave the model as they found it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from .locks import model_lock


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode and restore each one's own flag afterwards.

    Holds the model's lock (:func:`camlens.core.locks.model_lock`) meanwhile, so two threads
    never interleave their flips and restores of one model's flags.
    """
    with model_lock(model):
        flags = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            yield model
        finally:
            for module, training in flags:
                module.training = training
