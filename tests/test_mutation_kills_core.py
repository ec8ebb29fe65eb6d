"""Kill tests for the hooks and the activation statistics (issue 14): behaviour the other tests left open.

Each test checks what a documented behaviour must give (a name, an error and its message, a
stored value against the tensor it came from, a statistic computed directly), so a mutation of
camlens.core.hooks or camlens.stats.activation_stats that changes behaviour fails one of them.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camlens
from camlens import Captured, Hook, Hooks, capture, get_module
from camlens.core.hooks import first_tensor, module_name, parse_layer_name
from conftest import hook_count


# ------------------------------------------------------------------ names
def test_parse_layer_name_splits_only_an_integer_call_suffix():
    assert parse_layer_name("_swish:1") == ("_swish", 1)
    assert parse_layer_name("blocks.3:-1") == ("blocks.3", -1)
    assert parse_layer_name("layer4") == ("layer4", None)
    assert parse_layer_name("a:b") == ("a:b", None)  # not a call index: the whole name


class Chain(nn.Module):
    """Seven named Linear layers ``layer1`` .. ``layer7`` and a nested ``head.fc``."""

    def __init__(self) -> None:
        super().__init__()
        for i in range(1, 8):
            setattr(self, f"layer{i}", nn.Linear(2, 2))
        self.head = nn.Sequential()
        self.head.add_module("fc", nn.Linear(2, 2))

    def forward(self, x):
        for i in range(1, 8):
            x = getattr(self, f"layer{i}")(x)
        return self.head(x)


def test_get_module_finds_dotted_names_and_the_model_itself():
    model = Chain()
    assert get_module(model, "head.fc") is model.head.fc
    assert get_module(model, "layer3:1") is model.layer3  # the call suffix is not part of the name
    assert get_module(model, "") is model


def test_wrong_name_lists_at_most_five_close_matches_closest_first():
    model = Chain()
    with pytest.raises(camlens.LayerNotFoundError) as info:
        get_module(model, "layer")
    listed = str(info.value).split("close matches: ")[1].split(". ")[0].split(", ")
    assert len(listed) == 5 and set(listed) <= {f"layer{i}" for i in range(1, 8)}
    with pytest.raises(camlens.LayerNotFoundError, match=r"close matches: head\.fc[,.]"):
        get_module(model, "hed.fc")  # difflib ratio 12/13, above the cutoff 0.5
    with pytest.raises(camlens.LayerNotFoundError) as info:
        get_module(model, "zzzz")
    assert "close matches" not in str(info.value) and "describe(model)" in str(info.value)


def test_module_name_is_the_dotted_path_and_a_foreign_module_raises():
    model = Chain()
    assert module_name(model, model.head.fc) == "head.fc"
    assert module_name(model, model.layer2) == "layer2"
    assert module_name(model, model) == ""
    with pytest.raises(camlens.LayerNotFoundError, match="not part of Chain"):
        module_name(model, nn.Linear(2, 2))


def test_first_tensor_searches_nested_outputs_in_order():
    a, b = torch.zeros(1), torch.ones(2)
    assert first_tensor(a) is a
    assert first_tensor((None, [3, {"x": b, "y": a}], a)) is b
    assert first_tensor({"k": (1, "s"), "t": [a]}) is a
    assert first_tensor(("no", [1, 2.0], {"z": None})) is None
    assert first_tensor(7) is None


# ------------------------------------------------------------------ Hook
def test_hook_defaults_store_the_detached_output_itself():
    lin = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with Hook(lin) as hook:
        assert hook.calls == 0
        y = lin(x)
    assert hook.calls == 1
    assert torch.equal(hook.stored, y) and not hook.stored.requires_grad
    assert hook.stored.data_ptr() == y.data_ptr()  # default: no copy
    assert repr(hook) == "Hook(Linear, output, calls=1)"
    with Hook(lin, store="input") as hook:
        lin(x)
    assert repr(hook) == "Hook(Linear, input, calls=1)" and torch.equal(hook.stored, x)


def test_hook_counts_every_call_and_keeps_the_latest():
    lin = nn.Linear(2, 2)
    with Hook(lin) as hook, torch.no_grad():
        lin(torch.zeros(1, 2))
        last = lin(torch.ones(1, 2))
    assert hook.calls == 2 and torch.equal(hook.stored, last)


def test_hook_argument_errors():
    with pytest.raises(ValueError, match="store must be"):
        Hook(nn.ReLU(), store="grad")
    with pytest.raises(TypeError, match="nn.Module, got function"):
        Hook(lambda x: x)


def test_hook_without_detach_keeps_the_graph_and_clone_copies():
    lin = nn.Linear(3, 2)
    with Hook(lin, detach=False) as kept, Hook(lin, clone=True) as copied:
        y = lin(torch.randn(1, 3))
    assert kept.stored is y and kept.stored.requires_grad
    assert torch.equal(copied.stored, y) and copied.stored.data_ptr() != y.data_ptr()


class EndsInPlace(nn.Module):
    """A module whose forward modifies its own result in place before returning it
    (like ResNet's BasicBlock: ``out += identity; relu_(out)``): the output's version is not 0."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        y = self.lin(x)
        y.add_(1.0)
        return y.relu_()


def test_output_modified_inside_its_own_forward_is_still_its_output():
    module = EndsInPlace()
    x = torch.randn(5, 3)
    with torch.no_grad():
        expected = (module.lin(x) + 1).relu()
    with Hook(module) as plain, Hook(module, clone=True) as copied, capture(module, [""], clone=True) as cap, \
            capture(module, [""]) as cap_plain, torch.no_grad():
        module(x)
    torch.testing.assert_close(plain.stored, expected)
    torch.testing.assert_close(copied.stored, expected)
    torch.testing.assert_close(cap[""].output, expected)
    torch.testing.assert_close(cap_plain[""].output, expected)


def test_cpu_hook_on_a_cpu_tensor_shares_its_storage_and_so_detects_in_place_changes():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    net = nn.Sequential(conv, nn.ReLU(inplace=True))
    with Hook(conv, cpu=True) as hook, torch.no_grad():
        net(torch.randn(1, 1, 5, 5))
    with pytest.raises(camlens.InPlaceModifiedError):
        hook.stored


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_hook_moves_a_cuda_output_to_the_cpu_and_keeps_it_safe_from_in_place_ops():
    conv = nn.Conv2d(1, 2, 3, padding=1).cuda()
    net = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.randn(1, 1, 5, 5, device="cuda")
    with torch.no_grad():
        pre = conv(x).cpu()
    with Hook(conv, cpu=True) as hook, torch.no_grad():
        net(x)
    assert hook.stored.device.type == "cpu"
    torch.testing.assert_close(hook.stored, pre)


def test_module_without_a_tensor_output_says_so():
    class Counter(nn.Module):
        def forward(self, x):
            return len(x)

    counter = Counter()
    with Hook(counter) as hook:
        counter([1, 2])
    assert hook.calls == 1
    with pytest.raises(camlens.LayerNotExecutedError, match="ran but its output holds no tensor"):
        hook.stored
    with Hook(counter, backward=True) as grad_hook:
        counter([1])
    with pytest.raises(camlens.NoGradientError):
        grad_hook.stored


def test_gradient_hook_is_removed_with_the_block():
    lin = nn.Linear(3, 1)
    with Hook(lin, backward=True) as hook:
        y = lin(torch.randn(2, 3))
    assert repr(hook) == "Hook(Linear, gradient, calls=1)"
    y.sum().backward()  # after the block: nothing may be recorded any more
    with pytest.raises(camlens.NoGradientError):
        hook.stored
    assert not y._backward_hooks


def test_gradient_hook_stores_the_gradient_not_the_output():
    lin = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with Hook(lin, backward=True) as hook:
        y = lin(x)
        (y * torch.tensor([2.0, -1.0])).sum().backward()
    torch.testing.assert_close(hook.stored, torch.tensor([[2.0, -1.0]]).expand(4, 2))
    assert hook.calls == 1


def test_hooks_remove_every_hook_and_list_what_each_stored():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    hooks = Hooks(net)
    assert len(hooks) == 3 and hooks[2].module is net[2] and [h.module for h in hooks] == list(net)
    with torch.no_grad():
        y = net(torch.randn(4, 2))
    assert torch.equal(hooks.stored[2], y)
    hooks.remove()
    assert hook_count(net) == 0


# ------------------------------------------------------------------ capture
class TwoPaths(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.shared, self.unused = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)

    def forward(self, x):
        return self.shared(self.used(self.shared(x)))


def test_captured_default_version_is_a_fresh_tensors_version():
    t = torch.zeros(2)
    assert Captured(t).version == t._version == 0 and Captured(t).grad is None


def test_capture_defaults_no_gradients_and_no_copies():
    model = TwoPaths()
    with capture(model, "used") as cap:
        y = model(torch.randn(3, 2))
        y.sum().backward()
    assert cap["used"].grad is None  # grads=False: nothing recorded
    assert not cap["used"].output.requires_grad
    with capture(model, "used") as cap:
        out = model.used.register_forward_hook(lambda m, a, o: o.mul_(2))
        try:
            model(torch.randn(3, 2))
        finally:
            out.remove()
    with pytest.raises(camlens.InPlaceModifiedError, match="clone=True"):
        cap["used"]


def test_capture_clone_keeps_the_value_before_an_in_place_change():
    model = TwoPaths()
    x = torch.randn(3, 2)
    with torch.no_grad():
        expected = model.used(model.shared(x))
    with capture(model, ["used"], clone=True) as cap:
        handle = model.used.register_forward_hook(lambda m, a, o: o.mul_(2))
        try:
            model(x)
        finally:
            handle.remove()
    torch.testing.assert_close(cap["used"].output, expected)
    assert not cap["used"].output.requires_grad


def test_capture_names_calls_ran_and_errors():
    model = TwoPaths()
    with capture(model, ["used", "shared", "unused"]) as cap:
        model(torch.randn(1, 2))
    assert list(cap) == ["shared:0", "shared:1", "used"] and len(cap) == 3
    assert cap.ran == ["shared", "used", "shared", ""]
    assert len(cap.calls("shared")) == 2 and len(cap.calls("used")) == 1
    with pytest.raises(camlens.MultipleCallsError, match="ran 2 times"):
        cap["shared"]
    with pytest.raises(camlens.MultipleCallsError, match="call index 2 does not exist"):
        cap["shared:2"]
    assert cap["shared:1"].output is cap["shared:-1"].output
    with pytest.raises(camlens.LayerNotExecutedError, match="Modules that did run: shared, used, shared."):
        cap["unused"]
    with pytest.raises(KeyError, match="was not captured"):
        cap.calls("")  # the model itself is a module, but not one of the captured names
    with pytest.raises(camlens.LayerNotFoundError, match="close matches: used"):
        cap.calls("usd")


def test_not_run_message_lists_the_last_twelve_modules():
    model = nn.Sequential(*[nn.Identity() for _ in range(13)], nn.Linear(1, 1))
    with capture(model, ["13"]) as cap:
        model[:13](torch.randn(1, 1))  # the Linear never runs; 13 identities (+ the slice) do
    message = str(pytest.raises(camlens.LayerNotExecutedError, cap.__getitem__, "13").value)
    assert "(the last 12 of 13): 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12." in message
    model = nn.Sequential(*[nn.Identity() for _ in range(12)], nn.Linear(1, 1))
    with capture(model, ["12"]) as cap:
        model[:12](torch.randn(1, 1))
    message = str(pytest.raises(camlens.LayerNotExecutedError, cap.__getitem__, "12").value)
    assert "Modules that did run: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11." in message
    with capture(model, ["12"]) as cap:
        pass
    message = str(pytest.raises(camlens.LayerNotExecutedError, cap.__getitem__, "12").value)
    assert message.startswith("Module '12' never ran while the hook was in place") and message.endswith(" No module ran.")


def test_capture_skips_outputs_without_tensors():
    class Meta(nn.Module):
        def forward(self, x):
            return {"n": x.shape[0]}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.meta, self.lin = Meta(), nn.Linear(2, 2)

        def forward(self, x):
            self.meta(x)
            return self.lin(x)

    net = Net()
    with capture(net, ["meta", "lin"]) as cap:
        net(torch.randn(1, 2))
    assert list(cap) == ["lin"] and cap.ran == ["meta", "lin", ""]
    with pytest.raises(camlens.LayerNotExecutedError, match="'meta' ran but its output holds no tensor"):
        cap["meta"]


def test_capture_gradients_with_no_grad_forward_and_create_graph():
    lin = nn.Linear(2, 2)
    model = nn.Sequential(lin, nn.Tanh())
    with capture(model, ["0"], grads=True) as cap, torch.no_grad():
        model(torch.randn(1, 2))  # no graph: nothing to hook, and no error
    assert cap["0"].grad is None
    x = torch.randn(3, 2, requires_grad=True)
    with capture(model, ["0"], grads=True) as cap:
        y = model(x)
        torch.autograd.grad(y.pow(2).sum(), [x], create_graph=True)  # the gradients flowing back carry a graph
    g = cap["0"].grad
    expected = 2 * y.detach() * (1 - y.detach() ** 2)  # d sum(y^2) / dz with y = tanh(z)
    torch.testing.assert_close(g, expected)
    assert not g.requires_grad


def test_a_new_forward_removes_the_previous_forwards_tensor_hooks():
    lin = nn.Linear(2, 1)
    with capture(lin, [""], grads=True) as cap:
        first = lin(torch.randn(1, 2))
        assert first._backward_hooks
        kept = cap[""]
        second = lin(torch.randn(1, 2))
        assert not first._backward_hooks and second._backward_hooks
        first.backward()
        assert kept.grad is None and cap[""].grad is None
        second.backward()
        assert cap[""].grad is not None
    assert not second._backward_hooks and hook_count(lin) == 0


def test_capture_exit_removes_the_tensor_hooks_too():
    lin = nn.Linear(2, 1)
    with capture(lin, [""], grads=True) as cap:
        y = lin(torch.randn(1, 2))
    assert not y._backward_hooks and hook_count(lin) == 0
    y.backward()
    assert cap[""].grad is None


# ------------------------------------------------------------------ ActivationStats
from camlens import ActivationStats, InputError, LayerNotFoundError  # noqa: E402
from camlens.stats.activation_stats import default_modules  # noqa: E402


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_default_modules_of_a_model_without_children_is_the_model():
    lin = nn.Linear(2, 2)
    assert default_modules(lin) == [lin]
    relu = nn.ReLU()
    assert default_modules(relu) == [] and default_modules(relu, include_paramless=True) == [relu]
    model = mlp()
    with ActivationStats(model) as stats:  # default: no parameter-less leaves
        model(torch.randn(2, 3))
    assert stats.names == ["0", "2"]


def test_argument_checks_accept_the_boundaries():
    model = mlp()
    for bad in (dict(every=0), dict(every=1.0), dict(bins=0), dict(bins=2.5), dict(range=(1.0, 1.0)),
                dict(max_records=1)):
        with pytest.raises(InputError):
            ActivationStats(model, **bad)
    with pytest.raises(InputError, match="nn.Module being trained"):
        ActivationStats([model])
    ActivationStats(model, every=1, bins=1, max_records=2).remove()
    ActivationStats(model, with_hist=False, bins=0).remove()  # bins do not matter without histograms
    ActivationStats(model, range=(-1e-3, 0.0)).remove()
    assert hook_count(model) == 0


def test_default_range_threshold_and_batch_start():
    model = mlp()
    stats = ActivationStats(model)
    assert stats.range == (0.0, 10.0) and stats.near_zero == 0.05 and stats.batch == -1 and not stats.recording
    stats.remove()
    stats = ActivationStats(model, backward=True, auto_step=False)
    assert stats.range == (-10.0, 2.0) and stats.near_zero == 1e-8 and stats.batch == 0 and stats.recording
    stats.remove()
    stats = ActivationStats(model, range=(-1, 3), near_zero=0.5)
    assert stats.range == (-1.0, 3.0) and stats.near_zero == 0.5 and stats.with_hist and stats.bins == 40
    stats.remove()


def test_series_spans_chunks_and_memory_is_allocated_256_rows_at_a_time():
    model = nn.Sequential(nn.Linear(1, 1))
    x = torch.ones(1, 1)
    with ActivationStats(model, with_hist=False) as stats, torch.no_grad():
        model(x)
        assert stats.nbytes == 256 * 12 + 8  # one chunk of 256 rows of 3 float32, one int64 index
        for _ in range(256):
            model(x)
        assert stats.nbytes == 2 * 256 * 12 + 8 * 257
    s = stats.layer_stats(0)
    assert s.batch.tolist() == list(range(257))
    expected = model(x).item()
    assert s.mean.tolist() == pytest.approx([expected] * 257)
    assert s.std.tolist() == [0.0] * 257  # one value per output: std 0, not NaN


def test_single_value_outputs_std_and_near_zero_fraction():
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.fill_(0.01)
    model = nn.Sequential(lin)
    with ActivationStats(model) as stats, torch.no_grad():
        model(torch.randn(1, 2))
    s = stats.layer_stats(0)
    assert s.mean.item() == pytest.approx(0.01) and s.std.item() == 0.0 and s.near_zero.item() == 1.0


def test_near_zero_counts_values_equal_to_the_threshold():
    model = nn.Sequential(nn.Linear(3, 64), nn.ReLU())
    x = torch.randn(8, 3)
    with torch.no_grad():
        out = model(x)
    with ActivationStats(model, [model[1]], near_zero=0.0) as stats, torch.no_grad():
        model(x)
    zeros = (out == 0).float().mean().item()
    assert 0.2 < zeros < 0.8 and stats.layer_stats(0).near_zero.item() == pytest.approx(zeros)


def test_statistics_of_half_precision_outputs_are_computed_in_float32():
    lin = nn.Linear(4, 256).to(torch.bfloat16)
    model = nn.Sequential(lin)
    x = torch.randn(16, 4).to(torch.bfloat16)
    with torch.no_grad():
        out = model(x).float()
    with ActivationStats(model, range=(-2, 2)) as stats, torch.no_grad():
        model(x)
    s = stats.layer_stats(0)
    assert s.mean.item() == pytest.approx(out.mean().item(), rel=1e-5, abs=1e-7)
    assert s.std.item() == pytest.approx(out.std().item(), rel=1e-5)
    assert torch.equal(stats.hist(0)[:, 0], torch.histc(out, 40, -2, 2))


def test_gradient_entries_near_zero_and_histogram_against_the_gradient():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    x = torch.randn(4, 3)
    grads = []

    def keep_gradient(module, args, out):
        out.register_hook(lambda g: grads.append(g.clone()))

    handle = model[0].register_forward_hook(keep_gradient)
    with ActivationStats(model, [model[0]], backward=True, bins=12, near_zero=0.0) as stats:
        model(x).sum().backward()
    handle.remove()
    (g,) = grads
    assert (g == 0).any() and (g != 0).any()
    s = stats.layer_stats(0)
    assert s.near_zero.item() == pytest.approx((g == 0).float().mean().item())
    hist = stats.hist(0)[:, 0]
    assert torch.equal(hist, torch.histc(g.abs().log10(), 12, -10, 2))  # log10(0) = -inf: not counted
    assert hist.sum().item() == (g != 0).sum().item()
    with ActivationStats(model, [model[0]], backward=True, bins=13, range=(-52, 0)) as stats:  # reaches below -45
        model(x).sum().backward()
    assert stats.hist(0)[:, 0].sum().item() == (g != 0).sum().item()  # an exact 0 is in no bin


def test_gradient_hooks_without_a_backward_are_dropped_after_eight_batches():
    model = nn.Sequential(nn.Linear(2, 1))
    for later, recorded in ((8, [0]), (9, [])):
        with ActivationStats(model, backward=True) as stats:
            first = model(torch.randn(1, 2))  # batch 0, never back-propagated in time
            for _ in range(later):
                model(torch.randn(1, 2))
            first.backward()
        assert stats.layer_stats(0).batch.tolist() == recorded, later


def test_pending_hooks_of_back_propagated_batches_do_not_record_twice():
    model = nn.Sequential(nn.Linear(2, 1))
    with ActivationStats(model, backward=True) as stats:
        for _ in range(3):
            y = model(torch.randn(1, 2))
            y.backward(retain_graph=True)
        y.backward()  # the last batch's graph again: its hook records once more, the others do not
    assert stats.layer_stats(0).batch.tolist() == [0, 1, 2, 2]


def test_every_with_manual_steps_and_train_only():
    model = mlp()
    with ActivationStats(model, every=2, auto_step=False) as stats:
        for _ in range(5):
            model(torch.randn(2, 3))
            stats.step()
    assert stats.layer_stats(0).batch.tolist() == [0, 2, 4] and stats.batch == 5 and stats.recorded_batches == 3
    model.eval()
    with ActivationStats(model, train_only=False) as stats, torch.no_grad():
        model(torch.randn(2, 3))
        model(torch.randn(2, 3))
    assert stats.layer_stats(0).batch.tolist() == [0, 1]
    model.train()
    model[2].eval()  # a submodule in eval mode inside a training model is not recorded
    with ActivationStats(model) as stats:
        model(torch.randn(2, 3))
    assert stats.names == ["0"]
    with ActivationStats(model, train_only=False) as stats:
        model(torch.randn(2, 3))
    assert stats.names == ["0", "2"]


def test_reused_module_names_restart_every_batch():
    block = nn.Linear(2, 2)
    model = nn.Sequential(block, block)
    with ActivationStats(model, [block]) as stats:
        for _ in range(3):
            model(torch.randn(1, 2))
    assert stats.names == ["0", "0:1"]
    assert stats.layer_stats("0").batch.tolist() == [0, 1, 2] == stats.layer_stats("0:1").batch.tolist()


def test_thinning_recounts_recorded_batches_and_keeps_recording_on_the_new_grid():
    model = nn.Sequential(nn.Linear(1, 1))
    with ActivationStats(model, max_records=3) as stats, torch.no_grad():
        for _ in range(3):
            model(torch.ones(1, 1))
        assert stats.recorded_batches == 3 and stats.every == 1
        model(torch.ones(1, 1))  # batch 3: the cap is reached, every -> 2; 3 is off the grid
        assert stats.every == 2 and stats.recorded_batches == 2 and not stats.recording
        assert stats.layer_stats(0).batch.tolist() == [0, 2]
        model(torch.ones(1, 1))  # batch 4: recorded
        assert stats.recorded_batches == 3 and stats.layer_stats(0).batch.tolist() == [0, 2, 4]
        for _ in range(2):
            model(torch.ones(1, 1))  # batch 6: cap again, every -> 4: records 0, 4 and then 6 is off
        assert stats.every == 4 and stats.layer_stats(0).batch.tolist() == [0, 4]
        assert stats.recorded_batches == 2


def test_thinning_more_than_a_chunk_keeps_every_row():
    model = nn.Sequential(nn.Linear(1, 1))
    xs = [torch.full((1, 1), float(i)) for i in range(601)]
    with torch.no_grad():
        means = [model(x).item() for x in xs]
    with ActivationStats(model, max_records=600, with_hist=False) as stats, torch.no_grad():
        for x in xs:
            model(x)
    s = stats.layer_stats(0)
    assert s.batch.tolist() == list(range(0, 601, 2))
    assert s.mean.tolist() == pytest.approx(means[::2], rel=1e-6)
    assert stats.nbytes == 2 * 256 * 12 + 8 * 301


def test_reading_returns_copies_and_contiguous_histograms():
    model = mlp()
    with ActivationStats(model, bins=4) as stats:
        for _ in range(2):
            model(torch.randn(2, 3))
    s = stats.layer_stats(0)
    before = [t.clone() for t in s]
    for t in s:
        t.add_(1)
    assert all(torch.equal(a, b) for a, b in zip(stats.layer_stats(0), before))
    hist = stats.hist(0)
    assert hist.shape == (4, 2) and hist.is_contiguous()
    hist.add_(1)
    assert not torch.equal(stats.hist(0), hist)
    assert stats.layer_stats(-2).batch.tolist() == [0, 1] and stats.layer_stats(-1).batch.tolist() == [0, 1]
    with pytest.raises(InputError, match="out of range"):
        stats.layer_stats(-3)
    with pytest.raises(InputError, match="out of range"):
        stats.layer_stats(2)


def test_unknown_entry_lists_close_names():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(20)])  # "1x" is close to "1" and "10" .. "19"
    with ActivationStats(model) as stats:
        model(torch.randn(1, 2))
    with pytest.raises(LayerNotFoundError) as info:
        stats.layer_stats("1x")
    listed = str(info.value).split("Close matches: ")[1].split(". ")[0].split(", ")
    assert len(listed) == 5 and listed[0] == "1"
    with pytest.raises(LayerNotFoundError) as info:
        stats.layer_stats("zzz")
    assert "Close matches" not in str(info.value)


