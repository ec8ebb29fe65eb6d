"""A PyTorch Lightning callback that records activation (or gradient) statistics.

It wraps :class:`camlens.ActivationStats` around the ``LightningModule`` for the
length of ``trainer.fit``: hooks go on in ``on_fit_start``, one batch is counted at
each ``on_train_batch_end`` (Lightning's ``training_step`` may call submodules and
never the module itself, so batches are stepped, not counted from forwards), and
the hooks come off in ``on_fit_end`` or when training raises (``on_exception``).
Validation and the sanity check run in eval mode and are not recorded.

Example (needs ``pip install camlens[lightning]``)::

    from camlens.integrations.lightning import ActivationStatsCallback

    cb = ActivationStatsCallback(every=10)
    trainer = lightning.Trainer(max_epochs=3, callbacks=[cb])
    trainer.fit(model, train_loader)
    cb.stats.color_dim(0, path="conv1.png")
"""

from __future__ import annotations

from typing import Any

from . import missing_base
from ..stats.activation_stats import ActivationStats

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the standalone package, or neither
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError:
        Callback = missing_base("lightning", "lightning")

__all__ = ["ActivationStatsCallback"]


class ActivationStatsCallback(Callback):
    """Record :class:`camlens.ActivationStats` during ``trainer.fit``; read them at ``.stats``.

    Args:
        modules: modules or dotted names inside the LightningModule (default: every
            leaf module with parameters).
        **kwargs: any :class:`~camlens.ActivationStats` option except ``auto_step``
            (``every``, ``with_hist``, ``bins``, ``range``, ``backward``, ``max_records``, ...).

    ``.stats`` is the recorder of the latest fit (``None`` before the first one).
    """

    def __init__(self, modules: Any = None, **kwargs: Any) -> None:
        super().__init__()
        kwargs.pop("auto_step", None)
        self.modules, self.kwargs = modules, kwargs
        self.stats: ActivationStats | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._remove()
        self.stats = ActivationStats(pl_module, self.modules, auto_step=False, **self.kwargs)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.stats is not None:
            self.stats.step()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._remove()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._remove()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._remove()

    def _remove(self) -> None:
        if self.stats is not None:
            self.stats.remove()
