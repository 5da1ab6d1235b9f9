# ruff: noqa: I001  (p2phd must be imported before MindSpore: it sets the oneDNN/GLOG env)
"""Issue 11's memory fixes keep the training function: the convs whose backward is rewritten
(G's 7x7 convs, the small stride-1 convs of G's blocks and D, VGG's frozen convs) give nn.Conv2d's outputs and gradients, and whole training
steps (also with D's fake and real passes of the D step batched into one) give the losses and
updates of a reference step built from plain nn.Conv2d layers and two D passes."""

import dataclasses

import numpy as np
import pytest

import p2phd  # noqa: F401
import mindspore as ms
from mindspore import Tensor, nn, ops

from p2phd.nets import layers
from p2phd.nets.vgg import VGG19Features
from train_util import assert_every_parameter_trains, trainable


@pytest.fixture(autouse=True)
def _graph_cpu():
    ms.set_context(mode=ms.GRAPH_MODE)


def _pair(cls, cin, cout, k, **kw):
    ref = nn.Conv2d(cin, cout, k, has_bias=True, **kw)
    new = cls(cin, cout, k, has_bias=True, **kw)
    rng = np.random.default_rng(1)
    for p in (new.weight, new.bias):
        p.set_data(Tensor(rng.normal(0, 0.1, p.shape).astype(np.float32)))
    ref.weight.set_data(new.weight.data.copy())
    ref.bias.set_data(new.bias.data.copy())
    return ref, new


def _grads(net, x, target, weights):
    def loss(x):
        return ops.mean(ops.square(net(x) - target))

    out = net(x).asnumpy()
    if not weights:  # frozen: the input gradient only
        return out, ms.value_and_grad(loss, 0)(x)[1].asnumpy(), []
    _, (gx, gw) = ms.value_and_grad(loss, 0, weights)(x)
    return out, gx.asnumpy(), [g.asnumpy() for g in gw]


