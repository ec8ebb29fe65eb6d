"""Images are decoded by their real value range, upright, with transparency handled (issue 18, group 3)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import camlens
from camlens.io.images import load_image, preprocess, to_tensor_image


def _png16_rgb(path, pixels: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (PIL cannot write 48-bit PNGs)."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


GRADIENT16 = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grayscale_files_keep_their_range(tmp_path, suffix):
    path = tmp_path / f"gray16{suffix}"
    Image.fromarray(GRADIENT16).save(path)
    pixels = to_tensor_image(load_image(path))
    expected = torch.from_numpy(GRADIENT16.astype(np.float32) / 65535)
    assert (pixels[0] - expected).abs().max() < 1 / 255  # was: all white (clipped at 255)
    assert 0.45 < float(pixels.mean()) < 0.55


def test_16_bit_rgb_png_keeps_its_range(tmp_path):
    path = tmp_path / "rgb16.png"
    _png16_rgb(path, np.stack([GRADIENT16, GRADIENT16 // 2, GRADIENT16 // 4], -1))
    pixels = to_tensor_image(load_image(path))
    assert abs(float(pixels[0].mean()) - 0.5) < 0.01 and abs(float(pixels[1].mean()) - 0.25) < 0.01


def test_float_tiff_in_0_1_and_in_0_255(tmp_path):
    values = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    Image.fromarray(values).save(tmp_path / "unit.tif")
    Image.fromarray(values * 255).save(tmp_path / "byte.tif")
    for name in ("unit.tif", "byte.tif"):
        pixels = to_tensor_image(load_image(tmp_path / name))
        assert abs(float(pixels.mean()) - 0.5) < 0.01, name


def test_arrays_by_dtype_and_range():
    half8 = np.full((4, 4, 3), 128, np.uint8)
    cases = {
        "uint8": (half8, 128 / 255),
        "uint16": (np.full((4, 4, 3), 32768, np.uint16), 32768 / 65535),  # was: 1.0 (white) after clamp
        "float 0-1": (np.full((4, 4, 3), 0.25, np.float32), 0.25),
        "float 0-255": (np.full((4, 4, 3), 64.0), 64 / 255),  # was: 1.0 (white)
        "int64 0-255": (np.full((4, 4, 3), 51, np.int64), 0.2),
        "bool": (np.ones((4, 4), bool), 1.0),
        "gray": (np.full((4, 4), 255, np.uint8), 1.0),
        "tensor uint8": (torch.full((3, 4, 4), 51, dtype=torch.uint8), 0.2),
        "tensor float 0-255": (torch.full((3, 4, 4), 51.0), 0.2),  # was: 51 (clamped to 1 by preprocess)
        "tensor 0-1 with bicubic overshoot": (torch.full((3, 4, 4), 1.01), 1.0),
    }
    for name, (image, value) in cases.items():
        pixels = to_tensor_image(image)
        assert pixels.shape == (3, 4, 4) and pixels.dtype == torch.float32, name
        torch.testing.assert_close(pixels, torch.full_like(pixels, value), msg=name)


@pytest.mark.parametrize("image, match", [
    (np.full((4, 4, 3), 1.5), "neither clearly 0..1 nor 0..255"),
    (np.full((4, 4, 3), -0.5), "normalised"),
    (torch.randn(3, 4, 4), "normalised"),
    (np.full((4, 4, 3), 300.0), "above 255"),
    (np.full((4, 4, 3), 1000, np.int32), "uint16"),
    (np.full((4, 4, 3), np.nan), "NaN"),
    (torch.full((3, 4, 4), float("inf")), "NaN or Inf"),
    (np.zeros((3, 8, 8), np.uint8), "channels first"),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
    (np.zeros((4, 4, 3), dtype=object), "dtype"),
    ("not an image", "cannot use str"),
])
def test_ambiguous_or_invalid_arrays_say_how_to_pass_them(image, match):
    with pytest.raises(camlens.InputError, match=match):
        to_tensor_image(image)
    with pytest.raises(camlens.InputError):
        preprocess([image])


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with Orientation=6 (rotate 90° clockwise to view)."""
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high as stored
    stored[:, :10] = 255  # white band on the stored left edge
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=100)
    upright = load_image(path)
    assert upright.size == (20, 40)  # viewed: 20 wide, 40 high
    pixels = to_tensor_image(upright)
    assert float(pixels[:, :8].mean()) > 0.9 and float(pixels[:, -8:].mean()) < 0.1  # the band is now on top
    with Image.open(path) as raw:  # a PIL image opened by the user is made upright too
        assert tuple(to_tensor_image(raw).shape[1:]) == (40, 20)


@pytest.mark.parametrize("mode", ["P", "PA", "LA", "RGBA", "CMYK", "1", "L", "I;16", "F", "YCbCr"])
def test_every_pil_mode_gives_rgb_in_0_1(tmp_path, mode):
    image = Image.new("RGB", (8, 6), (200, 100, 50))
    converted = image.convert(mode) if mode not in ("I;16", "F") else image.convert("L").convert(mode)
    pixels = to_tensor_image(converted)
    assert pixels.shape == (3, 6, 8) and float(pixels.min()) >= 0 and float(pixels.max()) <= 1
    if mode == "I;16":  # a 16-bit image made from 8-bit values holds 0..255 of 65535: dark, as it should be
        assert float(pixels.max()) < 0.01
    else:
        assert float(pixels.max()) > 0.1  # not black: the values were read, not clipped away


def test_transparent_pixels_are_composited_over_the_background(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    path = tmp_path / "clear.png"
    Image.fromarray(rgba, "RGBA").save(path)
    assert float(to_tensor_image(load_image(path)).min()) == 1.0  # over white, not black
    black = load_image(path, background=(0, 0, 0))
    assert float(to_tensor_image(black).max()) == 0.0
    palette = Image.new("P", (4, 4), 0)
    palette.info["transparency"] = 0
    assert float(to_tensor_image(palette).min()) == 1.0


def test_pixel_limit_is_a_clear_error_with_a_way_out(tmp_path):
    path = tmp_path / "big.png"
    Image.new("1", (3000, 2000)).save(path)  # 6 megapixels, a small file
    with pytest.raises(camlens.InputError, match=r"3000×2000 = 6.0 megapixels.*max_pixels"):
        load_image(path, max_pixels=1_000_000)
    assert load_image(path, max_pixels=10_000_000).size == (3000, 2000)


def test_image_above_pils_own_bomb_limit_is_a_clear_error(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (14000, 14000)).save(path)  # 196 megapixels (the case); 1 bit per pixel in memory
    with pytest.raises(camlens.InputError, match="megapixels"):
        load_image(path)
    with pytest.raises(camlens.InputError, match="14000×14000"):  # a raised limit still applies our own check
        load_image(path, max_pixels=150_000_000)


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"GIF89a" + bytes(range(256))])
def test_undecodable_files_raise_input_error(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(camlens.InputError, match="cannot read image"):
        load_image(path)


def test_truncated_jpeg_is_an_input_error(tmp_path, photos):
    path = tmp_path / "cut.jpg"
    photos["chelsea"].save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(camlens.InputError, match="cannot read image"):
        load_image(path)
