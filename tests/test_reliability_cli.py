"""The CLI's error contract: one line, exit 2; internal errors exit 1 with --debug; outputs checked first (issue 18, group 6)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from camlens.cli import main
from camlens.core.errors import InputError
from camlens.viz.overlay import save_figure, save_image


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("camlens: error: "), err
    return lines[0]


@pytest.mark.parametrize("argv", [
    ["explain"], ["nosuchcommand"], ["evaluate", "--step", "abc"], ["layers", "--model"],
    ["explain", "x.jpg", "--model", "efficientnet_lite0", "--batch-size", "0"],
])
def test_argument_errors_are_one_line_and_exit_2(capsys, argv):
    assert main(argv) == 2
    _one_error_line(capsys.readouterr().err)


def test_help_still_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "usage" in capsys.readouterr().out


def test_internal_error_exits_1_and_points_to_debug(monkeypatch, capsys):
    import camlens.cli.methods as methods_command

    def broken(args):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(methods_command, "run", broken)  # add_parser reads it when the parser is built
    assert main(["methods"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "ZeroDivisionError" in line and "--debug" in line
    assert main(["--debug", "methods"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_control_characters_in_names_are_escaped(tmp_path, capsys):
    name = tmp_path / "evil\x1b[2J\x07name.jpg"
    assert main(["layers", "--model", str(name)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\\x1b[2J\\x07" in err
    from camlens.cli._contract import printable

    assert printable("a\u202eb\tc\n", keep="\n") == "a\\u202eb\\x09c\n"


def test_broken_pipe_does_not_traceback():
    code = (
        "import subprocess, sys;"
        "p = subprocess.Popen([sys.executable, '-m', 'camlens.cli', 'methods'], stdout=subprocess.PIPE, "
        "stderr=subprocess.PIPE);"
        "p.stdout.readline(); p.stdout.close(); err = p.stderr.read().decode(); p.wait();"
        "print(repr(err)); sys.exit(0 if 'Traceback' not in err and 'Exception' not in err else 1)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_pipe_into_head():
    result = subprocess.run(f"{sys.executable} -m camlens.cli methods | head -2", shell=True, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert len(result.stdout.splitlines()) == 2 and "Traceback" not in result.stderr, result.stderr


def test_output_checks_before_any_work(tmp_path):
    from camlens.cli._contract import check_output_dir, check_output_file

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_output_file(blocker / "plot.png", "--plot")
    with pytest.raises(InputError, match="is a folder"):
        check_output_file(tmp_path, "--json")
    with pytest.raises(InputError, match="is a file"):
        check_output_dir(blocker, "--out")
    assert check_output_file(tmp_path / "new" / "deeper" / "a.json", "--json") == tmp_path / "new" / "deeper" / "a.json"
    assert not (tmp_path / "new").exists()  # checking creates nothing


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_folder_is_refused_first(tmp_path):
    from camlens.cli._contract import check_output_file

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InputError, match="permission denied"):
            check_output_file(folder / "x.json", "--json")
    finally:
        folder.chmod(0o700)


def test_evaluate_refuses_a_bad_plot_path_before_loading_the_model(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    import camlens.io.models as models

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(models, "load_model", never)
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    for flag, target in (("--plot", blocker / "curves.png"), ("--json", tmp_path), ("--plot", tmp_path / "c.xyz")):
        assert main(["evaluate", str(image), flag, str(target)]) == 2
        _one_error_line(capsys.readouterr().err)


def test_disk_errors_are_one_line(tmp_path, capsys, monkeypatch):
    import camlens.cli.methods as methods_command

    def full_disk(args):
        raise OSError(28, "No space left on device", str(tmp_path / "x.png"))

    monkeypatch.setattr(methods_command, "run", full_disk)
    assert main(["methods"]) == 2
    assert "No space left on device" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".jpg", b"\xff\xd8\xff"), (".jpeg", b"\xff\xd8\xff"),
                                           (".webp", b"RIFF"), (".bmp", b"BM"), (".tif", b"II*\x00"), ("", b"\x89PNG")])
def test_save_image_writes_the_format_its_suffix_names(tmp_path, suffix, magic):
    path = save_image(torch.rand(3, 8, 8), tmp_path / f"out{suffix}")
    assert path.read_bytes()[: len(magic)] == magic
    rgba = Image.new("RGBA", (4, 4))
    assert save_image(rgba, tmp_path / f"rgba{suffix}").exists()  # JPEG/BMP get RGB
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_save_image_unknown_suffix_writes_nothing(tmp_path):
    with pytest.raises(InputError, match=r"\.xyz"):
        save_image(torch.rand(3, 8, 8), tmp_path / "out.xyz")
    assert list(tmp_path.iterdir()) == []


def test_save_figure_by_suffix(tmp_path):
    import matplotlib.pyplot as plt

    assert save_figure(plt.figure(), tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    assert save_figure(plt.figure(), tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(InputError, match="cannot save a figure"):
        save_figure(plt.figure(), tmp_path / "f.xyz")


def test_failed_write_leaves_nothing(tmp_path):
    class Exploding:
        mode = "RGB"

        def save(self, *args, **kwargs):
            raise OSError(28, "No space left on device")

    from camlens.io.files import atomic_write

    with pytest.raises(OSError):
        atomic_write(tmp_path / "x.png", lambda tmp: Exploding().save(tmp))
    assert list(tmp_path.iterdir()) == []
