"""Images in and out: read files, the sample photos, and preprocessing to a batch.

How pixel values are read (the decoding rule; the README's "When things go wrong" repeats it):

- Files: EXIF orientation applied (a phone photo is explained upright); palette, ``LA``,
  ``RGBA`` images composited over ``background`` (white); CMYK/YCbCr/1-bit converted to RGB;
  16-bit PNG/TIFF (``I;16``) divided by 65535, 32-bit integer (``I``) likewise (values above
  65535 are refused), 32-bit float (``F``) by the float rule below. Images above ``max_pixels``
  (default 89.5 megapixels, PIL's own limit) are refused before they are decoded.
- Arrays and tensors, by dtype: ``uint8`` / 255, ``uint16`` / 65535, ``bool`` as 0/1, other
  integers must lie in 0..255 (/ 255). Floats: in [0, 1] as they are (up to 2 % over- or
  undershoot, as from a bicubic resize, is clipped); in [0, 255] with a maximum above 2:
  divided by 255; a maximum between 1.02 and 2 is ambiguous and refused, as are negative
  values (a normalised image: pass it to ``explain`` directly, or undo the normalisation),
  values above 255, NaN and Inf. The error says how to pass the image instead.
"""

from __future__ import annotations

import os
import threading
import warnings
from functools import lru_cache
from importlib import resources
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.errors import InputError

__all__ = ["load_image", "preprocess", "sample_images", "imagenet_classes", "to_tensor_image", "MAX_PIXELS"]

MAX_PIXELS = 89_478_485  # PIL's Image.MAX_IMAGE_PIXELS: a decompression bomb above this
WHITE = (255, 255, 255)
_FLOAT_SLACK = 0.02  # overshoot of a [0, 1] image (bicubic resize) that is clipped, not refused
_PIL_LIMIT = threading.Lock()  # guards the brief lifting of PIL's own limit (max_pixels above 2x PIL's)


@lru_cache(maxsize=1)
def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names, index -> name (shipped with camlens)."""
    text = resources.files("camlens.io").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


def preprocess(
    images: Sequence[Any],
    size: tuple[int, int] = (224, 224),
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> torch.Tensor:
    """Resize each whole image to ``size`` (no crop, so maps cover the whole photo) and normalise.

    Each image is read by :func:`to_tensor_image` (the module's decoding rule: uint8, uint16,
    float 0..1 or 0..255, EXIF orientation, transparency); ambiguous values raise InputError.

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


