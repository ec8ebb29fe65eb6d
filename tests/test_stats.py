"""ActivationStats: recorded numbers against statistics computed directly from the same tensors."""

from __future__ import annotations

import math
import tracemalloc

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn

from camlens import ActivationStats, CamlensError, InputError, LayerNotFoundError
from camlens.stats.activation_stats import CHUNK_ROWS, default_modules


def small_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def expected(x: torch.Tensor, near: float = 0.05, bins: int = 40, lo: float = 0.0, hi: float = 10.0):
    x = x.float()
    return x.mean(), x.std(), (x <= near).float().mean(), torch.histc(x, bins, lo, hi)


def record_outputs(modules):
    """Our own plain forward hooks that keep a copy of every output (the reference)."""
    seen = {id(m): [] for m in modules}
    handles = [m.register_forward_hook(lambda mod, a, out: seen[id(mod)].append(out.detach().clone())) for m in modules]
    return seen, handles


def train(model, stats_steps: int, batch: int = 8, opt=None, loss_fn=None):
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(stats_steps):
        out = model(torch.randn(batch, 6))
        loss = out.pow(2).mean() if loss_fn is None else loss_fn(out)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_default_modules_are_leaves_with_parameters():
    model = small_mlp()
    assert default_modules(model) == [model[0], model[2]]
    assert default_modules(model, include_paramless=True) == [model[0], model[1], model[2]]


def test_recorded_numbers_match_direct_statistics():
    model = small_mlp()
    seen, handles = record_outputs([model[0], model[2]])
    with ActivationStats(model) as stats:
        train(model, 6)
    for h in handles:
        h.remove()
    assert stats.names == ["0", "2"]
    for index, module in enumerate([model[0], model[2]]):
        s, hist = stats.layer_stats(index), stats.hist(index)
        assert s.batch.tolist() == list(range(6))
        assert hist.shape == (40, 6)
        for j, act in enumerate(seen[id(module)]):
            mean, std, near, h = expected(act)
            assert s.mean[j].item() == pytest.approx(mean.item(), rel=1e-5, abs=1e-6)
            assert s.std[j].item() == pytest.approx(std.item(), rel=1e-5)
            assert s.near_zero[j].item() == pytest.approx(near.item(), abs=1e-7)
            assert torch.equal(hist[:, j], h)


def test_custom_threshold_bins_and_range():
    model = small_mlp()
    seen, handles = record_outputs([model[2]])
    with ActivationStats(model, [model[2]], bins=7, range=(-2, 2), near_zero=-0.1) as stats:
        train(model, 3)
    handles[0].remove()
    s = stats.layer_stats("2")
    for j, act in enumerate(seen[id(model[2])]):
        mean, std, near, h = expected(act, near=-0.1, bins=7, lo=-2, hi=2)
        assert s.near_zero[j].item() == pytest.approx(near.item(), abs=1e-7)
        assert torch.equal(stats.hist("2")[:, j], h)
    assert stats.bytes_per_record == 4 * (3 + 7) + 8


def test_every_records_one_batch_in_every_and_skips_eval_forwards():
    model = small_mlp()
    with ActivationStats(model, every=3) as stats:
        train(model, 5)
        model.eval()
        with torch.no_grad():
            model(torch.randn(4, 6))  # validation: neither counted nor recorded
        model.train()
        train(model, 5)
    assert stats.batch == 9
    assert stats.layer_stats(0).batch.tolist() == [0, 3, 6, 9]
    assert stats.recorded_batches == 4


def test_names_dotted_strings_and_paramless_modules():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    seen, handles = record_outputs([model[1]])
    with ActivationStats(model, ["1", model[3]]) as stats:
        model(torch.randn(2, 1, 8, 8))
    handles[0].remove()
    assert stats.names == ["1", "3"]
    _, _, near, h = expected(seen[id(model[1])][0])
    assert stats.layer_stats("1").near_zero.item() == pytest.approx(near.item())
    assert torch.equal(stats.hist("1")[:, 0], h)


def test_hooks_removed_on_exit_and_on_exception():
    model = small_mlp()
    with ActivationStats(model, backward=True) as stats:
        train(model, 2)
        assert model[0]._forward_hooks and model._forward_pre_hooks
    assert not model[0]._forward_hooks and not model[2]._forward_hooks and not model._forward_pre_hooks
    assert "removed" in repr(stats)

    with pytest.raises(ZeroDivisionError):
        with ActivationStats(model) as stats:
            train(model, 1)
            1 / 0
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    before = stats.layer_stats(0).batch.tolist()
    train(model, 3)  # nothing is recorded once removed
    assert stats.layer_stats(0).batch.tolist() == before == [0]


