"""Swin transformer: a channels-last (N, 7, 7, 768) output, found and read as such.

    python examples/swin.py [--out out-swin] [--pretrained]

timm's ``swin_tiny_patch4_window7_224`` keeps its feature maps channels-last, ``(N, h, w, C)``:
read as ``(N, C, h, w)`` they would give a 7×768 "map". camlens tells the layout from the
input's grid at the layer's stride (7 × 7 at stride 32) and the LayerNorm over the last
dimension, picks the last stage (``layers``) and explains the cat photo with Grad-CAM and
Score-CAM (``top_k=32``: only the 32 channels with the largest Grad-CAM share are scored). It
prints the target layer and the layout and writes ``swin_tiny_patch4_window7_224_<method>.png``
into ``--out``. With pytorch-grad-cam the same map needs
``reshape_transform=lambda t: t.permute(0, 3, 1, 2)``.

The weights are RANDOM by default (nothing is downloaded): the maps show the mechanics, not
what a trained Swin looks at. ``--pretrained`` calls ``timm.create_model(name, pretrained=True)``,
which downloads the weights from the Hugging Face hub (needs internet). About 10 s on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import camlens

NAME = "swin_tiny_patch4_window7_224"


def build(pretrained: bool = False) -> torch.nn.Module:
    """timm's Swin-T in eval mode; random weights unless ``pretrained`` (downloads them)."""
    import timm

    torch.manual_seed(0)
    return timm.create_model(NAME, pretrained=pretrained).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out-swin"), help="folder for the overlays (default out-swin)")
    parser.add_argument("--pretrained", action="store_true", help="timm pretrained=True: downloads the weights (internet)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = build(args.pretrained)
    photo = camlens.sample_images()["chelsea"]
    x = camlens.preprocess([photo], (224, 224), model.pretrained_cfg["mean"], model.pretrained_cfg["std"])
    with torch.no_grad():
        print(f"model: {NAME} ({'pretrained' if args.pretrained else 'random weights'}); "
              f"its last stage outputs {tuple(model.layers(model.patch_embed(x)).shape)}")
    results = camlens.explain(model, x, ["gradcam", "scorecam"], top_k=32, progress=False)
    first = results["gradcam"]
    print(f"  target layer: {first.target_layer}")
    print(f"  layout: {first.layout}")
    for method, e in results.items():
        path = camlens.save_image(camlens.overlay(photo, e.maps[0, 0]), args.out / f"{NAME}_{method}.png")
        print(f"  {method}: class {int(e.classes[0, 0])}, raw map {tuple(e.raw.shape)}; wrote {path}")


if __name__ == "__main__":
    main()
