"""Vision transformers: camlens finds the layer and reads its tokens as a grid, no reshape_transform.

    python examples/vit.py [--out out-vit] [--pretrained]

Two timm ViTs, each explained on scikit-image's cat photo with Grad-CAM, no layer or
layout given:

- ``vit_small_patch16_224``: 1 class token + 14×14 patch tokens;
- ``vit_small_patch14_reg4_dinov2`` (DINOv2 with 4 register tokens, built at 224 px):
  5 prefix tokens + 16×16 patches.

For each it prints the target layer camlens picked (the last block's ``norm1``: the tokens
that enter the last attention; after it only the class token reaches the head, so later
layers' patch tokens get no gradient) and the layout it read from the patch embedding, then
writes ``<model>_gradcam.png`` (the overlay) into ``--out``. pytorch-grad-cam needs a
``reshape_transform`` that drops the prefix tokens for the same map; camlens counts them.

The weights are RANDOM by default (nothing is downloaded), so the maps show the mechanics,
not what a trained ViT looks at. ``--pretrained`` calls ``timm.create_model(name,
pretrained=True)``, which downloads the weights from the Hugging Face hub (needs internet).
About 10 s on a laptop CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import camlens

MODELS = {
    "vit_small_patch16_224": {},
    "vit_small_patch14_reg4_dinov2": {"img_size": 224},  # DINOv2 is trained at 518 px; 224 keeps it fast
}


def build(name: str, pretrained: bool = False) -> torch.nn.Module:
    """A timm ViT in eval mode; random weights unless ``pretrained`` (downloads them)."""
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=pretrained, **MODELS[name]).eval()


def inputs(model: torch.nn.Module):
    """(photo, x): the cat photo and its (1, 3, 224, 224) batch, normalised as the model was trained."""
    config = model.pretrained_cfg
    photo = camlens.sample_images()["chelsea"]
    return photo, camlens.preprocess([photo], (224, 224), config["mean"], config["std"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out-vit"), help="folder for the overlays (default out-vit)")
    parser.add_argument("--pretrained", action="store_true", help="timm pretrained=True: downloads the weights (internet)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        model = build(name, args.pretrained)
        photo, x = inputs(model)
        e = camlens.explain(model, x, "gradcam")  # no target_layer, no layout, no reshape
        print(f"model: {name} ({'pretrained' if args.pretrained else 'random weights'})")
        print(f"  target layer: {e.target_layer}")
        print(f"  layout: {e.layout}")
        print(f"  raw map {tuple(e.raw.shape)} -> maps {tuple(e.maps.shape)}; class {int(e.classes[0, 0])}, "
              f"score {float(e.scores[0, 0]):.3f}")
        path = camlens.save_image(camlens.overlay(photo, e.maps[0, 0]), args.out / f"{name}_gradcam.png")
        print(f"  wrote {path}")


if __name__ == "__main__":
    main()
