"""Images in and out: read files, the sample photos, and preprocessing to a batch."""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..core.errors import InputError

__all__ = ["load_image", "preprocess", "sample_images", "imagenet_classes"]


@lru_cache(maxsize=1)
def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names, index -> name (shipped with camlens)."""
    text = resources.files("camlens.io").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file as RGB; a missing or unreadable file raises :class:`InputError`."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise InputError(f"cannot read image {str(path)!r}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"cannot read image {str(path)!r}: it is a folder; pass image files") from None
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"cannot read image {str(path)!r}: not an image file PIL can decode ({error.__class__.__name__})") from None


def preprocess(
    images: Sequence[Any],
    size: tuple[int, int] = (224, 224),
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> torch.Tensor:
    """Resize each whole image to ``size`` (no crop, so maps cover the whole photo) and normalise.

    Returns:
        (N, 3, H, W) float tensor.
    """
    batch = [
        F.interpolate(to_tensor_image(image).unsqueeze(0), size=tuple(size), mode="bilinear",
                      align_corners=False, antialias=True)
        for image in images
    ]
    x = torch.cat(batch).clamp(0, 1)
    mean_t = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def sample_images() -> dict[str, Image.Image]:
    """Real photos shipped by scikit-image: a cat, coffee, an astronaut, and the cat beside the coffee.

    Needs ``scikit-image`` (``pip install camlens[demo]``).
    """
    try:
        from skimage import data
    except ImportError:
        raise InputError("the sample photos come from scikit-image: pip install 'camlens[demo]'") from None
    photos = {name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in ("chelsea", "coffee", "astronaut")}
    photos["cat_and_coffee"] = side_by_side(photos["chelsea"], photos["coffee"])
    return photos


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    """Two photos on one canvas, both scaled to the left one's height."""
    height = left.height
    right = right.resize((round(right.width * height / right.height), height), Image.BILINEAR)
    canvas = Image.new("RGB", (left.width + right.width, height))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    return canvas


def to_tensor_image(image: Any) -> torch.Tensor:
    """A PIL image, a uint8/float numpy array (H, W, 3) or a (3, H, W) tensor -> (3, H, W) float in [0, 1]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        tensor = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)
        return tensor.float() / 255.0 if tensor.dtype == torch.uint8 else tensor.float()
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise InputError(f"an image tensor must be (3, H, W) or (1, H, W), got {tuple(image.shape)}")
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        return image.expand(3, -1, -1) if image.shape[0] == 1 else image
    raise InputError(f"cannot use {type(image).__name__} as an image; pass a PIL image, numpy array or tensor")
