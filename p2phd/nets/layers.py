"""Building blocks equal in function to the PyTorch layers pix2pixHD uses.

Each spelling here was checked against PyTorch on the CPU target (MindSpore 2.10) and is
tested against NumPy in tests/test_nets_layers.py:

- ``InstanceNorm``: InstanceNorm2d(affine=False, eps=1e-5), biased variance, true gradients,
  with statistics exact at full-size planes (row sums, centring, its own backward; the CPU
  target has no InstanceNorm kernel). It holds no Parameters, unlike
  ``nn.GroupNorm(affine=False)`` which stores frozen gamma/beta that would pollute checkpoints.
- ``reflection_pad``: ``nn.Pad(REFLECT)`` (= torch ReflectionPad2d).
- ``conv``: ``nn.Conv2d`` with explicit ``pad_mode`` and ``has_bias=True`` (MindSpore's defaults
  are 'same' and no bias).
- ``conv_transpose``: ``nn.Conv2dTranspose(k3, s2, pad_mode='pad', padding=(1,0,1,0))`` equals
  torch ConvTranspose2d(k3, s2, padding=1, output_padding=1); the other spellings look right and
  are not (zero last row/column, or a one-pixel shift).
- ``downsample_pool``: AvgPool2d(3, 2, padding 1, count_include_pad=False) as NVIDIA's.

Initialisation: conv and transposed-conv weights ~ N(0, 0.02) as NVIDIA's ``weights_init``.
Biases keep PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (NVIDIA never re-initialises
them; fan_in is in_channels*k*k for conv and out_channels*k*k for transposed conv, as torch
computes it from the weight's dimension 1). BatchNorm (``--norm batch``): gamma ~ N(1, 0.02),
beta 0, as NVIDIA.
"""

import math

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, Uniform, initializer
from mindspore.ops.operations import _grad_ops

INIT_STD = 0.02
_SUM = ops.ReduceSum()  # the primitive: the functional form fails inside a bprop


def plane_sums(t, planes: int, h: int, w: int):
    """(planes,) float32 sums over each H x W plane of t (any shape of planes*h*w values).

    Exact to ~1e-7 relative where one float32 sum over a 2048x1024 plane is off by ~1e-4: each
    row's W values are summed first (a ReduceSum over the contiguous last axis, as fast as one
    pass over the data), then each plane's H row sums. Sum only centred values this way (or
    values whose sum is not cancelled): the rounding is relative to the partial sums."""
    rows = _SUM(ops.reshape(t, (planes * h, w)), -1)
    return _SUM(ops.reshape(rows, (planes, h)), -1)


def channel_sums(t):
    """(C,) float32 sums of NCHW t over N, H and W, exact as plane_sums (a conv's bias gradient)."""
    n, c, h, w = t.shape
    return _SUM(ops.reshape(plane_sums(t, n * c, h, w), (n, c)), 0)


class _ExactBiasAdd(nn.Cell):
    """ops.BiasAdd whose bias gradient is channel_sums: MindSpore's BiasAddGrad sums N*H*W values
    plainly in float32 (7e-7 of the sum of magnitudes at 2048x1024, 5e-5 of a cancelling sum)."""

    def __init__(self) -> None:
        super().__init__()
        self.add = ops.BiasAdd()

    def construct(self, x, b):
        return self.add(x, b)

    def bprop(self, x, b, out, dout):
        return dout, channel_sums(dout)


