"""explain_dataset and the run folder: sources, the contract, bad images, resume after SIGKILL, Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pa = pytest.importorskip("pyarrow")
zarr = pytest.importorskip("zarr", minversion="3")
import pyarrow.parquet as pq  # noqa: E402

import camlens
from camlens.cli import main
from camlens.io.run import COLUMNS, manifest_schema
from camlens.io.sources import resolve_sources

from conftest import GapNet

SRC = Path(camlens.__file__).resolve().parents[1]


def _photo(seed: int, size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _tree(root: Path, names: list[str]) -> list[Path]:
    paths = []
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _photo(i, (40 + i, 30 + 2 * i)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return GapNet(classes=5).eval()


def _run(model, source, out, **kwargs):
    kwargs.setdefault("input_size", 32)
    kwargs.setdefault("workers", 0)
    kwargs.setdefault("quiet", True)
    kwargs.setdefault("batch_size", 3)
    return camlens.explain_dataset(model, source, out=out, **kwargs)


# --- sources ------------------------------------------------------------------------------------

def test_sources_of_every_kind(tmp_path, monkeypatch):
    files = _tree(tmp_path / "data", ["b/2.png", "a/1.jpg", "a/deep/3.png", "c.bmp", "notes.md"][:4])
    (tmp_path / "data" / "notes.md").write_text("not an image")
    folder = [item.relpath for item in resolve_sources([tmp_path / "data"])]
    assert folder == ["a/1.jpg", "a/deep/3.png", "b/2.png", "c.bmp"]  # recursive, sorted, images only
    globbed = resolve_sources([str(tmp_path / "data" / "**" / "*.png")])
    assert [i.relpath for i in globbed] == ["a/deep/3.png", "b/2.png"]
    listing = tmp_path / "data" / "a" / "list.txt"
    listing.write_text("# two images, relative to this file\n1.jpg\n\n../b/2.png\n")
    listed = resolve_sources([listing])
    assert [Path(i.path).resolve() for i in listed] == [files[1].resolve(), files[0].resolve()]
    mixed = resolve_sources([files[3], tmp_path / "data" / "b", listing])  # c.bmp, b/2.png (once), a/1.jpg
    assert [i.relpath for i in mixed] == ["c.bmp", "b/2.png", "a/1.jpg"]
    assert len(resolve_sources([tmp_path / "data"], max_images=2)) == 2
    monkeypatch.chdir(tmp_path)
    assert resolve_sources(["data/b/2.png"])[0].path == "data/b/2.png"  # path as found
    with pytest.raises(camlens.InputError, match="no such file or folder"):
        resolve_sources([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(camlens.InputError, match="no image found"):
        resolve_sources([tmp_path / "empty"])


def test_same_basenames_in_two_folders_never_collide(tmp_path, tiny):
    _tree(tmp_path / "src", ["a/cat.jpg", "b/cat.jpg"])
    run = _run(tiny, [tmp_path / "src" / "a", tmp_path / "src" / "b"], tmp_path / "run")
    table = run.manifest
    assert table["relpath"].to_pylist() == ["a/cat.jpg", "b/cat.jpg"]
    overlays = table["overlay"].to_pylist()
    assert len(set(overlays)) == 2 and all((run.path / o).is_file() for o in overlays)
    assert overlays[0].startswith("overlays/a/cat/gradcam_0_")


def test_overlay_size_caps_the_longer_side_only(tmp_path, tiny):
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo(0, (120, 60)).save(photos / "wide.png")
    _photo(1, (30, 40)).save(photos / "small.png")
    run = _run(tiny, photos, tmp_path / "run", overlay_size=48)
    table = run.manifest.to_pydict()
    sizes = {rel: Image.open(run.path / o).size for rel, o in zip(table["relpath"], table["overlay"])}
    assert sizes == {"small.png": (30, 40), "wide.png": (48, 24)}  # aspect kept; a small image keeps its size
    assert (table["width"], table["height"]) == ([30, 120], [40, 60])  # the manifest keeps the decoded size
    assert run.info["overlay_size"] == 48
    full = _run(tiny, photos, tmp_path / "full")
    assert Image.open(full.path / full.manifest["overlay"].to_pylist()[1]).size == (120, 60)
    with pytest.raises(camlens.InputError, match="overlay_size must be a whole number of pixels, at least 16"):
        _run(tiny, photos, tmp_path / "bad", overlay_size=8)
    with pytest.raises(camlens.InputError, match="cannot resume: the run was started with overlay_size = 48, now None"):
        _run(tiny, photos, tmp_path / "run", resume=True)


def test_torch_dataset_source_with_labels(tmp_path, tiny):
    class Pictures(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            image = _photo(i) if i % 2 else torch.rand(3, 20 + i, 24)  # PIL and tensors
            return image, ["class 3", 1, torch.tensor(4), 0][i]       # a name, ints, a 0-d tensor

    run = _run(tiny, Pictures(), tmp_path / "run", class_names=[f"class {i}" for i in range(5)])
    table = run.manifest
    assert table["path"].to_pylist() == [f"dataset[{i}]" for i in range(4)]
    assert table["true_index"].to_pylist() == [3, 1, 4, 0]
    assert table["correct"].to_pylist() == [p == t for p, t in zip(table["predicted_index"].to_pylist(), [3, 1, 4, 0])]
    assert table["width"].to_pylist()[:2] == [24, 40] and table["height"].to_pylist()[:2] == [20, 30]
    assert run.summary()["accuracy"] == pytest.approx(np.mean(table["correct"].to_pylist()))


# --- the contract -------------------------------------------------------------------------------

def test_contract_columns_dtypes_maps_and_run_json(tmp_path, tiny):
    paths = _tree(tmp_path / "src", ["x/0.png", "x/1.png", "y/2.png", "y/3.png"])
    run = _run(tiny, tmp_path / "src", tmp_path / "run", method=["gradcam", "layercam"], classes="top2")
    table = pq.read_table(tmp_path / "run" / "manifest.parquet")  # the directory reads whole
    assert table.schema.names == [name for name, _, _ in COLUMNS]
    assert table.schema == manifest_schema()
    assert table.schema.field("image_id").type == pa.int64() and table.schema.field("correct").type == pa.bool_()
    assert table.num_rows == 4 * 2 * 2 and run.manifest.num_rows == 16
    assert table.column("true_index").null_count == 16 and table.column("error").null_count == 16

    group = zarr.open_group(str(tmp_path / "run" / "maps.zarr"), mode="r")
    assert sorted(group.array_keys()) == ["gradcam", "layercam"]
    array = group["gradcam"]
    assert array.shape == (4, 2, 16, 16) and array.dtype == np.float16 and array.chunks == (1, 2, 16, 16)

    x = camlens.preprocess([camlens.load_image(paths[2])], (32, 32))
    reference = camlens.explain(tiny, x, ["gradcam", "layercam"], classes="top2")
    for method, e in reference.items():
        stored = torch.from_numpy(group[method][2].astype(np.float32))
        assert torch.allclose(stored, e.raw[0], rtol=2e-3, atol=1e-4)
        rows = [r for r in run.manifest.to_pylist() if r["image_id"] == 2 and r["method"] == method]
        assert [r["class_index"] for r in rows] == e.classes[0].tolist()
        assert [r["score"] for r in rows] == pytest.approx(e.scores[0].tolist(), rel=1e-5)
        assert [r["probability"] for r in rows] == pytest.approx(e.logits[0].softmax(0)[e.classes[0]].tolist(), rel=1e-5)
        assert all(r["predicted_index"] == int(e.logits[0].argmax()) for r in rows)
        assert rows[1]["overlay"] == f"overlays/y/2/{method}_1_{rows[1]['class_index']}-class-{rows[1]['class_index']}.png"
        with Image.open(run.path / rows[1]["overlay"]) as overlay:
            assert overlay.size == (42, 34)  # the photo's own size
            drawn = np.asarray(overlay).astype(int)
        want = np.asarray(camlens.overlay(run.image(2), e.maps[0, 1])).astype(int)
        assert np.abs(drawn - want).max() <= 1  # the same picture (a map rounding one step apart at most)

    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "complete" and info["n_images"] == 4 and info["methods"] == ["gradcam", "layercam"]
    assert info["target_layers"] == {"gradcam": "features", "layercam": "features"}
    assert info["input"]["size"] == [32, 32] and info["versions"]["torch"] == torch.__version__
    assert info["counts"] == {"done": 4, "explained": 4, "skipped": 0, "rows": 16}
    assert run.image(2).size == (42, 34)
    html = run._repr_html_()
    assert html.count("<img") == 4 and "y/2.png" in html and "gradcam: class" in html  # one card per image
    assert not [p for p in (tmp_path / "run").rglob(".*")]  # no temporary files left behind


def test_corrupt_images_mid_folder_are_rows_with_an_error(tmp_path, tiny):
    _tree(tmp_path / "src", ["0.png", "2.png", "4.png"])
    (tmp_path / "src" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    good = (tmp_path / "src" / "2.png").read_bytes()
    (tmp_path / "src" / "3.jpg").write_bytes(good[: len(good) // 3])  # truncated
    run = _run(tiny, tmp_path / "src", tmp_path / "run", method=["gradcam", "cam"], batch_size=2)
    rows = run.manifest.to_pylist()
    errors = {r["relpath"]: r["error"] for r in rows if r["error"]}
    assert sorted(errors) == ["1.png", "3.jpg"] and "cannot read image" in errors["1.png"]
    bad = [r for r in rows if r["relpath"] == "1.png"]
    assert len(bad) == 1 and bad[0]["image_id"] == 1 and bad[0]["method"] is None and bad[0]["score"] is None
    assert len([r for r in rows if r["error"] is None]) == 3 * 2
    maps = run.maps("cam")[:]
    assert np.isnan(maps[[1, 3]]).all() and not np.isnan(maps[[0, 2, 4]]).any()
    summary = run.summary()
    assert summary["skipped"] == 2 and summary["explained"] == 3 and sum(summary["skipped_reasons"].values()) == 2
    with pytest.raises(camlens.InputError, match="--strict stops"):
        _run(tiny, tmp_path / "src", tmp_path / "strict", strict=True, batch_size=2)


def test_labels_from_folders_and_run_level_errors_before_any_work(tmp_path, tiny):
    names = ["cat", "Dog_House", "2"]
    _tree(tmp_path / "val", ["Cat/a.png", "dog-house/b.png", "2/c.png"])
    run = _run(tiny, tmp_path / "val", tmp_path / "run", labels_from_folders=True,
               class_names=names + ["x", "y"])
    rows = run.manifest.to_pylist()
    assert {r["relpath"]: r["true_index"] for r in rows} == {"2/c.png": 2, "Cat/a.png": 0, "dog-house/b.png": 1}
    assert {r["true_name"] for r in rows} == {"cat", "Dog_House", "2"}

    _tree(tmp_path / "bad", ["cat/a.png", "zebra/b.png"])
    out = tmp_path / "never"
    cases = [
        (dict(source=tmp_path / "bad", labels_from_folders=True, class_names=names + ["x", "y"]), "'zebra'"),
        (dict(source=tmp_path / "bad", method="gradcamm"), "unknown method"),
        (dict(source=tmp_path / "bad", classes=7), "class 7 is out of range"),
        (dict(source=tmp_path / "bad", target_layer="nope"), "nope"),
        (dict(source=tmp_path / "nothing-here"), "no such file or folder"),
    ]
    for kwargs, message in cases:
        source = kwargs.pop("source")
        with pytest.raises(camlens.CamlensError, match=message):
            _run(tiny, source, out, **kwargs)
        assert not out.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(camlens.InputError, match="is a file"):
        _run(tiny, tmp_path / "bad", tmp_path / "file")
    with pytest.raises(camlens.InputError, match="not empty; pass --resume"):
        _run(tiny, tmp_path / "val", tmp_path / "run")
    again = _run(tiny, tmp_path / "val", tmp_path / "run", overwrite=True)
    assert again.manifest.equals(run.manifest)


def test_every_method_runs_on_a_dataset(tmp_path, tiny):
    _tree(tmp_path / "src", ["0.png", "1.png"])
    methods = [m for m in camlens.list_methods() if m != "fcmap"]  # fcmap needs a flatten + FC head
    run = _run(tiny, tmp_path / "src", tmp_path / "run", method=methods, overlays=False, samples=2)
    table = run.manifest
    assert sorted(set(table["method"].to_pylist())) == sorted(methods) and table.num_rows == 2 * len(methods)
    assert table.column("overlay").null_count == table.num_rows
    for method in methods:
        assert not np.isnan(run.maps(method)[:]).any()


# --- crash safety ---------------------------------------------------------------------------------

_KILLED_RUN = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, sys.argv[3])
    import camlens
    from conftest import GapNet

    class Slow(GapNet):
        def forward(self, x):
            time.sleep(0.15)  # slow enough to be killed mid-run
            return super().forward(x)

    torch.manual_seed(0)
    model = Slow(classes=5).eval()
    camlens.explain_dataset(model, sys.argv[1], method=["gradcam", "cam"], out=sys.argv[2], classes="top2",
                            input_size=32, batch_size=2, workers=0, quiet=True, resume="--resume" in sys.argv)
""")


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, tiny):
    _tree(tmp_path / "src", [f"{i:02d}.png" for i in range(12)])
    (tmp_path / "src" / "05.png").write_text("broken")
    script = tmp_path / "job.py"
    script.write_text(_KILLED_RUN)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(script), str(tmp_path / "src"), str(tmp_path / "killed"), str(Path(__file__).parent)]
    job = subprocess.Popen(args, env=env)
    parts = tmp_path / "killed" / "manifest.parquet"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(parts.glob("part-*"))) < 2:
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait()
    partial = camlens.open_run(tmp_path / "killed")  # readable after the crash, status still "running"
    assert partial.info["status"] == "running" and 0 < partial.summary()["done"] < 12

    subprocess.run(args + ["--resume"], env=env, check=True)
    torch.manual_seed(0)
    clean = _run(GapNet(classes=5).eval(), tmp_path / "src", tmp_path / "clean", method=["gradcam", "cam"],
                 classes="top2", batch_size=2)
    resumed = camlens.open_run(tmp_path / "killed")
    assert resumed.info["status"] == "complete" and len(resumed.info["sessions"]) == 2
    assert resumed.manifest.equals(clean.manifest)  # the same rows, no duplicates
    assert resumed.manifest.num_rows == 11 * 4 + 1
    for method in ("gradcam", "cam"):
        np.testing.assert_array_equal(resumed.maps(method)[:], clean.maps(method)[:])


