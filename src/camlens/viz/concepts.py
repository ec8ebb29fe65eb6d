"""Deep Feature Factorization's picture: each pixel coloured by its strongest concept."""

from __future__ import annotations

import torch

__all__ = ["plot_concepts"]


def _as_rgb(image) -> torch.Tensor:
    """(H, W, 3) float in [0, 1] from a PIL image, an (H, W, 3) array or a (3, H, W) tensor."""
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        t = t.permute(1, 2, 0) if t.dim() == 3 and t.shape[0] in (1, 3) else t
    else:
        import numpy as np

        t = torch.from_numpy(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image).copy()).float()
    if t.max() > 1.5:
        t = t / 255.0
    return t.expand(*t.shape[:2], 3) if t.shape[-1] == 1 else t


def plot_concepts(image, maps: torch.Tensor, labels: list[str], alpha: float = 0.6):
    """The image with each pixel tinted by the concept of largest map value, opacity by that value.

    Args:
        image: the picture (PIL, (H, W, 3) array or (3, H, W) tensor), any size.
        maps: (k, H', W') concept maps in [0, 1].
        labels: one legend line per concept.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rgb = _as_rgb(image)
    k = maps.shape[0]
    maps = torch.nn.functional.interpolate(maps[None].float().cpu(), size=tuple(rgb.shape[:2]), mode="bilinear",
                                           align_corners=False)[0]
    strength, which = maps.max(dim=0)
    palette = torch.tensor([plt.get_cmap("tab10")(i % 10)[:3] for i in range(k)])
    tint = palette[which]
    mix = (alpha * strength).unsqueeze(-1)
    picture = (1 - mix) * rgb + mix * tint
    figure, axes = plt.subplots(1, 2, figsize=(8, 4))
    axes[0].imshow(rgb.numpy())
    axes[1].imshow(picture.clamp(0, 1).numpy())
    for ax in axes:
        ax.axis("off")
    axes[1].legend(handles=[Patch(color=palette[i].tolist(), label=labels[i]) for i in range(k)],
                   loc="lower center", bbox_to_anchor=(0.5, -0.25), fontsize=7, ncol=1)
    axes[1].set_title(f"{k} concepts (Deep Feature Factorization)", fontsize=9)
    figure.tight_layout()
    return figure
