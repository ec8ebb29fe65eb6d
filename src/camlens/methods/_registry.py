"""The method registry: every CAM method is a pure function registered by name.

A method is a function of named tensors, e.g. ``gradcam(activations, gradients)``.
Its parameter names say what it needs; :func:`camlens.explain` computes each input
once and feeds every requested method from the same forward/backward pass.

Inputs a method can ask for (batch-first):

- ``activations``: (N, C, h, w), the target layer's output.
- ``gradients``: (N, K, C, h, w), d score_k / d activations for each of K classes.
- ``class_weights``: (N, K, C), the final linear layer's weight rows of the classes
  (only for heads that are global-average-pool + linear).
- ``scorer``: a :class:`camlens.Scorer` that re-runs the model on masked inputs or modified
  activations (gradient-free methods: Score-CAM, Ablation-CAM, ...).

Parameters with defaults are options, set through ``camlens.explain(..., top_k=64)``.
A method returns (N, K, h, w) maps, or (N, 1, h, w) when it does not depend on the class.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from ..core.errors import InputError

__all__ = ["Method", "register_method", "get_method", "list_methods"]


@dataclass(frozen=True)
class Method:
    """A registered method: its name, formula, the inputs it needs and its paper."""

    name: str
    fn: Callable
    needs: tuple[str, ...]
    paper: str
    options: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        return (inspect.getdoc(self.fn) or "").split("\n")[0]

    def __call__(self, options: dict | None = None, **inputs):
        kwargs = {name: value for name, value in (options or {}).items() if name in self.options}
        return self.fn(**{name: inputs[name] for name in self.needs}, **kwargs)


_METHODS: dict[str, Method] = {}


def register_method(name: str, *, paper: str = "") -> Callable[[Callable], Callable]:
    """Register ``fn`` under ``name``; its parameter names declare what it needs."""

    def decorator(fn: Callable) -> Callable:
        params = [
            p for p in inspect.signature(fn).parameters.values()
            if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        ]
        needs = tuple(p.name for p in params if p.default is inspect.Parameter.empty)
        options = tuple(p.name for p in params if p.default is not inspect.Parameter.empty)
        _METHODS[name] = Method(name, fn, needs, paper, options)
        return fn

    return decorator


def get_method(name: str) -> Method:
    """The registered method called ``name``; a wrong name lists close matches."""
    key = str(name).lower().replace("-", "").replace("_", "")
    for method in _METHODS.values():
        if method.name.replace("_", "") == key:
            return method
    close = difflib.get_close_matches(str(name).lower(), list(_METHODS), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise InputError(f"unknown method {name!r}.{hint} Known methods: {', '.join(list_methods())}.")


def list_methods(pattern: str = "*") -> list[str]:
    """Names of the registered methods matching a shell-style ``pattern``, sorted.

    Example:
        >>> from camlens import list_methods
        >>> "gradcam" in list_methods() and "cam" in list_methods()
        True
        >>> list_methods("*gradcam")
        ['eigengradcam', 'gradcam', 'guided_gradcam', 'xgradcam']
    """
    return sorted(name for name in _METHODS if fnmatch.fnmatch(name, pattern))
