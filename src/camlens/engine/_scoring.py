"""The ``scorer`` input of gradient-free methods: re-run the model, batched and chunked.

:func:`camlens.explain` builds one :class:`Scorer` per call and target layer; methods such
as Score-CAM and Ablation-CAM ask it for the explained classes' scores of masked inputs or of
modified target-layer activations. It

- runs under ``torch.inference_mode`` in eval mode (the model's flags are restored),
- picks the chunk size from the memory available, for masked inputs on the CPU at most
  ``_CPU_CHUNK_PIXELS`` (8 images of 224x224, 98 of 64x64; ``batch_size=`` overrides it):
  larger batches outgrow the CPU caches (Score-CAM, 2 cores, 224x224: EfficientNet-Lite0
  7.7 s in chunks of 8 vs 13.2 s in chunks of 32, resnet18 13.7 vs 16.1 s, resnet50 and
  mobilenet_v2 likewise),
- for many masked-input forwards on the CPU, runs a copy of the model with each BatchNorm
  folded into the convolution before it (``torch.fx``; the copy is checked against the
  model on the real input and dropped if they disagree) in ``channels_last`` memory format:
  1.3x-2.8x faster than the model as given (resnet18, mobilenet_v2); the user's model is not
  touched,
- for modified target-layer activations (Ablation-CAM), runs the layers before the target once
  per image and only the layers after it on the chunks (:mod:`camlens._downstream`; checked
  against the full model, else hooks): EfficientNet-Lite0 at its head, 526 ablations in
  0.4 s instead of 64 s,
- shows a tqdm progress bar once the work is estimated to take more than a few seconds
  (``progress=True/False`` forces it on/off).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable

import torch
from torch import nn

from ..core.modes import evaluation_mode
from ..core.hooks import get_module, parse_layer_name

__all__ = ["Scorer", "available_memory"]

_PROGRESS_AFTER_S = 3.0
_CHANNELS_LAST_MIN = 64  # forwards before a channels_last copy of the model pays off
_CPU_CHUNK_PIXELS = 8 * 224 * 224  # input pixels per masked-input forward on the CPU (see above)


def available_memory(device: torch.device) -> int:
    """Bytes free on ``device`` (CUDA: ``mem_get_info``; CPU: MemAvailable), 2 GiB if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2 << 30


class _Replace:
    """Forward hook that replaces the target layer's output (call ``call``) with ``value``."""

    def __init__(self, call: int | None) -> None:
        self.call, self.calls, self.value = call, 0, None

    def __call__(self, module, args, output):
        index, self.calls = self.calls, self.calls + 1
        if self.call is None or index == (self.call if self.call >= 0 else index):
            return self.value
        return None