class _InstanceNormFn(nn.Cell):
    """x (N, C, H, W) float32 -> (y, rstd (N*C,)): instance norm with exact plane statistics and
    its own backward (see InstanceNorm)."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps
        # batch norm in inference mode is a per-channel affine map in one pass on every target:
        # gamma * (t - mean) * rsqrt(var + eps) + beta (its inputs are only read)
        self.affine = ops.BatchNorm(is_training=False, epsilon=eps)

    def _affine(self, t, gamma, beta, mean, var):
        return self.affine(t, gamma, beta, mean, var)[0]

    def construct(self, x):
        n, c, h, w = x.shape
        p, hw = n * c, h * w
        planes = ops.reshape(x, (1, p, h, w))
        one, zero = ops.ones((p,), ms.float32), ops.zeros((p,), ms.float32)
        unit = one - self.eps  # var + eps == 1 exactly in float32: the affine map has no rsqrt
        # A shift within a few sigma of the mean is all the centring needs: then the float32 sums
        # of d and d*d below are exact to rounding whatever the mean/spread ratio of x.
        shift = plane_sums(x, p, h, w) / hw
        d = self._affine(planes, one, zero, shift, unit)  # x - shift, exactly
        mean = plane_sums(d, p, h, w) / hw
        var = ops.maximum(plane_sums(d * d, p, h, w) / hw - mean * mean, 0.0)
        y = self._affine(d, one, zero, mean, var)
        return ops.reshape(y, (n, c, h, w)), ops.rsqrt(var + self.eps)

    def bprop(self, x, out, dout):
        # dx = rstd * (dy - mean(dy) - y * mean(dy * y)), the means as exact plane sums; only y
        # and rstd are needed (x is not read).
        y, rstd = out
        dy = dout[0]
        n, c, h, w = x.shape
        p, hw = n * c, h * w
        zero = ops.zeros((p,), ms.float32)
        unit = ops.ones((p,), ms.float32) - self.eps
        mean_dy = plane_sums(dy, p, h, w) / hw
        mean_dyy = plane_sums(dy * y, p, h, w) / hw
        scaled = self._affine(ops.reshape(dy, (1, p, h, w)), rstd, zero, zero, unit)
        centre = self._affine(
            ops.reshape(y, (1, p, h, w)), -rstd * mean_dyy, -rstd * mean_dy, zero, unit
        )
        return (ops.reshape(scaled + centre, (n, c, h, w)),)


class InstanceNorm(nn.Cell):
    """InstanceNorm2d(affine=False, eps=1e-5) for NCHW float32, parameter-free, exact.

    Within ~1e-7 relative of a float64 reference at 2048x1024 planes, forward and backward, for
    any mean/spread ratio (mean 100 std 1, mean 1000 std 1e-2, constant planes, planes whose
    border rows differ), where float32 sums over a whole plane (the batch-norm form of issue 11,
    and batch norm's own backward) are off by ~1e-4 and by 100 % on near-constant planes.
    Forward: shift = the plane mean from row sums; d = x - shift; mean and variance of d from
    row sums of d and d*d (``plane_sums``); y = (d - mean) * rsqrt(var + eps). The subtractions
    and scalings are batch norm in inference mode, one pass each. Backward (bprop): the two
    plane means of dy and dy*y the same way, then dx = rstd*dy - rstd*(mean(dy) + y*mean(dy*y)).
    Cost (bench/bench_nets.py --kinds norm): about 2x the batch-norm form's time forward and
    1.3-1.7x forward+backward, 1.6-2.6x faster than ops.group_norm (the other exact spelling on
    the CPU, whose backward is off by 1e-6 at mean 100); a whole training step costs the same
    within noise. Runs on every target (ReduceSum, batch norm inference, elementwise ops; no
    float64). Holds no Parameters, so checkpoints and parameter counts are unchanged, and the
    shape N*C follows the batch.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.fn = _InstanceNormFn(eps)

    def construct(self, x):
        return self.fn(x)[0]


def batch_norm(channels: int) -> nn.Cell:
    """torch BatchNorm2d(affine=True) (momentum 0.1 = MindSpore's 0.9), NVIDIA's init."""
    bn = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9, affine=True)
    bn.gamma.set_data(initializer(Normal(INIT_STD, 1.0), bn.gamma.shape, bn.gamma.dtype))
    return bn


def norm_layer(kind: str, channels: int) -> nn.Cell:
    if kind == "instance":
        return InstanceNorm(channels)
    if kind == "batch":
        return batch_norm(channels)
    raise ValueError(f"unknown norm {kind!r} (instance or batch)")


def reflection_pad(p: int) -> nn.Cell:
    return nn.Pad(((0, 0), (0, 0), (p, p), (p, p)), mode="REFLECT")


def _torch_bias(fan_in: int) -> Uniform:
    return Uniform(1.0 / math.sqrt(fan_in))


