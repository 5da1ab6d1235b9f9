"""Building blocks equal in function to the PyTorch layers pix2pixHD uses.

Each spelling here was checked against PyTorch on the CPU target (../shared/research/
mindspore-cpu.md §2) and is tested against NumPy in tests/test_nets_layers.py:

- ``InstanceNorm``: ``ops.group_norm`` with one group per channel and no affine parameters, i.e.
  InstanceNorm2d(affine=False, eps=1e-5), biased variance, true gradients (the CPU target has no
  InstanceNorm kernel). It holds no Parameters, unlike ``nn.GroupNorm(affine=False)`` which
  stores frozen gamma/beta that would pollute checkpoints and parameter counts.
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

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, Uniform, initializer

INIT_STD = 0.02


class InstanceNorm(nn.Cell):
    """InstanceNorm2d(affine=False, eps=1e-5) for NCHW float32, parameter-free."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps

    def construct(self, x):
        return ops.group_norm(x, self.channels, None, None, self.eps)


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


class _FrozenConvFn(nn.Cell):
    """Stride-1 conv with zero padding p (x, w, b) -> y for FROZEN weights: the backward gives
    dx only, as one forward conv of dy with the flipped, transposed kernel (padding k-1-p), and
    zeros for w and b. Same reason as _ValidConvFn: no per-node im2col scratchpad."""

    def __init__(self, k: int, p: int, conv2d: ops.Primitive, bias_add: ops.Primitive) -> None:
        super().__init__()
        self.k, self.p = k, p
        self.conv2d, self.bias_add = conv2d, bias_add  # nn.Conv2d's own (same forward)

    def construct(self, x, w, b):
        return self.bias_add(self.conv2d(x, w), b)

    def bprop(self, x, w, b, out, dout):
        w_t = ops.flip(ops.transpose(w, (1, 0, 2, 3)), (2, 3))
        q = self.k - 1 - self.p
        dx = ops.Conv2D(w_t.shape[0], (self.k, self.k), pad_mode="pad", pad=q)(dout, w_t)
        return dx, ops.zeros_like(w), ops.zeros_like(b)


class FrozenConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and names) for frozen nets (VGG19): stride 1, 'pad' mode,
    bias; its backward computes the input gradient only (see _FrozenConvFn)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fn = _FrozenConvFn(self.kernel_size[0], self.padding, self.conv2d, self.bias_add)

    def construct(self, x):
        return self.fn(x, self.weight, self.bias)


def conv(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    """Conv2d with zero padding ``padding`` (0 = valid), bias, NVIDIA's init.

    The 7x7 stride-1 convs (G's first and last at full resolution) are LowMemoryConv2d."""
    mode = "pad" if padding else "valid"
    cls = LowMemoryConv2d if (k == 7 and stride == 1 and padding == 0) else nn.Conv2d
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
