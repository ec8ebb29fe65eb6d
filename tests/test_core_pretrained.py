"""The embedded ImageNet-pretrained EfficientNet-Lite0 on real photos."""

from __future__ import annotations

import torch

import camlens

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
EGYPTIAN_CAT, ESPRESSO = 285, 967


def test_chelsea_is_a_cat(lite0, photos):
    logits = lite0.model(lite0.preprocess([photos["chelsea"]]))
    top = int(logits.argmax())
    assert top in CAT_CLASSES, lite0.label(top)
    assert lite0.label(top) == "Egyptian cat"


def test_cam_is_exact_and_proportional_to_gradcam_on_lite0(lite0, photos):
    x = lite0.preprocess([photos["chelsea"], photos["coffee"]])
    out = camlens.explain(lite0.model, x, method=["cam", "gradcam"])
    assert out["cam"].target_layer == "_swish:1"
    torch.testing.assert_close(out["gradcam"].raw * 49, out["cam"].raw, rtol=1e-4, atol=1e-4)
    bias = lite0.model._fc.bias.detach()[out["cam"].classes]
    torch.testing.assert_close(out["cam"].raw.mean((2, 3)) + bias, out["cam"].scores, rtol=1e-4, atol=1e-4)


def test_gradcam_finds_the_cat_and_the_coffee_in_one_picture(lite0, photos):
    picture = photos["cat_and_coffee"]
    cat_width = photos["chelsea"].width / picture.width  # the cat fills the left part
    explanation = camlens.explain(lite0.model, lite0.preprocess([picture]), classes=[EGYPTIAN_CAT, ESPRESSO])
    maps = explanation.maps[0]  # (2, 224, 224)
    split = round(224 * cat_width)
    hot = (maps > 0.5).float()  # the part of each map above half its peak
    hot_left = hot[:, :, :split].sum((1, 2)) / hot.sum((1, 2))
    assert hot_left[0] > 0.9, f"only {hot_left[0]:.2f} of the cat map's hot area is on the cat"
    assert hot_left[1] < 0.1, f"{hot_left[1]:.2f} of the espresso map's hot area is on the cat"
    peak_columns = maps.flatten(1).argmax(1) % 224
    assert peak_columns[0] < split <= peak_columns[1]
