"""Models inside wrappers: ``torch.compile``, ``DataParallel``, ``DistributedDataParallel``.

Hooks cannot enter compiled code, and wrappers prefix every layer name (``module.layer4``,
``_orig_mod.layer4``). :func:`unwrap_model` returns the module that runs eagerly with the
same parameters (``_orig_mod`` of a compiled model, ``.module`` of a data-parallel one);
:func:`unwrap_layer_name` drops the wrapper prefixes from a layer name written for the
wrapper.
"""

from __future__ import annotations

from torch import nn

__all__ = ["unwrap_model", "unwrap_layer_name"]

_PREFIXES = ("_orig_mod.", "module.")


def _inner(model: nn.Module) -> nn.Module | None:
    if hasattr(model, "_orig_mod") and isinstance(getattr(model, "_orig_mod"), nn.Module):
        return model._orig_mod  # torch.compile's OptimizedModule
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return model.module
    return None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The eager module inside ``torch.compile`` / ``DataParallel`` / ``DDP`` wrappers (nested too)."""
    while isinstance(model, nn.Module):
        inner = _inner(model)
        if inner is None:
            return model
        model = inner
    return model


def unwrap_layer_name(model: nn.Module, name: str) -> str:
    """``"module.layer4"`` -> ``"layer4"`` when ``model`` is the unwrapped module and has no ``module``."""
    names = dict(model.named_modules())
    while name not in names and name.split(":")[0] not in names and name.startswith(_PREFIXES):
        name = name.split(".", 1)[1]
    return name