class _ValidConvFn(nn.Cell):
    """Stride-1 'valid' conv (x, w, b) -> y whose backward is written as two forward convs.

    Why: on CPU (AVX2 cap) oneDNN's gemm convolution keeps, per backward conv node of a compiled
    graph, an im2col scratchpad of ~threads * Cin*k*k*H*W floats that is never shared with other
    nodes: 0.9 GB for G's first 7x7 conv at 256x512, 3.7 GB at 512x1024 (issue 11). A forward
    conv works in small chunks, so dx = conv(pad(dy), flipped W^T) and
    dW[o,c] = conv(x as Cin images, dy as Cout kernels) compute the same gradients (to float
    rounding) at ~1/8 of the memory and the same speed for 7x7 kernels. Slower for 3x3 wide layers
    (the dW conv has a 1-channel input), so only the 7x7 convs use it.
    """

    def __init__(self, k: int, conv2d: ops.Primitive, bias_add: ops.Primitive) -> None:
        super().__init__()
        self.k = k
        # nn.Conv2d's own primitives: the forward is bit-identical to nn.Conv2d's
        self.conv2d, self.bias_add = conv2d, bias_add

    def construct(self, x, w, b):
        return self.bias_add(self.conv2d(x, w), b)

    def bprop(self, x, w, b, out, dout):
        k = self.k
        w_t = ops.flip(ops.transpose(w, (1, 0, 2, 3)), (2, 3))
        dy_pad = ops.pad(dout, (k - 1, k - 1, k - 1, k - 1))
        dx = ops.Conv2D(w_t.shape[0], (k, k), pad_mode="valid")(dy_pad, w_t)
        x_c = ops.transpose(x, (1, 0, 2, 3))  # (Cin, N, Hp, Wp): channels as images
        dy_c = ops.transpose(dout, (1, 0, 2, 3))  # (Cout, N, H, W): dy as kernels
        dw_c = ops.Conv2D(dy_c.shape[0], (dy_c.shape[2], dy_c.shape[3]), pad_mode="valid")(
            x_c, dy_c
        )
        return dx, ops.transpose(dw_c, (1, 0, 2, 3)), channel_sums(dout)


class LowMemoryConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and names) whose backward avoids oneDNN's im2col scratchpads;
    stride 1, no padding, bias (see _ValidConvFn)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fn = _ValidConvFn(self.kernel_size[0], self.conv2d, self.bias_add)

    def construct(self, x):
        return self.fn(x, self.weight, self.bias)


class _Stride1ConvFn(nn.Cell):
    """Stride-1 conv with zero padding p (x, w, b) -> y whose input gradient is one forward conv
    of dy with the flipped, transposed kernel (padding k-1-p) instead of oneDNN's backward_data.

    Why: backward_data keeps a per-node im2col scratchpad of Cin*k*k*H*W floats for the life of
    the graph (one 64-channel 3x3 conv at 256x512: +307 MB per node); forward convs share theirs.
    The weight gradient stays oneDNN's own (Conv2DBackpropFilter); frozen nets (VGG) skip it and
    return zeros. Measured on 4 chained 64-channel 3x3 convs at 256x512: 3.18 -> 1.87 GB peak,
    2.63 -> 2.19 s forward+backward. Slower for wide low-resolution layers (1024-channel resblocks:
    863 -> 1567 ms, more memory), which keep nn.Conv2d: see ``conv``.
    """

    def __init__(self, conv: nn.Conv2d, frozen: bool) -> None:
        super().__init__()
        k, cin, cout = conv.kernel_size[0], conv.in_channels, conv.out_channels
        p = conv.padding if isinstance(conv.padding, int) else conv.padding[0]
        self.frozen = frozen
        self.conv2d, self.bias_add = conv.conv2d, conv.bias_add  # nn.Conv2d's own (same forward)
        self.dx_conv = ops.Conv2D(cin, (k, k), pad_mode="pad", pad=k - 1 - p)
        self.dw = _grad_ops.Conv2DBackpropFilter(
            cout, (k, k), pad_mode="pad" if p else "valid", pad=p, pad_list=(p, p, p, p)
        )

    def construct(self, x, w, b):
        return self.bias_add(self.conv2d(x, w), b)

    def bprop(self, x, w, b, out, dout):
        dx = self.dx_conv(dout, ops.flip(ops.transpose(w, (1, 0, 2, 3)), (2, 3)))
        if self.frozen:
            return dx, ops.zeros_like(w), ops.zeros_like(b)
        return dx, self.dw(dout, x, w.shape), channel_sums(dout)


class Stride1Conv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and names), stride 1, 'pad'/'valid' mode, bias, whose input
    gradient avoids oneDNN's backward_data scratchpad (see _Stride1ConvFn)."""

    frozen = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fn = _Stride1ConvFn(self, self.frozen)

    def construct(self, x):
        return self.fn(x, self.weight, self.bias)


