"""NaN/Inf, layers without a grid and arguments: a clear error saying where (issue 18, groups 4, 5, 7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import camlens
from camlens import metrics

from conftest import GapNet, hook_count


@pytest.fixture
def net():
    torch.manual_seed(0)
    return GapNet().eval()


X = torch.randn(2, 3, 16, 16)


# --- NaN / Inf --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_in_the_input_is_named(net, value):
    x = X.clone()
    x[1, 0, 3, 3] = value
    with pytest.raises(camlens.InputError, match=r"the input contains (NaN|Inf) \(image\(s\) 1\)"):
        camlens.explain(net, x)
    assert hook_count(net) == 0


def test_nan_in_the_model_output_is_named(net):
    with torch.no_grad():
        net.fc.bias[2] = float("nan")
    with pytest.raises(camlens.InputError, match="the model's output .* contains NaN"):
        camlens.explain(net, X, target_layer="features")


def test_nan_in_a_map_is_named(net):
    """A method whose formula yields NaN (here a registered one dividing 0 by 0) is caught, not normalised away."""
    from camlens.methods import _registry

    @camlens.register_method("nan_test_method")
    def nan_test_method(activations):
        return (activations.sum(1, keepdim=True) * 0) / 0

    try:
        with pytest.raises(camlens.InputError, match="method 'nan_test_method'.*map at layer 'features' contains NaN"):
            camlens.explain(net, X, method="nan_test_method", target_layer="features")
    finally:
        del _registry._METHODS["nan_test_method"]


def test_metrics_reject_nan_maps(net):
    maps = torch.rand(2, 16, 16)
    maps[0, 0, 0] = float("nan")
    for metric in (metrics.deletion_curve, metrics.insertion_curve, metrics.confidence_change):
        with pytest.raises(camlens.InputError, match="NaN or Inf"):
            metric(net, X, maps, classes=[0, 1])
    masks = torch.ones(2, 16, 16, dtype=torch.bool)
    for metric in (metrics.pointing_game, metrics.energy_pointing_game, metrics.localization_iou):
        with pytest.raises(camlens.InputError, match="NaN or Inf"):
            metric(maps, masks)


def test_overlaying_a_nan_map_is_a_clear_error():
    heat = torch.rand(7, 7)
    heat[3, 3] = float("nan")
    with pytest.raises(camlens.InputError, match="NaN or Inf"):  # was: a raw IndexError
        camlens.overlay(torch.zeros(3, 32, 32), heat)


# --- layers without a spatial grid ---------------------------------------------------------

@pytest.mark.parametrize("layer, shape", [("fc", "(2, 5)"), ("", "(2, 5)"), ("pool", "(2, 16, 1, 1)")])
def test_layer_without_a_grid_names_its_shape_and_the_nearest_grid(net, layer, shape):
    with pytest.raises(camlens.InputError) as error:
        camlens.explain(net, X, target_layer=layer)
    text = str(error.value)
    assert shape in text and "nearest layer with a grid is 'features" in text, text
    assert hook_count(net) == 0


def test_one_by_one_grid_needs_an_explicit_opt_in():
    import torchvision

    model = torchvision.models.resnet18(num_classes=4).eval()
    x = torch.randn(1, 3, 32, 32)  # layer4 is 1x1 at 32 pixels
    with pytest.raises(camlens.InputError, match=r"1×1 grid.*allow_1x1=True.*nearest layer with a grid is 'layer3'"):
        camlens.explain(model, x, target_layer="layer4")
    e = camlens.explain(model, x, target_layer="layer4", allow_1x1=True)
    assert e.raw.shape[-2:] == (1, 1)


def test_grid_problem_is_the_single_place_to_extend():
    from camlens.engine._validate import grid_problem

    assert grid_problem((2, 8, 7, 7)) is None
    assert "no spatial grid" in grid_problem((2, 10))
    assert "no spatial grid" in grid_problem((2, 49, 64))  # until a token layout turns it into a grid
    assert "1×1" in grid_problem((2, 8, 1, 1)) and grid_problem((2, 8, 1, 1), allow_1x1=True) is None


# --- arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize("classes", [1.7, [0, 1.0], torch.tensor([1.9, 0.2]), torch.tensor(2.0), np.array([1.5, 2.5]),
                                     True, [True]])
def test_float_or_bool_classes_are_refused_not_truncated(net, classes):
    with pytest.raises((camlens.InputError, TypeError)) as error:
        camlens.explain(net, X, classes=classes)
    assert isinstance(error.value, camlens.CamlensError)
    assert "integer" in str(error.value) or "class index" in str(error.value)


def test_numpy_integer_classes_are_accepted(net):
    e = camlens.explain(net, X, classes=[np.int64(1), np.int32(3)])
    assert e.classes.tolist() == [[1, 3], [1, 3]]
    e = camlens.explain(net, X, classes=np.array([[0], [4]]))
    assert e.classes.tolist() == [[0], [4]]


@pytest.mark.parametrize("method", [None, 3, ["gradcam", None], []])
def test_method_must_be_a_name_and_the_message_lists_them(net, method):
    with pytest.raises(camlens.InputError, match="gradcam"):
        camlens.explain(net, X, method=method)


@pytest.mark.parametrize("options, match", [
    ({"top_k": 0}, "top_k=0 must be at least 1"),
    ({"top_k": -3}, "at least 1"),
    ({"top_k": 2.5}, "whole number"),
    ({"top_k": "8"}, "whole number"),
    ({"batch_size": 0}, "batch_size=0"),
])
def test_counts_must_be_positive_integers(net, options, match):
    with pytest.raises(camlens.CamlensError, match=match):
        camlens.explain(net, X, method="scorecam", **options)


def test_metric_classes_must_be_integers(net):
    with pytest.raises(camlens.InputError, match="integer"):
        metrics.deletion_curve(net, X, torch.rand(2, 16, 16), classes=torch.tensor([0.5, 1.5]))
