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


def conv(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    """Conv2d with zero padding ``padding`` (0 = valid), bias, NVIDIA's init."""
    mode = "pad" if padding else "valid"
    return nn.Conv2d(
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
