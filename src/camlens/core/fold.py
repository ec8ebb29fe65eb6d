"""Inference copies of a model with BatchNorm and zero padding folded into the convolutions.

Gradient-free methods (Score-CAM and its variants) run hundreds of forwards of one model; a
BatchNorm after a convolution is an affine map per channel that the convolution's weight and
bias can absorb, and a symmetric zero padding before a convolution is the convolution's own
``padding``. :func:`fold_for_inference` traces the model with ``torch.fx`` and rewrites

- ``Conv2d`` module or ``torch.conv2d`` / ``F.conv2d`` call on parameters (EfficientNet ports
  whose convolutions pad "same" in their own ``forward``) → ``BatchNorm2d`` module or
  ``F.batch_norm(training=False)`` call (timm's ``BatchNormAct2d``),
- ``ZeroPad2d`` / ``ConstantPad2d(0)`` with equal left/right and top/bottom → ``conv2d``,

whenever the intermediate result has no other user. The model is not modified; the caller
checks the copy against the model (see :func:`camlens._scoring._fast_copy`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ["fold_for_inference"]

_CONV_FUNCTIONS = (torch.conv2d, F.conv2d)


def fold_for_inference(model: nn.Module) -> tuple[fx.GraphModule, int]:
    """An eval-mode ``torch.fx`` copy of ``model`` with BatchNorms and paddings folded.

    Returns the copy and the number of BatchNorm and padding modules folded away. Raises
    whatever ``torch.fx.symbolic_trace`` raises for a model it cannot trace.
    """
    graph_module = fx.symbolic_trace(copy.deepcopy(model).eval())
    modules = dict(graph_module.named_modules())
    folded = 0
    with torch.no_grad():
        for node in list(graph_module.graph.nodes):
            statistics = _batchnorm_statistics(graph_module, modules, node)
            if statistics is not None:
                folded += _fold_batchnorm(graph_module, modules, node, statistics)
            elif node.op == "call_function" and node.target in _CONV_FUNCTIONS:
                folded += _fold_padding(modules, node)
    graph_module.graph.eliminate_dead_code()
    graph_module.graph.lint()
    graph_module.recompile()
    graph_module.delete_all_unused_submodules()
    return graph_module, folded


def _batchnorm_statistics(graph_module: fx.GraphModule, modules: dict, node: fx.Node) -> tuple | None:
    """(mean, var, eps, weight, bias) of an inference-mode 2-D BatchNorm node, else None.

    Either a ``BatchNorm2d`` module call or a ``F.batch_norm`` call with ``training=False`` on
    attributes of the model (timm's ``BatchNormAct2d`` traces to the latter).
    """
    if node.op == "call_module":
        bn = modules.get(node.target)
        if type(bn) is not nn.BatchNorm2d or not bn.track_running_stats or bn.running_mean is None:
            return None
        if len(node.args) != 1 or node.kwargs:
            return None
        return bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    if node.op != "call_function" or node.target is not F.batch_norm:
        return None
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    defaults = (None, None, None, None, None, False, 0.1, 1e-5)
    values = dict(zip(names, defaults))
    values.update(zip(names, node.args))
    values.update(node.kwargs)
    if values["training"] is not False or not isinstance(values["eps"], float):
        return None
    tensors = []
    for name in ("running_mean", "running_var", "weight", "bias"):
        value = values[name]
        if value is None and name in ("weight", "bias"):
            tensors.append(None)
        elif isinstance(value, fx.Node) and value.op == "get_attr":
            tensors.append(_attribute(graph_module, value.target))
        else:
            return None
    mean, var, weight, bias = tensors
    if mean.dim() != 1:
        return None
    return mean, var, values["eps"], weight, bias


def _attribute(root: nn.Module, target: str) -> torch.Tensor:
    module, _, name = target.rpartition(".")
    return getattr(root.get_submodule(module) if module else root, name)


def _only_user(node: fx.Node, user: fx.Node) -> bool:
    """``user`` is the only consumer of ``node``'s values (reading ``.ndim``/``.shape`` aside)."""
    if not isinstance(node, fx.Node) or user not in node.users:
        return False
    return all(
        other is user
        or (other.op == "call_function" and other.target is getattr and other.args[1] in ("ndim", "shape"))
        for other in node.users
    )


def _fold_batchnorm(graph_module: fx.GraphModule, modules: dict, bn_node: fx.Node, statistics: tuple) -> int:
    """Fold the BatchNorm ``bn_node`` into the convolution feeding it; 1 if done, else 0."""
    conv_node = bn_node.args[0]
    mean, var, eps, bn_weight, bn_bias = statistics
    if not _only_user(conv_node, bn_node):
        return 0
    if conv_node.op == "call_module" and type(modules.get(conv_node.target)) is nn.Conv2d:
        calls = [n for n in graph_module.graph.nodes if n.op == "call_module" and n.target == conv_node.target]
        if len(calls) != 1:  # a reused convolution: folding would change its other calls
            return 0
        conv = copy.deepcopy(modules[conv_node.target])
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, mean, var, eps, bn_weight, bn_bias)
        _set_module(graph_module, conv_node.target, conv)
        modules[conv_node.target] = conv
    elif conv_node.op == "call_function" and conv_node.target in _CONV_FUNCTIONS:
        args = _conv_args(conv_node)
        if args is None:
            return 0
        weight_node, bias_node = args[1], args[2]
        if weight_node.op != "get_attr" or not _only_user(weight_node, conv_node):
            return 0
        if bias_node is not None and (bias_node.op != "get_attr" or not _only_user(bias_node, conv_node)):
            return 0
        weight = graph_module.get_parameter(weight_node.target)
        bias = graph_module.get_parameter(bias_node.target) if bias_node is not None else None
        new_weight, new_bias = fuse_conv_bn_weights(weight, bias, mean, var, eps, bn_weight, bn_bias)
        name = f"_camlens_folded_{weight_node.name}"
        graph_module.register_parameter(f"{name}_weight", new_weight)
        graph_module.register_parameter(f"{name}_bias", new_bias)
        with graph_module.graph.inserting_before(conv_node):
            new_w = graph_module.graph.get_attr(f"{name}_weight")
            new_b = graph_module.graph.get_attr(f"{name}_bias")
        conv_node.args = (args[0], new_w, new_b, *args[3:])
        conv_node.kwargs = {}
    else:
        return 0
    bn_node.replace_all_uses_with(conv_node)
    graph_module.graph.erase_node(bn_node)
    return 1