def test_records_and_csv_without_histograms(tmp_path):
    model = mlp()
    with ActivationStats(model, with_hist=False) as stats:
        model(torch.randn(2, 3))
    records = stats.to_records(with_hist=True)  # no histograms recorded: none in the records
    assert [r["name"] for r in records] == ["0", "2"] and "hist" not in records[0]
    text = stats.to_csv(with_hist=True)
    assert text.splitlines()[0] == "name,batch,mean,std,near_zero" and len(text.splitlines()) == 3
    assert not list(tmp_path.iterdir())
    with ActivationStats(model, bins=3) as stats:
        model(torch.randn(2, 3))
    assert "hist" not in stats.to_records()[0] and stats.to_records(with_hist=True)[1]["hist"] == stats.hist(1)[:, 0].tolist()
    row = stats.to_csv(tmp_path / "s.csv").splitlines()[1].split(",")
    assert row[:2] == ["0", "0"] and float(row[2]) == pytest.approx(stats.layer_stats(0).mean.item()) and len(row) == 5
    assert (tmp_path / "s.csv").read_text().splitlines()[1].split(",") == row


def test_bytes_per_record_and_repr():
    model = mlp()
    with ActivationStats(model, bins=5) as stats:
        assert stats.bytes_per_record == 4 * 8 + 8
    stats = ActivationStats(model, with_hist=False)
    assert stats.bytes_per_record == 20
    model(torch.randn(1, 3))
    assert repr(stats) == ("ActivationStats(activations, 2 modules, 2 entries, 1 batches recorded, every=1, "
                           f"{2 * (256 * 12 + 8)} bytes, hooked)")
    stats.remove()
    assert repr(stats).endswith("removed)") and hook_count(model) == 0
    grads = ActivationStats(model, backward=True)
    assert repr(grads).startswith("ActivationStats(gradients, 2 modules, 0 entries")
    grads.remove()
    assert hook_count(model) == 0


