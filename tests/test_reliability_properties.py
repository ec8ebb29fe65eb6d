"""Property-based: random shapes, dtypes and values give a valid result or a camlens error, never another exception.

Bounded and reproducible: every test runs a fixed number of examples, derandomized
(hypothesis derives them from the test itself, the same on every run and in CI), with no
example database and no deadline (a shared CI machine must not turn slowness into failures).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import camlens  # noqa: E402
from camlens import metrics  # noqa: E402
from camlens.cli import main  # noqa: E402

from conftest import hook_count  # noqa: E402

BOUNDED = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FEW = settings(BOUNDED, max_examples=12)

torch.manual_seed(0)


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                      nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


MODEL = SmallNet().eval()
LAYERS = [None, "features", "features.0", "features.2", "features.4", "pool", "fc", "", "nope", "features:1"]
METHODS = ["gradcam", "cam", "gradcampp", "xgradcam", "layercam", "eigencam", "eigengradcam", "scorecam", "ablationcam"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool]

special = st.sampled_from([0.0, 1.0, -1.0, 1e30, -1e30, 1e-30, float("nan"), float("inf"), -float("inf")])


@st.composite
def tensors(draw, min_dims=1, max_dims=5, max_side=12):
    dims = draw(st.integers(min_dims, max_dims))
    shape = tuple(draw(st.integers(0 if draw(st.booleans()) and dims > 1 else 1, max_side)) for _ in range(dims))
    dtype = draw(st.sampled_from(DTYPES))
    base = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**16)))) * draw(
        st.sampled_from([1.0, 100.0, 1e-3]))
    if base.numel() and draw(st.booleans()):
        base.view(-1)[draw(st.integers(0, base.numel() - 1))] = draw(special)
    if dtype.is_floating_point:
        return base.to(dtype)
    return base.nan_to_num(0, 0, 0).clamp(-1e6, 1e6).to(dtype)


@st.composite
def image_batches(draw):
    n, c = draw(st.integers(1, 3)), draw(st.sampled_from([3, 3, 3, 1, 4]))
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**16))))
    if draw(st.integers(0, 4)) == 0:
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(special)
    return x.to(draw(st.sampled_from([torch.float32, torch.float32, torch.float64, torch.float16, torch.int64])))


classes_values = st.one_of(
    st.none(), st.integers(-2, 6), st.lists(st.integers(0, 5), min_size=0, max_size=3), st.sampled_from(["top2", "top9", "x"]),
    st.floats(allow_nan=True), st.just(torch.tensor([1.5])), st.just([True]),
)


def _camlens_error(error: BaseException) -> None:
    assert isinstance(error, camlens.CamlensError), f"{type(error).__name__}: {error}"


@st.composite
def plausible_batches(draw):
    """float32 RGB batches of any size from 2x2 to 40x40, sometimes with one NaN/Inf/huge value."""
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(2, 40)), draw(st.integers(2, 40))
    x = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**16))))
    if draw(st.integers(0, 5)) == 0:
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(special)
    return x * draw(st.sampled_from([1.0, 1.0, 50.0, 1e-4]))


@BOUNDED
@given(x=plausible_batches(), method=st.sampled_from(METHODS),
       layer=st.sampled_from([None, None, "features", "features.0", "features.2", "features.4"]),
       classes=st.one_of(st.none(), st.integers(0, 3), st.lists(st.integers(0, 3), min_size=1, max_size=3),
                         st.just("top2")),
       extra=st.sampled_from([{}, {}, {"augment": "flip"}, {"fuse": "max"}]))
def test_explain_on_plausible_inputs_gives_maps_or_a_camlens_error(x, method, layer, classes, extra):
    """Mostly valid calls (about 3 in 4 give maps): the maps are finite, in [0, 1], of the input's size."""
    test_explain_gives_a_valid_result_or_a_camlens_error.hypothesis.inner_test(x, method, layer, classes, extra)


@BOUNDED
@given(x=image_batches(), method=st.sampled_from(METHODS), layer=st.sampled_from(LAYERS), classes=classes_values,
       extra=st.sampled_from([{}, {"top_k": 0}, {"top_k": 2}, {"augment": "flip"}, {"batch_size": 0}, {"fuse": "sum"}]))
def test_explain_gives_a_valid_result_or_a_camlens_error(x, method, layer, classes, extra):
    try:
        e = camlens.explain(MODEL, x, method=method, target_layer=layer, classes=classes, **extra)
    except Exception as error:  # noqa: BLE001 - the property: only camlens errors
        _camlens_error(error)
    else:
        n, _, h, w = x.shape
        assert e.maps.shape[0] == n and e.maps.shape[-2:] == (h, w)
        assert bool(torch.isfinite(e.maps).all()) and float(e.maps.min()) >= 0 and float(e.maps.max()) <= 1
        assert e.classes.dtype == torch.long and e.classes.shape == e.maps.shape[:2]
    assert hook_count(MODEL) == 0 and not MODEL.training


@BOUNDED
@given(image=st.one_of(tensors(2, 4, 20), st.builds(lambda a: a.numpy(), tensors(2, 3, 20).filter(
           lambda t: t.dtype != torch.bfloat16))),
       heat=tensors(1, 4, 16), alpha=st.sampled_from([0.0, 0.5, 1.0, 1.5, -0.1, float("nan")]),
       cmap=st.sampled_from(["jet", "magma", "nope"]))
