"""The localization sets and the GAP CNN behind the metrics benchmark."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from camlens import InputError, explain
from camlens.metrics.data import GapCNN, digits_localization_set, pasted_photos_set, train_gap_cnn
from camlens.metrics import boxes_to_masks

pytest.importorskip("sklearn")


def test_digits_set_is_seeded_and_boxes_hold_the_target():
    data = digits_localization_set(12, "test", seed=3)
    again = digits_localization_set(12, "test", seed=3)
    assert torch.equal(data.images, again.images) and torch.equal(data.boxes, again.boxes)
    assert not torch.equal(data.images, digits_localization_set(12, "train", seed=3).images)
    assert data.images.shape == (12, 1, 64, 64) and 0 <= data.images.min() and data.images.max() <= 1
    boxes = data.boxes[:, 0]
    assert ((boxes[:, 2:] > boxes[:, :2]) & (boxes[:, :2] >= 0) & (boxes[:, 2:] <= 64)).all()
    inside = boxes_to_masks(boxes, (64, 64))
    ink = data.images[:, 0]
    # the target's box holds ink, and there is clutter outside it
    assert ((ink * inside).flatten(1).amax(1) > 0.5).all()
    assert ((ink * ~inside).flatten(1).sum(1) > 0).float().mean() > 0.5
    assert data.classes.shape == (12, 1) and data.notes[0] == [str(int(data.classes[0, 0]))]
    assert len(data[2:5]) == 3 and torch.equal(data[2:5].boxes, data.boxes[2:5])
    with pytest.raises(InputError):
        digits_localization_set(2, sizes=(4, 10))
    with pytest.raises(InputError):
        digits_localization_set(2, split="val")


def test_gap_cnn_head_makes_cam_exact_and_training_is_seeded():
    data = digits_localization_set(24, "train", seed=0)
    first = train_gap_cnn(data, epochs=1, batch_size=12, width=8, seed=1, progress=False)
    second = train_gap_cnn(data, epochs=1, batch_size=12, width=8, seed=1, progress=False)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    assert not first.training and isinstance(first, GapCNN)
    out = explain(first, data.images[:3], ["cam", "gradcam"], target_layer="features")
    assert out["cam"].raw.shape == (3, 1, 16, 16)
    assert torch.allclose(out["cam"].maps, out["gradcam"].maps, atol=1e-5)  # GAP + linear: CAM == Grad-CAM


def test_pasted_photos_are_apart_and_labelled_by_the_model_alone():
    pytest.importorskip("skimage")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6))

    def preprocess(images):
        return torch.stack([nn.functional.interpolate(im[None], size=(64, 64))[0] for im in images])

    stub = SimpleNamespace(model=net.eval(), preprocess=preprocess, class_names=[f"c{i}" for i in range(6)])
    data = pasted_photos_set(4, model=stub, canvas=224, seed=0)
    assert data.images.shape == (4, 3, 224, 224) and data.boxes.shape == (4, 2, 4)
    for boxes, notes in zip(data.boxes, data.notes):
        a, b = boxes.tolist()
        assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]  # no overlap
        assert notes[0] != notes[1]
    grey = (data.images == 127 / 255).all(1)
    assert grey[~boxes_to_masks(data.boxes, (224, 224)).any(1)].all()  # outside the photos: the grey canvas
    # each photo's class is the stub's top-1 on the photo alone
    from camlens.metrics.data import _photo

    name = data.notes[0][0]
    alone = net(preprocess([_photo(name)])).argmax(1)
    assert data.classes[0, 0] == alone[0]