def _assert_same_gradients(ref, new, x, t):
    """ref's and new's output, dx, dW and db agree to float rounding; returns ref's (dx, [dW, db]).

    The same sums in another order (dx as a forward conv, dW by another oneDNN primitive):
    float32 sums of up to k*k*C = 294 products for y and dx, and of N*H*W = 560 for dW, each
    ~sqrt(n) * 6e-8 relative to the sum of their magnitudes (O(1) here); components that
    cancel to near zero have no relative bound, hence rtol plus a small atol."""
    y0, gx0, gw0 = _grads(ref, x, t, ref.trainable_params())
    y1, gx1, gw1 = _grads(new, x, t, new.trainable_params())
    np.testing.assert_allclose(y1, y0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(gx1, gx0, rtol=1e-4, atol=1e-7)
    for a, b in zip(gw1, gw0, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    return gx0, gw0


def test_low_memory_conv_matches_conv2d() -> None:
    """7x7 valid conv, batch 2: output, dx, dW and db equal nn.Conv2d's to float rounding."""
    ref, new = _pair(layers.LowMemoryConv2d, 5, 6, 7, pad_mode="valid")
    rng = np.random.default_rng(2)
    x = Tensor(rng.normal(size=(2, 5, 20, 26)).astype(np.float32))
    t = Tensor(rng.normal(size=(2, 6, 14, 20)).astype(np.float32))
    _, gw0 = _assert_same_gradients(ref, new, x, t)
    assert np.abs(gw0[0]).max() > 1e-3  # a real gradient, not two zeros


@pytest.mark.parametrize(
    "k, pad, mode", [(3, 0, "valid"), (4, 2, "pad")], ids=["resblock-3x3-valid", "D-4x4-pad2"]
)
def test_stride1_conv_matches_conv2d(k: int, pad: int, mode: str) -> None:
    """Stride-1 convs with dx as a forward conv: output, dx, dW and db equal nn.Conv2d's."""
    ref, new = _pair(layers.Stride1Conv2d, 5, 6, k, pad_mode=mode, padding=pad)
    rng = np.random.default_rng(4)
    x = Tensor(rng.normal(size=(2, 5, 13, 17)).astype(np.float32))
    out = 13 + 2 * pad - k + 1, 17 + 2 * pad - k + 1
    t = Tensor(rng.normal(size=(2, 6, *out)).astype(np.float32))
    gx0, gw0 = _assert_same_gradients(ref, new, x, t)
    assert np.abs(gx0).max() > 1e-3 and np.abs(gw0[0]).max() > 1e-3


def test_frozen_conv_input_gradient_matches_conv2d() -> None:
    """VGG's frozen 3x3 pad-1 conv: output and dx equal nn.Conv2d's."""
    ref, new = _pair(layers.FrozenConv2d, 4, 8, 3, pad_mode="pad", padding=1)
    layers.freeze(ref)
    layers.freeze(new)
    rng = np.random.default_rng(3)
    x = Tensor(rng.normal(size=(2, 4, 12, 16)).astype(np.float32))
    t = Tensor(rng.normal(size=(2, 8, 12, 16)).astype(np.float32))
    y0, gx0, _ = _grads(ref, x, t, [])
    y1, gx1, _ = _grads(new, x, t, [])
    np.testing.assert_allclose(y1, y0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(gx1, gx0, rtol=1e-4, atol=1e-8)
    assert np.abs(gx0).max() > 1e-4


def _run_steps(monkeypatch, plain: bool, n: int = 2):
    from p2phd.training.train import TrainOptions
    from p2phd.training.trainer import Trainer

    if plain:  # the reference: every conv a plain nn.Conv2d, as before issue 11
        monkeypatch.setattr(layers, "LowMemoryConv2d", nn.Conv2d)
        monkeypatch.setattr(layers, "FrozenConv2d", nn.Conv2d)
        monkeypatch.setattr(layers, "Stride1Conv2d", nn.Conv2d)
        import p2phd.nets.vgg as vgg_mod

        monkeypatch.setattr(vgg_mod, "FrozenConv2d", nn.Conv2d)
    o = dataclasses.replace(
        TrainOptions(),
        label_nc=5,
        ngf=4,
        ndf=4,
        n_downsample_global=2,
        n_blocks_global=1,
        instance_feat=True,  # E's 7x7 convs too; and the global+E graph-mode case (below)
        name="eq",
    )
    # The reference runs in PyNative: the same kernels, without compiling a second G, E, D and
    # VGG graph (the rewritten step below is the graph under test)
    ms.set_context(mode=ms.PYNATIVE_MODE if plain else ms.GRAPH_MODE)
    ms.set_seed(0)
    vgg = VGG19Features()
    trainer = Trainer(o, max_instances=3, vgg=vgg)
    trainer.d_loss.batched = not plain  # the reference runs D twice in the D step, as before
    trainer.set_phase(fixed_global=False)
    convs = [type(c).__name__ for net in (trainer.G, trainer.D) for _, c in net.cells_and_names()]
    rng = np.random.default_rng(0)
    inst = rng.integers(0, 3, (1, 32, 64)).astype(np.int32)
    batch = {
        "label": rng.integers(0, 5, (1, 32, 64)).astype(np.int32),
        "inst": inst,
        "pool": inst,
        "photo": rng.uniform(-1, 1, (1, 3, 32, 64)).astype(np.float32),
        "feat": None,
    }
    before = trainable(trainer.cells())
    losses = []
    for step in range(1, n + 1):
        r = trainer.step(batch, step)
        losses.append([r.G_GAN, r.G_GAN_Feat, r.G_VGG, r.D_real, r.D_fake])
    weights = trainer.G.model[1].weight.asnumpy().copy()
    if not plain:  # the compiled G (+E, VGG loss) and D steps: every gradient finite, non-zero
        assert set(before) == {"netG", "netD", "netE"}
        assert_every_parameter_trains(before, trainer.cells())
    monkeypatch.undo()
    return np.array(losses), weights, convs


@pytest.mark.slow  # a Trainer with VGG compiled, and its reference in PyNative
def test_training_step_equals_the_plain_conv_reference(monkeypatch) -> None:
    """Same seed, same batch: two steps of the Trainer with and without the rewritten backward
    give the same five losses and the same updated first-conv weights (to float rounding). The
    instance-feature mode with the VGG loss: the rewritten step also moves every parameter of
    G, E and D (the graph-mode check tests/test_trainer.py makes of the other modes)."""
    ref_losses, ref_w, ref_convs = _run_steps(monkeypatch, plain=True)
    losses, w, convs = _run_steps(monkeypatch, plain=False)
    # Losses: float32 means of the same values computed by convs summing in other orders, ~1e-6
    # relative. Weights after two Adam steps move by ~lr = 2e-4 per step whatever the gradient's
    # size, so float32 gradient differences (~1e-6 relative) change them by ~1e-10; only a
    # gradient component within rounding of zero could flip its step's sign (2 * lr), which the
    # last line's looser bound would still tell from a wrong backward (every weight off by lr).
    for cls in ("LowMemoryConv2d", "Stride1Conv2d"):
        assert cls in convs and cls not in ref_convs
    assert np.all(np.isfinite(losses)) and losses[:, 2].min() > 0  # VGG term present
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w, ref_w, rtol=0, atol=1e-6)
    assert np.abs(w - ref_w).max() < 1e-3 * np.abs(w).max()
