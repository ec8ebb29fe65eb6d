"""What a layer's output *is*: a feature map, channels-last, tokens, a 1-D signal or a volume.

CAM methods are written for ``(N, C, h, w)`` feature maps. Transformers give other shapes:

- ``"nchw"``: ``(N, C, h, w)``, CNNs;
- ``"nhwc"``: ``(N, h, w, C)``, channels-last (timm and torchvision Swin, ConvNeXt blocks);
- ``"tokens"``: ``(N, P + h·w, C)``, ViT/DeiT/DINOv2: ``P`` prefix tokens (class,
  distillation, registers) before the ``h × w`` patch tokens;
- ``"ncl"``: ``(N, C, L)``, 1-D signals (audio, ECG, time series) for ``(N, C, L)`` inputs;
- ``"ncthw"``: ``(N, C, t, h, w)``, volumes and video for ``(N, C, T, H, W)`` inputs.

:func:`classify` tells them apart from the input's size and the patch grid (the output grid
of the patch embedding, a ``Conv2d`` whose kernel equals its stride), never from the shape
alone: ``(N, 7, 7, 768)`` is channels-last because ``7 × 7`` is the input's grid at stride 32;
``(N, 197, 384)`` is 1 prefix token and ``14 × 14`` patches because the patch embedding gave
``14 × 14``. A shape that fits two layouts is *ambiguous* and never guessed.

A :class:`Layout` turns such an output into the ``(N, C, h, w)`` grid every method takes
(:meth:`Layout.to_grid`; gradients the same way) and back (:meth:`Layout.from_grid`, for
Ablation-CAM's modified activations), and puts the maps back into the input's geometry
(:meth:`Layout.natural`: ``(N, K, L)`` for signals, ``(N, K, t, h, w)`` for volumes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

__all__ = ["Layout", "classify", "patch_embedding", "layout_for", "finalize_natural", "LAYOUTS", "MAX_PREFIX"]

LAYOUTS = ("nchw", "nhwc", "tokens", "ncl", "ncthw")
MAX_PREFIX = 16  #: most prefix tokens (class + distillation + registers) a token layout may have
_RATIO_TOL = 0.2  # how far H/h and W/w may differ for a grid (padding, ceil/floor rounding)


@dataclass(frozen=True)
class Layout:
    """How a layer's output maps onto a spatial grid.

    Attributes:
        kind: one of :data:`LAYOUTS`, or ``"custom"`` for a user's ``reshape`` callable.
        grid: ``(h, w)`` for images, ``(L,)`` for signals, ``(t, h, w)`` for volumes.
        prefix: tokens only: the number of tokens before the patch tokens.
        reason: one line for people: why this layout.
        reshape: ``"custom"`` only: the user's callable ``tensor -> (N, C, h, w)``.
    """

    kind: str
    grid: tuple[int, ...]
    prefix: int = 0
    reason: str = ""
    reshape: Callable | None = None

    @property
    def cells(self) -> int:
        return math.prod(self.grid)

    def __str__(self) -> str:
        grid = "×".join(map(str, self.grid))
        if self.kind == "tokens":
            return f"tokens ({self.prefix} prefix + {grid})"
        return f"{self.kind} {grid}"

    # -- to and from the (N, C, h, w) grid the methods take ------------------------------------
    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in this layout -> ``(N, C, h, w)`` (signals: ``h = 1``; volumes: ``h = t·h``)."""
        if self.kind == "custom":
            out = self.reshape(x)
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise InputError(f"reshape= must return an (N, C, h, w) tensor; it returned {shape}")
            return out
        if self.kind == "nchw":
            return x
        if self.kind == "nhwc":
            return x.permute(0, 3, 1, 2)
        if self.kind == "tokens":
            h, w = self.grid
            return x[:, self.prefix:, :].transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)
        if self.kind == "ncl":
            return x.unsqueeze(2)
        if self.kind == "ncthw":
            n, c, t, h, w = x.shape
            return x.reshape(n, c, t * h, w)
        raise InputError(f"unknown layout {self.kind!r}; use one of {', '.join(LAYOUTS)}")

    def gradients_to_grid(self, grads: torch.Tensor) -> torch.Tensor:
        """(N, K, *output shape) gradients -> (N, K, C, h, w), the same reshape per class."""
        n, k = grads.shape[:2]
        grid = self.to_grid(grads.reshape(n * k, *grads.shape[2:]))
        return grid.reshape(n, k, *grid.shape[1:])

    def from_grid(self, grid: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        """(M, C, h, w) grid values -> this layout; the prefix tokens are taken from ``original``."""
        if self.kind == "nchw":
            return grid
        if self.kind == "nhwc":
            return grid.permute(0, 2, 3, 1)
        if self.kind == "tokens":
            m = grid.shape[0]
            patches = grid.flatten(2).transpose(1, 2)
            prefix = original[:1, : self.prefix, :].expand(m, -1, -1).to(patches.dtype)
            return torch.cat([prefix, patches], dim=1)
        if self.kind == "ncl":
            return grid.squeeze(2)
        if self.kind == "ncthw":
            t, h, w = self.grid
            return grid.reshape(grid.shape[0], grid.shape[1], t, h, w)
        raise InputError(
            "Ablation-CAM puts modified activations back into the layer, which a custom reshape= "
            "cannot be undone for; pass layout= instead of reshape=, or use another method"
        )

    def natural(self, maps: torch.Tensor) -> torch.Tensor:
        """(N, K, h, w) maps on the grid -> (N, K, *grid): (N, K, L) signals, (N, K, t, h, w) volumes."""
        if self.kind in ("ncl", "ncthw"):
            return maps.reshape(*maps.shape[:2], *self.grid)
        return maps


def patch_embedding(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The patch embedding: the first ``Conv2d`` whose kernel equals its stride (> 1), or ``None``.

    timm ``patch_embed.proj``, torchvision ViT ``conv_proj``, Swin ``features.0.0``.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == tuple(module.stride) and max(module.stride) > 1:
            return name, module
    return None


def _is_grid(h: int, w: int, size: tuple[int, int]) -> bool:
    """``(h, w)`` is the input's grid at some stride: H/h and W/w agree (ceil/floor, padding)."""
    H, W = size
    if h < 1 or w < 1 or h > H or w > W:
        return False
    sh, sw = H / h, W / w
    return abs(sh - sw) <= _RATIO_TOL * max(sh, sw) + 1.0 / min(h, w)


def _token_grids(patch_grid: tuple[int, int]):
    """The patch grid and its patch-merged (halved) versions, as Swin stages give them."""
    h, w = patch_grid
    seen = set()
    while h >= 1 and w >= 1 and (h, w) not in seen:
        seen.add((h, w))
        yield h, w
        if h == 1 and w == 1:
            break
        h, w = math.ceil(h / 2), math.ceil(w / 2)


def classify(
    shape: tuple[int, ...],
    input_shape: tuple[int, ...],
    patch_grid: tuple[int, int] | None = None,
    channels_last_hint: bool | None = None,
) -> Layout | str | None:
    """The layout of an output of ``shape`` for an input of ``input_shape`` (both with N).

    Args:
        shape: the output's shape, ``(N, ...)``.
        input_shape: the model input's shape, ``(N, C, H, W)``, ``(N, C, L)`` or ``(N, C, T, H, W)``.
        patch_grid: ``(h, w)`` output grid of the patch embedding in this forward, if any.
        channels_last_hint: ``True`` when the module producing it normalises its last dim
            (``LayerNorm``), ``False`` for a conv/BatchNorm2d; used only to settle a tie.

    Returns:
        a :class:`Layout`; a string saying why the shape is ambiguous; or ``None`` when it is
        no spatial layout at all (pooled vectors, attention matrices, ...).
    """
    shape, input_shape = tuple(shape), tuple(input_shape)
    if len(shape) < 3:
        return None
    in_dims = len(input_shape) - 2
    if in_dims == 1:  # a signal (N, C, L)
        if len(shape) == 3 and 1 <= shape[2] <= input_shape[2]:
            return Layout("ncl", (shape[2],), reason=f"(N, C, L): {shape[1]} channels × {shape[2]} steps of the {input_shape[2]}-step signal")
        return None
    if in_dims == 3:  # a volume or video (N, C, T, H, W)
        if len(shape) == 5 and all(1 <= s <= S for s, S in zip(shape[2:], input_shape[2:])):
            return Layout("ncthw", tuple(shape[2:]), reason=f"(N, C, T, H, W): {shape[1]} channels on a {'×'.join(map(str, shape[2:]))} grid")
        return None
    if in_dims != 2:
        return None
    size = input_shape[2:]
    if len(shape) == 4:
        _, a, b, c = shape
        nchw, nhwc = _is_grid(b, c, size), _is_grid(a, b, size)
        if nchw and nhwc and a != b and c != b:
            # both fit by the ratio test: prefer the one with the exact stride
            nchw = abs(size[0] / b - size[1] / c) <= abs(size[0] / a - size[1] / b)
            nhwc = not nchw
        if nchw and nhwc:
            if channels_last_hint is None:
                return (f"(N, {a}, {b}, {c}) fits both (N, C, H, W) and channels-last (N, H, W, C) for a "
                        f"{size[0]}×{size[1]} input; pass layout='nchw' or layout='nhwc'")
            nhwc = channels_last_hint
            nchw = not nhwc
        if nhwc:
            return Layout("nhwc", (a, b), reason=f"channels-last (N, H, W, C): a {a}×{b} grid of {c} channels "
                                                f"(stride {size[0] / a:g} of the {size[0]}×{size[1]} input)")
        if nchw:
            return Layout("nchw", (b, c), reason=f"(N, C, H, W): {a} channels on a {b}×{c} grid")
        return None
    if len(shape) == 3:
        _, tokens, dims = shape
        if patch_grid is None:
            return None
        fits = []
        for merged, (h, w) in enumerate(_token_grids(patch_grid)):
            prefix = tokens - h * w
            # the patch grid itself with up to MAX_PREFIX prefix tokens; a patch-merged grid
            # (Swin-style stages) with none: such models have no class token
            if 0 <= prefix <= (MAX_PREFIX if merged == 0 else 0):
                fits.append((h, w, prefix))
        if not fits:
            return None
        if len(fits) > 1:
            listed = ", ".join(f"{p} prefix + {h}×{w}" for h, w, p in fits)
            return f"{tokens} tokens fit several grids ({listed}); pass reshape= (tokens -> (N, C, h, w))"
        h, w, prefix = fits[0]
        what = {0: "no prefix token", 1: "1 prefix token (class)", 2: "2 prefix tokens (class, distillation)"}.get(
            prefix, f"{prefix} prefix tokens (class, registers)")
        return Layout("tokens", (h, w), prefix=prefix,
                      reason=f"tokens (N, P + h·w, C): {what} + {h}×{w} patches of {dims} dims "
                             f"(patch grid {patch_grid[0]}×{patch_grid[1]})")
    return None


def layout_for(
    activation: torch.Tensor,
    input_shape: tuple[int, ...],
    patch_grid: tuple[int, int] | None,
    layout: str | None = None,
    reshape: Callable | None = None,
    layer: str = "the target layer",
    channels_last_hint: bool | None = None,
) -> Layout:
    """The layout of a target layer's ``activation``: found, or forced by ``layout=``/``reshape=``.

    Raises :class:`InputError` naming the override to pass when it cannot be told.
    """
    shape = tuple(activation.shape)
    if reshape is not None:
        if not callable(reshape):
            raise InputError(f"reshape= must be a callable tensor -> (N, C, h, w), not {type(reshape).__name__}")
        probe = reshape(activation[:1].detach())
        if not isinstance(probe, torch.Tensor) or probe.dim() != 4:
            got = tuple(probe.shape) if isinstance(probe, torch.Tensor) else type(probe).__name__
            raise InputError(f"reshape= must return an (N, C, h, w) tensor; for {layer}'s {list(shape)} output it returned {got}")
        return Layout("custom", tuple(probe.shape[2:]), reason="reshape= given by the caller", reshape=reshape)
    if layout is not None:
        kind = str(layout).lower()
        if kind not in LAYOUTS:
            raise InputError(f"layout={layout!r} is not known; use one of {', '.join(map(repr, LAYOUTS))} or reshape=")
        return _forced(kind, shape, input_shape, patch_grid, layer)
    found = classify(shape, input_shape, patch_grid, channels_last_hint)
    if isinstance(found, Layout):
        return found
    if isinstance(found, str):
        raise InputError(f"the layout of {layer}'s output is ambiguous: {found}")
    raise InputError(
        f"{layer} outputs {list(shape)}, which is no spatial layout camlens can find for a "
        f"{list(input_shape)} input ((N, C, H, W), channels-last (N, H, W, C), tokens (N, P + h·w, C), "
        "(N, C, L) or (N, C, T, H, W)); pass layout='tokens'|'nhwc'|'nchw' or reshape=, or pick another layer"
    )


def _forced(kind: str, shape: tuple[int, ...], input_shape: tuple[int, ...], patch_grid, layer: str) -> Layout:
    dims = {"nchw": 4, "nhwc": 4, "tokens": 3, "ncl": 3, "ncthw": 5}[kind]
    if len(shape) != dims:
        raise InputError(f"layout={kind!r} needs a {dims}-D output; {layer} outputs {list(shape)}")
    if kind == "nchw":
        return Layout(kind, tuple(shape[2:]), reason="layout='nchw' given by the caller")
    if kind == "nhwc":
        return Layout(kind, tuple(shape[1:3]), reason="layout='nhwc' given by the caller")
    if kind == "ncl":
        return Layout(kind, (shape[2],), reason="layout='ncl' given by the caller")
    if kind == "ncthw":
        return Layout(kind, tuple(shape[2:]), reason="layout='ncthw' given by the caller")
    tokens = shape[1]
    if patch_grid is not None:
        grids = list(_token_grids(patch_grid))
        fits = [(h, w, tokens - h * w) for i, (h, w) in enumerate(grids)
                if 0 <= tokens - h * w <= (MAX_PREFIX if i == 0 else 0)]
        if len(fits) == 1:
            h, w, prefix = fits[0]
            return Layout("tokens", (h, w), prefix=prefix, reason=f"layout='tokens' given by the caller: {prefix} prefix + {h}×{w}")
    elif len(input_shape) == 4:  # no patch embedding found: square-ish grids that leave a small prefix
        H, W = input_shape[2:]
        grids = []
        for s in range(1, max(H, W) + 1):
            h, w = max(1, round(H / s)), max(1, round(W / s))
            if (h, w) not in grids:
                grids.append((h, w))
    else:
        grids = []
    fits = [(h, w, tokens - h * w) for h, w in grids if 0 <= tokens - h * w <= MAX_PREFIX]
    if len(fits) != 1:
        found = "no grid" if not fits else f"several grids ({', '.join(f'{p} + {h}×{w}' for h, w, p in fits)})"
        raise InputError(f"layout='tokens': {tokens} tokens of {layer} fit {found}; pass reshape= (tokens -> (N, C, h, w))")
    h, w, prefix = fits[0]
    return Layout("tokens", (h, w), prefix=prefix, reason=f"layout='tokens' given by the caller: {prefix} prefix + {h}×{w}")


def finalize_natural(raw: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """ReLU, resize to the input's ``size`` and normalise each map to [0, 1].

    ``raw``: (N, K, h, w) images, (N, K, L) signals (linear), (N, K, t, h, w) volumes (trilinear).
    """
    from .postprocess import finalize_maps

    dims = raw.dim() - 2
    if dims == 2:
        return finalize_maps(raw, tuple(size))
    mode = {1: "linear", 3: "trilinear"}[dims]
    x = raw.float().clamp_min(0)
    if tuple(x.shape[2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)
    flat = x.flatten(2)
    low = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - low
    out = torch.where(span > 1e-12, (flat - low) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return out.view_as(x)
