"""Pictures: colormaps as torch lookup tables, overlays, and a figure per explanation.

Colouring and blending are batched torch on the maps' device; PIL and matplotlib
appear only at the edges (taking PIL images in, giving PIL images and figures out).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..core.errors import InputError
from ..io.files import atomic_write
from ..io.images import to_tensor_image

__all__ = ["colormap_lut", "apply_colormap", "overlay", "overlay_rgb8", "to_tensor_image", "plot_explanation", "save_image", "save_figure"]


@lru_cache(maxsize=16)
def _lut_cpu(name: str) -> torch.Tensor:
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise InputError(f"unknown colormap {name!r}; try 'jet', 'magma', 'viridis', 'inferno' or 'turbo'") from None
    return torch.from_numpy(cmap(np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32))


def colormap_lut(name: str = "jet", device: torch.device | str = "cpu") -> torch.Tensor:
    """matplotlib colormap ``name`` as a (256, 3) float tensor of RGB in [0, 1]."""
    return _lut_cpu(name).to(device)


def apply_colormap(maps: torch.Tensor, cmap: str = "jet") -> torch.Tensor:
    """Colour maps in [0, 1]: (..., H, W) -> (..., 3, H, W) RGB in [0, 1]."""
    return _coloured(maps.clamp(0, 1), 1.0, cmap).movedim(-1, -3)


def overlay(image: Any, map: torch.Tensor, alpha: float = 0.5, cmap: str = "jet") -> Any:
    """Blend a heatmap over an image: ``(1 - alpha) * image + alpha * colour(map)``.

    Args:
        image: PIL image, (H, W, 3) array, (3, H, W) tensor, or (N, 3, H, W) tensor.
        map: (h, w) or (N, h, w) values in [0, 1]; resized to the image (bilinear).
        alpha: weight of the heatmap.
        cmap: matplotlib colormap name.

    Returns:
        A PIL image for PIL input, else a float tensor (3, H, W) or (N, 3, H, W) in [0, 1].

    Example:
        >>> import torch
        >>> out = overlay(torch.zeros(3, 64, 64), torch.rand(7, 7))
        >>> out.shape
        torch.Size([3, 64, 64])
    """
    _check_alpha(alpha)
    as_pil = isinstance(image, Image.Image)
    batched = isinstance(image, torch.Tensor) and image.dim() == 4
    pixels = torch.stack([to_tensor_image(one) for one in image]) if batched else to_tensor_image(image).unsqueeze(0)
    heat = _heat(map).to(pixels.device)
    if heat.shape[0] not in (1, pixels.shape[0]):
        raise InputError(f"{heat.shape[0]} maps for {pixels.shape[0]} images")
    heat = F.interpolate(heat, size=pixels.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)
    blended = (1 - alpha) * pixels + _coloured(heat[:, 0], alpha, cmap).movedim(-1, -3)
    if as_pil:
        return Image.fromarray(_to_uint8(blended[0].permute(1, 2, 0)).cpu().numpy())
    return blended if batched else blended[0]


def overlay_rgb8(pixels: torch.Tensor, map: torch.Tensor, alpha: float = 0.5, cmap: str = "jet") -> torch.Tensor:
    """:func:`overlay` for a uint8 photo, in uint8: (H, W, 3) pixels and an (h, w) map -> (H, W, 3) uint8.

    The same numbers as ``overlay(PIL image, map)`` (bit for bit) without PIL or a channels-first
    float copy of the photo: what the dataset engine draws for each overlay PNG.

    Example:
        >>> import torch
        >>> overlay_rgb8(torch.zeros(48, 64, 3, dtype=torch.uint8), torch.rand(7, 7)).shape
        torch.Size([48, 64, 3])
    """
    _check_alpha(alpha)
    if pixels.dtype != torch.uint8 or pixels.dim() != 3 or pixels.shape[-1] != 3:
        raise InputError(f"overlay_rgb8 takes (H, W, 3) uint8 pixels, got {pixels.dtype} of shape {tuple(pixels.shape)}")
    heat = _heat(map).to(pixels.device)
    if heat.shape[0] != 1:
        raise InputError(f"overlay_rgb8 takes one (h, w) map, got shape {tuple(map.shape)}")
    heat = F.interpolate(heat, size=pixels.shape[:2], mode="bilinear", align_corners=False)[0, 0].clamp_(0, 1)
    blended = pixels.float().div_(255).mul_(1 - alpha).add_(_coloured(heat, alpha, cmap))
    return _to_uint8(blended)


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")


def _coloured(heat: torch.Tensor, alpha: float, cmap: str) -> torch.Tensor:
    """``alpha * colour(heat)``: heat (..., H, W) in [0, 1] -> (..., H, W, 3), channels last."""
    index = (heat * 255).round().long()
    return F.embedding(index, alpha * colormap_lut(cmap, heat.device))


def _to_uint8(values: torch.Tensor) -> torch.Tensor:
    """Values in [0, 1] (clamped) -> uint8 0..255, rounded."""
    return values.clamp(0, 1).mul_(255).round_().to(torch.uint8)


def _heat(map: Any) -> torch.Tensor:
    """A map as (N, 1, h, w) float32; refused when it is not 2-D/3-D or holds NaN/Inf."""
    try:
        heat = torch.as_tensor(map, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"a map must be a tensor or array of numbers (h, w) or (N, h, w), got {type(map).__name__}") from None
    if heat.dim() not in (2, 3) or heat.numel() == 0:
        raise InputError(f"a map must be (h, w) or (N, h, w) and not empty, got shape {tuple(heat.shape)}")
    if not bool(torch.isfinite(heat).all()):
        raise InputError(
            "the map to overlay contains NaN or Inf (cannot be coloured); explain() never returns such maps, "
            "so it came from elsewhere: clean it (torch.nan_to_num) and normalise it to [0, 1]"
        )
    return heat.reshape(-1, *heat.shape[-2:]).unsqueeze(1)


def _format_for(path: Path) -> str:
    """The PIL format a file suffix names (``.jpg`` -> JPEG); no suffix: PNG."""
    if not path.suffix:
        return "PNG"
    formats = Image.registered_extensions()
    name = formats.get(path.suffix.lower())
    if name is None or name not in Image.SAVE:
        common = ".png, .jpg, .webp, .tif, .bmp"
        raise InputError(f"cannot save an image as {path.suffix!r} ({path.name}); use one of {common}")
    return name


def save_image(image: Any, path: str | os.PathLike) -> Path:
    """Save a PIL image or a (3, H, W) tensor in [0, 1], atomically, in the format the suffix names.

    ``.png`` (also when there is no suffix), ``.jpg``/``.jpeg`` (quality 95), ``.webp``, ``.tif``,
    ``.bmp``, ... (any format PIL writes); an unknown suffix raises InputError before writing.
    """
    path = Path(path)
    fmt = _format_for(path)
    if not isinstance(image, Image.Image):
        tensor = to_tensor_image(image)
        image = Image.fromarray((tensor.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy())
    if fmt in ("JPEG", "BMP", "PPM") and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    return atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **options))


def save_figure(figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically in the format its suffix names (``.png``, ``.pdf``, ``.svg``, ...), and close it."""
    import matplotlib.pyplot as plt

    try:
        path = Path(path)
        fmt = path.suffix[1:].lower() or "png"
        supported = figure.canvas.get_supported_filetypes()
        if fmt not in supported:
            raise InputError(f"cannot save a figure as {path.suffix!r} ({path.name}); use one of "
                             f"{', '.join('.' + name for name in sorted(supported))}")
        return atomic_write(path, lambda tmp: figure.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(figure)


def plot_explanation(
    images: Sequence[Any],
    explanations: Any,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
):
    """A figure with one row per image: the image, then one overlay per class and method.

    Args:
        images: N images (PIL, arrays or (3, H, W) tensors), shown at their own size.
        explanations: an :class:`~camlens.Explanation` or a dict name -> Explanation.
        class_names: names for class indices (e.g. ImageNet labels) for the titles.

    Returns:
        A matplotlib Figure (save it with :func:`save_figure`).
    """
    import matplotlib.pyplot as plt

    results = explanations if isinstance(explanations, dict) else {explanations.method: explanations}
    first = next(iter(results.values()))
    n, k = first.classes.shape
    if len(images) != n:
        raise InputError(f"{len(images)} images for an explanation of {n}")
    columns = 1 + k * len(results)
    fig, axes = plt.subplots(n, columns, figsize=(2.6 * columns, 2.7 * n), squeeze=False)
    for row, image in enumerate(images):
        axes[row, 0].imshow(to_tensor_image(image).permute(1, 2, 0).cpu().numpy())
        axes[row, 0].set_title("input", fontsize=9)
        column = 1
        for name, result in results.items():
            for j in range(k):
                blended = overlay(to_tensor_image(image), result.maps[row, j].detach().cpu(), alpha, cmap)
                axes[row, column].imshow(blended.permute(1, 2, 0).clamp(0, 1).numpy())
                index = int(result.classes[row, j])
                label = class_names[index] if class_names is not None else f"class {index}"
                score = float(result.scores[row, j])
                axes[row, column].set_title(f"{name}: {label}\nscore {score:.3g}", fontsize=9)
                column += 1
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig
