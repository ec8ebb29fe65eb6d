"""What a model returned, reduced to the part that is explained.

:func:`select_output` picks one output of a model that returns several (a tuple, a dict, a
Hugging Face ``ModelOutput``): the one named by ``output=``, else the logits when that is
unambiguous, else an error that lists every output with its shape. :func:`logits_of` then
checks that the pick is (N, classes) class scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..core.errors import InputError

__all__ = ["logits_of", "select_output", "is_detection_output", "describe_outputs"]


def is_detection_output(output: Any) -> bool:
    """A torchvision detector's output: a list of dicts with ``boxes``, ``scores``, ``labels``."""
    return (isinstance(output, (list, tuple)) and len(output) > 0
            and all(isinstance(o, Mapping) and {"boxes", "scores", "labels"} <= set(o) for o in output))


def _shape(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return str(list(value.shape))
    return type(value).__name__


def describe_outputs(output: Any) -> str:
    """``[0]: [2, 512], [1]: [2, 10]`` or ``'out': [2, 21, 64, 64], 'aux': ...``."""
    if isinstance(output, Mapping) or hasattr(output, "keys"):
        return ", ".join(f"{key!r}: {_shape(output[key])}" for key in output.keys())
    return ", ".join(f"[{i}]: {_shape(v)}" for i, v in enumerate(output))


def select_output(output: Any, key: Any = None) -> Any:
    """The output to explain: ``output[key]`` when ``key`` is given, else the unambiguous one.

    Without ``key``: a tensor as is; ``.logits`` (Hugging Face); a dict's ``"out"``
    (torchvision segmentation) or ``"logits"``, or its only tensor; a tuple's only tensor, or
    its only 2-D tensor; a detector's list of dicts as is (detection targets read it).
    Anything else is ambiguous: an :class:`InputError` lists each output with its shape.
    """
    if key is not None:
        try:
            if isinstance(output, (list, tuple)) and not isinstance(key, int):
                raise KeyError(key)
            if isinstance(output, torch.Tensor):
                raise InputError(f"output={key!r}: the model returns one tensor {list(output.shape)}; leave output= out")
            return output[key]
        except (KeyError, IndexError, TypeError):
            raise InputError(f"output={key!r} is not one of the model's outputs: {describe_outputs(output)}") from None
    if isinstance(output, torch.Tensor) or is_detection_output(output):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping):
        for name in ("out", "logits"):
            if isinstance(output.get(name), torch.Tensor):
                return output[name]
        tensors = [k for k, v in output.items() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return output[tensors[0]]
        raise InputError(
            f"the model returns a dict of outputs ({describe_outputs(output)}) and none is called 'out' or "
            "'logits'; pick one with output='key'"
        )
    if isinstance(output, (list, tuple)):
        tensors = [i for i, v in enumerate(output) if isinstance(v, torch.Tensor)]
        two_d = [i for i in tensors if output[i].dim() == 2]
        if len(tensors) == 1:
            return output[tensors[0]]
        if len(two_d) == 1:
            return output[two_d[0]]
        raise InputError(
            f"the model returns {len(output)} outputs ({describe_outputs(output)}) and which are the class "
            "scores is ambiguous; pick one with output=index (e.g. output=1 for (embedding, logits))"
        )
    raise InputError(f"the model returned {type(output).__name__}; camlens needs a tensor, a tuple or a dict of them")


def logits_of(output: Any) -> torch.Tensor:
    """The (N, classes) scores in a model's output (see :func:`select_output`)."""
    tensor = select_output(output)
    if is_detection_output(tensor):
        raise InputError(
            "this is a detection model (it returns boxes, scores and labels per image), not a classifier; "
            "explain a detection with target=camlens.targets.BoxScore(box) or "
            "camlens.explain_detections(model, image)"
        )
    if isinstance(tensor, torch.Tensor) and tensor.dim() == 4:
        raise InputError(
            f"the model returns dense scores {list(tensor.shape)} (a segmentation model): explain a class "
            "over a region with target=camlens.targets.SegmentationMask(class_index)"
        )
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 2:
        shape = _shape(tensor)
        raise InputError(
            f"the model must return class scores of shape (N, classes); it returned {shape}. For other "
            "outputs pass a target: camlens.targets.Regression, Similarity, SegmentationMask, BoxScore or a "
            "callable outputs -> (N,) or (N, K)"
        )
    return tensor
