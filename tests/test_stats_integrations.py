"""The Lightning and fastai callbacks wrap the same recorder (skipped when the library is missing)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def dataset(n: int = 40) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 6, generator=g), torch.randn(n, 2, generator=g))


def reference_means(module: nn.Module):
    """Means of every training-mode output of ``module``, taken by a plain hook."""
    means = []

    def hook(m, args, out):
        if m.training:
            means.append(out.detach().mean().item())

    return means, module.register_forward_hook(hook)


def no_hooks(model: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


# -- PyTorch Lightning -----------------------------------------------------------------


@pytest.fixture
def lightning():
    pl = pytest.importorskip("lightning.pytorch")
    warnings.filterwarnings("ignore", module="lightning")
    return pl


def make_lightning_module(pl, fail_at: int | None = None):
    class Regressor(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))

        def training_step(self, batch, batch_idx):
            if fail_at is not None and batch_idx == fail_at:
                raise RuntimeError("boom")
            x, y = batch
            return nn.functional.mse_loss(self.body(x), y)  # calls the submodule, not self

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.body(x)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Regressor()


def make_trainer(pl, callback, epochs=2):
    return pl.Trainer(
        max_epochs=epochs, callbacks=[callback], accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=1, limit_val_batches=2,
    )


def test_lightning_callback_records_training_batches(lightning):
    from camlens.integrations.lightning import ActivationStatsCallback

    module = make_lightning_module(lightning)
    means, handle = reference_means(module.body[0])
    callback = ActivationStatsCallback(every=2, bins=8)
    loader = DataLoader(dataset(), batch_size=8)
    make_trainer(lightning, callback).fit(module, loader, DataLoader(dataset(16), batch_size=8))
    handle.remove()
    stats = callback.stats
    assert stats.names == ["body.0", "body.2"]
    s = stats.layer_stats("body.0")
    assert len(means) == 10  # 2 epochs x 5 batches; sanity check and validation are eval-mode
    assert s.batch.tolist() == [0, 2, 4, 6, 8]
    assert s.mean.tolist() == pytest.approx(means[::2], rel=1e-5, abs=1e-7)
    assert stats.hist(0).shape == (8, 5)
    assert no_hooks(module)


def test_lightning_callback_removes_hooks_when_training_raises(lightning):
    from camlens.integrations.lightning import ActivationStatsCallback

    module = make_lightning_module(lightning, fail_at=2)
    callback = ActivationStatsCallback(backward=True)
    with pytest.raises(RuntimeError, match="boom"):
        make_trainer(lightning, callback, epochs=1).fit(module, DataLoader(dataset(), batch_size=8))
    assert callback.stats.layer_stats(0).batch.tolist() == [0, 1]
    assert no_hooks(module)


# -- fastai ----------------------------------------------------------------------------


@pytest.fixture
def fastai_learner():
    pytest.importorskip("fastai")
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.optimizer import SGD

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    dls = DataLoaders(DataLoader(dataset(), batch_size=8), DataLoader(dataset(16), batch_size=8))
    return Learner(dls, model, loss_func=nn.MSELoss(), opt_func=SGD, lr=0.1)


def test_fastai_callback_records_training_batches(fastai_learner):
    from camlens.integrations.fastai import ActivationStatsCallback

    learn = fastai_learner
    means, handle = reference_means(learn.model[2])
    callback = ActivationStatsCallback(every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no shadowed Learner attributes
        learn.fit(2, cbs=[callback])
    handle.remove()
    s = callback.stats.layer_stats("2")
    assert len(means) == 10 and s.batch.tolist() == list(range(10))
    assert s.mean.tolist() == pytest.approx(means, rel=1e-5, abs=1e-7)
    assert no_hooks(learn.model)


def test_fastai_callback_removes_hooks_when_fit_raises(fastai_learner):
    from fastai.callback.core import Callback

    from camlens.integrations.fastai import ActivationStatsCallback

    class Boom(Callback):
        def after_batch(self):
            if self.train_iter == 2:
                raise RuntimeError("boom")

    learn = fastai_learner
    callback = ActivationStatsCallback(backward=True)
    with pytest.raises(RuntimeError, match="boom"):
        learn.fit(1, cbs=[callback, Boom()])
    assert callback.stats.layer_stats(0).batch.numel() >= 2
    assert no_hooks(learn.model)


@pytest.mark.parametrize("extra, blocked", [
    ("lightning", ["lightning", "lightning.pytorch", "lightning.pytorch.callbacks", "pytorch_lightning", "pytorch_lightning.callbacks"]),
    ("fastai", ["fastai", "fastai.callback", "fastai.callback.core"]),
])
def test_missing_library_imports_but_says_what_to_install(monkeypatch, extra, blocked):
    import importlib
    import sys

    from camlens import integrations
    from camlens.integrations import MissingExtraError

    monkeypatch.setattr(integrations, extra, getattr(integrations, extra, None), raising=False)
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    monkeypatch.delitem(sys.modules, f"camlens.integrations.{extra}", raising=False)
    module = importlib.import_module(f"camlens.integrations.{extra}")
    monkeypatch.delitem(sys.modules, f"camlens.integrations.{extra}")  # don't keep the stub
    with pytest.raises(MissingExtraError, match=rf"pip install camlens\[{extra}\]"):
        module.ActivationStatsCallback()