# --- the command line and the pretrained model ------------------------------------------------------

def test_cli_on_an_imagefolder_of_real_photos(tmp_path, photos, capsys):
    val = tmp_path / "val"
    for folder, name in [("Egyptian_cat", "chelsea"), ("espresso", "coffee"), ("tabby", "chelsea")]:
        (val / folder).mkdir(parents=True)
        photos[name].save(val / folder / f"{name}.jpg")
    out = tmp_path / "run"
    code = main(["explain", str(val), "--model", "efficientnet_lite0", "--method", "gradcam,cam", "--out", str(out),
                 "--labels-from-folders", "--workers", "0"])
    assert code == 0
    captured = capsys.readouterr()
    assert "Egyptian_cat/chelsea.jpg: Egyptian cat" in captured.out and "accuracy against the true classes: 0.667" in captured.err
    run = camlens.open_run(out)
    first = [r for r in run.manifest.to_pylist() if r["method"] == "gradcam"]
    assert [(r["true_name"], r["predicted_name"], r["correct"]) for r in first] == [
        ("Egyptian cat", "Egyptian cat", True), ("espresso", "espresso", True), ("tabby", "Egyptian cat", False)]
    assert main(["explain", str(val), "--model", "efficientnet_lite0", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err


# --- Ray ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ray_engine_writes_the_same_run_folder(tmp_path, tiny, monkeypatch):
    ray = pytest.importorskip("ray")
    # the actors unpickle the test model: they must import conftest (and this camlens)
    path = os.pathsep.join([str(SRC), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    _tree(tmp_path / "src", [f"{d}/{i}.png" for d in "ab" for i in range(4)])
    (tmp_path / "src" / "a" / "2.png").write_text("broken")
    local = _run(tiny, tmp_path / "src", tmp_path / "local", method=["gradcam", "cam"], classes="top2")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = _run(tiny, tmp_path / "src", tmp_path / "ray", method=["gradcam", "cam"], classes="top2",
                      engine="ray", num_workers=2)
    finally:
        ray.shutdown()
    a, b = local.manifest, remote.manifest
    floats = ["score", "probability"]
    assert a.drop_columns(floats).equals(b.drop_columns(floats))
    for column in floats:
        np.testing.assert_allclose(a[column].to_numpy(zero_copy_only=False), b[column].to_numpy(zero_copy_only=False),
                                   rtol=1e-5)
    for method in ("gradcam", "cam"):
        np.testing.assert_allclose(local.maps(method)[:].astype(np.float32), remote.maps(method)[:].astype(np.float32),
                                   rtol=2e-3, atol=1e-4)
    assert sorted(p.relative_to(local.path).as_posix() for p in (local.path / "overlays").rglob("*.png")) == \
        sorted(p.relative_to(remote.path).as_posix() for p in (remote.path / "overlays").rglob("*.png"))
    assert remote.info["engine"] == "ray" and remote.info["status"] == "complete"
