"""Seed 003, option 2: VGG16's linear layers as convolutions, a dense class-score map.

    python examples/heads_vgg_fcmap.py [OUT_DIR]     (default: docs/images)

``camlens.fully_convolutional`` turns VGG16's 25088->4096->4096->1000 linear layers into a
7×7 convolution and two 1×1 convolutions. At 224×224 it gives the original logits (the
script prints the max abs difference, for VGG16 and AlexNet); on the cat photo enlarged to
448×448 it gives a 1000×8×8 map of class scores, one per 224-pixel window: the dense
"approximate CAM" of seed 003, ``method="fcmap"`` in ``camlens.explain``.

VGG16 and AlexNet have RANDOM weights here (no pretrained weights can be downloaded), so
the picture shows the shapes and the mechanics, not what a trained VGG sees.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torchvision

import camlens


def shrink(path: Path) -> Path:
    """Keep the committed PNGs small: a 64-colour palette."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)
    return path
from camlens.io.images import preprocess, sample_images


def main() -> None:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    photo = sample_images()["chelsea"]
    x = preprocess([photo], (224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for arch in ("alexnet", "vgg16"):
        model = getattr(torchvision.models, arch)().eval()
        print(camlens.analyze_head(model).reason[:160], "...")
        fc = camlens.fully_convolutional(model)
        with torch.no_grad():
            diff = (fc(x).flatten(1) - model(x)).abs().max().item()
            dense = fc(torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear"))
        print(f"{arch}: max |fully convolutional - original| at 224 = {diff:.2e}; at 448: {tuple(dense.shape)}")
        print(fc.head)
    out = camlens.explain(model, x, method=["fcmap", "gradcam"], fcmap_scale=2)
    print(f"fcmap raw {tuple(out['fcmap'].raw.shape)}, gradcam raw {tuple(out['gradcam'].raw.shape)}")
    figure = camlens.plot_explanation([photo.resize((224, 224))], out)
    print("wrote", shrink(camlens.save_figure(figure, out_dir / "heads_vgg16_fcmap.png", dpi=60)))


if __name__ == "__main__":
    main()
