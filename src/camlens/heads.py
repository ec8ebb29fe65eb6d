"""Is the head "global average pooling + one linear layer"? Then CAM is exact.

CAM (Zhou et al. 2016) needs ``score_c = sum_k w_ck * mean_ij A_kij + b_c``; then the
map ``sum_k w_ck A_k`` is exactly the spatial decomposition of the score. Rather
than guess from module types, camlens checks the identity numerically on the
forward it ran: the linear layer whose output is the model's output must receive
the spatial mean of the target layer's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["HeadVerdict", "check_gap_linear"]


@dataclass
class HeadVerdict:
    """``exact``: CAM is exact; ``classifier``: the final linear layer's name; ``reason``: why."""

    exact: bool
    classifier: str | None
    reason: str
    weight: torch.Tensor | None = None  # (classes, C)
    bias: torch.Tensor | None = None  # (classes,)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    scale = b.detach().abs().max().clamp_min(1e-6)
    return bool(((a.detach() - b.detach()).abs().max() / scale) < 1e-4)


def _head_ops(after: list) -> str:
    leaves = [r for r in after if not any(o is not r and r.contains(o) for o in after)]
    shown = ", ".join(f"{r.name} ({r.type})" for r in leaves[:8])
    return shown + (", ..." if len(leaves) > 8 else "")


def check_gap_linear(
    target: str,
    activation: torch.Tensor,
    output: torch.Tensor,
    linears: list[tuple[str, nn.Module, torch.Tensor | None, torch.Tensor | None]],
    after: list | None = None,
) -> HeadVerdict:
    """Check ``output == Linear(mean_hw(activation))`` on the values of one forward.

    Args:
        target: name of the target layer (for the messages).
        activation: (N, C, h, w) output of the target layer.
        output: (N, classes) model output.
        linears: (name, module, input, output) of each ``nn.Linear`` call, in order.
        after: traced calls after the target (only to name the head's ops in messages).
    """
    ops = f" Between them: {_head_ops(after)}." if after else ""
    alternatives = (
        "Use method='gradcam' (any head), or give the model a global-average-pool + linear head "
        "(camlens.replace_head) for exact CAM."
    )
    final = next((entry for entry in reversed(linears) if entry[3] is not None and _close(entry[3], output)), None)
    if final is None:
        last = f" (the last linear layer is {linears[-1][0]!r})" if linears else " (it has no nn.Linear)"
        return HeadVerdict(
            False, None,
            f"not global-average-pool + linear: no linear layer produces the model's output{last}, "
            f"so there are no class weights to weight the channels of {target!r} with.{ops} {alternatives}",
        )
    name, module, features, _ = final
    channels = activation.shape[1]
    if module.in_features != channels:
        return HeadVerdict(
            False, name,
            f"not global-average-pool + linear: the final linear layer {name!r} takes "
            f"{module.in_features} features but {target!r} has {channels} channels, so its weights "
            f"cannot weight that layer's channels.{ops} CAM is not defined here. {alternatives}",
        )
    pooled = activation.detach().float().mean(dim=(2, 3))
    if features is None or not _close(features.reshape(pooled.shape).float(), pooled):
        return HeadVerdict(
            False, name,
            f"not global-average-pool + linear: {name!r} takes {channels} features, but they are "
            f"not the spatial means of {target!r} (the head pools another way, e.g. max or "
            f"concat pooling, or transforms the pooled features).{ops} {alternatives}",
        )
    return HeadVerdict(
        True, name,
        f"global-average-pool + linear {name!r} ({channels} -> {module.out_features}): "
        f"CAM is exact (method='cam'); Grad-CAM is proportional to it at {target!r}.",
        module.weight, module.bias,
    )
