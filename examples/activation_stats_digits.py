"""Activation statistics while training: a sane start against a bad one, on scikit-learn's digits.

Trains the classic PyTorch MNIST CNN (conv1 -> max_pool -> relu -> conv2 -> dropout ->
max_pool -> relu -> fc1 -> relu -> dropout -> fc2, written with F.relu and functional
pooling) on the 1,797 8x8 digits, upsampled to 28x28 so the network is unchanged
(its fc1 expects 20 * 4 * 4 = 320 features). It trains twice on the CPU:

* sane: inputs normalised to mean 0 / std 1, PyTorch's default initialisation;
* bad:  raw pixel values (0..16) and every weight multiplied by 10.

Both runs record ActivationStats on every layer with parameters and write, into
docs/images/ (or --out):

* activation_stats_{sane,bad}_conv2.png: the "colorful dimension" of conv2,
* activation_stats_{sane,bad}_overview.png: the same for every layer,
* activation_stats_{sane,bad}_fc1_stats.png: mean, std and % near zero of fc1,
* activation_stats_{sane,bad}.csv is not written unless --csv is given.

It also times a training step with and without the recorder. Runs in about 20 s:

    python examples/activation_stats_digits.py [--epochs 4] [--out docs/images] [--csv]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from camlens import ActivationStats
from camlens.io.zoo import MnistNet


def digits(normalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(1797, 1, 28, 28) float images and (1797,) labels."""
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8), 0..16
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    if normalise:
        images = (images - images.mean()) / images.std()
    return images, torch.tensor(data.target)


def make_model(bad: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = MnistNet(log_softmax=True)  # the seed 004 network, log-probabilities out
    if bad:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("weight"):
                    p.mul_(10)
    return model


def train(model: nn.Module, images, labels, epochs: int, batch_size: int = 64, stats: ActivationStats | None = None) -> list[float]:
    """Plain SGD loop; returns the mean loss of each epoch."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=g)
        total = 0.0
        for start in range(0, len(images) - batch_size + 1, batch_size):  # full batches only
            index = order[start : start + batch_size]
            loss = F.nll_loss(model(images[index]), labels[index])  # one training forward = one recorded batch
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(index)
        losses.append(total / len(images))
    return losses


def accuracy(model: nn.Module, images, labels) -> float:
    model.eval()
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def time_steps(images, labels, rounds: int = 5, steps: int = 10) -> tuple[float, float]:
    """Seconds per training step (batch 64) without and with the recorder.

    Rounds alternate between the two and the fastest round of each counts, which
    keeps the comparison fair on a busy machine.
    """
    x, y = images[:64], labels[:64]
    best = {False: float("inf"), True: float("inf")}
    for _ in range(rounds):
        for record in (False, True):
            model = make_model(bad=False)
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            stats = ActivationStats(model) if record else None
            try:
                for k in range(steps + 2):
                    if k == 2:
                        start = time.perf_counter()
                    loss = F.nll_loss(model(x), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                best[record] = min(best[record], (time.perf_counter() - start) / steps)
            finally:
                if stats is not None:
                    stats.remove()
    return best[False], best[True]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    parser.add_argument("--csv", action="store_true", help="also write the statistics as CSV")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small convolutions: more threads only add overhead

    for run, bad in (("sane", False), ("bad", True)):
        images, labels = digits(normalise=not bad)
        model = make_model(bad)
        # conv1, conv2, fc1, fc2 (the modules with parameters); each training forward is one batch.
        # Their outputs come before F.relu, so the histogram range takes in negative values too.
        with ActivationStats(model, range=(-10, 10)) as stats:
            losses = train(model, images, labels, args.epochs)
        s = stats.layer_stats("conv2")
        print(
            f"{run:>4}: loss per epoch {', '.join(f'{l:.3g}' for l in losses)}; "
            f"train accuracy {accuracy(model, images, labels):.1%}; {stats.recorded_batches} batches recorded, "
            f"{stats.nbytes / 1024:.0f} KiB of statistics; conv2 near zero "
            f"{s.near_zero[:5].mean():.0%} (first 5 batches) -> {s.near_zero[-5:].mean():.0%} (last 5)"
        )
        stats.color_dim("conv2", path=args.out / f"activation_stats_{run}_conv2.png", figsize=(6, 3.2))
        stats.plot_overview(path=args.out / f"activation_stats_{run}_overview.png", cols=4, cell=(3.2, 2.2),
                            title=f"{run} start: colorful dimension of each layer")
        stats.plot_layer_stats("fc1", path=args.out / f"activation_stats_{run}_fc1_stats.png")
        if args.csv:
            stats.to_csv(args.out / f"activation_stats_{run}.csv")

    images, labels = digits(normalise=True)
    plain, recorded = time_steps(images, labels)
    print(f"training step (batch 64): {plain * 1e3:.2f} ms plain, {recorded * 1e3:.2f} ms recording "
          f"4 layers with histograms (+{(recorded - plain) * 1e3:.2f} ms)")
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
