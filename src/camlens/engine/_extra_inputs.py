"""Method inputs beyond the target layer's activations and gradients.

:func:`camlens.explain` computes these only when a requested method names them:

On the graph of the main pass (the forward has gradient recording on from the target layer,
so these cost a backward through the head only, never a new forward):

- ``logits``: (N, classes) the scores explained (pre-softmax where the model ends in one).
- ``classes``: (N, K) the explained class indices.
- ``logit_gradients``: a function ``target_fn -> (N, J, C, h, w)``: gradients w.r.t. the
  activations of ``target_fn(logits)``, any (N, J) function of the logits (Finer-CAM's
  weighted class differences). The main pass keeps its graph for it.
- ``hessian_products``: (N, K, C, h, w) ``H_k A``, the Hessian of each class score w.r.t.
  the activations times the activations (Shapley-CAM), by double backward.

From one extra forward and full backward from the input (these need the whole network):

- ``inputs``: (N, C_in, H, W) the inputs.
- ``input_gradients``: (N, K, C_in, H, W) d score_k / d inputs.
- ``bias_gradients``: one (N, K, C_l, h_l, w_l) tensor per Conv2d / BatchNorm2d with a bias:
  its bias (BatchNorm: the effective bias ``b - mean * w / sqrt(var + eps)``) times
  d score_k / d (layer output) (FullGrad), in the same backward as ``input_gradients``.
- ``guided_gradients``: (N, K, C_in, H, W) input gradients with the guided-backpropagation
  rule at every ReLU (:class:`GuidedReLUs`), from a forward of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..core.errors import InputError, LayerNotExecutedError
from ..core.heads import HeadRecorder
from ..core.modes import evaluation_mode
from ._outputs import logits_of

__all__ = ["GRAPH_INPUTS", "PASS_INPUTS", "GuidedReLUs", "graph_inputs", "pass_inputs", "keeps_graph"]

GRAPH_INPUTS = ("logits", "classes", "logit_gradients", "hessian_products")
PASS_INPUTS = ("inputs", "input_gradients", "bias_gradients", "guided_gradients")


def keeps_graph(needs: set[str]) -> bool:
    """Whether the main pass must keep its graph after the first backward."""
    return bool(needs & {"logit_gradients", "hessian_products"})


def _per_column(targets: torch.Tensor, wrt: list[torch.Tensor], create_graph: bool = False) -> list[torch.Tensor]:
    """d targets[:, j] / d wrt for each column j: a list of (N, J, ...) tensors, one per ``wrt``."""
    columns = []
    for j in range(targets.shape[1]):
        grads = torch.autograd.grad(targets[:, j].sum(), wrt, retain_graph=True, create_graph=create_graph,
                                    allow_unused=True)
        columns.append([torch.zeros_like(t) if g is None else g for g, t in zip(grads, wrt)])
    return [torch.stack(per_input, dim=1) for per_input in zip(*columns)]


def hessian_products(scores: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """(N, K, C, h, w) ``H_k A``: d/dA <d score_k / dA, A> with A held fixed (a Hessian-vector product).

    Exactly zero for a network that is piecewise linear after the target layer (ReLU, max
    pooling, linear layers): Shapley-CAM then equals Grad-CAM.
    """
    products = []
    with torch.enable_grad():
        for k in range(scores.shape[1]):
            (grad,) = torch.autograd.grad(scores[:, k].sum(), activations, retain_graph=True, create_graph=True)
            if not grad.requires_grad:  # nothing second-order after the target layer
                products.append(torch.zeros_like(activations))
                continue
            (product,) = torch.autograd.grad(grad, activations, grad_outputs=activations.detach(), retain_graph=True,
                                             allow_unused=True)
            products.append(torch.zeros_like(activations) if product is None else product)
    return torch.stack(products, dim=1).detach()


def graph_inputs(needs: set[str], logits: torch.Tensor, class_index: torch.Tensor,
                 activations: torch.Tensor) -> dict[str, Any]:
    """The graph inputs named in ``needs`` for one target layer (see the module docstring)."""
    available: dict[str, Any] = {}
    if "logits" in needs:
        available["logits"] = logits.detach()
    if "classes" in needs:
        available["classes"] = class_index
    if "logit_gradients" in needs:
        def logit_gradients(target_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
            with torch.enable_grad():
                targets = target_fn(logits)
                return _per_column(targets, [activations])[0].detach()

        available["logit_gradients"] = logit_gradients
    if "hessian_products" in needs:
        with torch.enable_grad():
            scores = logits.gather(1, class_index)
        try:
            available["hessian_products"] = hessian_products(scores, activations)
        except RuntimeError as error:
            if "not implemented" not in str(error):
                raise
            first = str(error).splitlines()[0]
            raise InputError(
                f"Shapley-CAM needs second derivatives of the layers after the target, and torch has none "
                f"for one of them ({first}); fused attention kernels are the usual case. Pick a target layer "
                "after the attention, or use a first-order method such as 'gradcam'"
            ) from None
    return available


# ----------------------------------------------------------------- guided backpropagation
class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward lets only positive gradients through (placed after a ReLU)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp_min(0)


def _is_rectifier(func: Any, args: tuple, kwargs: dict) -> bool:
    if func in (F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu6,
                torch.ops.aten.relu.default, torch.ops.aten.relu_.default):
        return True
    if func in (F.hardtanh, F.hardtanh_, torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default):
        low = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
        return float(low) == 0.0  # nn.ReLU6 is hardtanh(0, 6)
    return False


class GuidedReLUs(TorchFunctionMode):
    """While active, every ReLU (and ReLU6) passes only positive gradients back (Springenberg et al. 2015).

    The backward of a ReLU already multiplies by ``[x > 0]``; an identity placed after it that
    clamps the incoming gradient at zero makes it ``grad * [x > 0] * [grad > 0]``, the guided
    rule. A ``TorchFunctionMode`` sees every call of ``F.relu``, ``torch.relu(_)``,
    ``Tensor.relu(_)``, ``F.relu6``, ``F.hardtanh(x, 0, ...)`` and their ``torch.ops.aten``
    forms, so ``nn.ReLU`` modules, functional calls and exported graphs are all covered; it is
    thread-local and ends with the ``with`` block (nothing is left on the model).

    Not covered: rectifiers written as other ops (``torch.clamp(x, min=0)``, ``x * (x > 0)``,
    ``torch.where``), an in-place ReLU whose return value is ignored, and code PyTorch runs
    outside Python (TorchScript, which :func:`camlens.explain` refuses anyway).
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.requires_grad and _is_rectifier(func, args, kwargs):
            return _PositiveGradient.apply(out)
        return out


