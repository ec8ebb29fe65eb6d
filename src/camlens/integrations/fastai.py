"""A fastai callback that records activation (or gradient) statistics with camlens.

The same recorder as :class:`camlens.ActivationStats` (bounded memory, gradients
from tensor hooks rather than fastai's deprecated ``register_backward_hook``), driven
by fastai's events: hooks go on in ``before_fit``, one batch is counted at each
training ``after_batch``, hooks come off in ``after_fit``. fastai skips
``after_fit`` when the fit raises; the hooks then come off when fastai detaches the
callback (callbacks passed as ``learn.fit(..., cbs=[cb])``) or at the next
``before_fit``, or call ``cb.remove()``.

Example (needs ``pip install camlens[fastai]``)::

    from camlens.integrations.fastai import ActivationStatsCallback

    cb = ActivationStatsCallback(every=10)
    learn.fit(3, cbs=[cb])
    cb.stats.color_dim(0, path="conv1.png")
"""

from __future__ import annotations

from typing import Any

from . import missing_base
from ..stats.activation_stats import ActivationStats

try:
    from fastai.callback.core import Callback
except ImportError:
    Callback = missing_base("fastai", "fastai")

__all__ = ["ActivationStatsCallback"]


class ActivationStatsCallback(Callback):
    """Record :class:`camlens.ActivationStats` while a fastai ``Learner`` fits; read ``.stats``.

    Args:
        modules: modules or dotted names inside ``learn.model`` (default: every leaf
            module with parameters).
        **kwargs: any :class:`~camlens.ActivationStats` option except ``auto_step``.
    """

    run_valid = False  # batches are counted in training only; validation is not recorded
    order = 60  # after most callbacks that change the batch, like fastai's own HookCallback

    def __init__(self, modules: Any = None, **kwargs: Any) -> None:
        super().__init__()
        kwargs.pop("auto_step", None)
        self.modules, self.kwargs = modules, kwargs
        self.stats: ActivationStats | None = None

    def before_fit(self) -> None:
        self.remove()
        self.stats = ActivationStats(self.learn.model, self.modules, auto_step=False, **self.kwargs)

    def after_batch(self) -> None:
        if self.stats is not None and self.learn.training:
            self.stats.step()

    def after_fit(self) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hooks (idempotent); the statistics stay readable at ``.stats``."""
        stats = self.__dict__.get("stats")
        if stats is not None:
            stats.remove()

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "learn" and value is None:  # fastai detaches the callback, also after an error
            self.remove()
        super().__setattr__(name, value)
