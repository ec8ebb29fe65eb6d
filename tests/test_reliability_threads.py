"""explain from many threads on one model equals sequential calls and leaves every flag as found (issue 18, group 2)."""

from __future__ import annotations

import gc
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

import camlens

from conftest import hook_count


class BnNet(nn.Module):
    """BatchNorm and Dropout: a forward in train mode changes the output (and BN's running stats)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 12, 3, padding=1, stride=2), nn.BatchNorm2d(12), nn.ReLU(), nn.Dropout(0.5),
        )
        self.fc = nn.Linear(12, 6)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


THREADS, CALLS = 8, 25
METHODS = ["gradcam", "layercam", "cam"]


def _job(model, inputs, index):
    method = METHODS[index % len(METHODS)]
    layer = None if index % 2 else "features.5"  # half the calls find the target themselves
    classes = None if index % 4 < 2 else [index % 6, (index + 1) % 6]
    e = camlens.explain(model, inputs[index % len(inputs)], method=method, target_layer=layer, classes=classes)
    return e.maps, e.classes, e.target_layer


def test_eight_threads_times_25_calls_equal_sequential_calls():
    torch.manual_seed(0)
    model = BnNet()
    model.train()  # the flags to leave as found: train mode on the model ...
    model.features[1].eval()  # ... and one submodule in eval mode
    flags = [m.training for m in model.modules()]
    running = model.features[1].running_mean.clone()
    inputs = [torch.randn(2, 3, 24, 24) for _ in range(7)]
    jobs = range(THREADS * CALLS)
    sequential = [_job(model, inputs, i) for i in jobs]
    barrier = threading.Barrier(THREADS)

    def worker(start):
        barrier.wait()  # all threads start together
        return [(i, _job(model, inputs, i)) for i in range(start, THREADS * CALLS, THREADS)]

    with ThreadPoolExecutor(THREADS) as pool:
        results = dict(pair for chunk in pool.map(worker, range(THREADS)) for pair in chunk)
    assert len(results) == THREADS * CALLS
    for i in jobs:
        maps, classes, layer = results[i]
        assert layer == sequential[i][2]
        assert torch.equal(classes, sequential[i][1])
        torch.testing.assert_close(maps, sequential[i][0], atol=1e-6, rtol=0)
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(model.features[1].running_mean, running)  # never ran in train mode
    assert hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())


def test_per_model_state_dies_with_the_model():
    from camlens.core.locks import MODEL_STATES, model_state

    model = BnNet()
    camlens.explain(model, torch.randn(1, 3, 16, 16))
    assert model_state(model).memo["target_layer"]  # the found target is remembered for this model
    before = len(MODEL_STATES)
    del model
    gc.collect()
    assert len(MODEL_STATES) == before - 1


def test_target_memo_is_per_model_and_follows_structure():
    first, second = BnNet().eval(), BnNet().eval()
    x = torch.randn(1, 3, 16, 16)
    assert camlens.explain(first, x).target_layer == camlens.explain(second, x).target_layer
    second.features = nn.Sequential(*list(second.features)[:3])  # no stride-2 conv any more: a 16x16 grid
    second.fc = nn.Linear(8, 6)
    assert camlens.explain(second, x).raw.shape[-2:] == (16, 16)  # re-found, not the memo of the old structure
    assert camlens.explain(first, x).raw.shape[-2:] == (8, 8)
