"""Model files never run code without --trust; bad model files give one clear error (issue 18, group 1/6)."""

from __future__ import annotations

import io
import os
import zipfile

import pytest
import torch
from torch import nn

import camlens
from camlens.cli import main


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))


class _Marker:
    """Unpickling this object creates a file: proof that code from the model file ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pt2")
    torch.manual_seed(0)
    program = torch.export.export(Tiny().eval(), (torch.randn(2, 3, 16, 16),))
    path = folder / "tiny.pt2"
    torch.export.save(program, str(path))
    return path


def _rewrite(source, target, edits: dict) -> None:
    """Copy a zip archive, replacing members whose name ends with a key by edit(old bytes)."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for info in archive.infolist():
            data = archive.read(info.filename)
            for ending, edit in edits.items():
                if info.filename.endswith(ending):
                    data = edit(data)
            out.writestr(info.filename, data)


def _torch_saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_plain_pt2_loads_without_trust(exported):
    loaded = camlens.load_model(exported)
    assert loaded.input_size == (3, 16, 16) and loaded.max_batch == 2
    e = camlens.explain(loaded.model, torch.randn(2, 3, 16, 16), target_layer="conv")
    assert e.maps.shape == (2, 1, 16, 16)


def test_crafted_pt2_does_not_run_code_without_trust(exported, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt2"
    _rewrite(exported, evil, {"sample_inputs/model.pt": lambda _: _torch_saved(_Marker(str(marker)))})
    with pytest.raises(camlens.InputError, match="--trust"):
        camlens.load_model(evil)
    assert not marker.exists()
    assert main(["layers", "--model", str(evil)]) == 2
    assert "--trust" in capsys.readouterr().err
    assert not marker.exists()
    with pytest.raises(Exception):  # with --trust torch.export.load runs it, as the user asked
        camlens.load_model(evil, trust=True)
    assert marker.exists()


def test_crafted_pickled_weight_is_refused(exported, tmp_path):
    """A weight marked use_pickle: torch.export.load would torch.load it with weights_only=False."""
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil_weight.pt2"
    _rewrite(exported, evil, {
        "model_weights_config.json": lambda data: data.replace(b'"use_pickle": false', b'"use_pickle": true', 1),
        "weights/weight_0": lambda _: _torch_saved(_Marker(str(marker))),
    })
    with pytest.raises(camlens.InputError, match="not plain tensors"):
        camlens.load_model(evil)
    assert not marker.exists()


def test_opaque_object_constant_is_refused(exported, tmp_path):
    evil = tmp_path / "evil_constant.pt2"
    _rewrite(exported, evil, {"archive_format": lambda data: data})
    with zipfile.ZipFile(evil, "a") as out:
        prefix = zipfile.ZipFile(exported).namelist()[0].split("/", 1)[0]
        out.writestr(f"{prefix}/data/constants/opaque_obj_0", b"\x80\x04N.")
    with pytest.raises(camlens.InputError, match="pickled Python object"):
        camlens.load_model(evil)


def test_pt2_with_trust_loads_what_torch_loads(exported):
    loaded = camlens.load_model(exported, trust=True)
    assert isinstance(loaded.model, nn.Module)


@pytest.mark.parametrize("name, content", [
    ("model.pt", b"this is a text file, not a model\n"),
    ("model.txt", b"hello\n"),
    ("random.pt", os.urandom(4096)),
    ("random.pt2", os.urandom(4096)),
    ("random.pth", b"\x80" + os.urandom(4096)),  # looks like a pickle, is not
    ("empty.pt", b""),
    ("fake.pt2", b"PK\x03\x04" + os.urandom(200)),  # a broken zip
])
def test_bad_model_files_give_one_line_and_exit_2(tmp_path, capsys, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    for trust in ([], ["--trust"]):
        assert main(["layers", "--model", str(path), *trust]) == 2
        err = capsys.readouterr().err
        assert err.startswith("camlens: error: ") and err.count("\n") == 1, err


def test_zip_without_program_is_refused(tmp_path):
    path = tmp_path / "other.pt2"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("readme.txt", "not a program")
    with pytest.raises(camlens.InputError, match="exported program|torch.export"):
        camlens.load_model(path)


def test_exported_program_at_another_size_is_a_clear_error(exported):
    loaded = camlens.load_model(exported)
    with pytest.raises(camlens.InputError, match="exported program .* does not accept inputs of shape"):
        camlens.explain(loaded.model, torch.randn(2, 3, 20, 20), target_layer="conv")
    with pytest.raises(camlens.InputError, match="exported program"):
        camlens.explain(loaded.model, torch.randn(1, 3, 16, 16), target_layer="conv")


def test_model_folder_is_a_clear_error(tmp_path):
    folder = tmp_path / "weights.pt"
    folder.mkdir()
    with pytest.raises(camlens.InputError, match="folder"):
        camlens.load_model(folder)