class FrozenConv2d(Stride1Conv2d):
    """Stride1Conv2d for frozen nets (VGG19): the backward gives the input gradient only."""

    frozen = True


# Stride-1 3x3/4x4 convs up to this many weights use Stride1Conv2d: the local enhancer's 64-channel
# residual blocks at high resolution and D's stride-1 convs (256x512x4x4 and 512x1x4x4).
STRIDE1_MAX_WEIGHTS = 256 * 512 * 16


def conv(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    """Conv2d with zero padding ``padding`` (0 = valid), bias, NVIDIA's init.

    The 7x7 stride-1 convs (G's first and last at full resolution) are LowMemoryConv2d; other
    stride-1 convs up to STRIDE1_MAX_WEIGHTS weights are Stride1Conv2d (issue 11)."""
    mode = "pad" if padding else "valid"
    cls = nn.Conv2d
    if k == 7 and stride == 1 and padding == 0:
        cls = LowMemoryConv2d
    elif stride == 1 and cin * cout * k * k <= STRIDE1_MAX_WEIGHTS:
        cls = Stride1Conv2d
    layer = cls(
        cin,
        cout,
        k,
        stride=stride,
        pad_mode=mode,
        padding=padding,
        has_bias=True,
        weight_init=Normal(INIT_STD),
        bias_init=_torch_bias(cin * k * k),
    )
    if cls is nn.Conv2d:  # the others' bprops sum the bias gradient with channel_sums
        layer.bias_add = _ExactBiasAdd()
    return layer


def conv_transpose(cin: int, cout: int) -> nn.Conv2dTranspose:
    """torch ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1): doubles H, W."""
    layer = nn.Conv2dTranspose(
        cin,
        cout,
        3,
        stride=2,
        pad_mode="pad",
        padding=(1, 0, 1, 0),
        has_bias=True,
        weight_init=Normal(INIT_STD),
        bias_init=_torch_bias(cout * 9),
    )
    layer.bias_add = _ExactBiasAdd()
    return layer


def downsample_pool() -> nn.AvgPool2d:
    """AvgPool2d(3, stride 2, padding 1, count_include_pad=False): NVIDIA's pyramid pooling."""
    return nn.AvgPool2d(3, 2, pad_mode="pad", padding=1, count_include_pad=False)


class ResnetBlock(nn.Cell):
    """x + [pad, conv3, norm, relu, pad, conv3, norm](x); no activation after the sum."""

    def __init__(self, dim: int, norm: str) -> None:
        super().__init__()
        self.conv_block = nn.SequentialCell(
            [
                reflection_pad(1),
                conv(dim, dim, 3),
                norm_layer(norm, dim),
                nn.ReLU(),
                reflection_pad(1),
                conv(dim, dim, 3),
                norm_layer(norm, dim),
            ]
        )

    def construct(self, x):
        return x + self.conv_block(x)


def conv_norm_relu(cin: int, cout: int, k: int, stride: int, padding: int, norm: str) -> list:
    return [conv(cin, cout, k, stride, padding), norm_layer(norm, cout), nn.ReLU()]


def up_norm_relu(cin: int, cout: int, norm: str) -> list:
    return [conv_transpose(cin, cout), norm_layer(norm, cout), nn.ReLU()]


def count_parameters(cell: nn.Cell) -> int:
    """Trainable parameter count (= sum of torch's parameters(), buffers excluded)."""
    return int(sum(int(np.prod(p.shape)) for p in cell.trainable_params()))


def freeze(cell: nn.Cell) -> None:
    for p in cell.get_parameters():
        p.requires_grad = False


def prefix_parameter_names(cell: nn.Cell, prefix: str) -> None:
    """Make Parameter.name globally unique (``netG.model.1.weight``).

    MindSpore names optimizer moments after Parameter.name, and G and E both have
    ``model.1.weight``; one optimizer over both would otherwise hold two ``moment1.model.1.weight``.
    Checkpoints do not depend on this: p2phd.core.checkpoint uses attribute paths.
    """
    for name, p in cell.parameters_and_names():
        p.name = f"{prefix}.{name}"


def set_parameter(p: Parameter, value: np.ndarray) -> None:
    p.set_data(Tensor(np.asarray(value, dtype=np.float32)))
