"""Jupyter display and saving of an Explanation; a run folder's summary for notebooks."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import camlens
from camlens import Explanation, InputError
from camlens.viz.notebook import display_images, run_html
from runfolders import make_run


@pytest.fixture
def explained(gapnet):
    torch.manual_seed(1)
    x = torch.randn(3, 3, 32, 32)
    return camlens.explain(gapnet, x, ["gradcam", "cam"], classes="top2"), x


def images_in(html: str) -> list[Image.Image]:
    found = []
    for data in html.split('src="data:image/png;base64,')[1:]:
        found.append(Image.open(io.BytesIO(base64.b64decode(data.split('"', 1)[0]))))
    return found


def test_repr_html_is_a_grid_of_overlays_with_names_scores_and_probabilities(explained):
    results, x = explained
    e = results["gradcam"]
    html = e._repr_html_()
    pictures = images_in(html)
    assert len(pictures) == 3 * 2 and all(p.size == (32, 32) for p in pictures)
    assert "gradcam · layer features · 3 images × 2 classes" in html
    probabilities = e.logits.softmax(-1).gather(1, e.classes)
    for i in range(3):
        for j in range(2):
            assert f"class {int(e.classes[i, j])}" in html
            assert f"score {float(e.scores[i, j]):.3g} · p {float(probabilities[i, j]):.2f}" in html
    # the overlay is drawn over the (un-normalised) input: not the heatmap alone
    photo = display_images(x)[0]
    first = torch.from_numpy(np.array(pictures[0].convert("RGB"))).permute(2, 0, 1).float() / 255
    heat_only = camlens.apply_colormap(e.maps[0, 0])
    assert (first - 0.5 * photo - 0.5 * heat_only).abs().max() < 2 / 255


def test_html_escapes_class_names_and_limits_the_rows(explained):
    e = explained[0]["cam"]
    names = [f"<b onmouseover=alert({i})>" for i in range(5)]
    html = e.to_html(class_names=names, max_images=2)
    assert "<b onmouseover" not in html and "&lt;b onmouseover=alert(" in html
    assert len(images_in(html)) == 2 * 2 and "1 more image(s) not shown" in html


def test_imagenet_models_get_class_names(lite0, photos):
    x = lite0.preprocess([photos["chelsea"]])
    html = camlens.explain(lite0.model, x)._repr_html_()
    assert "Egyptian cat" in html


def test_display_images_undo_a_per_channel_normalisation():
    photo = torch.rand(1, 3, 16, 16)
    photo[:, :, 0, 0], photo[:, :, 0, 1] = 0.0, 1.0  # each channel spans [0, 1]
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(display_images((photo - mean) / std), photo, atol=1e-5)
    assert torch.equal(display_images(photo), photo)


def test_save_writes_maps_overlays_and_a_sidecar_and_load_reads_them_back(explained, tmp_path):
    e = explained[0]["gradcam"]
    sidecar = e.save(tmp_path / "out", class_names=[f"c{i}" for i in range(5)])
    meta = json.loads(sidecar.read_text())
    assert meta["method"] == "gradcam" and meta["target_layer"] == e.target_layer == "features"
    assert meta["classes"] == e.classes.tolist() and meta["maps_shape"] == [3, 2, 32, 32]
    assert meta["class_names"][0] == [f"c{c}" for c in e.classes[0].tolist()]
    raw = np.load(tmp_path / "out" / meta["files"]["raw"])
    assert raw.shape == tuple(e.raw.shape) and np.allclose(raw, e.raw.numpy())
    overlays = [name for row in meta["files"]["overlays"] for name in row]
    assert len(overlays) == 6 and all((tmp_path / "out" / name).is_file() for name in overlays)
    assert not [p for p in (tmp_path / "out").rglob(".*")]  # no temporary file left
    back = Explanation.load(tmp_path / "out")
    assert torch.equal(back.maps, e.maps) and torch.equal(back.raw, e.raw) and torch.equal(back.classes, e.classes)
    assert torch.allclose(back.scores, e.scores) and torch.equal(back.logits, e.logits)
    assert (back.method, back.target_layer, back.score_source) == (e.method, e.target_layer, e.score_source)


def test_save_with_given_photos_and_without_any(explained, tmp_path):
    e = explained[0]["cam"]
    photos = [Image.new("RGB", (40, 30), (i * 60, 10, 10)) for i in range(3)]
    meta = json.loads(e.save(tmp_path / "a", images=photos).read_text())
    with Image.open(tmp_path / "a" / meta["files"]["overlays"][0][0]) as overlay:
        assert overlay.size == (40, 30)  # the photo's own size
    bare = Explanation(maps=e.maps, raw=e.raw, classes=e.classes, scores=e.scores, target_layer="x", method="cam")
    meta = json.loads(bare.save(tmp_path / "b").read_text())
    assert "overlays" not in meta["files"] and "logits" not in meta["files"]
    assert len(images_in(bare._repr_html_())) == 6  # the maps alone, coloured
    with pytest.raises(InputError, match="2 images for an explanation of 3"):
        e.save(tmp_path / "c", images=photos[:2])
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="it is a file"):
        e.save(tmp_path / "file")
    with pytest.raises(InputError, match="no explanation.json"):
        Explanation.load(tmp_path)


def test_run_html_summarises_a_run_and_shows_its_first_cards(tmp_path):
    names = [f"img_{i}.jpg" for i in range(12)]
    names[1] = "<script>alert(1)</script>.jpg"
    run = make_run(tmp_path / "run", 12, errors=[4], names=names)
    html = run_html(run, cards=6)
    assert "12 images · 1 skipped · methods: cam, gradcam" in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in html
    assert len(images_in(html)) == 6 and "and 5 more" in html