def test_pending_gradient_hooks_are_removed_on_exit():
    model = small_mlp()
    with ActivationStats(model, backward=True) as stats:
        out = model(torch.randn(2, 6))  # forward with no backward: hooks stay pending
        inner = out.grad_fn
    assert stats._pending == {}
    out.sum().backward()  # the removed tensor hooks do not record anything
    assert stats.names == ["0", "2"] and stats.layer_stats(0).batch.numel() == 0
    assert inner is not None


def test_lstm_tuple_outputs_give_one_entry_per_tensor():
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 7, batch_first=True)
    model = nn.Sequential(lstm)
    outputs = []
    handle = lstm.register_forward_hook(lambda m, a, o: outputs.append((o[0].detach(), o[1][0].detach(), o[1][1].detach())))
    with ActivationStats(model, range=(-1, 1), bins=10) as stats:
        for _ in range(3):
            out, (h, c) = model(torch.randn(4, 6, 5))
            (out.sum() + c.sum()).backward()
    handle.remove()
    assert stats.names == ["0[0]", "0[1][0]", "0[1][1]"]
    for index in range(3):
        s, hist = stats.layer_stats(index), stats.hist(index)
        for j, tensors in enumerate(outputs):
            mean, std, near, ref = expected(tensors[index], bins=10, lo=-1, hi=1)
            assert s.mean[j].item() == pytest.approx(mean.item(), rel=1e-5, abs=1e-6)
            assert s.std[j].item() == pytest.approx(std.item(), rel=1e-5)
            assert s.near_zero[j].item() == pytest.approx(near.item(), abs=1e-7)
            assert torch.equal(hist[:, j], ref)


def test_nested_dict_outputs_skip_integer_tensors():
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)

        def forward(self, x):
            y = self.lin(x)
            return {"boxes": y, "parts": (y.relu(), y.argmax(1))}

    head = Head()
    with ActivationStats(head, [head]) as stats:
        head(torch.randn(5, 3))
    assert stats.names == ["['boxes']", "['parts'][0]"]


def test_reused_module_and_manual_step():
    torch.manual_seed(0)
    block = nn.Linear(4, 4)
    model = nn.Sequential(block)
    seen, handles = record_outputs([block])
    with ActivationStats(model, auto_step=False) as stats:
        for _ in range(3):
            a, b = model(torch.randn(2, 4)), model(torch.randn(2, 4))  # a siamese step
            (a - b).pow(2).mean().backward()
            stats.step()
    handles[0].remove()
    assert stats.names == ["0", "0:1"]
    assert stats.layer_stats("0:1").batch.tolist() == [0, 1, 2]
    assert stats.layer_stats("0:1").mean[2].item() == pytest.approx(seen[id(block)][5].mean().item(), rel=1e-5)
    with pytest.raises(InputError, match="auto_step=False"):
        ActivationStats(model).step()


def test_backward_records_gradient_statistics():
    model = small_mlp()
    grads = {0: [], 2: []}

    def keep_grad(index):
        def hook(module, args, out):
            out.register_hook(lambda g: grads[index].append(g.clone()))

        return hook

    handles = [model[i].register_forward_hook(keep_grad(i)) for i in (0, 2)]
    with ActivationStats(model, backward=True) as stats:
        train(model, 4)
    for h in handles:
        h.remove()
    assert stats.names == ["0", "2"]  # forward order, although gradients arrive in reverse
    assert stats.range == (-10.0, 2.0) and stats.near_zero == 1e-8
    for index, key in enumerate((0, 2)):
        s, hist = stats.layer_stats(index), stats.hist(index)
        assert s.batch.tolist() == [0, 1, 2, 3]
        for j, g in enumerate(grads[key]):
            assert s.mean[j].item() == pytest.approx(g.mean().item(), rel=1e-4, abs=1e-9)
            assert s.std[j].item() == pytest.approx(g.std().item(), rel=1e-4)
            assert s.near_zero[j].item() == pytest.approx((g.abs() <= 1e-8).float().mean().item(), abs=1e-7)
            ref = torch.histc(g.abs().clamp_min(1e-45).log10(), 40, -10, 2)
            assert torch.equal(hist[:, j], ref)
    # the ReLU kills the gradient of every negative pre-activation of layer 0: near zero > 0
    assert stats.layer_stats("0").near_zero.min() > 0.1


def test_backward_stats_survive_inplace_relu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 1))
    with ActivationStats(model, [model[0]], backward=True) as stats:
        model(torch.randn(3, 4)).sum().backward()
    assert stats.layer_stats(0).batch.tolist() == [0]