def test_overlay_gives_an_image_or_a_camlens_error(image, heat, alpha, cmap):
    try:
        out = camlens.overlay(image, heat, alpha=alpha, cmap=cmap)
    except Exception as error:  # noqa: BLE001
        _camlens_error(error)
    else:
        assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1


@BOUNDED
@given(maps=tensors(1, 4, 10), targets=tensors(1, 4, 10), tolerance=st.sampled_from([0, 3, -1]),
       threshold=st.sampled_from([0.2, 0.0, 1.0, -0.5]))
def test_localization_metrics_give_a_value_or_a_camlens_error(maps, targets, tolerance, threshold):
    for metric, kwargs in ((metrics.pointing_game, {"tolerance": tolerance}), (metrics.energy_pointing_game, {}),
                           (metrics.localization_iou, {"threshold": threshold})):
        try:
            value = metric(maps, targets, **kwargs)
        except Exception as error:  # noqa: BLE001
            _camlens_error(error)
        else:
            assert value.dtype == torch.bool or bool(torch.isfinite(value.float()).all())


@FEW
@given(maps=tensors(2, 5, 12), n=st.integers(1, 2), step=st.sampled_from([0.25, 3, 0, -1, 1.0]),
       classes=st.sampled_from([None, [0, 1], 0, torch.tensor([0.5, 1.5]), 9]),
       baseline=st.sampled_from(["zeros", "blur", "mean", 0.5, "nope"]))
def test_faithfulness_metrics_give_curves_or_a_camlens_error(maps, n, step, classes, baseline):
    x = torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    for metric, kwargs in ((metrics.deletion_curve, {"step": step}), (metrics.insertion_curve, {"step": step}),
                           (metrics.confidence_change, {})):
        try:
            result = metric(MODEL, x, maps, classes=classes, baseline=baseline, progress=False, **kwargs)
        except Exception as error:  # noqa: BLE001
            _camlens_error(error)
        else:
            assert result is not None
    assert hook_count(MODEL) == 0


@FEW
@given(shapes=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=4),
       every=st.sampled_from([1, 2, 0, -1, 2.5]), bins=st.sampled_from([1, 40, 0]),
       value_range=st.sampled_from([None, (0.0, 1.0), (1.0, 0.0)]), max_records=st.sampled_from([None, 2, 1]),
       backward=st.booleans(), poison=st.booleans())
def test_activation_stats_record_or_give_a_camlens_error(shapes, every, bins, value_range, max_records, backward, poison):
    model = SmallNet().train()
    try:
        stats = camlens.ActivationStats(model, every=every, bins=bins, range=value_range, max_records=max_records,
                                        backward=backward)
    except Exception as error:  # noqa: BLE001
        _camlens_error(error)
        assert hook_count(model) == 0
        return
    with stats:
        for n, h, w in shapes:
            x = torch.randn(n, 3, h, w)
            if poison:
                x[0, 0, 0, 0] = float("nan")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = model(x) if n > 1 else model.eval()(x)
                model.train()
            if backward:
                out.float().sum().backward()
        for name in stats.names:
            s = stats.layer_stats(name)
            assert s.mean.shape == s.std.shape == s.near_zero.shape
        stats.to_records(with_hist=True)
    assert hook_count(model) == 0


@BOUNDED
@given(content=st.binary(min_size=0, max_size=600), header=st.sampled_from(
    [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"II*\x00", b"BM", b"RIFF\x00\x00\x00\x00WEBP"]))
def test_random_bytes_as_image_files_give_an_input_error(tmp_path_factory, content, header):
    path = tmp_path_factory.mktemp("img") / "random.png"
    path.write_bytes(header + content)
    try:
        image = camlens.load_image(path)
    except Exception as error:  # noqa: BLE001
        assert isinstance(error, camlens.InputError), f"{type(error).__name__}: {error}"
    else:
        assert image.mode == "RGB"


@FEW
@given(content=st.binary(min_size=1, max_size=400), header=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]))
def test_random_bytes_as_image_files_exit_2_with_one_line(tmp_path_factory, capsys, content, header):
    folder = tmp_path_factory.mktemp("cli-img")
    path = folder / "random.jpg"
    path.write_bytes(header + content)
    # --strict: an unreadable image stops the run (without it, it is one skipped manifest row)
    code = main(["explain", str(path), "--model", "efficientnet_lite0", "--out", str(folder / "out"), "--strict", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("camlens: error: "), err
    # what is there is a consistent, resumable run folder: no half-written (temporary) file
    assert not [p for p in (folder / "out").rglob(".*")] if (folder / "out").exists() else True


@BOUNDED
@given(content=st.binary(min_size=0, max_size=600), suffix=st.sampled_from([".pt", ".pt2", ".pth", ".ckpt", ".jit"]),
       header=st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95"]), trust=st.booleans())
def test_random_bytes_as_model_files_exit_2_with_one_line(tmp_path_factory, capsys, content, suffix, header, trust):
    path = tmp_path_factory.mktemp("model") / f"random{suffix}"
    path.write_bytes(header + content)
    code = main(["layers", "--model", str(path), *(["--trust"] if trust else [])])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("camlens: error: "), err


def test_the_settings_are_bounded_and_reproducible():
    assert BOUNDED.derandomize and BOUNDED.max_examples <= 40 and BOUNDED.database is None
    assert np.isfinite(FEW.max_examples)
