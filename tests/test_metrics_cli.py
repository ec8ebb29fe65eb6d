"""``camlens evaluate``: a table on the user's images and boxes; bad input exits 2."""

from __future__ import annotations

import json

import pytest

from camlens.cli import main
from camlens.cli.evaluate import read_boxes


def test_read_boxes_header_union_and_errors(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("image,x0,y0,x1,y1\ncat.png,1,2,30,40\ncat.png,50,50,60,60\n/x/dog.jpg,0,0,5,5\n")
    assert read_boxes(path) == {"cat.png": [(1, 2, 30, 40), (50, 50, 60, 60)], "dog.jpg": [(0, 0, 5, 5)]}
    path.write_text("cat.png,10,2,3,40\n")
    with pytest.raises(Exception, match="x1 > x0"):
        read_boxes(path)


@pytest.fixture
def cat_file(tmp_path, photos):
    path = tmp_path / "cat.png"
    photos["chelsea"].resize((150, 100)).save(path)
    return path


@pytest.fixture
def tiny_model_file(tmp_path):
    """A whole pickled GAP CNN of standard layers: loads with --trust, runs in milliseconds."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    path = tmp_path / "tiny.pt"
    torch.save(net, path)
    return path


def test_evaluate_on_image_files_with_boxes(tmp_path, cat_file, tiny_model_file, capsys):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("cat.png,20,5,120,95\n")
    code = main(["evaluate", str(cat_file), "--model", str(tiny_model_file), "--trust", "--boxes", str(boxes),
                 "--method", "gradcam,cam", "--step", "0.5",
                 "--json", str(tmp_path / "out.json"), "--plot", str(tmp_path / "curves.png")])
    out = capsys.readouterr().out
    assert code == 0 and "| gradcam | 1 |" in out and "| cam | 1 |" in out and "pointing tolerance 15 px" in out
    summary = json.loads((tmp_path / "out.json").read_text())
    assert set(summary["gradcam"]) >= {"pointing", "energy", "iou50", "deletion", "insertion", "average_drop"}
    assert 0 <= summary["gradcam"]["energy"] <= 1 and (tmp_path / "curves.png").stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["evaluate"], "nothing to evaluate"),
    (["evaluate", "x.png", "--dataset", "photos"], "not both"),
    (["evaluate", "CAT", "--method", "gradcm"], "unknown method"),
    (["evaluate", "CAT", "--boxes", "missing.csv"], "no such file"),
    (["evaluate", "CAT", "--boxes", "OTHER"], "no row for cat.png"),
    (["evaluate", "CAT", "--step", "0"], "--step"),
])
def test_evaluate_bad_input_is_one_line_and_exit_2(tmp_path, cat_file, capsys, argv, message):
    other = tmp_path / "other.csv"
    other.write_text("dog.png,0,0,5,5\n")
    argv = [str(cat_file) if a == "CAT" else str(other) if a == "OTHER" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