def _fold_padding(modules: dict, conv_node: fx.Node) -> int:
    """Fold a symmetric zero padding module feeding ``torch.conv2d`` into its ``padding``."""
    args = _conv_args(conv_node)
    if args is None or not isinstance(args[0], fx.Node) or args[0].op != "call_module":
        return 0
    pad_node, pad = args[0], modules.get(args[0].target)
    if not isinstance(pad, (nn.ZeroPad2d, nn.ConstantPad2d)) or getattr(pad, "value", 0) != 0:
        return 0
    if not _only_user(pad_node, conv_node):
        return 0
    left, right, top, bottom = pad.padding
    padding = tuple(args[4]) if isinstance(args[4], (tuple, list)) else (args[4], args[4])
    if left != right or top != bottom or min(left, top) < 0 or isinstance(args[4], str) or padding != (0, 0):
        return 0
    conv_node.args = (pad_node.args[0], *args[1:4], (top, left), *args[5:])
    conv_node.kwargs = {}
    return 1


def _conv_args(node: fx.Node) -> list | None:
    """``conv2d``'s seven arguments (input, weight, bias, stride, padding, dilation, groups)."""
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    defaults = (None, None, None, 1, 0, 1, 1)
    args = list(node.args) + [node.kwargs.get(n, d) for n, d in zip(names[len(node.args):], defaults[len(node.args):])]
    if len(args) != 7 or set(node.kwargs) - set(names) or not isinstance(args[1], fx.Node):
        return None
    return args


def _set_module(root: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)
