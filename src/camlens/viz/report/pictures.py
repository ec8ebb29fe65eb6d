"""The report's pictures: photo thumbnails (JPEG files) and maps packed in small chunk files.

Thumbnails: PIL decodes JPEGs at a reduced scale (``Image.draft``) before resizing, so a large
photo costs little more than a small one; PIL releases the GIL while decoding, resizing and
encoding, so a thread pool uses several cores without starting processes.

Maps: the browser colours them, so they are stored as they are computed — each map ReLU'd and
min-max normalised to 0..255 at the target layer's resolution (7x7 for a ResNet), packed for
``chunk`` consecutive images into one ``maps/<method>/<n>.js`` file that the page loads when
one of those images is on screen. A 7x7 map is 49 bytes; 256 of them are one small request
instead of 256 files.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_thumbnail", "map_bytes", "write_map_chunk", "chunk_size", "thumbnail_path"]

THUMB_QUALITY = 82


def thumbnail_path(folder: Path, image_id: int) -> Path:
    """``thumbs/<image_id // 1000>/<image_id>.jpg``: a thousand files per folder at most."""
    return folder / "thumbs" / str(image_id // 1000) / f"{image_id}.jpg"


def write_thumbnail(source: Path, target: Path, size: int) -> tuple[int, int] | None:
    """Write a JPEG of ``source`` whose longest side is ``size`` (never enlarged); returns its size.

    None when the photo cannot be decoded (the card then says so). JPEGs decode straight at
    1/2, 1/4 or 1/8 scale when that still covers the thumbnail; the box filter then resizes
    (antialiased, 1.7x faster than bilinear here). EXIF orientation is not applied, as
    :func:`camlens.load_image` does not apply it: the thumbnail shows the pixels the maps
    cover. The file is written in place: the whole report folder is renamed into place once
    complete.
    """
    try:
        with Image.open(source) as image:
            width, height = image.size
            scale = min(1.0, size / max(width, height, 1))
            box = (max(1, round(width * scale)), max(1, round(height * scale)))
            image.draft("RGB", box)
            image.load()
            rgb = image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    if rgb.size != box:
        rgb = rgb.resize(box, Image.BOX, reducing_gap=2.0)
    target.parent.mkdir(parents=True, exist_ok=True)
    rgb.save(target, format="JPEG", quality=THUMB_QUALITY)
    return box


def map_bytes(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., h, w) raw maps -> uint8 pictures (ReLU, min-max to 0..255) and a "has a map" mask.

    A map that is all NaN (an image skipped, or not written yet) gets mask False; a constant
    map becomes zeros, as :func:`camlens.normalize_maps` does.
    """
    values = np.asarray(maps, dtype=np.float32)
    finite = ~np.isnan(values).all(axis=(-2, -1))
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    low = values.min(axis=(-2, -1), keepdims=True)
    span = values.max(axis=(-2, -1), keepdims=True) - low
    safe = np.where(span > 1e-12, span, 1.0)
    scaled = np.where(span > 1e-12, (values - low) / safe, 0.0)
    return (scaled * 255 + 0.5).astype(np.uint8), finite


def chunk_size(k: int, h: int, w: int, target_bytes: int = 48_000) -> int:
    """Images per map chunk file: about ``target_bytes`` of maps, between 16 and 1024 images."""
    return int(min(1024, max(16, target_bytes // max(1, k * h * w))))


def write_map_chunk(path: Path, method_index: int, chunk: int, first: int, pictures: np.ndarray) -> None:
    """One ``maps/<method>/<chunk>.js`` file: a call the page answers, with base64 uint8 maps.

    ``pictures`` is (count, K, h, w) uint8. The file holds only numbers and base64, so it is
    safe to load as a script.
    """
    count, k, h, w = pictures.shape
    payload = {
        "method": method_index, "chunk": chunk, "first": first, "count": count, "k": k, "h": h, "w": w,
        "data": base64.b64encode(np.ascontiguousarray(pictures).tobytes()).decode("ascii"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"camlensMaps({json.dumps(payload, separators=(',', ':'))});\n", encoding="ascii")