@pytest.mark.parametrize("with_hist", [True, False])
def test_memory_stays_within_stated_bound_over_10000_batches(with_hist):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    x = torch.randn(1, 2)
    n = 10_000
    with ActivationStats(model, with_hist=with_hist) as stats, torch.no_grad():
        for _ in range(2_000):
            model(x)
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(n - 2_000):
            model(x)
        python_growth = tracemalloc.get_traced_memory()[0] - start
        tracemalloc.stop()
    entries = len(stats.names)
    assert entries == 2 and stats.layer_stats(1).batch.numel() == n
    row = 4 * (3 + (40 if with_hist else 0))
    assert stats.bytes_per_record == row + 8
    # the stated bound: tensors * (n + CHUNK_ROWS) * bytes_per_record
    bound = entries * (n + CHUNK_ROWS) * stats.bytes_per_record
    assert stats.nbytes <= bound
    assert stats.nbytes == entries * (math.ceil(n / CHUNK_ROWS) * CHUNK_ROWS * row + 8 * n)
    # on the Python heap only the 8-byte batch indices grow (plus array over-allocation)
    assert python_growth <= entries * 8 * (n - 2_000) * 1.2 + 16_384


def test_max_records_thins_and_caps_memory():
    model = small_mlp()
    with ActivationStats(model, max_records=16) as stats, torch.no_grad():
        for _ in range(1_000):
            model(torch.randn(2, 6))
    batches = stats.layer_stats(0).batch
    assert stats.every == 64 and batches.numel() <= 16
    assert batches.tolist() == list(range(0, 1_000, 64))
    assert stats.nbytes <= 2 * CHUNK_ROWS * stats.bytes_per_record


def test_thinning_keeps_the_right_rows():
    model = small_mlp()
    seen, handles = record_outputs([model[0]])
    with ActivationStats(model, [model[0]], max_records=4) as stats, torch.no_grad():
        for _ in range(9):
            model(torch.randn(2, 6))
    handles[0].remove()
    s = stats.layer_stats(0)
    assert s.batch.tolist() == [0, 4, 8]
    assert s.mean.tolist() == pytest.approx([seen[id(model[0])][b].mean().item() for b in (0, 4, 8)], rel=1e-5)


def test_records_and_csv(tmp_path):
    model = small_mlp()
    with ActivationStats(model, bins=5) as stats:
        train(model, 3)
    records = stats.to_records()
    assert len(records) == 6 and set(records[0]) == {"name", "batch", "mean", "std", "near_zero"}
    assert records[4]["mean"] == pytest.approx(stats.layer_stats("2").mean[1].item())
    with_hist = stats.to_records(with_hist=True)
    assert with_hist[2]["hist"] == stats.hist(0)[:, 2].tolist()
    text = stats.to_csv(tmp_path / "stats.csv", with_hist=True)
    lines = (tmp_path / "stats.csv").read_text().splitlines()
    assert text.splitlines() == lines and len(lines) == 7
    assert lines[0] == "name,batch,mean,std,near_zero,hist_0,hist_1,hist_2,hist_3,hist_4"
    assert lines[1].split(",")[:2] == ["0", "0"]


def test_errors_name_the_problem_and_the_way_out():
    model = small_mlp()
    with ActivationStats(model) as stats:
        train(model, 1)
    with pytest.raises(LayerNotFoundError, match="Close matches: 0"):
        stats.layer_stats("0.")
    with pytest.raises(InputError, match="out of range"):
        stats.hist(5)
    with pytest.raises(InputError, match="every"):
        ActivationStats(model, every=0)
    with pytest.raises(LayerNotFoundError, match="close matches"):
        ActivationStats(model, ["00"])
    with pytest.raises(CamlensError, match="include_paramless"):
        ActivationStats(nn.Sequential(nn.ReLU()))
    with pytest.raises(InputError, match="with_hist=True"):
        with ActivationStats(model, with_hist=False) as no_hist:
            train(model, 1)
        no_hist.hist(0)


def test_plots_return_figures_and_save(tmp_path):
    model = small_mlp()
    with ActivationStats(model, include_paramless=True) as stats:
        train(model, 5)
    fig = stats.color_dim("1")
    image = fig.axes[0].images[0].get_array()
    assert torch.allclose(torch.as_tensor(image.data), stats.hist("1").log1p())
    assert fig.axes[0].get_ylabel() == "activation"
    fig = stats.plot_layer_stats(0, path=tmp_path / "layer.png")
    assert [ax.get_title() for ax in fig.axes] == ["mean", "std", "% near zero"]
    assert (tmp_path / "layer.png").stat().st_size > 1000
    fig = stats.plot_overview(path=tmp_path / "all.png", cols=2)
    assert sum(1 for ax in fig.axes if ax.images) == 3
    assert (tmp_path / "all.png").exists()
    with pytest.raises(InputError, match="nothing was recorded"):
        ActivationStats(small_mlp()).plot_overview()
