"""Model loading, colormaps, overlays, normalisation, and the public API surface."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import camlens
from camlens.io.models import RandomWeightsWarning, load_model
from camlens.io.png import encode_png
from camlens.viz.overlay import apply_colormap, overlay, overlay_rgb8


def test_random_torchvision_weights_warn_loudly():
    with pytest.warns(RandomWeightsWarning, match="RANDOM weights"):
        loaded = load_model("resnet18")
    assert not loaded.pretrained and loaded.label(285) == "Egyptian cat"


def test_state_dict_round_trip_and_exported_program(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    loaded = load_model(tmp_path / "ckpt.pth", arch="resnet18")
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(loaded.model(x), model(x))
    with pytest.raises(camlens.InputError, match="does not fit architecture"):
        load_model(tmp_path / "ckpt.pth", arch="resnet34")
    program = torch.export.export(model, (x,))
    torch.export.save(program, tmp_path / "model.pt2")
    exported = load_model(tmp_path / "model.pt2").model
    got = camlens.explain(exported, x, target_layer="layer4")
    want = camlens.explain(model, x, target_layer="layer4")
    torch.testing.assert_close(got.raw, want.raw, rtol=1e-4, atol=1e-5)


def test_colormap_matches_matplotlib():
    values = torch.tensor([[0.0, 0.25], [0.5, 1.0]])
    got = apply_colormap(values, "viridis")  # (3, 2, 2)
    cmap = matplotlib.colormaps["viridis"]
    expected = torch.tensor(cmap((values.numpy() * 255).round().astype(int))[..., :3], dtype=torch.float32)
    torch.testing.assert_close(got.permute(1, 2, 0), expected)


def test_overlay_blends_and_keeps_the_image_size():
    image = Image.new("RGB", (40, 30), (255, 0, 0))
    heat = torch.zeros(7, 7)
    assert overlay(image, heat, alpha=0.0).tobytes() == image.tobytes()
    full = np.asarray(overlay(image, torch.ones(7, 7), alpha=1.0))
    assert full.shape == (30, 40, 3)
    red_end = (np.array(matplotlib.colormaps["jet"](1.0)[:3]) * 255).round()
    assert np.abs(full[15, 20] - red_end).max() <= 1
    batch = overlay(torch.zeros(2, 3, 16, 16), torch.rand(2, 4, 4), alpha=0.5)
    assert batch.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("size, alpha, cmap", [((37, 53), 0.5, "jet"), ((224, 160), 0.3, "magma"), ((5, 9), 1.0, "turbo")])
def test_overlay_rgb8_equals_the_pil_overlay_bit_for_bit(size, alpha, cmap):
    generator = torch.Generator().manual_seed(sum(size))
    pixels = torch.randint(0, 256, (*size, 3), dtype=torch.uint8, generator=generator)
    heat = torch.rand(7, 7, generator=generator)
    want = np.asarray(overlay(Image.fromarray(pixels.numpy()), heat, alpha=alpha, cmap=cmap))
    got = overlay_rgb8(pixels, heat, alpha=alpha, cmap=cmap)
    assert got.dtype == torch.uint8 and got.shape == (*size, 3)
    np.testing.assert_array_equal(got.numpy(), want)


def test_overlay_rgb8_by_hand_and_its_errors():
    pixels = torch.full((4, 6, 3), 100, dtype=torch.uint8)
    got = overlay_rgb8(pixels, torch.ones(2, 2), alpha=0.25, cmap="jet")  # every pixel: the colormap's top end
    top = np.array(matplotlib.colormaps["jet"](1.0)[:3], dtype=np.float32)
    want = np.round(np.clip(np.float32(0.75) * np.float32(100 / 255) + np.float32(0.25) * top, 0, 1) * 255)
    assert (got.numpy() == want.astype(np.uint8)).all()
    with pytest.raises(camlens.InputError, match="uint8"):
        overlay_rgb8(pixels.float(), torch.ones(2, 2))
    with pytest.raises(camlens.InputError, match="alpha"):
        overlay_rgb8(pixels, torch.ones(2, 2), alpha=1.5)
    with pytest.raises(camlens.InputError, match="one"):
        overlay_rgb8(pixels, torch.ones(2, 2, 2))
    with pytest.raises(camlens.InputError, match="NaN"):
        overlay_rgb8(pixels, torch.full((2, 2), float("nan")))


@pytest.mark.parametrize("height, width", [(1, 1), (1, 7), (9, 1), (34, 42), (171, 256)])
def test_encode_png_decodes_to_the_same_pixels(height, width):
    import io

    generator = torch.Generator().manual_seed(height * 1000 + width)
    noise = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator)
    smooth = torch.linspace(0, 255, width).round().to(torch.uint8)[None, :, None].expand(height, width, 3).contiguous()
    for rgb in (noise, smooth, torch.zeros(height, width, 3, dtype=torch.uint8)):
        data = encode_png(rgb)
        with Image.open(io.BytesIO(data)) as decoded:
            assert decoded.format == "PNG" and decoded.mode == "RGB" and decoded.size == (width, height)
            np.testing.assert_array_equal(np.asarray(decoded), rgb.numpy())
    if height * width > 1000:  # the Sub filter turns a smooth ramp into small repeated numbers
        assert len(encode_png(smooth)) < smooth.numel() // 4
    with pytest.raises(ValueError, match="uint8"):
        encode_png(noise.float())
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        encode_png(noise[..., :2])


def test_normalize_never_gives_nan():
    maps = torch.stack([torch.zeros(4, 4), torch.full((4, 4), 3.0), torch.arange(16.0).view(4, 4)])[None]
    out = camlens.normalize_maps(maps)
    assert not out.isnan().any()
    assert out[0, 0].eq(0).all() and out[0, 1].eq(0).all()
    torch.testing.assert_close(out[0, 2], torch.arange(16.0).view(4, 4) / 15)


def test_public_api_surface():
    expected = {"explain", "Explanation", "find_target_layer", "describe", "Hook", "Hooks", "capture",
                "list_methods", "register_method", "overlay", "load_model", "CamlensError"}
    missing = expected - set(dir(camlens))
    assert not missing, missing
    assert {"cam", "gradcam"} <= set(camlens.list_methods())
