"""``camlens.explain(learn, images)`` with a real fastai Learner (skipped without fastai)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import camlens

pytest.importorskip("fastai.vision.all", reason="the camlens[fastai] path needs fastai")


@pytest.fixture(scope="module")
def learner(tmp_path_factory):
    from fastai.vision.all import ImageDataLoaders, Resize, resnet18, vision_learner
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = tmp_path_factory.mktemp("digits")
    paths, labels = [], []
    for i in range(24):
        path = folder / f"{i}.png"
        Image.fromarray((digits.images[i] * 15).astype(np.uint8)).convert("RGB").save(path)
        paths.append(path)
        labels.append(str(digits.target[i]))
    dls = ImageDataLoaders.from_lists(folder, paths, labels, valid_pct=0.25, seed=0, item_tfms=Resize(64), bs=8)
    torch.manual_seed(0)
    return vision_learner(dls, resnet18, pretrained=False), paths


@pytest.mark.slow
def test_explain_takes_a_learner_and_its_preprocessing(learner):
    learn, paths = learner
    e = camlens.explain(learn, paths[:3], method="gradcam")
    assert e.maps.shape == (3, 1, 64, 64) and e.raw.shape == (3, 1, 2, 2)
    assert e.target_layer == "0" and e.logits.shape == (3, len(learn.dls.vocab))
    x = learn.dls.test_dl(paths[:3]).one_batch()[0].as_subclass(torch.Tensor)
    same = camlens.explain(learn.model, x, method="gradcam")
    torch.testing.assert_close(e.raw, same.raw)
    verdict = camlens.analyze_head(learn.model, (3, 64, 64))
    assert verdict.kind == "nonlinear" and verdict.pooling == "concat(max, avg)"
    with pytest.raises(camlens.HeadError, match="ReLU"):
        camlens.explain(learn, paths[:1], method="cam")
