"""Object detection: one map per detection, and the map of one box (torchvision Faster R-CNN).

    python examples/detection.py [--out out-detection] [--box X0,Y0,X1,Y1] [--pretrained]

A detector outputs a list of ``{"boxes", "scores", "labels"}``, one per image. camlens explains:

- ``camlens.explain_detections(model, image, score=s)``: every detection scoring at least ``s``,
  one map each, from one forward (``Explanation.boxes`` holds the boxes);
- ``target=BoxScore(box, label=...)``: the score of the detection that best matches a box
  (IoU >= 0.5), e.g. to ask "why this box?" (pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``;
  ``with_iou=True`` adds the IoU to the score, as it does).

For torchvision's ``fasterrcnn_mobilenet_v3_large_320_fpn`` on the cat photo (as a [0, 1]
320×320 image: detectors normalise and resize inside) it prints the target layer (the
backbone's last map, ``backbone.body.16``), its layout and the detections, and writes into
``--out`` ``detection<k>_<label>.png`` (each detection's Grad-CAM with its box drawn) and
``boxscore.png`` (the map of ``--box``, default the best detection's box).

The weights are RANDOM by default (``weights=None, weights_backbone=None``: nothing is
downloaded). torchvision's initialisation of an untrained backbone makes the features vanish
(no detection at all), so the random backbone is re-initialised with Kaiming's fan-in rule and
the box classifier with std 0.01; the boxes and labels then mean nothing. ``--pretrained`` loads
``weights="DEFAULT"`` (COCO; downloads them, needs internet), which finds the cat. The CLI:
``camlens explain cat.jpg --model fasterrcnn_mobilenet_v3_large_320_fpn --weights DEFAULT --score 0.5``
(or ``--box X0,Y0,X1,Y1``). About 5 s on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

import camlens
from camlens.targets import BoxScore

NAME = "fasterrcnn_mobilenet_v3_large_320_fpn"


def build(pretrained: bool = False) -> tuple[nn.Module, list[str] | None]:
    """(detector in eval mode, COCO category names or None); random weights unless ``pretrained``."""
    import torchvision

    detection = torchvision.models.detection
    if pretrained:
        weights = detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.DEFAULT
        return detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=weights).eval(), weights.meta["categories"]
    torch.manual_seed(0)
    model = detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, box_score_thresh=0.05)
    for module in model.backbone.body.modules():  # see the docstring: features that do not vanish
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
    nn.init.normal_(model.roi_heads.box_predictor.cls_score.weight, std=0.01)
    return model.eval(), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out-detection"), help="folder for the overlays")
    parser.add_argument("--box", default=None, help="x0,y0,x1,y1 in the 320×320 image's pixels (default: the best detection's)")
    parser.add_argument("--pretrained", action="store_true", help='torchvision weights="DEFAULT": downloads them (internet)')
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model, categories = build(args.pretrained)
    photo = camlens.sample_images()["chelsea"].resize((320, 320))
    image = torch.from_numpy(np.array(photo)).permute(2, 0, 1).float() / 255  # (3, 320, 320) in [0, 1]

    def label(k: int) -> str:
        return categories[k] if categories else f"class {k}"

    with torch.no_grad():
        found = model(image[None])[0]
    print(f"model: {NAME} ({'pretrained' if args.pretrained else 'random weights'}): "
          f"{len(found['scores'])} detections")
    if len(found["scores"]) == 0:
        raise SystemExit("the detector found nothing in the photo; nothing to explain")
    score = min(0.5, float(found["scores"][min(2, len(found["scores"]) - 1)]))  # at most 3 shown here
    e = camlens.explain_detections(model, image, score=score)
    print(f"  target layer: {e.target_layer}")
    print(f"  layout: {e.layout}")
    for k in range(e.maps.shape[1]):
        cls, box = int(e.classes[0, k]), e.boxes[0, k]
        picture = camlens.draw_detections(camlens.overlay(photo, e.maps[0, k]), box[None], [label(cls)], e.scores[0, k:k + 1])
        path = camlens.save_image(picture, args.out / f"detection{k}_{label(cls).replace(' ', '-')}.png")
        print(f"  detection {k}: {label(cls)}, score {float(e.scores[0, k]):.2f}, box {[round(v) for v in box.tolist()]}; "
              f"wrote {path}")

    box = [float(v) for v in args.box.split(",")] if args.box else e.boxes[0, 0].tolist()
    one = camlens.explain(model, image[None], "gradcam", target=BoxScore(box, with_iou=True))
    matched = one.boxes[0, 0]
    picture = camlens.draw_detections(camlens.overlay(photo, one.maps[0, 0]), matched[None], [label(int(one.classes[0, 0]))])
    path = camlens.save_image(picture, args.out / "boxscore.png")
    print(f"  BoxScore({[round(v) for v in box]}): matched {label(int(one.classes[0, 0]))} at "
          f"{[round(v) for v in matched.tolist()]}, {one.score_source} = {float(one.scores[0, 0]):.2f}; wrote {path}")


if __name__ == "__main__":
    main()
