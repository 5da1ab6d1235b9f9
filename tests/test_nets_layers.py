"""Each custom piece vs an independent NumPy computation (float32, 1e-5), gradients included."""
# ruff: noqa: I001  (p2phd must be imported before MindSpore: it sets the oneDNN/GLOG env)

import numpy as np
import pytest

import p2phd  # noqa: F401  (env fixes before MindSpore)
import mindspore as ms
from mindspore import Tensor, nn

from p2phd.nets import encoding, layers
from p2phd.nets.encoder import InstancePool

# float32 layers against NumPy references in float64 on the same float32 inputs: the layers sum
# at most a few hundred products (3x3 and 7x7 kernels over <= 8 channels, norms over <= 500
# pixels) in float32, ~sqrt(n) * 6e-8 = 1e-6 relative whatever order the kernel chooses; 1e-5
# leaves room for oneDNN's ISA- and thread-dependent orders
TOL = 1e-5


@pytest.fixture(autouse=True)
def graph_mode():
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


class _Apply(nn.Cell):
    """sum(layer(x) * g): its gradients are the adjoint of the layer applied to g."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def construct(self, x, g):
        return (self.layer(x) * g).sum()


def _value_and_grads(layer, x, g, weights=None):
    """layer(x), d/dx and d/dweights of sum(layer(x) * g)."""
    fn = ms.value_and_grad(_Apply(layer), grad_position=0, weights=weights)
    _, grads = fn(Tensor(x), Tensor(g))
    out = layer(Tensor(x)).asnumpy()
    if weights is None:
        return out, grads.asnumpy(), []
    gx, gw = grads
    return out, gx.asnumpy(), [w.asnumpy() for w in gw]


def _close(a, b, tol=TOL):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_reflection_pad_forward_and_adjoint():
    rng = np.random.default_rng(0)
    x = _rand(rng, 2, 3, 7, 9)
    p = 3
    g = _rand(rng, 2, 3, 7 + 2 * p, 9 + 2 * p)
    out, gx, _ = _value_and_grads(layers.reflection_pad(p), x, g)
    _close(out, np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect"))
    # adjoint: each padded pixel's gradient goes back to the source pixel it copied
    rows = np.pad(np.arange(7), p, mode="reflect")
    cols = np.pad(np.arange(9), p, mode="reflect")
    expect = np.zeros_like(x)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            expect[:, :, r, c] += g[:, :, i, j]
    _close(gx, expect)


def _np_conv_transpose(x, w, b):
    """torch ConvTranspose2d(k3, s2, padding 1, output_padding 1), written out directly."""
    n, ci, h, wd = x.shape
    co = w.shape[1]
    full = np.zeros((n, co, 2 * h + 2, 2 * wd + 2), np.float64)
    for i in range(h):
        for j in range(wd):
            # every input pixel scatters a 3x3 kernel at stride 2
            full[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += np.einsum(
                "nc,cokl->nokl", x[:, :, i, j], w
            )
    # padding 1 crops one row/column at the start; output_padding 1 keeps one more at the end
    return full[:, :, 1 : 2 * h + 1, 1 : 2 * wd + 1] + b.reshape(1, co, 1, 1)


def test_conv_transpose_matches_direct_numpy():
    rng = np.random.default_rng(1)
    layer = layers.conv_transpose(4, 3)
    w, b = _rand(rng, 4, 3, 3, 3), _rand(rng, 3)
    layers.set_parameter(layer.weight, w)
    layers.set_parameter(layer.bias, b)
    x = _rand(rng, 2, 4, 5, 6)
    g = _rand(rng, 2, 3, 10, 12)
    out, gx, (gw, gb) = _value_and_grads(layer, x, g, [layer.weight, layer.bias])
    assert out.shape == (2, 3, 10, 12)
    _close(out, _np_conv_transpose(x, w, b))
    # f is linear in x and in w (bias aside): d/dx_k sum(f(x)*g) = sum(f(e_k)*g), same for w
    zero_b = np.zeros(3, np.float32)
    expect_gx = np.zeros_like(gx)
    for idx in np.ndindex(*x.shape):
        unit = np.zeros_like(x)
        unit[idx] = 1.0
        expect_gx[idx] = (_np_conv_transpose(unit, w, zero_b) * g).sum()
    _close(gx, expect_gx)
    expect_gw = np.zeros_like(w)
    for idx in np.ndindex(*w.shape):
        unit = np.zeros_like(w)
        unit[idx] = 1.0
        expect_gw[idx] = (_np_conv_transpose(x, unit, zero_b) * g).sum()
    _close(gw, expect_gw)
    _close(gb, g.sum(axis=(0, 2, 3)))


def _np_avg_pool(x):
    """AvgPool2d(3, 2, padding 1, count_include_pad=False) and the window of each output."""
    n, c, h, w = x.shape
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    out = np.zeros((n, c, ho, wo), np.float64)
    windows = {}
    for i in range(ho):
        for j in range(wo):
            r0, r1 = max(2 * i - 1, 0), min(2 * i + 2, h)
            c0, c1 = max(2 * j - 1, 0), min(2 * j + 2, w)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
            windows[i, j] = (r0, r1, c0, c1)
    return out, windows


@pytest.mark.parametrize("shape", [(1, 2, 8, 12), (2, 3, 7, 9)])
def test_avg_pool_excludes_padding(shape):
    rng = np.random.default_rng(2)
    x = _rand(rng, *shape)
    expect, windows = _np_avg_pool(x)
    g = _rand(rng, *expect.shape)
    out, gx, _ = _value_and_grads(layers.downsample_pool(), x, g)
    _close(out, expect)
    expect_gx = np.zeros_like(x)
    for (i, j), (r0, r1, c0, c1) in windows.items():
        area = (r1 - r0) * (c1 - c0)
        expect_gx[:, :, r0:r1, c0:c1] += g[:, :, i : i + 1, j : j + 1] / area
    _close(gx, expect_gx)


def test_instance_norm_forward_and_gradient():
    rng = np.random.default_rng(3)
    x = (_rand(rng, 2, 5, 6, 7) * 3 + 1).astype(np.float32)
    g = _rand(rng, 2, 5, 6, 7)
    norm = layers.InstanceNorm(5)
    out, gx, _ = _value_and_grads(norm, x, g)
    # again on the same cell: a second call sees no state of the first (p2phd's norm before
    # issue 19 wrote batch norm's moving statistics in place; its affine maps only read them)
    out2, gx2, _ = _value_and_grads(norm, x, g)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(gx2, gx)
    xd = x.astype(np.float64)
    mean = xd.mean(axis=(2, 3), keepdims=True)
    var = xd.var(axis=(2, 3), keepdims=True)  # biased, as torch's InstanceNorm
    y = (xd - mean) / np.sqrt(var + 1e-5)
    _close(out, y)
    # true gradient (through mean and variance): (g - mean(g) - y*mean(g*y)) / sigma
    gd = g.astype(np.float64)
    expect = (
        gd - gd.mean(axis=(2, 3), keepdims=True) - y * (gd * y).mean(axis=(2, 3), keepdims=True)
    ) / np.sqrt(var + 1e-5)
    _close(gx, expect)
    assert layers.count_parameters(layers.InstanceNorm(5)) == 0


def _float64_instance_norm(x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xd, gd = x.astype(np.float64), g.astype(np.float64)
    mean, var = xd.mean(axis=(2, 3), keepdims=True), xd.var(axis=(2, 3), keepdims=True)
    rstd = 1 / np.sqrt(var + 1e-5)
    y = (xd - mean) * rstd
    mg, mgy = gd.mean(axis=(2, 3), keepdims=True), (gd * y).mean(axis=(2, 3), keepdims=True)
    return y, rstd * (gd - mg - y * mgy)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# Full-size planes against float64: float32 rounding of each value (6e-8) and of the row sums
# leave ~1e-7 (measured 4e-8 to 1.3e-7); one float32 sum over a 2048x1024 plane leaves ~1e-4.
FULL_TOL = 1e-6


def test_instance_norm_is_exact_on_full_size_planes():
    """2048x1024 planes, forward and backward, means far from zero relative to the spread, a
    tiny spread, a plane whose border differs from its inside and a constant plane."""
    rng = np.random.default_rng(7)
    shape = (1, 4, 1024, 2048)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0] = x[0, 0] + 100.0  # mean 100, std 1
    x[0, 1] = x[0, 1] * 1e-3  # std 1e-3 (below sqrt(eps): y is small, still exact)
    x[0, 2] = 5.0 + 0.01 * x[0, 2]  # a flat inside...
    x[0, 2, 0, :], x[0, 2, :, 0] = 0.0, 0.0  # ...with a zero border (a zero-padded conv)
    x[0, 3] = 3.7  # constant: y = 0 exactly
    g = (rng.standard_normal(shape) + 0.5).astype(np.float32)
    out, gx, _ = _value_and_grads(layers.InstanceNorm(4), x, g)
    y, dx = _float64_instance_norm(x, g)
    for c in range(3):
        assert _rel(out[0, c], y[0, c]) <= FULL_TOL, c
        assert _rel(gx[0, c], dx[0, c]) <= FULL_TOL, c
    assert not out[0, 3].any()
    assert np.abs(gx[0, 3] - dx[0, 3]).max() <= FULL_TOL * np.abs(dx[0, 3]).max()


def test_instance_pooling_is_exact_on_a_million_pixel_instance():
    """A 1024x2048 map whose largest instance covers ~1.5 M pixels (a road), mean far from 0."""
    rng = np.random.default_rng(8)
    h, w, k = 1024, 2048, 5
    index = np.zeros((1, h, w), np.int32)
    index[0, : h // 4] = 1  # sky
    index[0, h // 4 : h // 4 + 64, :300] = rng.integers(2, k, (64, 300))  # small objects
    x = (np.tanh(rng.standard_normal((1, 3, h, w)) * 0.3 + 0.5)).astype(np.float32)
    g = (rng.standard_normal((1, 3, h, w)) + 0.3).astype(np.float32)
    out = InstancePool(k)(Tensor(x), Tensor(index)).asnumpy()
    gx = ms.grad(_PoolApply(k), grad_position=0)(Tensor(x), Tensor(index), Tensor(g)).asnumpy()
    flat, count = index.ravel(), np.bincount(index.ravel(), minlength=k)
    assert count.max() > 1_400_000
    for c in range(3):
        for arr, got in ((x, out), (g, gx)):
            means = np.bincount(flat, arr[0, c].astype(np.float64).ravel(), k) / count
            assert _rel(got[0, c], means[index[0]]) <= FULL_TOL, c


@pytest.mark.parametrize("kind", ["conv_stride2", "conv_transpose"])
def test_conv_bias_gradients_are_exact_at_full_size(kind):
    """A bias gradient sums dy over every pixel: at a 2048x1024 output with a cancelling dy, a
    plain float32 sum (MindSpore's BiasAddGrad) is off by ~5e-5; p2phd's convs sum rows first."""
    rng = np.random.default_rng(9)
    if kind == "conv_stride2":
        layer, x = layers.conv(2, 3, 4, 2, 2), _rand(rng, 1, 2, 2046, 4094)
    else:
        layer, x = layers.conv_transpose(2, 3), _rand(rng, 1, 2, 512, 1024)
    out_shape = layer(Tensor(x)).shape
    assert tuple(out_shape[2:]) == (1024, 2048)
    g = (rng.standard_normal(out_shape) + 0.01).astype(np.float32)  # sums cancel ~100-fold
    _, _, (_, gb) = _value_and_grads(layer, x, g, [layer.weight, layer.bias])
    assert _rel(gb, g.astype(np.float64).sum(axis=(0, 2, 3))) <= FULL_TOL


class _PoolApply(nn.Cell):
    def __init__(self, k):
        super().__init__()
        self.pool = InstancePool(k)

    def construct(self, x, index, g):
        return (self.pool(x, index) * g).sum()


def test_instance_pooling_forward_and_gradient():
    rng = np.random.default_rng(4)
    n, c, h, w, k = 2, 3, 5, 6, 7
    x = _rand(rng, n, c, h, w)
    index = rng.integers(0, 4, (n, h, w)).astype(np.int32)
    index[1] = rng.integers(0, k, (h, w))  # the second sample uses more ids
    g = _rand(rng, n, c, h, w)
    out = InstancePool(k)(Tensor(x), Tensor(index)).asnumpy()
    gx = ms.grad(_PoolApply(k), grad_position=0)(Tensor(x), Tensor(index), Tensor(g)).asnumpy()
    expect = np.zeros_like(x)
    expect_gx = np.zeros_like(x)
    for b in range(n):
        for i in np.unique(index[b]):
            mask = index[b] == i
            for ch in range(c):
                expect[b, ch][mask] = x[b, ch][mask].mean()
                expect_gx[b, ch][mask] = g[b, ch][mask].sum() / mask.sum()
    _close(out, expect)
    _close(gx, expect_gx)


def _np_edges(inst):
    n, h, w = inst.shape
    edge = np.zeros((n, 1, h, w), np.float32)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and inst[b, yy, xx] != inst[b, y, x]:
                        edge[b, 0, y, x] = 1.0
    return edge


def test_edge_map_and_dense_index():
    rng = np.random.default_rng(5)
    raw = rng.choice(np.array([7, 26001, 26002, 33], np.int32), size=(2, 9, 11))
    raw[0, :4, :5] = 26001  # a block so there are interior pixels too
    dense = np.stack([encoding.dense_index(r)[0] for r in raw])
    ids = encoding.dense_index(raw[0])[1]
    np.testing.assert_array_equal(ids[dense[0]], raw[0])
    assert dense.dtype == np.int32 and dense.max() < 4
    expect = _np_edges(raw)
    np.testing.assert_array_equal(encoding.edge_map(Tensor(dense)).asnumpy(), expect)
    np.testing.assert_array_equal(encoding.edge_map(Tensor(raw)).asnumpy(), expect)
    assert expect[0, 0, 1, 1] == 0 and expect.sum() > 0


def test_one_hot_and_condition_order():
    rng = np.random.default_rng(6)
    label = rng.integers(0, 5, (2, 6, 7)).astype(np.int32)
    index = rng.integers(0, 3, (2, 6, 7)).astype(np.int32)
    hot = encoding.one_hot(Tensor(label), 5).asnumpy()
    np.testing.assert_array_equal(hot, np.eye(5, dtype=np.float32)[label].transpose(0, 3, 1, 2))
    cond = encoding.ConditionEncoder(5, True)(Tensor(label), Tensor(index)).asnumpy()
    np.testing.assert_array_equal(cond[:, :5], hot)
    np.testing.assert_array_equal(cond[:, 5:], _np_edges(index))
    feat = _rand(rng, 2, 3, 6, 7)
    g_in = encoding.generator_input(Tensor(cond), Tensor(feat)).asnumpy()
    np.testing.assert_array_equal(g_in[:, 6:], feat)
    rgb = rng.uniform(-1, 1, (2, 3, 6, 7)).astype(np.float32)
    cond0 = encoding.ConditionEncoder(0, False)(Tensor(rgb)).asnumpy()
    np.testing.assert_array_equal(cond0, rgb)
