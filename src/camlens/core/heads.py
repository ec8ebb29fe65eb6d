"""What is between the target layer and the class scores, and is CAM exact there?

CAM (Zhou et al. 2016) needs ``score_c = sum_k w_ck * mean_ij A_kij + b_c``; then the
map ``sum_k w_ck A_k`` is exactly the spatial decomposition of the score. A head
that is global average pooling followed by any chain of *affine* modules in eval
mode (``BatchNorm1d`` with running statistics, ``Dropout``, ``Flatten``,
``Identity``, ``Linear``) has that form too: the chain folds into one linear map
``W = W_n ... W_1`` (``BatchNorm1d`` is a per-feature scale and shift), and CAM
with the folded weights is exact.

camlens does not trust module types alone. It walks back from the model's output
through the modules that produced it, folds the chain, and checks numerically,
on the forward it ran, that

- the chain's input is the spatial mean of the target layer's output (or its
  max, or fastai's concatenation ``[max, avg]``, or the flattened map), and
- the folded map applied to that input reproduces the scores.

A functional op that no hook can see (``F.relu`` between two linear layers) makes
the second check fail, so the verdict is never "exact" by mistake. A final
``LogSoftmax`` / ``Softmax`` / ``Sigmoid`` module is recognised: CAM decomposes its
input, the pre-softmax score.

Example:
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(
    ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ...     nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 4), nn.LogSoftmax(dim=1)).eval()
    >>> verdict = analyze_head(model, input_size=(3, 16, 16))
    >>> verdict.exact, verdict.kind, verdict.output, verdict.weight.shape
    (True, 'gap_affine', 'log-probabilities', torch.Size([4, 8]))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["HeadVerdict", "HeadOp", "analyze_head", "analyze_ops", "fold_affine"]

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_PASS_THROUGH = _DROPOUT + (nn.Identity, nn.Flatten)
_AFFINE = _PASS_THROUGH + (nn.Linear, nn.BatchNorm1d)
#: Final modules that turn scores into (log-)probabilities, and what they output.
OUTPUT_TRANSFORMS: dict[type, str] = {
    nn.LogSoftmax: "log-probabilities",
    nn.Softmax: "probabilities",
    nn.Sigmoid: "sigmoid probabilities",
}


@dataclass
class HeadOp:
    """One module call in the head: its dotted name, the module, its input and output."""

    name: str
    module: nn.Module
    input: torch.Tensor | None
    output: torch.Tensor | None

    @property
    def label(self) -> str:
        return f"{self.name} ({type(self.module).__name__})"


@dataclass
class HeadVerdict:
    """What the head is, and whether CAM is exact for it.

    Attributes:
        exact: CAM (``method="cam"``) is exact: ``score = mean_hw(sum_k weight[c, k] A_k) + bias[c]``.
        classifier: name of the last linear layer of the head (``None`` if there is none).
        reason: one paragraph for people: what the head is, what CAM means there, the way out.
        weight: (classes, C) folded class weights when the head is global pooling + affine ops
            (for concat pooling: the weights on the average-pooled half).
        bias: (classes,) folded bias.
        kind: ``"gap_linear"``, ``"gap_affine"`` (several affine ops folded), ``"gap"`` (pooling
            straight to the scores), ``"concat_pool"``, ``"max_pool"``, ``"nonlinear"``,
            ``"flatten_fc"``, ``"hidden_ops"`` (modules fold but do not reproduce the scores) or
            ``"unknown"``.
        ops: the head's modules from the target layer to the output, ``"name (Type)"``.
        pooling: how the chain's input comes from the target layer: ``"avg"``, ``"max"``,
            ``"concat(max, avg)"``, ``"concat(avg, max)"``, ``"flatten"`` or ``None``.
        output: ``"scores"``, or ``"log-probabilities"`` / ``"probabilities"`` /
            ``"sigmoid probabilities"`` when a final module of that kind produces the output.
        score_layer: that final module's name; CAM decomposes its input.
        max_weight: (classes, C) concat pooling only: the weights on the max-pooled half.
        error: max abs difference between the folded map and the scores on the traced forward.
    """

    exact: bool
    classifier: str | None
    reason: str
    weight: torch.Tensor | None = None  # (classes, C)
    bias: torch.Tensor | None = None  # (classes,)
    kind: str = "unknown"
    ops: list[str] = field(default_factory=list)
    pooling: str | None = None
    output: str = "scores"
    score_layer: str | None = None
    max_weight: torch.Tensor | None = None
    error: float | None = None

    def __str__(self) -> str:
        head = " -> ".join(self.ops) if self.ops else "(no module)"
        return f"head: {head}\n{self.reason}"


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    if a.shape != b.shape:
        return False
    scale = b.detach().abs().max().clamp_min(1e-6)
    return bool(((a.detach().float() - b.detach().float()).abs().max() / scale) < tol)


def _alternatives(flatten: bool = False) -> str:
    text = (
        "Alternatives: method='gradcam' (any head); camlens.replace_head(model, num_classes) then "
        "camlens.finetune_head(...) for a global-average-pool + linear head where CAM is exact"
    )
    if flatten:
        text += (
            "; camlens.fully_convolutional(model) turns the flatten + linear layers into convolutions, "
            "and method='fcmap' gives the dense class-score map of an enlarged image"
        )
    return text + "."


def _continuous(produced: torch.Tensor | None, consumed: torch.Tensor | None) -> bool:
    """``consumed`` is ``produced`` itself or a reshaped view of it (``x.flatten(1)``)."""
    if produced is None or consumed is None:
        return False
    if produced is consumed:
        return True
    return (
        produced.numel() == consumed.numel() and produced.numel() > 0
        and produced.data_ptr() == consumed.data_ptr()
        and produced.is_contiguous() and consumed.is_contiguous()
        and produced.shape[0] == consumed.shape[0]
    )


def _spatial(tensor: torch.Tensor | None) -> bool:
    return tensor is not None and tensor.dim() == 4 and tensor.shape[2] * tensor.shape[3] > 1


def _is_pooling(module: nn.Module) -> bool:
    return "pool" in type(module).__name__.lower()


def _is_reshape(op: HeadOp) -> bool:
    """A module that only reshapes (fastai's ``Flatten``, any ``x.view(...)`` module)."""
    return op.output is not op.input and _continuous(op.input, op.output)


def _affine_problem(module: nn.Module) -> str | None:
    """Why ``module`` (in eval mode) is not an affine map of its input, or ``None`` if it is."""
    if isinstance(module, nn.BatchNorm1d):
        if module.running_mean is None or module.running_var is None:
            return "it normalises with the batch's own statistics (no running statistics)"
        return None
    if isinstance(module, _AFFINE):
        return None
    return "it is not an affine map"


def fold_affine(modules: list[nn.Module], features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a chain of eval-mode affine modules into one map: ``chain(x) == x @ W.T + b``.

    ``Linear``: ``W <- L W``, ``b <- L b + l``. ``BatchNorm1d`` (running statistics):
    ``s = gamma / sqrt(var + eps)``, ``W <- s W``, ``b <- s (b - mean) + beta``.
    ``Dropout``, ``Flatten`` and ``Identity`` leave it unchanged. Computed in float64.

    Args:
        modules: the chain, first applied first.
        features: the chain's input size F.

    Returns:
        ``(W, b)``: (out, F) and (out,) float64 tensors.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> chain = [nn.Linear(6, 5), nn.BatchNorm1d(5).eval(), nn.Dropout(), nn.Linear(5, 3)]
        >>> W, b = fold_affine(chain, 6)
        >>> x = torch.randn(4, 6)
        >>> torch.allclose(nn.Sequential(*chain).eval()(x), (x.double() @ W.T + b).float(), atol=1e-5)
        True
    """
    with torch.no_grad():
        device = next((p.device for m in modules for p in m.parameters()), torch.device("cpu"))
        diagonal = torch.ones(features, dtype=torch.float64, device=device)  # the map while no Linear came yet
        weight: torch.Tensor | None = None  # None: still diag(diagonal), never built as an F×F matrix
        bias = torch.zeros(features, dtype=torch.float64, device=device)
        for module in modules:
            if isinstance(module, nn.Linear):
                size = features if weight is None else weight.shape[0]
                if module.in_features != size:
                    raise ValueError(f"Linear expects {module.in_features} features, the chain has {size}")
                lw = module.weight.double()
                weight = lw * diagonal if weight is None else lw @ weight
                bias = lw @ bias
                if module.bias is not None:
                    bias = bias + module.bias.double()
            elif isinstance(module, nn.BatchNorm1d):
                problem = _affine_problem(module)
                if problem:
                    raise ValueError(f"BatchNorm1d cannot be folded: {problem}")
                scale = (module.running_var.double() + module.eps).rsqrt()
                if module.weight is not None:
                    scale = scale * module.weight.double()
                shift = -module.running_mean.double() * scale
                if module.bias is not None:
                    shift = shift + module.bias.double()
                if weight is None:
                    diagonal = scale * diagonal
                else:
                    weight = scale[:, None] * weight
                bias = scale * bias + shift
            elif not isinstance(module, _PASS_THROUGH):
                raise ValueError(f"{type(module).__name__} is not an affine module camlens can fold")
    return (torch.diag(diagonal) if weight is None else weight), bias


def _pooling_of(features: torch.Tensor, activation: torch.Tensor) -> str | None:
    """How ``features`` (N, F) is computed from ``activation`` (N, C, h, w), if recognised."""
    act = activation.detach().float()
    feats = features.detach().float().reshape(act.shape[0], -1)
    channels, size = act.shape[1], feats.shape[1]
    mean, peak = act.mean(dim=(2, 3)), act.amax(dim=(2, 3))
    if size == channels:
        if _close(feats, mean):
            return "avg"
        if _close(feats, peak):
            return "max"
    elif size == 2 * channels:
        if _close(feats, torch.cat([peak, mean], 1)):
            return "concat(max, avg)"
        if _close(feats, torch.cat([mean, peak], 1)):
            return "concat(avg, max)"
    elif size % channels == 0:
        return "flatten"
    return None


def _score_tensor(ops: list[HeadOp], output: torch.Tensor) -> tuple[torch.Tensor, HeadOp | None, int]:
    """The pre-softmax scores, the output-transform op (or None), and where the chain ends."""
    for index in range(len(ops) - 1, -1, -1):
        op = ops[index]
        if _continuous(op.output, output):
            if type(op.module) in OUTPUT_TRANSFORMS and op.input is not None:
                return op.input, op, index - 1
            return output, None, index
    return output, None, -1


def _walk_chain(ops: list[HeadOp], scores: torch.Tensor, end: int) -> tuple[list[HeadOp], torch.Tensor, HeadOp | None]:
    """Walk back from ``ops[end]`` while each op's input is the previous op's output.

    Returns the chain (first op first), its input, and the op that produced that input
    (``None`` when a functional op or nothing did).
    """
    chain: list[HeadOp] = []
    current = scores
    index = end
    while index >= 0:
        producer = next((i for i in range(index, -1, -1) if _continuous(ops[i].output, current)), None)
        if producer is None:
            return chain, current, None
        op = ops[producer]
        if _is_pooling(op.module) or op.input is None or _spatial(op.input) or _spatial(op.output):
            return chain, current, op
        chain.insert(0, op)
        current = op.input
        index = producer - 1
    return chain, current, None


def analyze_ops(target: str, activation: torch.Tensor, output: torch.Tensor, ops: list[HeadOp]) -> HeadVerdict:
    """Classify the head from the modules that ran after the target layer, on one forward's values.

    Args:
        target: name of the target layer (for the messages).
        activation: (N, C, h, w) output of the target layer, as it returned it.
        output: (N, classes) the model's output.
        ops: the head's module calls after the target, in completion order; containers are
            left out except pooling containers (fastai's ``AdaptiveConcatPool2d``), whose
            children are left out instead.
    """
    labels = [op.label for op in ops]
    shown = " -> ".join(labels[:10]) + (" -> ..." if len(labels) > 10 else "")
    where = f" Head after {target!r}: {shown}." if labels else ""
    scores, transform, end = _score_tensor(ops, output)
    out_kind = OUTPUT_TRANSFORMS[type(transform.module)] if transform else "scores"
    score_layer = transform.name if transform else None
    softmax_note = (
        f" The model outputs {out_kind} from {transform.label}; CAM decomposes its input, the "
        "pre-softmax score, which camlens.explain explains by default (score='output' for the "
        "output itself)." if transform else ""
    )
    out_note = (
        f" The model outputs {out_kind} from {transform.label}; camlens.explain explains the pre-softmax "
        "score by default." if transform else ""
    )
    common = dict(ops=labels, output=out_kind, score_layer=score_layer)
    chain, features, producer = _walk_chain(ops, scores, end)
    channels = activation.shape[1]
    linears = [op for op in chain if isinstance(op.module, nn.Linear)]
    classifier = linears[-1].name if linears else None
    final_linear = (
        f"; the final linear layer {classifier!r} takes {linears[-1].module.in_features} features, "
        f"not the {channels} channels of {target!r}"
        if linears and linears[-1].module.in_features != channels and (len(linears) > 1 or chain[0] is not linears[0])
        else ""
    )
    if features is None or features.shape[0] != activation.shape[0]:
        return HeadVerdict(
            False, classifier,
            f"not global-average-pool + linear: camlens cannot relate the scores to {target!r}.{where} "
            f"{_alternatives()}", kind="unknown", **common,
        )
    pooling = _pooling_of(features, activation)
    size = features[0].numel()
    nonlinear = next((op for op in chain if _affine_problem(op.module) and not _is_reshape(op)), None)
    common["pooling"] = pooling

    if pooling == "flatten":
        why = f", and {nonlinear.label} makes the score non-linear in them" if nonlinear else ""
        reader = linears[0].label if linears else (chain[0].label if chain else "the output")
        grid = f"{size // channels}"
        if producer is not None and producer.output is not None and producer.output.dim() == 4:
            grid = "×".join(str(s) for s in producer.output.shape[2:])
        return HeadVerdict(
            False, classifier,
            f"not global-average-pool + linear: flatten + fully connected. {reader} reads the flattened "
            f"{channels}×{grid} map of {target!r} ({size} features), so every position has its own "
            f"weights{why}{final_linear}. CAM is not defined here.{out_note}{where} {_alternatives(flatten=True)}",
            kind="flatten_fc", **common,
        )
    if pooling is None:
        first = chain[0].label if chain else "the output"
        return HeadVerdict(
            False, classifier,
            f"not global-average-pool + linear: {first} gets {size} features that are not the spatial mean "
            f"(nor max, nor both) of the {channels} channels of {target!r}{final_linear}. CAM is not defined "
            f"here.{out_note}{where} {_alternatives()}", kind="unknown", **common,
        )
    if nonlinear is not None:
        bn_note = f" ({_affine_problem(nonlinear.module)})" if isinstance(nonlinear.module, nn.BatchNorm1d) else ""
        return HeadVerdict(
            False, classifier,
            f"not global-average-pool + linear: {pooling} pooling, then a non-linear head: "
            f"{nonlinear.label}{bn_note} makes the score a non-linear function of the pooled channels, so "
            f"no class has one weight per channel{final_linear}. CAM is not defined here.{out_note}{where} "
            f"{_alternatives()}", kind="nonlinear", **common,
        )

    weight, bias = fold_affine([nn.Identity() if _is_reshape(op) else op.module for op in chain], size)
    flat = features.detach().reshape(features.shape[0], -1).to(weight)
    if not chain and size != scores.shape[1]:
        weight = weight[: scores.shape[1]]
    predicted = flat @ weight.T + bias
    error = float((predicted - scores.detach().to(predicted)).abs().max()) if predicted.shape == scores.shape else None
    common["error"] = error
    folded_names = " -> ".join(op.label for op in chain) or "nothing"
    if error is None or not _close(predicted, scores):
        return HeadVerdict(
            False, classifier,
            f"not global-average-pool + linear as far as camlens can tell: folding the head's modules "
            f"({folded_names}) does not reproduce the model's scores (max abs difference "
            f"{'n/a' if error is None else f'{error:.3g}'}): an op that is not a module (F.relu, torch.cat, "
            f"an in-place change) acts in the head, and hooks cannot see it.{out_note}{where} {_alternatives()}",
            kind="hidden_ops", **common,
        )
    dtype = _dtype_of(chain, activation)
    weight, bias = weight.to(dtype), bias.to(dtype)
    classes = weight.shape[0]
    if pooling == "max":
        return HeadVerdict(
            False, classifier,
            f"not global-average-pool + linear: global max pooling + linear. Each channel enters the score "
            f"through its single largest value, so the weighted channel sum is not a decomposition of the "
            f"score (only each channel's peak position counts). CAM is not exact here.{out_note}{where} "
            f"{_alternatives()}",
            weight, bias, kind="max_pool", **common,
        )
    if pooling.startswith("concat"):
        first_max = pooling == "concat(max, avg)"
        w_max, w_avg = (weight[:, :channels], weight[:, channels:]) if first_max else (weight[:, channels:], weight[:, :channels])
        return HeadVerdict(
            False, classifier,
            f"not global-average-pool + linear: concat pooling ({pooling}, fastai's AdaptiveConcatPool2d) "
            f"+ affine ops folded into one map ({2 * channels} -> {classes}, max abs error {error:.1e}). "
            f"Then score_c = sum_k Wavg_ck mean(A_k) + sum_k Wmax_ck max(A_k) + b_c: the average half is "
            f"exactly decomposed by the map sum_k Wavg_ck A_k (HeadVerdict.weight), but it is only part of "
            f"the score; the max half puts each channel's whole contribution at that channel's peak "
            f"(HeadVerdict.max_weight). So method='cam' would explain part of the score only, and camlens "
            f"refuses it.{out_note}{where} {_alternatives()}",
            w_avg, bias, kind="concat_pool", max_weight=w_max, **common,
        )
    if all(isinstance(op.module, _PASS_THROUGH) or _is_reshape(op) for op in chain):
        return HeadVerdict(
            True, None,
            f"global-average-pool straight to the scores: each of the {channels} channels of {target!r} "
            f"is one class's map; CAM is exact (method='cam', identity weights); Grad-CAM is proportional "
            f"to it.{softmax_note}", weight, bias, kind="gap", **common,
        )
    only_linear = len(linears) == 1 and all(
        isinstance(op.module, _PASS_THROUGH + (nn.Linear,)) or _is_reshape(op) for op in chain
    )
    if only_linear:
        reason = (
            f"global-average-pool + linear {classifier!r} ({channels} -> {classes}): CAM is exact "
            f"(method='cam'); Grad-CAM is proportional to it at {target!r}.{softmax_note}"
        )
        kind = "gap_linear"
    else:
        reason = (
            f"global-average-pool + affine ops ({folded_names}) folded into one linear map "
            f"({channels} -> {classes}, max abs error {error:.1e} on the traced scores): CAM is exact "
            f"(method='cam') with the folded weights; Grad-CAM is proportional to it at {target!r}."
            f"{softmax_note}"
        )
        kind = "gap_affine"
    return HeadVerdict(True, classifier, reason, weight, bias, kind=kind, **common)


def _dtype_of(chain: list[HeadOp], activation: torch.Tensor) -> torch.dtype:
    for op in chain:
        for p in op.module.parameters():
            return p.dtype
    return activation.dtype if activation.is_floating_point() else torch.float32


def head_units(calls: list[Any]) -> list[Any]:
    """Keep the module calls that are one op of the head: leaves, and pooling containers whole.

    ``calls`` have ``.name`` and ``._module`` (``LayerCall``) or ``.module`` (``HeadOp``).
    """
    def module_of(call: Any) -> nn.Module:
        return call.module if isinstance(call, HeadOp) else call._module

    units = [c for c in calls if _is_pooling(module_of(c)) and any(True for _ in module_of(c).children())]
    keep = []
    for call in calls:
        inside_unit = any(call is not u and call.name.startswith(u.name + ".") for u in units)
        leaf = not any(True for _ in module_of(call).children())
        if not inside_unit and (leaf or any(call is u for u in units)):
            keep.append(call)
    return keep


def verdict_from_trace(target: str, activation: torch.Tensor, output: torch.Tensor, after: list) -> HeadVerdict:
    """:func:`analyze_ops` on the calls of a :class:`camlens.layers.ModelTrace` after the target."""
    ops = [HeadOp(c.name if c.calls == 1 else c.key, c._module, c._input, c._output) for c in head_units(after)]
    return analyze_ops(target, activation, output, ops)


def analyze_head(
    model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224), target_layer: str | None = None
) -> HeadVerdict:
    """Find the ops between the target layer and the logits and say what CAM means there.

    Runs one traced forward on a seeded random input of ``input_size`` (eval mode; the
    model's flags are restored). See :class:`HeadVerdict` for what comes back and the
    module docstring for the rules.

    Args:
        model: the classifier.
        input_size: (C, H, W) of one input.
        target_layer: the feature layer (``None``: :func:`camlens.find_target_layer`).
    """
    from .trace import calls_after, pick_target, trace_model

    trace = trace_model(model, input_size)
    if target_layer is None:
        target, group = pick_target(trace)
    else:
        from .hooks import get_module, parse_layer_name

        base, index = parse_layer_name(str(target_layer))
        get_module(model, base)  # a wrong name lists close matches
        calls = [c for c in trace.calls if c.name == base]
        if not calls:
            from .errors import LayerNotExecutedError

            raise LayerNotExecutedError(f"target layer {base!r} did not run in the traced forward")
        target = calls[index if index is not None else -1]
        group = [target]
    activation = target._value if target._value is not None else target._output
    return verdict_from_trace(target.key, activation, trace.output, calls_after(trace, group))


class HeadRecorder:
    """Forward hooks that record the head during a real forward (used by :func:`camlens.explain`).

    Always records the final ``LogSoftmax``/``Softmax``/``Sigmoid`` modules (to find the
    pre-softmax score); with ``ops=True`` also every leaf module and pooling container,
    for :meth:`verdict`. Use as a context manager: the hooks go when the block ends.
    """

    def __init__(self, model: nn.Module, target: nn.Module | None = None, *, ops: bool = False) -> None:
        self._records: list[tuple[int, HeadOp]] = []
        self._target_done: list[int] = []
        self._order = 0
        self._target = target
        self._handles = []
        if target is not None and ops:
            self._handles.append(target.register_forward_hook(self._target_hook))
        for name, module in model.named_modules():
            leaf = not any(True for _ in module.children())
            wanted = type(module) in OUTPUT_TRANSFORMS or (ops and name and (leaf or _is_pooling(module)))
            if wanted and module is not target:
                self._handles.append(module.register_forward_hook(self._make_hook(name)))

    def _target_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._order += 1
        self._target_done.append(self._order)

    def _make_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            from .hooks import first_tensor

            self._order += 1
            if self._target is not None and not self._target_done and type(module) not in OUTPUT_TRANSFORMS:
                return  # before the target: keeping these tensors would hold every activation alive
            self._records.append((self._order, HeadOp(name, module, first_tensor(args), first_tensor(output))))

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> "HeadRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def scores(self, output: torch.Tensor, which: str = "logits") -> tuple[torch.Tensor, str]:
        """The tensor to explain and what it is.

        ``which="logits"``: the input of a final ``LogSoftmax``/``Softmax``/``Sigmoid`` module
        when one produced ``output``, else ``output``. ``which="output"``: ``output`` as is.
        """
        if which not in ("logits", "output"):
            from .errors import InputError

            raise InputError(f"score={which!r} is not understood; use 'logits' (pre-softmax, the default) or 'output'")
        last = next((op for _, op in reversed(self._records) if type(op.module) in OUTPUT_TRANSFORMS
                     and _continuous(op.output, output)), None)
        if last is None:
            return output, "model output"
        kind = OUTPUT_TRANSFORMS[type(last.module)]
        if which == "output":
            return output, f"model output ({kind} from {last.label})"
        return last.input, f"pre-softmax logits: the input of {last.label}; the model outputs {kind}"

    def verdict(self, target: str, activation: torch.Tensor, output: torch.Tensor, call: int | None = None) -> HeadVerdict:
        """:func:`analyze_ops` on the modules that completed after the target's call."""
        if self._target_done:
            index = 0 if call is None else call
            done = self._target_done[index] if -len(self._target_done) <= index < len(self._target_done) else 0
        else:
            done = 0
        ops = head_units([op for order, op in self._records if order > done])
        return analyze_ops(target, activation, output, ops)
