"""Activation (and gradient) statistics recorded while a network trains.

:class:`ActivationStats` hooks the modules of a model and, every ``every``
training batches, records for each module output its mean, standard deviation,
fraction of values near zero and a histogram. It is fastai's ``ActivationStats``
for any plain PyTorch loop, with three differences:

* memory is bounded and known: per recorded batch and per output tensor it keeps
  ``4 * (3 + bins) + 8`` bytes on the CPU (180 bytes with 40 bins) and never an
  activation; ``max_records`` caps even that (see :class:`ActivationStats`);
* gradients come from a tensor hook registered on the output inside the forward
  hook (as in :mod:`camlens.hooks`), never the deprecated ``register_backward_hook``;
* the statistics are computed in torch on the activation's device; one small
  vector of ``3 + bins`` floats per tensor goes to the CPU.

Example:
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> with ActivationStats(model) as stats:     # hooks both Linear layers
    ...     for _ in range(5):                     # each training forward is one batch
    ...         loss = model(torch.randn(32, 8)).pow(2).mean()
    ...         opt.zero_grad(); loss.backward(); opt.step()
    >>> stats.names
    ['0', '2']
    >>> s = stats.layer_stats("0")
    >>> s.batch.tolist(), s.mean.shape, stats.hist(0).shape
    ([0, 1, 2, 3, 4], torch.Size([5]), torch.Size([40, 5]))
    >>> stats.bytes_per_record
    180
"""

from __future__ import annotations

import csv
import difflib
import io
from array import array
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Union

import torch
from torch import nn

from ..core.errors import InputError, LayerNotFoundError
from ..core.hooks import get_module, module_name

__all__ = ["ActivationStats", "LayerStats", "default_modules"]

ModuleSpec = Union[str, nn.Module]

#: rows allocated at a time per recorded tensor; the only slack over the exact size
CHUNK_ROWS = 256
#: gradient hooks whose tensor got no backward for this many batches are removed
_PENDING_BATCHES = 8


class LayerStats(NamedTuple):
    """The statistics of one recorded tensor, each a 1-D CPU tensor of length ``n`` (records)."""

    batch: torch.Tensor  #: (n,) int64 training-batch index of each record
    mean: torch.Tensor  #: (n,) float32
    std: torch.Tensor  #: (n,) float32, unbiased (as ``Tensor.std``)
    near_zero: torch.Tensor  #: (n,) float32 fraction in [0, 1]


def default_modules(model: nn.Module, include_paramless: bool = False) -> list[nn.Module]:
    """The leaf modules of ``model`` that own parameters (all leaves with ``include_paramless``).

    Leaves are modules without children, as fastai's ``flatten_model``. A model with
    no children counts as its own leaf.
    """
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    if include_paramless:
        return leaves
    return [m for m in leaves if next(m.parameters(), None) is not None]


def _tensors(value: Any, path: str = "") -> Iterable[tuple[str, torch.Tensor]]:
    """Every floating-point tensor in a (nested) tuple/list/dict output, with its index path.

    ``lstm`` output ``(out, (h, c))`` gives ``("[0]", out), ("[1][0]", h), ("[1][1]", c)``;
    integer tensors (labels, a PackedSequence's ``batch_sizes``) are skipped.
    """
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _tensors(item, f"{path}[{key!r}]")
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{path}[{index}]")


class _Series:
    """Rows of ``width`` float32 on the CPU, allocated ``CHUNK_ROWS`` at a time, plus batch indices."""

    __slots__ = ("name", "width", "chunks", "batches", "n")

    def __init__(self, name: str, width: int) -> None:
        self.name, self.width = name, width
        self.chunks: list[torch.Tensor] = []
        self.batches = array("q")  # 8 bytes per record
        self.n = 0

    def append(self, batch: int, row: torch.Tensor) -> None:
        pos = self.n % CHUNK_ROWS
        if pos == 0:
            self.chunks.append(torch.empty(CHUNK_ROWS, self.width, dtype=torch.float32))
        self.chunks[-1][pos].copy_(row)  # the one device -> CPU transfer per tensor per batch
        self.batches.append(batch)
        self.n += 1

    def rows(self) -> torch.Tensor:
        """(n, width) float32."""
        if not self.chunks:
            return torch.empty(0, self.width)
        return torch.cat(self.chunks)[: self.n]

    def batch_tensor(self) -> torch.Tensor:
        """(n,) int64 batch index of each record (a copy)."""
        if not self.n:
            return torch.empty(0, dtype=torch.int64)
        return torch.frombuffer(self.batches, dtype=torch.int64).clone()

    def keep(self, mask: torch.Tensor) -> None:
        """Keep the records where ``mask`` (n,) is true, repacked into fresh chunks."""
        kept = self.rows()[mask]
        self.batches = array("q", self.batch_tensor()[mask].tolist())
        self.n = kept.shape[0]
        self.chunks = []
        for start in range(0, self.n, CHUNK_ROWS):
            chunk = torch.empty(CHUNK_ROWS, self.width)
            part = kept[start : start + CHUNK_ROWS]
            chunk[: part.shape[0]] = part
            self.chunks.append(chunk)

    @property
    def nbytes(self) -> int:
        return sum(c.numel() * c.element_size() for c in self.chunks) + self.batches.itemsize * len(self.batches)