class Scorer:
    """Scores of the explained classes for modified inputs or target-layer activations.

    Attributes:
        inputs: (N, C, H, W) the explained inputs, as the methods see them: (N, C, 1, L) for
            signals, (N, C, T·H, W) for volumes (``score_inputs`` puts them back in shape).
        classes: (N, K) the explained class indices (labels of the target).
        scores: (N, K) their scores on the unmodified inputs.
        layer: the target layer's name.

    ``select(output, recorder, index)`` (from :mod:`camlens.engine.targets`) reads the
    explained scores of image ``index`` from a re-run; ``layout``
    (:class:`camlens.core.layouts.Layout`) puts modified (N, C, h, w) activations back into
    the layer's own layout (tokens, channels-last), its prefix tokens taken from ``original``.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        classes: torch.Tensor,
        scores: torch.Tensor,
        layer: str,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
        gradient_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        importance_fn: Callable[[], torch.Tensor] | None = None,
        score: str = "logits",
        select: Callable | None = None,
        layout=None,
        original: torch.Tensor | None = None,
    ) -> None:
        self.model, self.classes, self.scores, self.layer = model, classes, scores, layer
        self._inputs = inputs  # as the model takes them
        self.inputs = _grid_view(inputs)
        self._target_select, self.layout, self._original = select, layout, original
        self.batch_size, self.progress, self.score = batch_size, progress, score
        self._gradient_fn, self._importance_fn = gradient_fn, importance_fn
        self._importance: torch.Tensor | None = None
        self._fast: nn.Module | None = None
        self.fast_model = "none"  # which copy ran the masked inputs: "none", "channels_last", "folded"
        self.forwards = 0  # images run, for tests and benchmarks
        self.split = False  # whether the last score_activations ran only the layers after the target
        self._split = None  # the traced Downstream, False if the model cannot be split, None: not tried

    # -- what methods call -------------------------------------------------------------
    def score_inputs(self, index: int, make: Callable[[slice], torch.Tensor], count: int) -> torch.Tensor:
        """(count, K) scores of image ``index``'s classes for ``make(slice)`` input chunks."""
        per_sample = self.inputs[0].numel() * self.inputs.element_size() * 48
        pixels = self.inputs.shape[-2] * self.inputs.shape[-1]
        cap = max(1, min(256, _CPU_CHUNK_PIXELS // pixels)) if self.inputs.device.type == "cpu" else 256
        size = self._chunk(per_sample, cap=cap, count=count)
        model, channels_last = self._runner(count)

        def run(sl: slice) -> torch.Tensor:
            x = make(sl)
            x = x.reshape(x.shape[0], *self._inputs.shape[1:])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self._select(model, x, index)

        return self._loop(count, size, run, "masked inputs")

    def score_activations(self, index: int, make: Callable[[slice], torch.Tensor], count: int) -> torch.Tensor:
        """(count, K) scores of image ``index``'s classes when the target layer outputs ``make(slice)``.

        Only the layers after the target run on the chunks: the layers before it run once on
        the image (:class:`camlens._downstream.Downstream`, checked against the full model on
        the first two chunk items). A model that ``torch.fx`` cannot split runs the layers
        before the target once per chunk on the single image with a hook replacing the
        target's output (broadcasting), and failing that on the image repeated.
        """
        base, call = parse_layer_name(self.layer)
        model = self.model  # hooks go on the target module: run the model as built
        module = get_module(model, base)
        image = self._inputs[index : index + 1]
        if self.layout is not None and self.layout.kind != "nchw":
            grid_make, original = make, self._original

            def make(sl: slice) -> torch.Tensor:  # back into the layer's own layout
                return self.layout.from_grid(grid_make(sl), original[index : index + 1])
        if self._original is not None and self._original.dtype != torch.float32:
            float_make, dtype = make, self._original.dtype

            def make(sl: slice) -> torch.Tensor:  # methods work in float32; the next layers take the layer's dtype
                return float_make(sl).to(dtype)
        if call is not None and call < 0:  # "name:-1": count the calls once, so only that call is replaced
            counter = _Replace(None)
            counter.value = None
            handle = module.register_forward_hook(counter)
            try:
                with torch.inference_mode():
                    self._select(model, image, index)
            finally:
                handle.remove()
            call = counter.calls + call
        example = make(slice(0, 1))
        per_sample = example.numel() * example.element_size() * 16
        size = self._chunk(per_sample, cap=512 if self.inputs.device.type == "cpu" else 4096, count=count)
        state = {"broadcast": True}

        def hooked(value: torch.Tensor) -> torch.Tensor:
            replace = _Replace(call)
            handle = module.register_forward_hook(replace)
            try:
                if state["broadcast"]:
                    try:
                        replace.value, replace.calls = value, 0
                        out = self._select(model, image, index)
                        if out.shape[0] == value.shape[0]:
                            return out
                    except RuntimeError:
                        pass
                    state["broadcast"] = False
                replace.value, replace.calls = value, 0
                return self._select(model, image.expand(value.shape[0], *image.shape[1:]), index)
            finally:
                handle.remove()

        downstream = self._downstream(module, call, index, make(slice(0, min(2, count))), hooked)
        self.split = downstream is not None

        def run(sl: slice) -> torch.Tensor:
            value = make(sl)
            if downstream is not None:
                return self._select(model, value, index, run=downstream)
            return hooked(value)

        return self._loop(count, size, run, "ablations")

    def _downstream(self, module: nn.Module, call: int | None, index: int, probe: torch.Tensor, hooked: Callable):
        """The model split after the target call, cached on image ``index``, if it gives the full model's scores on ``probe``.

        The model is traced once per scorer (a model that cannot be traced is not tried again);
        each image is run once and checked.
        """
        from ._downstream import Downstream

        with evaluation_mode(self.model), torch.inference_mode():
            try:
                if self._split is None:
                    self._split = Downstream(self.model, module, call)
                if self._split is False:
                    return None
                downstream = self._split.cache(self._inputs[index : index + 1])
                got = self._select(self.model, probe, index, run=downstream).float()
            except Exception:  # untraceable, or the split part fails: hooks do the work
                if self._split is None:
                    self._split = False
                return None
            want = hooked(probe).float()
        if got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-4 * max(want.abs().max().item(), 1e-12)):
            return downstream
        return None

    def masks(self, low: torch.Tensor) -> torch.Tensor:
        """Score-CAM masks at the input's resolution, min-max normalised: (1, M, h, w) -> (M, H, W).

        Images bilinear; signals linear; volumes trilinear (returned as (M, T·H, W), the
        shape of :attr:`inputs`).
        """
        from ..methods.scorecam import masks_from_activations

        if self.layout is None or self.layout.kind != "ncthw":
            return masks_from_activations(low, tuple(self.inputs.shape[-2:]))[0]
        from ..core.layouts import finalize_natural

        volumes = low.reshape(low.shape[1], 1, *self.layout.grid).float()
        # normalise as the image masks are: min-max of the upsampled map (no ReLU before)
        low_min = volumes.flatten(1).amin(1).view(-1, 1, 1, 1, 1)
        up = finalize_natural(volumes - low_min, tuple(self._inputs.shape[2:]))
        return up.reshape(up.shape[0], -1, self._inputs.shape[-1])

    def gradients(self, inputs: torch.Tensor) -> torch.Tensor:
        """(N, K, C, h, w) gradients of the explained classes at the target layer for ``inputs``."""
        if self._gradient_fn is None:
            raise RuntimeError("this scorer was built without a gradient function")
        self.forwards += inputs.shape[0]
        return self._gradient_fn(inputs)

    def channel_importance(self) -> torch.Tensor:
        """(N, K, C) cheap channel importance: ``relu(mean_ij dS/dA_k) * mean_ij A_k`` (cached)."""
        if self._importance is None:
            if self._importance_fn is None:
                raise RuntimeError("this scorer was built without an importance function")
            self._importance = self._importance_fn()
        return self._importance

    # -- machinery ---------------------------------------------------------------------
    def _select(self, model: nn.Module, x: torch.Tensor, index: int, run: Callable | None = None) -> torch.Tensor:
        """The explained classes' scores (pre-softmax unless ``score="output"``) of ``model(x)``.

        ``run``: what computes the output instead of ``model`` (a :class:`Downstream` of it).
        """
        from ._outputs import logits_of
        from ..core.heads import HeadRecorder

        with HeadRecorder(model) as recorder:
            output = (run or model)(x)
        if self._target_select is not None:
            return self._target_select(output, recorder, index)
        logits, _ = recorder.scores(logits_of(output), self.score)
        return logits[:, self.classes[index]]

    def _chunk(self, per_sample: int, cap: int, count: int) -> int:
        if self.batch_size is not None:
            return max(1, int(self.batch_size))
        fit = int(available_memory(self._inputs.device) * 0.25 // max(per_sample, 1))
        return max(1, min(cap, fit, max(count, 1)))

    def _runner(self, count: int) -> tuple[nn.Module, bool]:
        """The model to run masked inputs: on CPU for long runs a faster copy, else the model itself."""
        if self._fast is None and count >= _CHANNELS_LAST_MIN and self.inputs.device.type == "cpu":
            self._fast = self.model
            if any(isinstance(m, nn.Conv2d) for m in self.model.modules()):
                self._fast, self.fast_model = _fast_copy(self.model, self._inputs[:1], self._select)
        if self._fast is not None and self._fast is not self.model:
            return self._fast, True
        return self.model, False

    def _loop(self, count: int, size: int, run: Callable[[slice], torch.Tensor], what: str) -> torch.Tensor:
        outs, bar, start = [], None, time.perf_counter()
        with evaluation_mode(self.model), torch.inference_mode():
            try:
                for begin in range(0, count, size):
                    sl = slice(begin, min(begin + size, count))
                    outs.append(run(sl).float())
                    self.forwards += sl.stop - sl.start
                    if bar is None and self.progress is not False and sl.stop < count:
                        elapsed = time.perf_counter() - start
                        if self.progress or elapsed * count / sl.stop > _PROGRESS_AFTER_S:
                            from tqdm.auto import tqdm

                            bar = tqdm(total=count, initial=sl.stop, desc=f"camlens: {what}", leave=False)
                    elif bar is not None:
                        bar.update(sl.stop - sl.start)
            finally:
                if bar is not None:
                    bar.close()
        if not outs:
            return torch.zeros(0, self.classes.shape[1], device=self.inputs.device)
        return torch.cat(outs).clone()  # out of inference mode


def _grid_view(inputs: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) as is; (N, C, L) -> (N, C, 1, L); (N, C, T, H, W) -> (N, C, T·H, W)."""
    if inputs.dim() == 3:
        return inputs.unsqueeze(2)
    if inputs.dim() == 5:
        n, c, t, h, w = inputs.shape
        return inputs.reshape(n, c, t * h, w)
    return inputs


def _fast_copy(model: nn.Module, example: torch.Tensor, select: Callable) -> tuple[nn.Module, str]:
    """A copy of ``model`` for many inference forwards on the CPU, and what it is.

    ``"folded"``: BatchNorm and symmetric zero padding folded into the convolutions
    (:func:`camlens._fold.fold_for_inference`; the same function up to float rounding), in
    ``channels_last``; used only if its scores on ``example`` match the model's. ``"channels_last"``: a plain ``channels_last`` copy (a model that
    ``torch.fx`` cannot trace). ``"none"``: the model itself (a model that cannot be copied).
    """
    try:
        plain = copy.deepcopy(model).eval()
    except Exception:  # a model that cannot be copied: run it as it is
        return model, "none"
    try:
        from ..core.fold import fold_for_inference

        folded = fold_for_inference(plain)[0].to(memory_format=torch.channels_last)
        with evaluation_mode(model), torch.inference_mode():
            reference = select(model, example, 0).float()
            got = select(folded, example.contiguous(memory_format=torch.channels_last), 0).float()
        if torch.allclose(got, reference, rtol=1e-3, atol=1e-3 * reference.abs().max().item()):
            return folded, "folded"
    except Exception:  # not traceable by torch.fx (data-dependent control flow, ...)
        pass
    return plain.to(memory_format=torch.channels_last), "channels_last"
