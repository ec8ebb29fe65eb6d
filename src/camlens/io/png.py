"""A fast PNG encoder for the run folder's overlays: 8-bit RGB, one fixed row filter, zlib at speed.

Pillow's PNG writer tries every row filter on every row and has no option to fix one; on the
benchmark's overlays (photos of 256-512 px under a heatmap) it takes about twice as long as
this encoder (``python benchmarks/bench_dataset.py`` prints both). PNG's *Average* filter
(each byte minus the mean of the byte one pixel to its left and the byte above it) turns a
photo under a smooth heatmap into small numbers, which zlib's Huffman-only strategy codes
well. The files are ordinary PNGs (every decoder reads them; the tests decode them with Pillow).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

__all__ = ["encode_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_AVERAGE = 3  # PNG filter type 3: Raw(x) - floor((Raw(x - bytes per pixel) + Prior(x)) / 2), modulo 256


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def encode_png(rgb: Any) -> bytes:
    """An (H, W, 3) uint8 array or tensor -> the bytes of an RGB PNG file (Average filter, Huffman-only zlib).

    Example:
        >>> import io, numpy as np
        >>> from PIL import Image
        >>> rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
        >>> bool((np.asarray(Image.open(io.BytesIO(encode_png(rgb)))) == rgb).all())
        True
    """
    pixels = np.asarray(rgb.cpu() if hasattr(rgb, "cpu") else rgb)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
        raise ValueError(f"encode_png takes an (H, W, 3) uint8 image, got {pixels.dtype} of shape {pixels.shape}")
    height, width, channels = pixels.shape
    raw = pixels.reshape(height, width * channels)
    rows = np.empty((height, 1 + width * channels), dtype=np.uint8)
    rows[:, 0] = _AVERAGE
    filtered = rows[:, 1:]
    # uint8 arithmetic wraps modulo 256, as PNG's filters do; floor((a + b) / 2) without overflow:
    # (a >> 1) + (b >> 1) + (a & b & 1). Outside the image (left of the first pixel, above the
    # first row) PNG reads zeros.
    filtered[0, :channels] = raw[0, :channels]
    np.subtract(raw[0, channels:], raw[0, :-channels] >> 1, out=filtered[0, channels:])
    above = raw[:-1]
    np.subtract(raw[1:, :channels], above[:, :channels] >> 1, out=filtered[1:, :channels])
    left, up = raw[1:, :-channels], above[:, channels:]
    mean = (left >> 1) + (up >> 1) + (left & up & 1)
    np.subtract(raw[1:, channels:], mean, out=filtered[1:, channels:])
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_HUFFMAN_ONLY)
    body = compressor.compress(rows.data) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, adaptive, no interlace
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
