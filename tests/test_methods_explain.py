"""The method family through camlens.explain: one pass, Score-CAM/Ablation-CAM against naive
re-implementations of the published algorithms, fusion and test-time augmentation."""

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camlens
from camlens.methods import GRADIENT_METHODS
from camlens.core.postprocess import finalize_maps, normalize_maps


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)
        with torch.no_grad():
            self.conv2.weight[[0, 3]] = 0  # channels 0 and 3 are dead (all zero after the ReLU)
            self.conv2.bias[[0, 3]] = -1
            self.conv2.weight[1] = 2 * self.conv2.weight[2]  # channel 1 = 2 x channel 2: same mask
            self.conv2.bias[1] = 2 * self.conv2.bias[2]

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu2(self.conv2(x))
        return self.fc(self.pool(x).flatten(1))

    def relu2(self, x):
        return self.act2(x)


def tiny():
    model = Tiny()
    model.act2 = nn.ReLU()
    return model


@pytest.fixture
def setup():
    torch.manual_seed(1)
    return tiny(), torch.randn(2, 3, 12, 12)


def activations(model, x, name="act2"):
    out = []
    handle = camlens.get_module(model, name).register_forward_hook(lambda m, i, o: out.append(o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return out[0]


def test_six_gradient_methods_one_forward_one_backward(setup):
    model, x = setup
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    real_grad = torch.autograd.grad
    with mock.patch("torch.autograd.grad", side_effect=real_grad) as grad:
        results = camlens.explain(model, x, list(GRADIENT_METHODS), "act2", classes="top3")
    assert len(calls) == 1 and grad.call_count == 1
    for name, e in results.items():
        alone = camlens.explain(model, x, name, "act2", classes="top3")
        torch.testing.assert_close(e.raw, alone.raw)
        assert e.maps.shape == (2, 3, 12, 12) and torch.isfinite(e.maps).all()


def test_model_left_as_found(setup):
    model, x = setup
    model.train()
    camlens.explain(model, x, ["gradcampp", "scorecam", "ablationcam", "eigencam"], "act2", classes=[0, 1])
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def naive_scorecam(model, x, acts, cls):
    """Wang et al.'s algorithm, one masked forward per channel (constant masks -> 0)."""
    n, c = acts.shape[:2]
    up = F.interpolate(acts, size=x.shape[-2:], mode="bilinear", align_corners=False)
    raw = []
    for i in range(n):
        scores = []
        for k in range(c):
            m = up[i, k]
            span = m.max() - m.min()
            mask = (m - m.min()) / span if span > 0 else torch.zeros_like(m)
            with torch.no_grad():
                scores.append(model(x[i : i + 1] * mask)[0, cls[i]])
        w = torch.softmax(torch.stack(scores), 0)
        raw.append((w[:, None, None] * acts[i]).sum(0))
    return torch.stack(raw)[:, None]


def test_scorecam_exact_matches_reference_and_skips_duplicates(setup):
    model, x = setup
    e = camlens.explain(model, x, "scorecam", "act2", batch_size=3)
    acts = activations(model, x)
    torch.testing.assert_close(e.raw, naive_scorecam(model, x, acts, e.classes[:, 0]), rtol=1e-4, atol=1e-5)
    assert torch.isfinite(e.raw).all() and torch.isfinite(e.maps).all()


def test_scorecam_scores_each_distinct_mask_once(setup):
    model, x = setup
    acts = activations(model, x)
    from camlens.engine._scoring import Scorer

    counts = []
    original = Scorer.score_inputs

    def counting(self, index, make, count):
        counts.append(count)
        return original(self, index, make, count)

    with mock.patch.object(Scorer, "score_inputs", counting):
        camlens.explain(model, x, "scorecam", "act2")
    # the dead channels 0 and 3 share the zero mask, channel 1 has the mask of channel 2
    assert torch.equal(acts[:, 1], 2 * acts[:, 2]) and not acts[:, [0, 3]].any()
    assert counts == [4, 4]


def test_scorecam_fast_mode(setup):
    model, x = setup
    exact = camlens.explain(model, x, "scorecam", "act2")
    torch.testing.assert_close(camlens.explain(model, x, "scorecam", "act2", top_k=6).raw, exact.raw)
    fast = camlens.explain(model, x, "scorecam", "act2", top_k=2)
    assert torch.isfinite(fast.maps).all() and fast.maps.shape == exact.maps.shape
    with pytest.raises(camlens.InputError, match="top_k"):
        camlens.explain(model, x, "gradcam", "act2", top_k=2)


def test_sscam_without_noise_and_iscam_reference(setup):
    model, x = setup
    exact = camlens.explain(model, x, "scorecam", "act2")
    ss = camlens.explain(model, x, "sscam", "act2", noise_std=0.0, samples=2)
    torch.testing.assert_close(ss.raw, exact.raw, rtol=1e-4, atol=1e-6)
    # IS-CAM: mean score over accumulated masks c_i H_k, c_i = sum_{j<=i} j/N
    e = camlens.explain(model, x, "iscam", "act2", samples=3)
    acts = activations(model, x)
    up = F.interpolate(acts, size=x.shape[-2:], mode="bilinear", align_corners=False)
    coeffs = [1 / 3, 1 / 3 + 2 / 3, 1 / 3 + 2 / 3 + 1]
    for i in range(2):
        scores = []
        for k in range(6):
            m = up[i, k]
            span = m.max() - m.min()
            mask = (m - m.min()) / span if span > 0 else torch.zeros_like(m)
            with torch.no_grad():
                s = sum(model(x[i : i + 1] * c * mask)[0, e.classes[i, 0]] for c in coeffs) / 3
            scores.append(s)
        w = torch.softmax(torch.stack(scores), 0)
        torch.testing.assert_close(e.raw[i, 0], (w[:, None, None] * acts[i]).sum(0), rtol=1e-4, atol=1e-6)


def naive_ablationcam(model, x, name, classes):
    """Ablation-CAM as published: one full forward per channel with that channel zeroed."""
    module, raws = camlens.get_module(model, name), []
    acts = activations(model, x, name)
    with torch.no_grad():
        y = model(x)[:, classes]
    for i in range(x.shape[0]):
        ablated = []
        for k in range(acts.shape[1]):
            def zero(m, a, o, k=k):
                o = o.clone()
                o[:, k] = 0
                return o

            handle = module.register_forward_hook(zero)
            with torch.no_grad():
                ablated.append(model(x[i : i + 1])[0, classes])
            handle.remove()
        w = (y[i] - torch.stack(ablated)) / y[i]  # (C, K)
        raws.append(torch.einsum("ck,chw->khw", w, acts[i]))
    return torch.stack(raws)


def test_ablationcam_matches_reference(setup):
    model, x = setup
    e = camlens.explain(model, x, "ablationcam", "act2", classes=[2, 4])
    torch.testing.assert_close(e.raw, naive_ablationcam(model, x, "act2", [2, 4]), rtol=1e-4, atol=1e-5)


class SkipAndView(nn.Module):
    """A skip connection around the target and ``view(bs, -1)`` on the input's batch size (as
    EfficientNet-Lite's forward does), which defeats broadcasting one image through hooks."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.post = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        bs = x.size(0)
        s = torch.relu(self.stem(x))
        y = self.post(self.block(s)) + s  # `s` comes from before the target `block`
        return self.fc(F.adaptive_avg_pool2d(y, 1).view(bs, -1))


class Branchy(SkipAndView):
    """Data-dependent control flow: torch.fx cannot trace it, so hooks do the ablations."""

    def forward(self, x):
        s = torch.relu(self.stem(x))
        if s.sum() > 0:
            s = s * 1.0
        y = self.post(self.block(s)) + s
        return self.fc(y.mean((2, 3)))


@pytest.mark.parametrize("cls, split", [(SkipAndView, True), (Branchy, False)])
def test_ablationcam_runs_layers_before_the_target_once(cls, split):
    model = cls().eval()
    x = torch.randn(2, 3, 10, 10)
    stem_images = []
    model.stem.register_forward_hook(lambda m, a, o: stem_images.append(o.shape[0]))
    with mock.patch("camlens.engine._scoring.Scorer.score_activations", autospec=True,
                    side_effect=camlens.engine._scoring.Scorer.score_activations) as scoring:
        e = camlens.explain(model, x, "ablationcam", "block", classes=[1, 3], batch_size=2)
    scorer, stem_runs = scoring.call_args.args[0], sum(stem_images)
    assert scorer.split is split
    torch.testing.assert_close(e.raw, naive_ablationcam(model, x, "block", [1, 3]), rtol=1e-4, atol=1e-5)
    # 8 channels in chunks of 2 per image; split: the explained forward (2 images), then per image
    # the cached forward (1) and the check against hooks (<= 3), never the stem once per chunk
    assert (stem_runs <= 2 + 2 * 4) if split else (stem_runs >= 2 + 2 * 4)


def test_smoothgradcampp_without_noise_is_gradcampp(setup):
    model, x = setup
    plain = camlens.explain(model, x, "gradcampp", "act2", classes="top2")
    smooth = camlens.explain(model, x, "smoothgradcampp", "act2", classes="top2", noise_std=0.0, samples=3)
    torch.testing.assert_close(smooth.raw, plain.raw, rtol=1e-4, atol=1e-6)
    # at conv1 the gradient depends on the input (through the ReLU), so the noise matters
    plain = camlens.explain(model, x, "gradcampp", "conv1", classes="top2")
    noisy = camlens.explain(model, x, "smoothgradcampp", "conv1", classes="top2", samples=3)
    again = camlens.explain(model, x, "smoothgradcampp", "conv1", classes="top2", samples=3)
    torch.testing.assert_close(noisy.raw, again.raw)  # seeded
    assert not torch.allclose(noisy.raw, plain.raw)


def test_eigencam_is_class_agnostic(setup):
    model, x = setup
    e = camlens.explain(model, x, "eigencam", "act2", classes="top3")
    assert e.raw.shape == (2, 3, 6, 6) and torch.equal(e.raw[:, 0], e.raw[:, 2])


@pytest.mark.parametrize("fuse", ["mean", "max"])
def test_layer_fusion(setup, fuse):
    model, x = setup
    fused = camlens.explain(model, x, ["gradcam", "layercam"], ["conv1", "act2"], classes=[1], fuse=fuse)
    for name, e in fused.items():
        parts = [camlens.explain(model, x, name, layer, classes=[1]).maps for layer in ("conv1", "act2")]
        stacked = torch.stack(parts)
        expected = normalize_maps(stacked.mean(0) if fuse == "mean" else stacked.amax(0))
        torch.testing.assert_close(e.maps, expected)
        assert e.target_layer == "conv1+act2" and e.raw.shape[-2:] == (12, 12)


def test_tta_maps_back_and_averages(setup):
    model, x = setup
    plain = camlens.explain(model, x, "gradcam", "act2")
    same = camlens.explain(model, x, "gradcam", "act2", augment=[(False, 1.0)])
    torch.testing.assert_close(same.maps, plain.maps)
    flip = camlens.explain(model, x, "gradcam", "act2", augment="flip")
    mirrored = camlens.explain(model, x.flip(-1), "gradcam", "act2", classes=plain.classes)
    expected = normalize_maps((plain.maps + mirrored.maps.flip(-1)) / 2)
    torch.testing.assert_close(flip.maps, expected)
    tta = camlens.explain(model, x, "gradcam", "act2", augment="tta")
    assert tta.maps.shape == plain.maps.shape and torch.equal(tta.classes, plain.classes)
    with pytest.raises(camlens.InputError, match="augment"):
        camlens.explain(model, x, "gradcam", "act2", augment="rotate")


def test_bad_fuse_and_unknown_option(setup):
    model, x = setup
    with pytest.raises(camlens.InputError, match="fuse"):
        camlens.explain(model, x, "gradcam", ["conv1", "act2"], fuse="median")
    with pytest.raises(camlens.InputError, match="samples"):
        camlens.explain(model, x, ["gradcam", "scorecam"], "act2", samples=3)


def test_scorecam_on_torchvision_resnet_and_dead_layer_no_nan():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=4)
    with torch.no_grad():
        model.layer4[1].bn2.weight.zero_()
        model.layer4[1].bn2.bias.fill_(-1.0)
        model.layer4[1].conv2.weight.zero_()
    x = torch.randn(1, 3, 32, 32)  # layer4: 1x1, every channel constant
    e = camlens.explain(model, x, ["scorecam", "ablationcam", "eigencam", "gradcampp", "xgradcam"], "layer4",
                        allow_1x1=True)  # a 1x1 grid is refused unless asked for
    for r in e.values():
        assert torch.isfinite(r.raw).all() and torch.isfinite(r.maps).all()


def test_ablationcam_negative_call_index_ablates_only_that_call():
    class Shared(nn.Module):
        """One activation module used twice, like EfficientNet-Lite's `_swish`."""

        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
            self.act = nn.ReLU()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            x = self.act(self.conv2(self.act(self.conv1(x))))
            return self.fc(x.mean((2, 3)))

    torch.manual_seed(0)
    model = Shared().eval()
    x = torch.randn(2, 3, 8, 8)
    last = camlens.explain(model, x, "ablationcam", target_layer="act:-1", classes=[0, 2])
    second = camlens.explain(model, x, "ablationcam", target_layer="act:1", classes=[0, 2])
    torch.testing.assert_close(last.raw, second.raw)
    assert last.raw.abs().max() > 0


class BNNet(nn.Module):
    """Conv + BatchNorm body: Score-CAM's masked forwards run a BatchNorm-folded copy."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU())
        self.fc = nn.Linear(64, 5)
        for bn in (self.body[1], self.body[4]):  # non-trivial running statistics, so folding matters
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


def test_scorecam_runs_batchnorm_folded_copy_and_matches_reference():
    from camlens.engine import _scoring

    model, x = BNNet().eval(), torch.randn(1, 3, 12, 12)
    kinds = []
    real = _scoring._fast_copy

    def spy(*args):
        fast, kind = real(*args)
        kinds.append(kind)
        return fast, kind

    with mock.patch.object(_scoring, "_fast_copy", spy), mock.patch.object(_scoring, "_CHANNELS_LAST_MIN", 8):
        e = camlens.explain(model, x, "scorecam", "body.5")
    assert kinds == ["folded"]
    with torch.no_grad():
        acts = model.body(x)
    torch.testing.assert_close(e.raw, naive_scorecam(model, x, acts, e.classes[:, 0]), rtol=1e-4, atol=1e-5)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2  # the user's model is untouched


def test_fast_copy_falls_back_when_untraceable_or_different():
    from camlens.engine import _scoring
    from camlens.engine._outputs import logits_of as _logits

    select = lambda m, x, i: _logits(m(x))  # noqa: E731

    class Branchy(BNNet):
        def forward(self, x):
            y = self.body(x)
            if y.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                y = y * 2
            return self.fc(y.mean((2, 3)))

    x = torch.randn(1, 3, 12, 12)
    fast, kind = _scoring._fast_copy(Branchy().eval(), x, select)
    assert kind == "channels_last" and not any(isinstance(m, torch.fx.GraphModule) for m in fast.modules())
    model = BNNet().eval()
    fast, kind = _scoring._fast_copy(model, x, select)
    assert kind == "folded" and not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    torch.testing.assert_close(select(fast, x, 0), select(model, x, 0), rtol=1e-4, atol=1e-5)

    class Wrong(nn.Module):  # a folded copy that does not compute the same function is not used
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) + 1.0

    with mock.patch("camlens.core.fold.fold_for_inference", side_effect=lambda m: (Wrong(m), 0)):
        fast, kind = _scoring._fast_copy(model, x, select)
    assert kind == "channels_last"
