"""Building blocks equal in function to the PyTorch layers pix2pixHD uses.

Each spelling here was checked against PyTorch on the CPU target (../shared/research/
mindspore-cpu.md §2) and is tested against NumPy in tests/test_nets_layers.py:

- ``InstanceNorm``: batch norm (training mode) over the (1, N*C, H, W) view, i.e.
  InstanceNorm2d(affine=False, eps=1e-5), biased variance, true gradients (the CPU target has no
  InstanceNorm kernel, and ops.group_norm is 7-8x slower). It holds no Parameters, unlike
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


class InstanceNorm(nn.Cell):
    """InstanceNorm2d(affine=False, eps=1e-5) for NCHW float32, parameter-free.

    Computed as batch normalisation in training mode over (1, N*C, H, W), the same reshape torch
    uses inside instance_norm: each (sample, channel) plane becomes one BN channel, normalised by
    its own mean and biased variance, with BN's true gradient. Why not ``ops.group_norm``: on the
    CPU target oneDNN's batch norm is 7x faster forward and 8x faster forward+backward (64 ch at
    256x512: 17/35 ms against 121/277 ms; PyTorch's InstanceNorm2d 24/64 ms, issue 11). Its
    float32 sums are plain, so it is less exact than group_norm: 1.5e-5 against a float64
    reference for N(1, 3) inputs, where torch gives 5e-7 (3.6e-4 against 7e-6 for mean 100, std 1).
    BN's moving-statistics inputs are written in place (never read in training mode): they get a
    scratch vector computed from x, never a constant. A constant would be shared by graph-mode
    constant folding with the scale vector, and the in-place update then corrupts the gradient
    (measured: errors of ~1 in graph mode). Nothing is stored, so checkpoints and parameter counts
    are unchanged, and the shape N*C follows the batch.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.bn = ops.BatchNorm(is_training=True, epsilon=eps)

    def construct(self, x):
        n, c, h, w = x.shape
        planes = n * c
        x1 = ops.reshape(x, (1, planes, h, w))
        scratch = ops.reshape(ops.stop_gradient(x1[:, :, 0, 0]), (planes,)) * 0.0
        scale = ops.ones((planes,), ms.float32)
        shift = ops.zeros((planes,), ms.float32)
        y = self.bn(x1, scale, shift, scratch, scratch)[0]
        return ops.reshape(y, (n, c, h, w))


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
        return dx, ops.transpose(dw_c, (1, 0, 2, 3)), ops.sum(dout, (0, 2, 3))


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
        return dx, self.dw(dout, x, w.shape), ops.sum(dout, (0, 2, 3))


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
    return cls(
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


def conv_transpose(cin: int, cout: int) -> nn.Conv2dTranspose:
    """torch ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1): doubles H, W."""
    return nn.Conv2dTranspose(
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
