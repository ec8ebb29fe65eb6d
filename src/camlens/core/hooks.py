"""Hooks that cannot silently fail or leak.

A *hook* is a function PyTorch calls while a module runs: a forward hook sees the
module's inputs and output, a gradient hook sees the gradient of a score with
respect to that output during ``backward()``. Everything here is a context
manager whose hooks are removed when the ``with`` block ends, also when an
exception flies.

Gradients come from a tensor hook registered on the module's output inside the
forward hook. That is never the deprecated ``register_backward_hook``, and it
stays right when the next op modifies the output in place (ResNet's
``out += identity``): PyTorch gives a tensor hook the gradient with respect to
the tensor as it was when the hook was registered.

Example:
    >>> import torch, torchvision
    >>> model = torchvision.models.resnet18().eval()
    >>> with capture(model, ["layer4"], grads=True) as cap:
    ...     model(torch.randn(1, 3, 224, 224))[0, 3].backward()
    >>> cap["layer4"].output.shape, cap["layer4"].grad.shape
    (torch.Size([1, 512, 7, 7]), torch.Size([1, 512, 7, 7]))
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import (
    InPlaceModifiedError,
    LayerNotExecutedError,
    LayerNotFoundError,
    MultipleCallsError,
    NoGradientError,
)

__all__ = ["Hook", "Hooks", "capture", "Capture", "Captured", "get_module", "parse_layer_name"]


def parse_layer_name(name: str) -> tuple[str, int | None]:
    """Split ``"_swish:1"`` into ``("_swish", 1)``; a plain name gives ``(name, None)``.

    The suffix picks one call of a module that runs several times in one
    forward (0-based, negative counts from the last call).
    """
    if ":" in name:
        base, _, index = name.rpartition(":")
        try:
            return base, int(index)
        except ValueError:
            pass
    return name, None


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule of ``model`` with dotted name ``name`` (``""`` is the model itself).

    A wrong name raises :class:`LayerNotFoundError` listing the closest names.
    """
    modules = dict(model.named_modules())
    base, _ = parse_layer_name(name)
    if base in modules:
        return modules[base]
    close = difflib.get_close_matches(base, [n for n in modules if n], n=5, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise LayerNotFoundError(
        f"{type(model).__name__} has no layer named {base!r}{hint}. "
        "List every layer with camlens.describe(model) or `camlens layers --model NAME`."
    )


def module_name(model: nn.Module, module: nn.Module) -> str:
    """The dotted name of ``module`` inside ``model``."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise LayerNotFoundError(
        f"the {type(module).__name__} module passed as a layer is not part of "
        f"{type(model).__name__}; pass one of its submodules or a dotted name."
    )


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in a (nested) tuple/list/dict output, or ``None``."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def _not_run_message(what: str, ran: Iterable[str] | None = None) -> str:
    listed = ""
    if ran is not None:
        ran = [r for r in ran if r]
        shown = ", ".join(ran[-12:])
        more = f" (the last 12 of {len(ran)})" if len(ran) > 12 else ""
        listed = f" Modules that did run{more}: {shown}." if ran else " No module ran."
    return (
        f"{what} never ran while the hook was in place, so nothing was stored. "
        "Run the model inside the `with` block. If you did, this module is not on the forward "
        "path: a functional call such as F.relu(x) cannot be hooked; hook the module before it, "
        "or the next module with store='input'." + listed
    )


class Hook:
    """Store what one module produces (or its input, or the gradient of its output).

    Args:
        module: the module to hook.
        backward: store the gradient of the score w.r.t. the module's output
            (filled when you call ``backward()``) instead of the output itself.
        detach: store ``tensor.detach()`` (no autograd graph kept alive).
        cpu: move what is stored to the CPU.
        store: ``"output"`` or ``"input"`` (the first positional input).
        clone: store a copy, so a later in-place op cannot change it.

    ``.stored`` holds the value from the latest call (like fastai's hook), ``.calls``
    counts the calls. Reading ``.stored`` raises a clear error if the module never
    ran, or if an in-place op changed the stored output afterwards.

    Example:
        >>> import torch
        >>> conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        >>> with Hook(conv) as hook:
        ...     _ = conv(torch.randn(2, 3, 32, 32))
        >>> hook.stored.shape, hook.calls
        (torch.Size([2, 8, 16, 16]), 1)
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        backward: bool = False,
        detach: bool = True,
        cpu: bool = False,
        store: str = "output",
        clone: bool = False,
    ) -> None:
        if store not in ("output", "input"):
            raise ValueError(f"store must be 'output' or 'input', not {store!r}")
        if not isinstance(module, nn.Module):
            raise TypeError(f"Hook needs an nn.Module, got {type(module).__name__}")
        self.module = module
        self.backward, self.detach, self.cpu, self.store, self.clone = backward, detach, cpu, store, clone
        self.calls = 0
        self._value: torch.Tensor | None = None
        self._version: int | None = None
        self._tensor_handles: list = []
        self._handle = module.register_forward_hook(self._forward_hook)

    # -- hook machinery -------------------------------------------------------------
    def _prepare(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.detach:
            tensor = tensor.detach()
        if self.cpu:
            tensor = tensor.cpu()
        elif self.clone:
            tensor = tensor.clone()
        return tensor

    def _forward_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.calls += 1
        tensor = first_tensor(args if self.store == "input" else output)
        if tensor is None:
            return
        if self.backward:
            if tensor.requires_grad:
                self._tensor_handles.append(tensor.register_hook(self._grad_hook))
            return
        self._value = self._prepare(tensor)
        shares_storage = not (self.cpu and tensor.device.type != "cpu") and not self.clone
        self._version = tensor._version if shares_storage else None

    def _grad_hook(self, grad: torch.Tensor) -> None:
        self._value = self._prepare(grad)
        self._version = None

    # -- public ---------------------------------------------------------------------
    @property
    def stored(self) -> torch.Tensor:
        """What the latest call stored (see the class docstring)."""
        what = f"{type(self.module).__name__} module"
        if self.calls == 0:
            raise LayerNotExecutedError(_not_run_message(f"The hooked {what}"))
        if self._value is None:
            if self.backward:
                raise NoGradientError(
                    f"The hooked {what} ran but received no gradient: call .backward() on a "
                    "score inside the `with` block, and do not run the forward under "
                    "torch.no_grad() (its output must require grad)."
                )
            raise LayerNotExecutedError(f"The hooked {what} ran but its {self.store} holds no tensor.")
        if self._version is not None and self._value._version != self._version:
            raise InPlaceModifiedError(
                f"The output of the hooked {what} was changed in place after the hook stored it "
                "(by an op such as ReLU(inplace=True) or `out += identity`), so it no longer is "
                "that module's output. Pass clone=True to keep a copy (cpu=True copies only an output "
                "that is not on the CPU already), or hook the in-place module that follows."
            )
        return self._value

    def remove(self) -> None:
        """Remove the hooks (idempotent)."""
        self._handle.remove()
        for handle in self._tensor_handles:
            handle.remove()
        self._tensor_handles.clear()

    def __enter__(self) -> "Hook":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        kind = "gradient" if self.backward else self.store
        return f"Hook({type(self.module).__name__}, {kind}, calls={self.calls})"


class Hooks:
    """:class:`Hook` on many modules at once; ``.stored`` is the list of what each stored.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        >>> with Hooks(net) as hooks:
        ...     _ = net(torch.randn(5, 4))
        >>> [tuple(s.shape) for s in hooks.stored]
        [(5, 3), (5, 3), (5, 2)]
    """

    def __init__(self, modules: Iterable[nn.Module], **kwargs: Any) -> None:
        self.hooks = [Hook(module, **kwargs) for module in modules]

    @property
    def stored(self) -> list[torch.Tensor]:
        return [hook.stored for hook in self.hooks]

    def __getitem__(self, index: int) -> Hook:
        return self.hooks[index]

    def __len__(self) -> int:
        return len(self.hooks)

    def __iter__(self) -> Iterator[Hook]:
        return iter(self.hooks)

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()

    def __enter__(self) -> "Hooks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


@dataclass
class Captured:
    """What :func:`capture` recorded for one call of one module.

    ``output``: the module's output (detached). ``grad``: the gradient of the score you
    back-propagated with respect to that output, or ``None`` before ``backward()``.
    """

    output: torch.Tensor
    grad: torch.Tensor | None = None
    version: int = 0

    def _set_grad(self, grad: torch.Tensor) -> None:
        self.grad = grad.detach()


class Capture(Mapping):
    """Mapping from dotted module name to :class:`Captured`, filled during the forward.

    Reading a module that ran several times in the last forward raises
    :class:`MultipleCallsError`; pick one call with ``"name:k"``.
    """

    def __init__(self, model: nn.Module, names: list[str], grads: bool, clone: bool) -> None:
        self._model, self._names, self._grads, self._clone = model, names, grads, clone
        self._calls: dict[str, list[Captured]] = {}
        self._ran: list[str] = []
        self._handles: list = []
        self._tensor_handles: list = []
        modules = dict(model.named_modules())
        wanted = {parse_layer_name(n)[0] for n in names}
        for name in wanted:
            get_module(model, name)  # raises with close matches
        self._handles.append(model.register_forward_pre_hook(self._reset))
        for name, module in modules.items():
            self._handles.append(module.register_forward_hook(self._make_hook(name, name in wanted)))

    def _reset(self, module: nn.Module, args: tuple) -> None:
        self._calls = {}
        self._ran = []
        for handle in self._tensor_handles:
            handle.remove()
        self._tensor_handles.clear()

    def _make_hook(self, name: str, wanted: bool):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            self._ran.append(name)
            if not wanted:
                return
            tensor = first_tensor(output)
            if tensor is None:
                return
            stored = tensor.detach().clone() if self._clone else tensor.detach()
            record = Captured(stored, None, tensor._version)
            self._calls.setdefault(name, []).append(record)
            if self._grads and tensor.requires_grad:
                self._tensor_handles.append(tensor.register_hook(record._set_grad))

        return hook

    def calls(self, name: str) -> list[Captured]:
        """Every call of module ``name`` in the last forward, in order."""
        base, _ = parse_layer_name(name)
        if base not in self._calls:
            get_module(self._model, base)
            if base not in {parse_layer_name(n)[0] for n in self._names}:
                raise KeyError(f"{base!r} was not captured; add it to the names passed to capture()")
            if base in self._ran:
                raise LayerNotExecutedError(f"Module {base!r} ran but its output holds no tensor; capture a module that returns one.")
            raise LayerNotExecutedError(_not_run_message(f"Module {base!r}", self._ran))
        return self._calls[base]

    def __getitem__(self, name: str) -> Captured:
        base, index = parse_layer_name(name)
        records = self.calls(base)
        if index is None:
            if len(records) > 1:
                raise MultipleCallsError(
                    f"Module {base!r} ran {len(records)} times in one forward (it is reused), so "
                    f"there is no single output. Pick one call: "
                    f"{', '.join(f'{base}:{k}' for k in range(len(records)))} "
                    f"(negative counts from the end, e.g. {base}:-1)."
                )
            index = 0
        try:
            record = records[index]
        except IndexError:
            raise MultipleCallsError(
                f"Module {base!r} ran {len(records)} time(s); call index {index} does not exist."
            ) from None
        if not self._clone and record.output._version != record.version:
            raise InPlaceModifiedError(
                f"The output of {base!r} was changed in place after it was captured (by an op "
                "such as ReLU(inplace=True)); pass clone=True to capture() to keep a copy, or "
                "capture the in-place module that follows."
            )
        return record

    def __iter__(self) -> Iterator[str]:
        for name, records in self._calls.items():
            if len(records) == 1:
                yield name
            else:
                yield from (f"{name}:{k}" for k in range(len(records)))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @property
    def ran(self) -> list[str]:
        """Names of the modules that ran in the last forward, in completion order."""
        return list(self._ran)

    def remove(self) -> None:
        for handle in self._handles + self._tensor_handles:
            handle.remove()
        self._handles.clear()
        self._tensor_handles.clear()


class capture:  # noqa: N801 - used like a function: `with capture(model, names) as cap`
    """Capture the outputs (and, with ``grads=True``, their gradients) of named modules.

    Args:
        model: the network.
        names: dotted module names (``"layer4"``, ``"layer4.1.conv2"``, ``"_swish:1"``).
        grads: also record the gradient of whatever you back-propagate w.r.t. each output.
        clone: keep copies, safe against later in-place ops (costs memory).

    Yields a :class:`Capture` mapping; every hook is removed when the block ends.
    """

    def __init__(self, model: nn.Module, names: str | Iterable[str], *, grads: bool = False, clone: bool = False):
        self.names = [names] if isinstance(names, str) else list(names)
        self.model, self.grads, self.clone = model, grads, clone
        self._capture: Capture | None = None

    def __enter__(self) -> Capture:
        self._capture = Capture(self.model, self.names, self.grads, self.clone)
        return self._capture

    def __exit__(self, *exc: object) -> None:
        if self._capture is not None:
            self._capture.remove()
