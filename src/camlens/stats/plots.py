"""Plots of :class:`~camlens.ActivationStats`: layer statistics and the "colorful dimension".

Each function returns a matplotlib Figure and, given ``path``, also saves it as a
PNG (atomically, see :func:`camlens.visualize.save_figure`; the figure is then closed).

The colorful dimension (fastai book, chapter 17) draws one entry's histograms as an
image: x is the training batch, y the activation value, colour the log of the count.
Healthy training shows a smooth band that spreads up from zero; a bad start shows
most of the mass piled in the bottom bin (activations at or near zero) with bursts
that collapse again.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["plot_layer_stats", "color_dim", "plot_overview"]


def _finish(figure, path: str | Path | None):
    if path is not None:
        from ..viz.overlay import save_figure

        save_figure(figure, path)
    return figure


def _value_label(stats: "ActivationStats") -> str:
    return "log10 |gradient|" if stats.backward else "activation"


def plot_layer_stats(stats: "ActivationStats", entry: int | str, path: str | Path | None = None):
    """Three panels over the recorded batches: mean, std and % near zero of one entry.

    Example:
        >>> import torch
        >>> from camlens import ActivationStats
        >>> with ActivationStats(torch.nn.Linear(3, 4)) as stats:
        ...     _ = stats.model(torch.randn(8, 3))
        >>> fig = plot_layer_stats(stats, 0)
        >>> [ax.get_title() for ax in fig.axes]
        ['mean', 'std', '% near zero']
    """
    import matplotlib.pyplot as plt

    s = stats.layer_stats(entry)
    name = stats._get(entry).name
    figure, axes = plt.subplots(1, 3, figsize=(12, 3), constrained_layout=True)
    kind = "gradient" if stats.backward else "activation"
    for ax, values, title in zip(axes, (s.mean, s.std, s.near_zero * 100), ("mean", "std", "% near zero")):
        ax.plot(s.batch.numpy(), values.numpy())
        ax.set_title(title)
        ax.set_xlabel("batch")
    figure.suptitle(f"{kind} statistics of {name}")
    return _finish(figure, path)


def color_dim(
    stats: "ActivationStats",
    entry: int | str,
    path: str | Path | None = None,
    ax=None,
    figsize: tuple[float, float] = (10, 5),
    cmap: str = "viridis",
):
    """The "colorful dimension": the entry's histograms over batches as an image, log scale.

    Pixel (value bin ``k``, record ``j``) is ``log1p(count)``, as in the fastai book;
    x runs over the recorded batches, y over the histogram range (bottom = low values).

    Args:
        stats: a recorder created with ``with_hist=True``.
        entry: index or name (see ``stats.names``).
        path: also save the figure there (PNG).
        ax: draw into this axes instead of a new figure.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    image = stats.hist(entry).log1p()
    batches = stats.layer_stats(entry).batch
    if ax is None:
        figure, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    else:
        figure = ax.figure
    lo, hi = stats.range
    first, last = (int(batches[0]), int(batches[-1])) if len(batches) else (0, 1)
    ax.imshow(
        image.numpy(), origin="lower", aspect="auto", cmap=cmap, interpolation="nearest",
        extent=(first - 0.5, last + 0.5, lo, hi),
    )
    ax.set_title(stats._get(entry).name)
    ax.set_xlabel("batch")
    ax.set_ylabel(_value_label(stats))
    return _finish(figure, path) if path is not None else figure


def plot_overview(
    stats: "ActivationStats",
    path: str | Path | None = None,
    cols: int = 4,
    cell: tuple[float, float] = (4.0, 2.6),
    title: str | None = None,
    **kwargs: Any,
):
    """A grid with the colorful dimension of every recorded entry, in execution order."""
    import matplotlib.pyplot as plt

    n = len(stats.names)
    if n == 0:
        from ..core.errors import InputError

        raise InputError("nothing was recorded yet: run training forwards inside the ActivationStats block first.")
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(cell[0] * cols, cell[1] * rows), constrained_layout=True, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < n:
            color_dim(stats, k, ax=ax, **kwargs)
        else:
            ax.axis("off")
    if title:
        figure.suptitle(title)
    return _finish(figure, path)
