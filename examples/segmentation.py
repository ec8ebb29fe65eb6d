"""Semantic segmentation: explain the pixels a class wins (torchvision DeepLabV3 and FCN).

    python examples/segmentation.py [--out out-segmentation] [--class C] [--pretrained]

A segmentation model outputs ``{"out": (N, classes, H, W)}``, not one score per class. The
target ``SegmentationMask(c)`` explains the sum of class ``c``'s logits over the pixels where
``c`` wins (pytorch-grad-cam's ``SemanticSegmentationTarget``; ``mask=`` for a region of your
own). For torchvision's ``deeplabv3_mobilenet_v3_large`` and ``fcn_resnet50`` the script
explains the class that wins most pixels of the cat photo (or ``--class``), prints the layer
camlens found (the backbone's last feature map), its layout and the class's share of the
pixels, and writes ``<model>_class<c>.png`` (Grad-CAM overlay) and ``<model>_class<c>_mask.png``
(the pixels explained) into ``--out``.

The weights are RANDOM by default (``weights=None, weights_backbone=None``: nothing is
downloaded), so the winning class is arbitrary. ``--pretrained`` loads torchvision's
``weights="DEFAULT"`` (COCO with the 20 Pascal VOC classes; downloads them, needs internet),
and ``--class 8`` explains "cat". The CLI does the same:
``camlens explain cat.jpg --model deeplabv3_mobilenet_v3_large --weights DEFAULT --target-class 8``. About 10 s on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import camlens
from camlens.targets import SegmentationMask

MODELS = ("deeplabv3_mobilenet_v3_large", "fcn_resnet50")


def build(name: str, pretrained: bool = False) -> torch.nn.Module:
    """A torchvision segmentation model in eval mode; random weights unless ``pretrained`` (downloads them)."""
    import torchvision

    torch.manual_seed(0)
    if pretrained:
        return torchvision.models.get_model(name, weights="DEFAULT").eval()
    return torchvision.models.get_model(name, weights=None, weights_backbone=None).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out-segmentation"), help="folder for the overlays")
    parser.add_argument("--class", dest="klass", type=int, default=None,
                        help="the class to explain (default: the one that wins most pixels)")
    parser.add_argument("--pretrained", action="store_true", help='torchvision weights="DEFAULT": downloads them (internet)')
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    photo = camlens.sample_images()["chelsea"]
    x = camlens.preprocess([photo], (224, 224))  # ImageNet mean and std, as torchvision's weights expect
    for name in MODELS:
        model = build(name, args.pretrained)
        with torch.no_grad():
            winners = model(x)["out"].argmax(1)[0]  # (224, 224): the class of each pixel
        cls = int(winners.flatten().mode().values) if args.klass is None else args.klass
        e = camlens.explain(model, x, "gradcam", target=SegmentationMask(cls))
        print(f"model: {name} ({'pretrained' if args.pretrained else 'random weights'})")
        print(f"  target layer: {e.target_layer}")
        print(f"  layout: {e.layout}")
        print(f"  class {cls} wins {float((winners == cls).float().mean()):.0%} of the pixels; "
              f"explained: {e.score_source} = {float(e.scores[0, 0]):.1f}")
        stem = f"{name}_class{cls}"
        print(f"  wrote {camlens.save_image(camlens.overlay(photo, e.maps[0, 0]), args.out / f'{stem}.png')}")
        mask = (winners == cls).float()
        print(f"  wrote {camlens.save_image(camlens.overlay(photo, mask, alpha=0.4, cmap='gray'), args.out / f'{stem}_mask.png')}")


if __name__ == "__main__":
    main()
