"""Losses vs NumPy: LSGAN, BCE (--no_lsgan), D loss, feature matching weights, VGG loss."""
# ruff: noqa: I001  (p2phd must be imported before MindSpore: it sets the oneDNN/GLOG env)

import numpy as np
import pytest

import p2phd  # noqa: F401  (env fixes before MindSpore)
import mindspore as ms
from mindspore import Tensor

from p2phd.nets import losses
from p2phd.nets.vgg import VGG19Features


@pytest.fixture(autouse=True)
def graph_mode():
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")


def _preds(rng, num_D=2, n_layers=3, prob=False):
    """A D-shaped nest: num_D scales of n_layers+2 maps; numpy and Tensor versions."""
    arrays = []
    for s in range(num_D):
        scale = [
            rng.standard_normal((1, 4, 6 - s, 5)).astype(np.float32) for _ in range(n_layers + 1)
        ]
        last = rng.standard_normal((1, 1, 4 - s, 3)).astype(np.float32)
        scale.append(1 / (1 + np.exp(-last)) if prob else last)
        arrays.append(scale)
    tensors = tuple(tuple(Tensor(a.astype(np.float32)) for a in scale) for scale in arrays)
    return arrays, tensors


def test_lsgan_sums_mse_of_patch_maps_over_scales():
    rng = np.random.default_rng(0)
    arrays, tensors = _preds(rng)
    for real, target in ((True, 1.0), (False, 0.0)):
        expect = sum(np.mean((s[-1] - target) ** 2) for s in arrays)
        got = losses.gan_loss(tensors, real, True).asnumpy()
        # float32 means of <= 30 values against NumPy's float64 of the same float32 inputs: a
        # few float32 roundings, ~1e-7 relative; 1e-5 in every assert_allclose of this file
        np.testing.assert_allclose(got, expect, rtol=1e-5)


def test_bce_variant_matches_numpy_and_d_loss_halves():
    rng = np.random.default_rng(1)
    fake_np, fake = _preds(rng, prob=True)
    real_np, real = _preds(rng, prob=True)

    def bce(p, t):
        return -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))

    expect_fake = sum(bce(s[-1], 0.0) for s in fake_np)
    expect_real = sum(bce(s[-1], 1.0) for s in real_np)
    total, lf, lr = losses.d_loss(fake, real, False)
    np.testing.assert_allclose(lf.asnumpy(), expect_fake, rtol=1e-5)
    np.testing.assert_allclose(lr.asnumpy(), expect_real, rtol=1e-5)
    np.testing.assert_allclose(total.asnumpy(), 0.5 * (expect_fake + expect_real), rtol=1e-5)
    saturated = ((Tensor(np.zeros((1, 1, 2, 2), np.float32)),),)
    assert np.isfinite(losses.gan_loss(saturated, True, False).asnumpy())  # log clamped at -100


@pytest.mark.parametrize("num_D,n_layers", [(2, 3), (3, 2)])
def test_feature_matching_weights_and_no_gradient_to_real(num_D, n_layers):
    rng = np.random.default_rng(2)
    fake_np, fake = _preds(rng, num_D, n_layers)
    real_np, real = _preds(rng, num_D, n_layers)
    weight = 10.0 * 4.0 / (n_layers + 1) / num_D
    expect = sum(
        weight * np.mean(np.abs(f - r))
        for fs, rs in zip(fake_np, real_np, strict=True)
        for f, r in zip(fs[:-1], rs[:-1], strict=True)
    )  # patch map excluded
    got = losses.feature_matching_loss(fake, real, n_layers, num_D, 10.0)
    np.testing.assert_allclose(got.asnumpy(), expect, rtol=1e-5)

    def fm(f00, r00):  # gradients w.r.t. the first map of the full-resolution scale
        f = ((f00,) + fake[0][1:],) + fake[1:]
        r = ((r00,) + real[0][1:],) + real[1:]
        return losses.feature_matching_loss(f, r, n_layers, num_D, 10.0)

    g_fake, g_real = ms.grad(fm, grad_position=(0, 1))(fake[0][0], real[0][0])
    assert np.abs(g_real.asnumpy()).sum() == 0
    expect_g = weight * np.sign(fake_np[0][0] - real_np[0][0]) / fake_np[0][0].size
    # sign / size in float32: exact up to one rounding; atol for the zeros of sign(0)
    np.testing.assert_allclose(g_fake.asnumpy(), expect_g, rtol=1e-5, atol=1e-7)


def test_vgg_loss_weights_and_stop_gradient():
    rng = np.random.default_rng(3)
    vgg = VGG19Features()
    x = Tensor(rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32))
    y = Tensor(rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32))
    fx = [t.asnumpy() for t in vgg(x)]
    fy = [t.asnumpy() for t in vgg(y)]
    shapes = [f.shape[1:] for f in fx]
    assert shapes == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    weights = [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1]
    expect = 10.0 * sum(w * np.mean(np.abs(a - b)) for w, a, b in zip(weights, fx, fy, strict=True))
    loss = losses.VGGLoss(vgg, 10.0)
    # the same float32 VGG features both sides (NumPy only sums): only the float32 means of up
    # to 64K values differ from NumPy's pairwise float64 ones, ~1e-7 relative
    np.testing.assert_allclose(loss(x, y).asnumpy(), expect, rtol=1e-5)
    gx, gy = ms.grad(loss, grad_position=(0, 1))(x, y)
    assert np.abs(gx.asnumpy()).sum() > 0 and np.abs(gy.asnumpy()).sum() == 0
    assert not vgg.trainable_params()  # frozen
