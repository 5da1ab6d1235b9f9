"""GlobalGenerator (512p) and LocalEnhancer (1024p), NVIDIA's layer sequences and names.

Parameter names follow NVIDIA's modules: the trunk is ``model.<i>`` with the same indices in both
generators (padding/ReLU entries count), the enhancer's parts are ``model<n>_1`` (front end) and
``model<n>_2`` (residual blocks + upsampling [+ output layers for the last enhancer]). So a 512p
GlobalGenerator's weights load into a 1024p LocalEnhancer by name; only its output layers
(``model.37``, pad/conv/tanh of which only the conv has weights) have no counterpart.
"""

from mindspore import nn

from .layers import (
    ResnetBlock,
    conv,
    conv_norm_relu,
    downsample_pool,
    reflection_pad,
    up_norm_relu,
)


def global_trunk(
    input_nc: int, output_nc: int, ngf: int, n_down: int, n_blocks: int, norm: str
) -> list:
    """The 40 modules of NVIDIA's GlobalGenerator (at n_down 4, n_blocks 9), as a list."""
    layers = [reflection_pad(3)] + conv_norm_relu(input_nc, ngf, 7, 1, 0, norm)
    for i in range(n_down):
        mult = 2**i
        layers += conv_norm_relu(ngf * mult, ngf * mult * 2, 3, 2, 1, norm)
    mult = 2**n_down
    layers += [ResnetBlock(ngf * mult, norm) for _ in range(n_blocks)]
    for i in range(n_down):
        mult = 2 ** (n_down - i)
        layers += up_norm_relu(ngf * mult, ngf * mult // 2, norm)
    layers += [reflection_pad(3), conv(ngf, output_nc, 7), nn.Tanh()]
    return layers


class GlobalGenerator(nn.Cell):
    """(N, input_nc, H, W) -> (N, output_nc, H, W) in [-1, 1]; H, W multiples of 2**n_down."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        n_down: int = 4,
        n_blocks: int = 9,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        self.model = nn.SequentialCell(
            global_trunk(input_nc, output_nc, ngf, n_down, n_blocks, norm)
        )

    def construct(self, x):
        return self.model(x)


class LocalEnhancer(nn.Cell):
    """NVIDIA's LocalEnhancer: global trunk at 1/2**n_local resolution plus local enhancers."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 32,
        n_down_global: int = 4,
        n_blocks_global: int = 9,
        n_local_enhancers: int = 1,
        n_blocks_local: int = 3,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        self.n_local_enhancers = n_local_enhancers
        ngf_global = ngf * 2**n_local_enhancers
        trunk = global_trunk(input_nc, output_nc, ngf_global, n_down_global, n_blocks_global, norm)
        self.model = nn.SequentialCell(trunk[:-3])  # drop pad, conv, tanh: 64-ch features out
        for n in range(1, n_local_enhancers + 1):
            ngf_n = ngf * 2 ** (n_local_enhancers - n)
            front = [reflection_pad(3)] + conv_norm_relu(input_nc, ngf_n, 7, 1, 0, norm)
            front += conv_norm_relu(ngf_n, ngf_n * 2, 3, 2, 1, norm)
            back = [ResnetBlock(ngf_n * 2, norm) for _ in range(n_blocks_local)]
            back += up_norm_relu(ngf_n * 2, ngf_n, norm)
            if n == n_local_enhancers:
                back += [reflection_pad(3), conv(ngf, output_nc, 7), nn.Tanh()]
            setattr(self, f"model{n}_1", nn.SequentialCell(front))
            setattr(self, f"model{n}_2", nn.SequentialCell(back))
        self.downsample = downsample_pool()

    def construct(self, x):
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        out = self.model(pyramid[-1])
        for n in range(1, self.n_local_enhancers + 1):
            front = getattr(self, "model" + str(n) + "_1")
            back = getattr(self, "model" + str(n) + "_2")
            out = back(front(pyramid[self.n_local_enhancers - n]) + out)
        return out