# ----------------------------------------------------------------- full backward passes
def _effective_bias(module: nn.Module) -> torch.Tensor | None:
    if isinstance(module, nn.Conv2d):
        return None if module.bias is None else module.bias.detach()
    if isinstance(module, nn.BatchNorm2d) and module.bias is not None:
        if module.running_mean is None or module.running_var is None:
            return module.bias.detach()
        scale = module.weight.detach() / torch.sqrt(module.running_var + module.eps)
        return module.bias.detach() - module.running_mean * scale
    return None


class _OutputTap:
    """Forward hook: keeps a layer's output (for its gradient) and hands the network a copy."""

    def __init__(self) -> None:
        self.outputs: list[torch.Tensor] = []

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> Any:
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            return None
        self.outputs.append(output)
        return output.clone()  # in-place ops downstream (ReLU(inplace=True)) change the copy


def _full_pass(model: nn.Module, inputs: torch.Tensor, class_index: torch.Tensor, score: str, *,
               guided: bool, biases: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Input gradients (N, K, C_in, H, W) and bias gradients of one forward + full backward."""
    x = inputs.detach().clone().requires_grad_(True)
    taps: list[tuple[torch.Tensor, _OutputTap]] = []
    handles = []
    recorder = None
    try:
        if biases:
            for module in model.modules():
                bias = _effective_bias(module)
                if bias is not None:
                    taps.append((bias, _OutputTap()))
                    handles.append(module.register_forward_hook(taps[-1][1]))
        recorder = HeadRecorder(model)
        mode = GuidedReLUs() if guided else contextlib.nullcontext()
        with evaluation_mode(model), torch.enable_grad(), mode:
            output = model(x)
            logits, _ = recorder.scores(logits_of(output), score)
            scores = logits.gather(1, class_index)
    finally:
        for handle in handles:
            handle.remove()
        if recorder is not None:
            recorder.remove()
    if not scores.requires_grad:
        raise LayerNotExecutedError("the class scores do not depend on the inputs; nothing to backpropagate")
    layer_outputs = [(bias, output) for bias, tap in taps for output in tap.outputs]
    with torch.enable_grad():
        grads = _per_column(scores, [x] + [output for _, output in layer_outputs])
    bias_grads = [bias.view(1, 1, -1, 1, 1).to(g.dtype) * g for (bias, _), g in zip(layer_outputs, grads[1:])]
    return grads[0].detach(), [g.detach() for g in bias_grads]


def pass_inputs(needs: set[str], model: nn.Module, inputs: torch.Tensor, class_index: torch.Tensor,
                score: str) -> dict[str, Any]:
    """The full-backward inputs named in ``needs`` (computed once per call, not per layer)."""
    available: dict[str, Any] = {}
    if "inputs" in needs:
        available["inputs"] = inputs.detach()
    if needs & {"input_gradients", "bias_gradients"}:
        grads, bias_grads = _full_pass(model, inputs, class_index, score, guided=False,
                                       biases="bias_gradients" in needs)
        available["input_gradients"], available["bias_gradients"] = grads, bias_grads
    if "guided_gradients" in needs:
        available["guided_gradients"] = _full_pass(model, inputs, class_index, score, guided=True, biases=False)[0]
    return available