class ActivationStats:
    """Record mean, std, fraction near zero and a histogram of module outputs while training.

    Args:
        model: the network being trained.
        modules: modules (objects or dotted names) to hook; default: every leaf module
            with parameters (see :func:`default_modules`).
        every: record one training batch out of ``every`` (batches 0, every, 2*every, ...).
        with_hist: also record a histogram per tensor and batch (for :meth:`color_dim`).
        bins, range: the histogram: ``bins`` equal bins over ``range`` (values outside
            are not counted, as ``torch.histc``). Default range: ``(0, 10)`` for
            activations; with ``backward=True`` the histogram is of ``log10(|grad|)``
            over ``(-10, 2)``, which shows vanishing and exploding gradients (an exact 0 is in
            no bin; it counts as near zero).
        include_paramless: with ``modules=None``, also hook leaves without parameters
            (ReLU, pooling, dropout modules).
        backward: record the gradient of the loss w.r.t. each module's output instead
            of the output (filled during ``loss.backward()``).
        near_zero: the threshold: activations ``x <= near_zero`` count as near zero
            (fastai's definition: what a ReLU after the layer kills or nearly kills);
            gradients ``|g| <= near_zero``. Default 0.05 for activations, 1e-8 for gradients.
        auto_step: ``True`` (default): every forward of ``model`` in training mode is one
            batch, so a plain loop needs no extra call. ``False``: batches advance only
            when you call :meth:`step` (use it when one training step runs the model
            several times, or when the loop calls submodules and never ``model`` itself).
        train_only: record only modules in training mode (validation under
            ``model.eval()`` is neither counted nor recorded).
        max_records: cap on records per tensor. When reached, every second record is
            dropped and ``every`` doubles, so memory stays under ``max_records`` rows
            per tensor however long training runs. ``None``: no cap.

    Memory: per recorded tensor and record ``bytes_per_record = 4 * (3 + bins) + 8``
    bytes (``4 * 3 + 8 = 20`` without histogram) in CPU tensors allocated 256 rows at a
    time, so after ``n`` records ``nbytes <= tensors * (n + 256) * bytes_per_record``;
    with ``max_records``, ``n <= max_records``. Nothing else grows with the batch count.

    Each tensor a hooked module outputs is one *entry* (see :attr:`names`): a plain
    output is named like the module (``"conv1"``), a tuple output gives one entry per
    floating tensor (``"lstm[0]"``, ``"lstm[1][0]"``, ``"lstm[1][1]"``), and a module
    called again in the same batch gives ``"name:1"``, ``"name:2"``, ...

    Hooks exist from ``__enter__`` (or construction) to ``__exit__``/:meth:`remove`,
    which also runs when the training loop raises.
    """

    def __init__(
        self,
        model: nn.Module,
        modules: Iterable[ModuleSpec] | None = None,
        *,
        every: int = 1,
        with_hist: bool = True,
        bins: int = 40,
        range: tuple[float, float] | None = None,  # noqa: A002 - the name fastai and torch.histc use
        include_paramless: bool = False,
        backward: bool = False,
        near_zero: float | None = None,
        auto_step: bool = True,
        train_only: bool = True,
        max_records: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"ActivationStats needs the nn.Module being trained, got {type(model).__name__}.")
        if not (isinstance(every, int) and every >= 1):
            raise InputError(f"every must be a positive integer (record one batch in `every`), got {every!r}.")
        if with_hist and not (isinstance(bins, int) and bins >= 1):
            raise InputError(f"bins must be a positive integer, got {bins!r}.")
        lo, hi = range if range is not None else ((-10.0, 2.0) if backward else (0.0, 10.0))
        if not lo < hi:
            raise InputError(f"range must be (low, high) with low < high, got {range!r}.")
        if max_records is not None and max_records < 2:
            raise InputError(f"max_records must be at least 2 (or None for no cap), got {max_records!r}.")
        self.model = model
        self.every, self.with_hist, self.bins, self.range = every, with_hist, bins, (float(lo), float(hi))
        self.backward, self.auto_step, self.train_only, self.max_records = backward, auto_step, train_only, max_records
        self.near_zero = float(near_zero if near_zero is not None else (1e-8 if backward else 0.05))
        if modules is None:
            chosen = default_modules(model, include_paramless)
        else:
            chosen = [get_module(model, m) if isinstance(m, str) else m for m in modules]
        if not chosen:
            raise InputError(
                f"{type(model).__name__} has no module to hook (no leaf with parameters); "
                "pass modules=[...] or include_paramless=True."
            )
        self._module_names = [module_name(model, m) for m in chosen]  # raises for a foreign module
        self.batch = -1 if auto_step else 0  #: index of the current training batch
        self.recorded_batches = 0  #: how many batches were recorded so far
        self._series: list[_Series] = []
        self._entry: dict[tuple[int, int, str], _Series] = {}
        self._calls: dict[int, int] = {}
        self._pending: dict[int, list] = {}  # batch -> gradient hook handles
        self._active = True
        self._handles = [m.register_forward_hook(self._make_hook(slot)) for slot, m in enumerate(chosen)]
        if auto_step:
            self._handles.append(model.register_forward_pre_hook(self._on_model_forward))
        self._start_batch()

    # -- recording -------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        """Whether the current batch is one that gets recorded."""
        return self._active and self.batch >= 0 and self.batch % self.every == 0

    def _start_batch(self) -> None:
        self._calls.clear()
        for old in [b for b in self._pending if b < self.batch - _PENDING_BATCHES]:
            for handle in self._pending.pop(old):
                handle.remove()
        if self.recording:
            if self.max_records is not None and self.recorded_batches >= self.max_records:
                self._thin()
                if not self.recording:
                    return
            self.recorded_batches += 1

    def _thin(self) -> None:
        """Drop every second recorded batch and double ``every``."""
        self.every *= 2
        for series in self._series:
            series.keep(series.batch_tensor() % self.every == 0)
        # batches 0 .. batch - 1 on the new grid (thinning needs max_records >= 2 records: batch >= 2)
        self.recorded_batches = (self.batch - 1) // self.every + 1

    def _on_model_forward(self, module: nn.Module, args: tuple) -> None:
        if self.train_only and not module.training:
            return
        self.batch += 1
        self._start_batch()

    def step(self) -> None:
        """End the current batch (only with ``auto_step=False``; call once per training step)."""
        if self.auto_step:
            raise InputError(
                "step() is for ActivationStats(..., auto_step=False); with auto_step=True every "
                "training forward of the model already counts as one batch. Drop the step() call "
                "or pass auto_step=False."
            )
        self.batch += 1
        self._start_batch()

    def _series_for(self, slot: int, call: int, path: str) -> _Series:
        key = (slot, call, path)
        series = self._entry.get(key)
        if series is None:
            name = self._module_names[slot] + (f":{call}" if call else "") + path
            series = _Series(name, 3 + (self.bins if self.with_hist else 0))
            self._entry[key] = series
            self._series.append(series)
        return series

    def _make_hook(self, slot: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not self.recording or (self.train_only and not module.training):
                return
            call = self._calls.get(slot, 0)
            self._calls[slot] = call + 1
            batch = self.batch
            for path, tensor in _tensors(output):
                series = self._series_for(slot, call, path)
                if not self.backward:
                    series.append(batch, self._summary(tensor.detach()))
                elif tensor.requires_grad:
                    handle = tensor.register_hook(self._make_grad_hook(series, batch))
                    self._pending.setdefault(batch, []).append(handle)

        return hook

    def _make_grad_hook(self, series: _Series, batch: int):
        def grad_hook(grad: torch.Tensor) -> None:
            if self._active:
                series.append(batch, self._summary(grad.detach()))

        return grad_hook

    def _summary(self, x: torch.Tensor) -> torch.Tensor:
        """(3 + bins,) float32 on ``x``'s device: mean, std, fraction near zero, histogram."""
        x = x.float()
        mean = x.mean()
        std = x.std(correction=1 if x.numel() > 1 else 0)  # ~10x faster than torch.std_mean on CPU
        near = (x.abs() if self.backward else x) <= self.near_zero
        parts = [mean, std, near.sum() / max(x.numel(), 1)]
        out = torch.stack(parts)
        if self.with_hist:
            values = x.abs().log10() if self.backward else x  # log10(0) = -inf: an exact 0 is in no bin
            out = torch.cat([out, torch.histc(values, self.bins, *self.range)])
        return out

    # -- reading ---------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """The recorded entries, in the order their modules first ran."""
        return [s.name for s in self._series]

    def _get(self, entry: int | str) -> _Series:
        if isinstance(entry, str):
            for series in self._series:
                if series.name == entry:
                    return series
            close = difflib.get_close_matches(entry, self.names, n=5, cutoff=0.4)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise LayerNotFoundError(
                f"no recorded entry named {entry!r}.{hint} Recorded entries (stats.names): "
                f"{', '.join(self.names) or 'none yet: run a training forward inside the `with` block'}."
            )
        if not -len(self._series) <= entry < len(self._series):
            raise InputError(
                f"entry index {entry} is out of range: {len(self._series)} entries were recorded "
                f"({', '.join(self.names) or 'none yet'}). Use an index below {len(self._series)} or a name."
            )
        return self._series[entry]

    def layer_stats(self, entry: int | str) -> LayerStats:
        """Batch index, mean, std and fraction near zero of one entry (index or name), each (n,)."""
        series = self._get(entry)
        rows = series.rows()
        return LayerStats(series.batch_tensor(), rows[:, 0].clone(), rows[:, 1].clone(), rows[:, 2].clone())

    def hist(self, entry: int | str) -> torch.Tensor:
        """(bins, n) float32 histogram counts of one entry: column ``j`` is record ``j``."""
        if not self.with_hist:
            raise InputError("this recorder has no histograms; create it with with_hist=True.")
        return self._get(entry).rows()[:, 3:].t().contiguous()

    def to_records(self, with_hist: bool = False) -> list[dict[str, Any]]:
        """The statistics as a list of dicts ``{name, batch, mean, std, near_zero[, hist]}``."""
        records = []
        for index, name in enumerate(self.names):
            s = self.layer_stats(index)
            hist = self.hist(index).t().tolist() if with_hist and self.with_hist else None
            for j, (b, m, sd, nz) in enumerate(zip(s.batch.tolist(), s.mean.tolist(), s.std.tolist(), s.near_zero.tolist())):
                record = {"name": name, "batch": b, "mean": m, "std": sd, "near_zero": nz}
                if hist is not None:
                    record["hist"] = hist[j]
                records.append(record)
        return records

    def to_csv(self, path: str | Path | None = None, with_hist: bool = False) -> str:
        """The statistics as CSV text (one row per entry and record); also written to ``path``.

        With ``with_hist`` the histogram adds columns ``hist_0 .. hist_{bins-1}``.
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        hist = with_hist and self.with_hist
        writer.writerow(["name", "batch", "mean", "std", "near_zero"] + ([f"hist_{k}" for k in range(self.bins)] if hist else []))
        for r in self.to_records(with_hist=hist):
            writer.writerow([r["name"], r["batch"], r["mean"], r["std"], r["near_zero"]] + ([int(c) for c in r["hist"]] if hist else []))
        text = buffer.getvalue()
        if path is not None:
            from ..io.files import atomic_write

            atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))
        return text

    @property
    def bytes_per_record(self) -> int:
        """Bytes kept per entry and recorded batch: ``4 * (3 + bins) + 8``."""
        return 4 * (3 + (self.bins if self.with_hist else 0)) + 8

    @property
    def nbytes(self) -> int:
        """Bytes held by the recorded statistics now (CPU tensors and batch indices)."""
        return sum(s.nbytes for s in self._series)

    # -- plots (matplotlib, see camlens.stats_plots) -----------------------------------
    def plot_layer_stats(self, entry: int | str, path: str | Path | None = None):
        """Mean, std and % near zero of one entry over the batches; see :func:`camlens.stats_plots.plot_layer_stats`."""
        from .plots import plot_layer_stats

        return plot_layer_stats(self, entry, path=path)

    def color_dim(self, entry: int | str, path: str | Path | None = None, ax=None, **kwargs: Any):
        """The "colorful dimension" of one entry; see :func:`camlens.stats_plots.color_dim`."""
        from .plots import color_dim

        return color_dim(self, entry, path=path, ax=ax, **kwargs)

    def plot_overview(self, path: str | Path | None = None, **kwargs: Any):
        """A grid with the colorful dimension of every entry; see :func:`camlens.stats_plots.plot_overview`."""
        from .plots import plot_overview

        return plot_overview(self, path=path, **kwargs)

    # -- lifetime --------------------------------------------------------------------
    def remove(self) -> None:
        """Remove every hook (idempotent). The recorded statistics stay readable."""
        self._active = False
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for handles in self._pending.values():
            for handle in handles:
                handle.remove()
        self._pending.clear()

    def __enter__(self) -> "ActivationStats":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        kind = "gradients" if self.backward else "activations"
        state = "hooked" if self._active else "removed"
        return (
            f"ActivationStats({kind}, {len(self._module_names)} modules, {len(self._series)} entries, "
            f"{self.recorded_batches} batches recorded, every={self.every}, {self.nbytes} bytes, {state})"
        )