def test_an_entry_without_records_reads_as_empty():
    model = mlp()
    with ActivationStats(model, backward=True) as stats:
        model(torch.randn(2, 3))  # no backward: the entries exist, no record does
    s = stats.layer_stats(0)
    assert stats.names == ["0", "2"] and all(t.shape == (0,) for t in s)
    assert stats.hist(0).shape == (40, 0) and stats.to_records() == []


def test_double_backward_gradients_are_recorded_without_their_graph():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(2, 3, requires_grad=True)
    with ActivationStats(model, [model[0]], backward=True) as stats:
        (gx,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)  # gradients that carry a graph
    s = stats.layer_stats(0)
    assert s.batch.tolist() == [0] and not any(t.requires_grad for t in s) and not stats.hist(0).requires_grad
    assert gx.requires_grad


def test_remove_takes_the_pending_gradient_hooks_off_the_tensors():
    model = mlp()
    outputs = []
    handle = model[0].register_forward_hook(lambda m, a, o: outputs.append(o) and None)
    with ActivationStats(model, backward=True):
        model(torch.randn(2, 3))
        assert outputs[0]._backward_hooks  # a gradient hook waits for the backward
    handle.remove()
    assert not outputs[0]._backward_hooks


def test_two_value_outputs_get_the_unbiased_std():
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        out = lin(torch.ones(1, 2))
    model = nn.Sequential(lin)
    with ActivationStats(model) as stats, torch.no_grad():
        model(torch.ones(1, 2))
    a, b = out[0].tolist()
    assert stats.layer_stats(0).std.item() == pytest.approx(abs(a - b) / 2 ** 0.5, rel=1e-6)


def test_layer_stats_do_not_keep_the_histogram_rows_alive():
    model = mlp()
    with ActivationStats(model) as stats:
        for _ in range(3):
            model(torch.randn(2, 3))
    for t in stats.layer_stats(0):  # each (n,) tensor holds its n values, not a view of the (n, 43) rows
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
