"""The command line, end to end: demo, explain, layers, and bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision
from PIL import Image

from camlens.cli import main


@pytest.fixture
def cat_file(tmp_path, photos):
    path = tmp_path / "chelsea.jpg"
    photos["chelsea"].save(path)
    return path


def test_demo_writes_overlays_and_figures(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    assert "Egyptian cat" in printed and "espresso" in printed
    files = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"demo_figure.png", "demo_cat_and_coffee.png", "chelsea_cam.png", "chelsea_gradcam.png"} <= files
    assert not [f for f in files if f.startswith(".")]  # no temporary files left behind
    with Image.open(tmp_path / "demo" / "chelsea_gradcam.png") as image:
        assert image.size == (451, 300)  # overlays keep the photo's own size


def _overlays(out):
    return sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.png"))


def test_explain_writes_one_overlay_per_image_method_and_class(tmp_path, cat_file, capsys):
    out = tmp_path / "out"
    code = main(["explain", str(cat_file), "--model", "efficientnet_lite0", "--method", "cam,gradcam",
                 "--class", "top2", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "chelsea.jpg: Egyptian cat" in printed and "_swish:1" in printed
    names = _overlays(out)  # a run folder: overlays/<image>/<method>_<rank>_<class>.png
    assert len(names) == 4 and "chelsea/gradcam_0_285-egyptian-cat.png" in names
    assert {"run.json", "manifest.parquet", "maps.zarr", "overlays"} <= {p.name for p in out.iterdir()}


def test_class_by_name(tmp_path, cat_file):
    out = tmp_path / "out"
    assert main(["explain", str(cat_file), "--model", "efficientnet_lite0", "--class", "espresso", "--out", str(out)]) == 0
    assert _overlays(out) == ["chelsea/gradcam_0_967-espresso.png"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "resnet5"], "unknown model 'resnet5'. Did you mean resnet50"),
        (["--model", "efficientnet_lite0", "--layer", "_blocks.99"], "no layer named '_blocks.99'"),
        (["--model", "efficientnet_lite0", "--class", "5000"], "class 5000 is out of range"),
        (["--model", "efficientnet_lite0", "--method", "gradcamm"], "unknown method"),
        (["--model", "efficientnet_lite0", "--class", "dgo"], "neither an index nor a class name"),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, cat_file, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["explain", str(cat_file), *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("camlens: error: ") and message in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_unreadable_image_among_good_ones_is_skipped_and_strict_stops(tmp_path, cat_file, capsys):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    out = tmp_path / "out"
    assert main(["explain", str(cat_file), str(broken), "--model", "efficientnet_lite0", "--out", str(out)]) == 0
    assert "skipped broken.png: cannot read image" in capsys.readouterr().err
    assert _overlays(out) == ["chelsea/gradcam_0_285-egyptian-cat.png"]
    strict = tmp_path / "strict"
    assert main(["explain", str(broken), str(cat_file), "--model", "efficientnet_lite0", "--strict", "--out", str(strict)]) == 2
    err = capsys.readouterr().err
    assert "cannot read image" in err and "--strict" in err and not (strict / "overlays").exists()
    assert main(["explain", str(tmp_path / "missing.jpg"), "--model", "efficientnet_lite0", "--out", str(tmp_path / "o2")]) == 2
    assert "no such file" in capsys.readouterr().err and not (tmp_path / "o2").exists()


def test_model_files_state_dict_and_pickles(tmp_path, cat_file, capsys):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=7)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    torch.save(model, tmp_path / "whole.pt")
    out = tmp_path / "out"
    assert main(["explain", str(cat_file), "--model", str(tmp_path / "weights.pt"), "--out", str(out)]) == 2
    assert "--arch" in capsys.readouterr().err
    assert main(["explain", str(cat_file), "--model", str(tmp_path / "whole.pt"), "--out", str(out)]) == 2
    assert "--trust" in capsys.readouterr().err and not out.exists()
    code = main(["explain", str(cat_file), "--model", str(tmp_path / "weights.pt"), "--arch", "resnet18", "--out", str(out)])
    assert code == 0 and "class " in capsys.readouterr().out  # 7 classes: no ImageNet names
    assert main(["explain", str(cat_file), "--model", str(tmp_path / "whole.pt"), "--trust", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err  # a second run into the same folder must say so
    assert main(["explain", str(cat_file), "--model", str(tmp_path / "whole.pt"), "--trust", "--out", str(out),
                 "--overwrite"]) == 0


def test_layers_prints_the_table_and_verdict(capsys):
    assert main(["layers", "--model", "efficientnet_lite0"]) == 0
    text = capsys.readouterr().out
    assert "_swish:1" in text and "<- target" in text and "CAM is exact" in text


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "camlens.cli", "methods"], capture_output=True, text=True, check=True)
    assert "gradcam" in result.stdout and "Selvaraju" in result.stdout


def test_exported_program_runs_one_image_at_a_time(tmp_path, cat_file, photos, capsys):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=7).eval()
    torch.export.save(torch.export.export(model, (torch.randn(1, 3, 224, 224),)), tmp_path / "model.pt2")
    coffee = tmp_path / "coffee.jpg"
    photos["coffee"].save(coffee)
    out = tmp_path / "out"
    assert main(["explain", str(cat_file), str(coffee), "--model", str(tmp_path / "model.pt2"), "--out", str(out)]) == 0
    assert [name.split("/")[0] for name in _overlays(out)] == ["chelsea", "coffee"]  # batches of one image


def test_random_weights_warning_is_one_plain_line(tmp_path, cat_file, capsys):
    assert main(["explain", str(cat_file), "--model", "resnet18", "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("camlens: warning: resnet18 has RANDOM weights") and ".py:" not in err


def test_explain_with_report_writes_the_page_for_the_run(tmp_path, cat_file, capsys):
    import pyarrow.parquet as pq

    out = tmp_path / "run"
    assert main(["explain", str(cat_file), "--model", "efficientnet_lite0", "--out", str(out), "--report"]) == 0
    index = out / "report" / "index.html"
    assert index.exists() and "Content-Security-Policy" in index.read_text(encoding="utf-8")
    data = (out / "report" / "data.js").read_text(encoding="utf-8")
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert len(manifest) == 1 and manifest[0]["relpath"] in data
    assert f"open {index.resolve().as_uri()}" in capsys.readouterr().out
