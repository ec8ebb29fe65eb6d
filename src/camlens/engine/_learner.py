"""``camlens.explain(learn, images)`` for a fastai ``Learner`` (``pip install camlens[fastai]``).

The model is ``learn.model`` (for ``vision_learner``: ``Sequential(body, head)`` with
fastai's concat-pooling head, so use a gradient method such as ``"gradcam"``;
``camlens.analyze_head`` says why CAM is not defined there). Images that are not
already a tensor go through the Learner's own preprocessing: ``learn.dls.test_dl``
applies its item transforms (resize) and batch transforms (normalisation).

Example (needs fastai and a trained Learner)::

    import camlens
    e = camlens.explain(learn, ["cat.jpg", "dog.jpg"], method="gradcam")
    learn.dls.vocab[e.classes[0, 0]]

Nothing here imports fastai: a Learner passed in means fastai is installed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.errors import InputError

__all__ = ["is_learner", "learner_model_and_inputs", "learner_inputs"]


def is_learner(obj: Any) -> bool:
    """Duck-typed: a fastai ``Learner`` has ``.model`` (an ``nn.Module``) and ``.dls``."""
    return not isinstance(obj, nn.Module) and isinstance(getattr(obj, "model", None), nn.Module) and hasattr(obj, "dls")


def learner_inputs(learn: Any, items: Any) -> torch.Tensor:
    """Preprocess images (paths, PIL images, arrays) with the Learner's DataLoaders: (N, C, H, W).

    A tensor is taken as already preprocessed and only moved to the model's device.
    """
    param = next(iter(learn.model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    if isinstance(items, torch.Tensor):
        return items.as_subclass(torch.Tensor).to(device)
    items = list(items) if isinstance(items, (list, tuple)) else [items]
    if not items:
        raise InputError("no images given; pass a path, a PIL image or a list of them")
    try:
        loader = learn.dls.test_dl(items, device=device)
    except Exception as error:  # fastai raises many kinds here; say which step failed
        raise InputError(
            f"learn.dls.test_dl could not preprocess the {len(items)} item(s) "
            f"({type(error).__name__}: {str(error)[:160]}); pass paths or PIL images like the training "
            "items, or a preprocessed (N, C, H, W) tensor"
        ) from None
    batches = [batch[0] if isinstance(batch, (tuple, list)) else batch for batch in loader]
    return torch.cat([b.as_subclass(torch.Tensor) for b in batches]).to(device)


def learner_model_and_inputs(learn: Any, items: Any) -> tuple[nn.Module, torch.Tensor]:
    """``(learn.model, preprocessed inputs)`` for :func:`camlens.explain`."""
    if not is_learner(learn):
        raise InputError(
            f"explain needs an nn.Module or a fastai Learner, got {type(learn).__name__}"
        )
    return learn.model, learner_inputs(learn, items)
