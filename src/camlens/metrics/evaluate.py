"""Every metric for every method in one call: :func:`evaluate` and its table and plot."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.errors import CamlensError, InputError
from ._common import ScoreFn, check_inputs, flatten_pairs, logits_in_batches
from .faithfulness import ConfidenceChange, Curves, confidence_change, deletion_curve, insertion_curve
from .localization import energy_pointing_game, localization_iou, pointing_game
from .road import DEFAULT_FRACTIONS, RoadScores, road as road_scores

__all__ = ["MethodScores", "Evaluation", "evaluate", "evaluate_maps", "plot_curves"]


@dataclass
class MethodScores:
    """All metrics of one method (or one set of maps) on P = N*K (image, class) pairs.

    Per-pair tensors are ``None`` when not computed (no targets: no localization).
    ``error`` says why a method was skipped (e.g. CAM on a head it cannot read).
    """

    method: str
    images: int = 0
    seconds_per_image: float = math.nan
    deletion: Curves | None = None
    insertion: Curves | None = None
    confidence: ConfidenceChange | None = None
    road: RoadScores | None = None
    pointing: torch.Tensor | None = None
    energy: torch.Tensor | None = None
    iou: torch.Tensor | None = None
    error: str | None = None

    def summary(self) -> dict[str, float]:
        """Mean of each metric: pointing, energy, iou50 (share with IoU >= 0.5) and iou in [0, 1];
        deletion/insertion AUC; average_drop and increase in percent; ROAD MoRF, LeRF and combined
        (when computed); ms_per_image."""
        nan = math.nan
        mean = lambda t: float(t.float().mean()) if t is not None and t.numel() else nan  # noqa: E731
        return {
            "pointing": mean(self.pointing),
            "energy": mean(self.energy),
            "iou50": mean(None if self.iou is None else self.iou >= 0.5),
            "iou": mean(self.iou),
            "deletion": self.deletion.mean_auc if self.deletion is not None else nan,
            "insertion": self.insertion.mean_auc if self.insertion is not None else nan,
            "average_drop": self.confidence.average_drop if self.confidence is not None else nan,
            "increase": self.confidence.increase_in_confidence if self.confidence is not None else nan,
            "road_morf": self.road.morf_mean if self.road is not None else nan,
            "road_lerf": self.road.lerf_mean if self.road is not None else nan,
            "road_combined": self.road.combined if self.road is not None else nan,
            "ms_per_image": 1000 * self.seconds_per_image,
        }


_COLUMNS = [
    # key, header, format
    ("pointing", "pointing game ↑", "{:.1%}"),
    ("energy", "energy PG ↑", "{:.3f}"),
    ("iou50", "IoU≥0.5 ↑", "{:.1%}"),
    ("deletion", "deletion AUC ↓", "{:.3f}"),
    ("insertion", "insertion AUC ↑", "{:.3f}"),
    ("average_drop", "avg drop % ↓", "{:.1f}"),
    ("increase", "increase % ↑", "{:.1f}"),
    ("road_morf", "ROAD MoRF ↓", "{:.3f}"),
    ("road_lerf", "ROAD LeRF ↑", "{:.3f}"),
    ("road_combined", "ROAD ↑", "{:.3f}"),
    ("ms_per_image", "ms/image", "{:.1f}"),
]


@dataclass
class Evaluation:
    """Results of :func:`evaluate`: ``scores[method]`` -> :class:`MethodScores`."""

    scores: dict[str, MethodScores] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, float]]:
        """method -> metric -> mean (see :meth:`MethodScores.summary`)."""
        return {name: s.summary() for name, s in self.scores.items() if s.error is None}

    def table(self) -> str:
        """A Markdown table, one row per method; skipped methods listed below it."""
        with_road = any(s.road is not None for s in self.scores.values())
        columns = [c for c in _COLUMNS if with_road or not c[0].startswith("road_")]
        header = ["method", "images"] + [title for _, title, _ in columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        skipped = []
        for name, s in self.scores.items():
            if s.error is not None:
                skipped.append(f"- {name}: skipped ({s.error})")
                continue
            values = s.summary()
            cells = [name, str(s.images)] + [
                "–" if math.isnan(values[key]) else fmt.format(values[key]) for key, _, fmt in columns
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines + ([""] + skipped if skipped else []))

    def __str__(self) -> str:
        return self.table()


def evaluate_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: Any,
    classes: Any = None,
    targets: torch.Tensor | None = None,
    *,
    name: str = "maps",
    step: int | float = 0.05,
    deletion_baseline: str | float | torch.Tensor = "zeros",
    insertion_baseline: str | float | torch.Tensor = "blur",
    confidence_baseline: str | float | torch.Tensor = "zeros",
    score: str | ScoreFn = "softmax",
    tolerance: float = 15,
    threshold: float = 0.2,
    batch_size: int = 64,
    faithfulness: bool = True,
    road: bool = False,
    road_fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    progress: bool = True,
) -> MethodScores:
    """Every metric for given maps (from any source: a method, a baseline, another library).

    Args:
        maps: (N, H, W), (N, K, H, W) in [0, 1] at the input's size, or an Explanation.
        classes: (N,) or (N, K) classes; ``None``: the Explanation's or the top-1.
        targets: boxes (N, 4) / (N, K, 4) or masks (N, H, W) / (N, K, H, W), or ``None``
            (then no localization metric).
        faithfulness: compute deletion/insertion and the confidence change (these run
            the model; localization does not).
        road: also compute ROAD (:func:`camlens.metrics.road`, Rong et al. 2022) at
            ``road_fractions``: one imputation and forward per pair, share and order.
        Other arguments: see :func:`evaluate`.
    """
    image_index, flat_maps, cls = flatten_pairs(inputs, maps, classes, model, batch_size=batch_size)
    n, k = inputs.shape[0], cls.numel() // inputs.shape[0]
    grid = flat_maps.view(n, k, *flat_maps.shape[-2:])
    classes_nk = cls.view(n, k)
    result = MethodScores(method=name, images=n)
    if targets is not None:
        result.pointing = pointing_game(grid, targets, tolerance).flatten()
        result.energy = energy_pointing_game(grid, targets).flatten()
        result.iou = localization_iou(grid, targets, threshold).flatten()
    if faithfulness:
        common = dict(score=score, batch_size=batch_size, progress=progress)
        result.deletion = deletion_curve(model, inputs, grid, classes_nk, step=step, baseline=deletion_baseline, **common)
        result.insertion = insertion_curve(model, inputs, grid, classes_nk, step=step, baseline=insertion_baseline, **common)
        result.confidence = confidence_change(model, inputs, grid, classes_nk, baseline=confidence_baseline, **common)
    if road:
        result.road = road_scores(model, inputs, grid, classes_nk, fractions=road_fractions, score=score,
                                  batch_size=batch_size, progress=progress)
    return result


def _explain_timed(model, inputs, method, target_layer, classes, batch_size, budget, options):
    """Maps of ``method`` for as many images as ``budget`` seconds allow (all without one)."""
    from ..engine.explain import explain
    from ..methods import get_method

    taken = getattr(get_method(method), "options", ())
    options = {key: value for key, value in (options or {}).items() if key in taken}
    n = inputs.shape[0]
    started = time.perf_counter()
    first = explain(model, inputs[:1], method=method, target_layer=target_layer, classes=classes[:1], **options)
    limit = n
    if budget is not None:
        per_image = time.perf_counter() - started
        limit = max(1, min(n, int(budget / max(per_image, 1e-9))))
    parts = [first.maps]
    for start in range(1, limit, batch_size):
        stop = min(start + batch_size, limit)
        out = explain(model, inputs[start:stop], method=method, target_layer=target_layer, classes=classes[start:stop],
                      **options)
        parts.append(out.maps)
    seconds = time.perf_counter() - started
    return torch.cat(parts), limit, seconds / limit


def evaluate(
    model: nn.Module,
    inputs: torch.Tensor,
    methods: str | list[str] | None = None,
    classes: Any = None,
    targets: torch.Tensor | None = None,
    *,
    target_layer: str | nn.Module | None = None,
    step: int | float = 0.05,
    deletion_baseline: str | float | torch.Tensor = "zeros",
    insertion_baseline: str | float | torch.Tensor = "blur",
    confidence_baseline: str | float | torch.Tensor = "zeros",
    score: str | ScoreFn = "softmax",
    tolerance: float = 15,
    threshold: float = 0.2,
    batch_size: int = 64,
    explain_batch_size: int = 16,
    max_seconds_per_method: float | None = None,
    explain_options: dict[str, Any] | None = None,
    road: bool = False,
    road_fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    progress: bool = True,
) -> Evaluation:
    """Explain ``inputs`` with each method and score the maps: faithfulness and localization.

    For every method: deletion and insertion AUC (RISE), average drop and increase in
    confidence (Grad-CAM++), and, given ``targets``, the pointing game, the energy
    pointing game (Score-CAM) and CAM's box IoU; plus the time :func:`camlens.explain`
    takes per image. A method the model cannot support (e.g. ``cam`` without a
    GAP + linear head) is reported as skipped, with the reason.

    Args:
        model: classifier returning (N, classes).
        inputs: (N, C, H, W) normalised images.
        methods: a name, a list, or ``None`` for every method in :func:`camlens.list_methods`.
        classes: as in :func:`camlens.explain` (default: top-1), resolved once for all methods.
        targets: boxes (N, 4) or (N, K, 4) as (x0, y0, x1, y1), max exclusive, in input
            pixels; or masks (N, H, W) / (N, K, H, W); ``None`` skips localization.
        target_layer: as in :func:`camlens.explain`.
        step: deletion/insertion step, pixels (int) or a fraction of the pixels (float).
        deletion_baseline, insertion_baseline: what removed pixels become, and what
            insertion starts from (RISE: ``"zeros"`` and ``"blur"``); also ``"mean"``.
        confidence_baseline: for the masked image of the average drop (``"zeros"``: x * map).
        score: ``"softmax"`` (default), ``"logit"``, ``"sigmoid"`` or a callable on logits.
        tolerance: pointing-game tolerance in pixels (Zhang et al.: 15 at 224x224).
        threshold: CAM's box threshold, a fraction of each map's max (Zhou et al.: 0.2).
        batch_size: perturbed images per forward pass.
        explain_batch_size: images per :func:`camlens.explain` call.
        max_seconds_per_method: time budget for explaining: a slow method (Score-CAM on a
            big model) is evaluated on as many of the first images as fit (at least one).
        explain_options: method options for :func:`camlens.explain` (e.g. ``{"top_k": 64}``,
            Score-CAM's fast mode); each method gets only the options it takes.
        road: also score ROAD MoRF / LeRF / combined (Rong et al. 2022) at ``road_fractions``
            (shares of the pixels removed and imputed; slower: a sparse solve per imputed image).
        progress: show progress bars.

    Returns:
        :class:`Evaluation`; ``print(result.table())`` gives a Markdown table.

    Example:
        >>> import torch
        >>> from camlens.metrics import evaluate
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x = torch.randn(2, 1, 16, 16)
        >>> result = evaluate(net, x, ["cam", "gradcam"], targets=torch.tensor([[0, 0, 8, 8], [4, 4, 12, 12]]),
        ...                   target_layer="1", step=0.25, progress=False)
        >>> sorted(result.summary()), sorted(result.summary()["cam"])[:4]
        (['cam', 'gradcam'], ['average_drop', 'deletion', 'energy', 'increase'])
    """
    from ..engine.explain import resolve_classes
    from ..methods import get_method, list_methods

    inputs = check_inputs(inputs)
    names = list_methods() if methods is None else [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise InputError("methods is an empty list; name at least one method or pass None for all")
    names = [get_method(name).name for name in names]
    if explain_batch_size < 1:
        raise InputError(f"explain_batch_size must be at least 1, got {explain_batch_size}")
    class_index = resolve_classes(classes, logits_in_batches(model, inputs, batch_size))
    if target_layer is None:  # found once, so no method's time includes the search
        from ..core.layers import find_target_layer

        target_layer = find_target_layer(model, tuple(inputs.shape[1:]))
    settings = dict(step=step, deletion_baseline=deletion_baseline, insertion_baseline=insertion_baseline,
                    confidence_baseline=confidence_baseline, score=score, tolerance=tolerance, threshold=threshold,
                    road=road, road_fractions=road_fractions)
    evaluation = Evaluation(settings=dict(settings, images=inputs.shape[0], explain_options=explain_options or {}))
    bar = tqdm(names, desc="methods", unit="method", disable=not progress or len(names) < 2)
    for name in bar:
        bar.set_postfix_str(name)
        try:
            maps, used, seconds = _explain_timed(model, inputs, name, target_layer, class_index,
                                                 explain_batch_size, max_seconds_per_method, explain_options)
        except CamlensError as error:
            evaluation.scores[name] = MethodScores(method=name, error=str(error))
            continue
        sub_targets = None if targets is None else torch.as_tensor(targets)[:used]
        scores = evaluate_maps(model, inputs[:used], maps, class_index[:used], sub_targets, name=name,
                               batch_size=batch_size, progress=progress, **settings)
        scores.seconds_per_image = seconds
        evaluation.scores[name] = scores
    return evaluation


def plot_curves(evaluation: Evaluation | dict[str, MethodScores], title: str | None = None):
    """Mean deletion and insertion curves per method, side by side (a matplotlib Figure)."""
    import matplotlib.pyplot as plt

    scores = evaluation.scores if isinstance(evaluation, Evaluation) else evaluation
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    cmap = plt.get_cmap("tab20")
    for i, (name, s) in enumerate(scores.items()):
        for ax, curves in zip(axes, (s.deletion, s.insertion)):
            if curves is None:
                continue
            style = "--" if name.startswith("(") else "-"
            ax.plot(curves.fractions.cpu(), curves.scores.mean(0).cpu(), style, color=cmap(i % 20),
                    label=f"{name} ({curves.mean_auc:.3f})", lw=1.4)
    for ax, what, better in zip(axes, ("deletion", "insertion"), ("lower", "higher")):
        ax.set_title(f"{what} (AUC in legend, {better} is better)")
        ax.set_xlabel(f"share of pixels {'removed' if what == 'deletion' else 'inserted'}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=1 if len(scores) <= 8 else 2)
    axes[0].set_ylabel("class score")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
