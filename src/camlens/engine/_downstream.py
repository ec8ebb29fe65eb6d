"""Run only the layers after a target layer, for many replacements of its output (``torch.fx``).

Ablation-CAM scores one modified copy of the target layer's output per channel. The layers
before the target compute the same thing for every copy, so :class:`Downstream` computes
them once, on the one image, and then runs only the graph nodes that depend on the target's
output. Every earlier tensor those nodes read (a skip connection, the input whose
``size(0)`` a ``view(bs, -1)`` reads) is broadcast to the batch of copies with ``expand``
(no copy); shape arithmetic on them (``size``, ``shape``, ``dim``) is recomputed on the
broadcast tensors, so batch sizes come out right.

The caller checks the result against the full model on a few copies before trusting it
(see :meth:`camlens._scoring.Scorer.score_activations`); a model that ``torch.fx`` cannot
trace raises here and the caller falls back to hooks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

__all__ = ["Downstream"]


class _Tracer(fx.Tracer):
    """``torch.fx`` tracer that keeps the target module as one call (like ``torch.nn`` modules)."""

    def __init__(self, target: nn.Module) -> None:
        super().__init__()
        self.target = target

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return module is self.target or super().is_leaf_module(module, qualified_name)


def _shape_like(value: Any) -> bool:
    """An int, bool, float, ``torch.Size`` or a tuple/list of them: recomputed, never cached."""
    if isinstance(value, (bool, int, float, torch.Size)):
        return True
    return isinstance(value, (tuple, list)) and all(isinstance(v, (bool, int, float)) for v in value)


class Downstream:
    """The layers of ``model`` after one call of ``module``, with everything before it run once.

    Args:
        model: the model (in eval mode; the caller runs this under ``torch.inference_mode``).
        module: the target module, called ``call``-th (0-based; ``None``: its only call).

    The model is traced once; :meth:`cache` then runs one image (1, C, H, W) through it and
    keeps what the layers before the target computed. Calling it with ``value`` (B, ...) a
    batch of replacements for the target's output returns the model's output for the batch,
    as if the model had run on that image repeated B times with the target's output replaced.
    Raises ``ValueError`` for a model it cannot split (untraceable, the module not called as a
    whole, the call not found).
    """

    def __init__(self, model: nn.Module, module: nn.Module, call: int | None) -> None:
        tracer = _Tracer(module)
        try:
            graph = tracer.trace(model)
        except Exception as error:  # data-dependent control flow, unsupported ops, ...
            raise ValueError(f"torch.fx cannot trace the model: {error}") from error
        self.graph_module = fx.GraphModule(tracer.root, graph)
        calls = [n for n in graph.nodes if n.op == "call_module" and self.graph_module.get_submodule(n.target) is module]
        if not calls or (call is None and len(calls) > 1) or (call is not None and not -len(calls) <= call < len(calls)):
            raise ValueError(f"the traced model calls the target module {len(calls)} time(s); call {call} is not one of them")
        self.target = calls[call or 0]
        self.after = _descendants([self.target])
        self.batch_carrying = _descendants([n for n in graph.nodes if n.op == "placeholder"])
        self.cached: dict[fx.Node, Any] = {}

    def cache(self, image: torch.Tensor) -> "Downstream":
        """Run ``image`` (1, C, H, W) once and keep every value computed before the target."""
        interpreter = fx.Interpreter(self.graph_module, garbage_collect_values=False)
        interpreter.run(image)
        self.cached = {node: value for node, value in interpreter.env.items() if node not in self.after}
        return self

    def __call__(self, value: torch.Tensor) -> Any:
        batch = value.shape[0]
        env: dict[fx.Node, Any] = {self.target: value}
        for node, cached in self.cached.items():
            if node.op == "output":
                continue
            if node in self.batch_carrying:  # the input and what was computed from it
                if isinstance(cached, torch.Tensor):
                    if cached.dim() > 0 and cached.shape[0] == 1:
                        cached = cached.expand(batch, *cached.shape[1:])
                elif _shape_like(cached):
                    continue  # recomputed from the broadcast tensors
            env[node] = cached
        return fx.Interpreter(self.graph_module).run(initial_env=env)  # every placeholder is in env


def _descendants(roots: list[fx.Node]) -> set[fx.Node]:
    """``roots`` and every node that reads them, directly or not."""
    seen, stack = set(roots), list(roots)
    while stack:
        for user in stack.pop().users:
            if user not in seen:
                seen.add(user)
                stack.append(user)
    return seen