def _open(path: str | os.PathLike) -> Image.Image:
    """``Image.open`` (lazy: reads the header only) without PIL's own size refusal.

    PIL refuses images above twice its ``MAX_IMAGE_PIXELS`` when opening them; camlens checks
    the size itself right after opening, before decoding (``max_pixels``), so that the error
    names the size and the way out. PIL's limit is lifted only for that open, under a lock.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own check follows
        try:
            return Image.open(path)
        except Image.DecompressionBombError:
            pass
        with _PIL_LIMIT:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                return Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def _too_large(where: str, width: int, height: int, max_pixels: int) -> InputError:
    return InputError(
        f"{where} is {width}×{height} = {width * height / 1e6:.1f} megapixels, above the limit of "
        f"{max_pixels / 1e6:.1f} (a guard against decompression bombs); if you trust it, raise the limit: "
        "load_image(..., max_pixels=N) or --max-pixels N (0: no limit)"
    )


def load_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = MAX_PIXELS,
    background: tuple[int, int, int] = WHITE,
) -> Image.Image:
    """Read an image file as an upright 8-bit RGB PIL image (the decoding rule: module docstring).

    Args:
        path: the file.
        max_pixels: refuse larger images before decoding them (``None`` or 0: no limit).
        background: RGB that transparent pixels are composited over.

    Raises:
        InputError: a missing, unreadable, undecodable or too large file, saying which.
    """
    where = f"image {str(path)!r}"
    limit = max_pixels or None
    try:
        with _open(path) as image:
            if limit is not None and image.width * image.height > limit:
                raise _too_large(where, image.width, image.height, limit)
            image.load()
            pixels = _pil_pixels(image, background, where)
    except FileNotFoundError:
        raise InputError(f"cannot read {where}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"cannot read {where}: it is a folder; pass image files") from None
    except PermissionError:
        raise InputError(f"cannot read {where}: permission denied") from None
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise InputError(f"cannot read {where}: not an image file PIL can decode ({error.__class__.__name__})") from None
    except Exception as error:  # noqa: BLE001 - a malformed file can make a PIL plugin raise anything
        raise InputError(f"cannot read {where}: the file is damaged ({error.__class__.__name__} while decoding)") from None
    if isinstance(pixels, Image.Image):
        return pixels
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8), "RGB")


def _pil_pixels(image: Image.Image, background: tuple[int, int, int], where: str) -> Image.Image | np.ndarray:
    """Upright RGB: an 8-bit PIL image, or an (H, W, 3) float array in [0, 1] for 16/32-bit modes."""
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode.startswith("I;16"):
        gray = np.asarray(image).astype(np.float32) / 65535.0
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise InputError(
                f"{where} holds 32-bit integers from {values.min()} to {values.max()}: camlens reads 'I' images as "
                "16-bit (0..65535); rescale it to 8 or 16 bits first"
            )
        return np.repeat((values.astype(np.float32) / 65535.0)[..., None], 3, axis=-1)
    if mode == "F":
        gray = _scaled_array(np.asarray(image), where)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode in ("P", "PA") or "A" in mode or "a" in mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _scaled_array(values: np.ndarray, where: str) -> np.ndarray:
    """An array of any dtype -> float32 in [0, 1] by the decoding rule (:func:`_scaled_tensor`)."""
    try:
        tensor = torch.from_numpy(np.array(values, copy=True))  # a PIL buffer is read-only
    except TypeError:
        raise InputError(f"{where} has dtype {values.dtype}; pass uint8, uint16 or float pixels") from None
    return _scaled_tensor(tensor, where).numpy()


def _composite(values: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """(H, W, 1|2|3|4) in [0, 1] -> (H, W, 3): gray repeated, alpha composited over ``background``."""
    channels = values.shape[-1]
    if channels in (2, 4):
        alpha = values[..., -1:]
        colour = values[..., :-1]
        colour = np.repeat(colour, 3, axis=-1) if colour.shape[-1] == 1 else colour
        fill = np.asarray(background, dtype=np.float32) / 255.0
        return colour * alpha + fill * (1 - alpha)
    return np.repeat(values, 3, axis=-1) if channels == 1 else values


def to_tensor_image(image: Any, *, background: tuple[int, int, int] = WHITE) -> torch.Tensor:
    """A PIL image, an (H, W), (H, W, 1|2|3|4) array or a (1|3, H, W) / (H, W) tensor -> (3, H, W) float in [0, 1].

    Values are read by the decoding rule of this module (uint8 / 255, uint16 / 65535, floats in
    [0, 1] or [0, 255], ...); EXIF orientation and transparency are applied to PIL images.
    Ambiguous or invalid values raise :class:`InputError` saying how to pass the image.
    """
    where = f"the {type(image).__name__} image"
    if isinstance(image, Image.Image):
        pixels = _pil_pixels(image, background, "the PIL image")
        values = np.asarray(pixels, dtype=np.float32) / 255.0 if isinstance(pixels, Image.Image) else pixels
        return torch.from_numpy(np.ascontiguousarray(values)).permute(2, 0, 1).float()
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
            hint = " (channels first? use a.transpose(1, 2, 0))" if image.ndim == 3 and image.shape[0] in (1, 3, 4) else ""
            raise InputError(f"an image array must be (H, W) or (H, W, 1|2|3|4), got {image.shape}{hint}")
        if min(image.shape[:2]) == 0:
            raise InputError(f"the image array is empty: shape {image.shape}")
        values = _composite(_scaled_array(image, "the image array"), background)
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).permute(2, 0, 1)
    if isinstance(image, torch.Tensor):
        if image.dim() == 2:
            image = image.unsqueeze(0)
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise InputError(f"an image tensor must be (3, H, W), (1, H, W) or (H, W), got {tuple(image.shape)}")
        if min(image.shape[1:]) == 0:
            raise InputError(f"the image tensor is empty: shape {tuple(image.shape)}")
        tensor = _scaled_tensor(image, "the image tensor")
        return tensor.expand(3, -1, -1) if tensor.shape[0] == 1 else tensor
    raise InputError(f"cannot use {type(image).__name__} as an image; pass a PIL image, numpy array or tensor")


def _scaled_tensor(image: torch.Tensor, where: str) -> torch.Tensor:
    """The decoding rule (module docstring) on a tensor of any dtype -> float32 in [0, 1], on its device."""
    if image.dtype == torch.uint8:
        return image.float() / 255.0
    if image.dtype == torch.uint16:
        return image.float() / 65535.0
    if image.dtype == torch.bool:
        return image.float()
    if not image.is_floating_point():
        if image.is_complex():
            raise InputError(f"{where} is complex ({image.dtype}); pass real pixels")
        wide = image.to(torch.int64)
        low, high = int(wide.min()), int(wide.max())
        if low < 0 or high > 255:
            raise InputError(
                f"{where} is {image.dtype} with values {low}..{high}: integer images are read as 0..255 unless "
                "they are uint8 or uint16 (0..65535); convert it, or pass floats in [0, 1]"
            )
        return image.float() / 255.0
    image = image.float()
    if not bool(torch.isfinite(image).all()):
        raise InputError(f"{where} contains NaN or Inf; replace those pixels first")
    low, high = float(image.min()), float(image.max())
    if low < -_FLOAT_SLACK:
        raise InputError(
            f"{where} has negative values (min {low:.3g}): it looks normalised (mean/std). Pass the image in "
            "[0, 1] (floats) or 0..255 (uint8), or give the normalised tensor to explain() directly"
        )
    if high <= 1 + _FLOAT_SLACK:
        return image.clamp(0, 1)
    if high <= 2:
        raise InputError(
            f"{where} has float values up to {high:.3g}: neither clearly 0..1 nor 0..255. Clip it to [0, 1] "
            "or pass uint8 0..255"
        )
    if high <= 255 + 0.5:
        return (image / 255.0).clamp(0, 1)
    raise InputError(
        f"{where} has float values up to {high:.4g}, above 255: for 16-bit data pass uint16 (read as / 65535) "
        "or divide by the maximum yourself"
    )
