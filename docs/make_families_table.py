"""The README's table of model families: the target layer and layout camlens finds in each.

    python docs/make_families_table.py            # compute the rows, rewrite the table in README.md
    python docs/make_families_table.py --print    # print the table, leave README.md alone

Each model is built with random weights (nothing is downloaded; the embedding row uses the
embedded EfficientNet-Lite0) at its usual input size and handed to ``camlens.describe``: the
"target found" and "layout" columns are what camlens picks by itself, no argument given. The
"checked against" column says what the tests compare camlens's maps with for that family
(tests/test_transformers.py, tests/test_targets.py, tests/test_families.py); that column is
written here by hand, the other two are computed. ``tests/test_examples.py`` recomputes the rows
and fails when the table in README.md differs. About 75 s of CPU time.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKERS = ("<!-- families -->", "<!-- /families -->")

_PEER_4 = "pytorch-grad-cam with its `reshape_transform`: Grad-CAM, Grad-CAM++, LayerCAM, Score-CAM r ≥ 0.999"


@dataclass(frozen=True)
class Family:
    """One row: what is shown, how the model is built (random weights), its input size, what checks it."""

    name: str
    build: Callable[[], object]
    input_size: tuple[int, int, int]
    checked: str


def _timm(name: str, **kwargs) -> Callable[[], object]:
    def build():
        import timm

        return timm.create_model(name, pretrained=False, **kwargs)

    return build


def _torchvision(name: str) -> Callable[[], object]:
    def build():
        import torchvision

        dense = name in torchvision.models.list_models(module=torchvision.models.detection) + \
            torchvision.models.list_models(module=torchvision.models.segmentation)
        extra = {"weights_backbone": None} if dense else {}  # nothing to download
        return torchvision.models.get_model(name, weights=None, **extra)

    return build


def lite0_embedding():
    """EfficientNet-Lite0 (embedded ImageNet weights) without its classifier: (N, 1280) embeddings."""
    from torch import nn

    import camlens

    model = camlens.load_model("efficientnet_lite0").model
    model._fc = nn.Identity()
    return model.eval()


FAMILIES = [
    Family("timm `vit_small_patch16_224`", _timm("vit_small_patch16_224"), (3, 224, 224),
           f"{_PEER_4} (2 blocks, 64 px)"),
    Family("timm `deit_small_distilled_patch16_224` (class + distillation token)",
           _timm("deit_small_distilled_patch16_224"), (3, 224, 224), f"{_PEER_4} (2 blocks, 64 px)"),
    Family("timm `vit_small_patch14_reg4_dinov2` (DINOv2, 4 register tokens; `img_size=224`)",
           _timm("vit_small_patch14_reg4_dinov2", img_size=224), (3, 224, 224), f"{_PEER_4} (2 blocks, 56 px)"),
    Family("timm `swin_tiny_patch4_window7_224`", _timm("swin_tiny_patch4_window7_224"), (3, 224, 224),
           f"{_PEER_4} (1 block per stage, window 4, 128 px)"),
    Family("timm `convnext_tiny`", _timm("convnext_tiny"), (3, 224, 224),
           "pytorch-grad-cam: Grad-CAM, Grad-CAM++, LayerCAM, Score-CAM r ≥ 0.999 (1 block per stage, 128 px)"),
    Family("torchvision `vit_b_16`", _torchvision("vit_b_16"), (3, 224, 224),
           f"{_PEER_4} (its `VisionTransformer`, 2 layers, width 32, 64 px)"),
    Family("torchvision `swin_t`", _torchvision("swin_t"), (3, 224, 224),
           f"{_PEER_4} (its `SwinTransformer`, 1 block per stage, window 4, 128 px)"),
    Family("torchvision `deeplabv3_mobilenet_v3_large` (segmentation)", _torchvision("deeplabv3_mobilenet_v3_large"),
           (3, 224, 224), "pytorch-grad-cam `SemanticSegmentationTarget`: Grad-CAM r ≥ 0.999 (5 classes, 96 px)"),
    Family("torchvision `fcn_resnet50` (segmentation)", _torchvision("fcn_resnet50"), (3, 224, 224),
           "pytorch-grad-cam `SemanticSegmentationTarget`: Grad-CAM r ≥ 0.999 (5 classes, 96 px)"),
    Family("torchvision `fasterrcnn_mobilenet_v3_large_320_fpn` (detection)",
           _torchvision("fasterrcnn_mobilenet_v3_large_320_fpn"), (3, 224, 224),
           "pytorch-grad-cam `FasterRCNNBoxScoreTarget`: Grad-CAM r ≥ 0.999 (5 classes, 128 px); each "
           "`explain_detections` map equals its `BoxScore` map"),
    Family("embedding: EfficientNet-Lite0 without its classifier (`Similarity` target)", lite0_embedding,
           (3, 224, 224), "pytorch-grad-cam with a cosine-similarity target (its tutorial's "
           "`SimilarityToConceptTarget`) at `_blocks.15`: Grad-CAM r ≥ 0.999 (its hook on the reused `_swish` "
           "sees the first call); at `_swish:1`: Grad-CAM by hand; scores = cosine similarity"),
]


def row(family: Family) -> tuple[str, str, str, str]:
    """(model family, target found, layout, checked against) for one family, from camlens.describe."""
    import torch

    import camlens

    torch.manual_seed(0)
    model = family.build().eval()
    description = camlens.describe(model, family.input_size)
    return family.name, f"`{description.target}`", str(description.layout), family.checked


def rows(families: list[Family] = FAMILIES) -> list[tuple[str, str, str, str]]:
    return [row(family) for family in families]


def table(computed: list[tuple[str, str, str, str]]) -> str:
    lines = ["| model family | target found | layout | checked against |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in computed]
    return "\n".join(lines)


def readme_table(text: str) -> str:
    """The table between the markers of a README text (ValueError when the markers are missing)."""
    match = re.search(re.escape(MARKERS[0]) + r"\n?(.*?)\n?" + re.escape(MARKERS[1]), text, re.S)
    if match is None:
        raise ValueError(f"README.md has no {MARKERS[0]} ... {MARKERS[1]} markers")
    return match.group(1)


def write_readme(new_table: str, readme: Path = README) -> None:
    text = readme.read_text(encoding="utf-8")
    readme_table(text)  # the markers must be there
    pattern = re.compile(re.escape(MARKERS[0]) + r".*?" + re.escape(MARKERS[1]), re.S)
    block = f"{MARKERS[0]}\n{new_table}\n{MARKERS[1]}"
    readme.write_text(pattern.sub(lambda _: block, text), encoding="utf-8")
    print(f"{readme.name}: table updated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", dest="only_print", action="store_true", help="print the table, do not write README.md")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    result = table(rows())
    print(result)
    if not args.only_print:
        write_readme(result)


if __name__ == "__main__":
    main()
