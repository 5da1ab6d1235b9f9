"""NLayerDiscriminator and MultiscaleDiscriminator (NVIDIA's layers, ordering and outputs).

D(x) returns a tuple over scales, index 0 = full resolution. Result i comes from the cell
``scale{num_D-1-i}``: ``scale0`` is always the coarsest, so a 2-scale (512p) D loads into a
3-scale (1024p) one by name with the scales keeping their absolute resolutions (NVIDIA's layout).

Each scale's entry is a tuple of per-block outputs: n_layers+2 of them with intermediate features
(the last is the patch map), or just (patch map,) without. The patch map passes through a sigmoid
with ``use_sigmoid`` (``--no_lsgan``).
"""

import math

from mindspore import nn

from .layers import conv, downsample_pool, norm_layer


def _blocks(input_nc: int, ndf: int, n_layers: int, norm: str, use_sigmoid: bool) -> list:
    """NVIDIA's blocks: k4, padding ceil(3/2)=2, LeakyReLU 0.2, no norm on the first."""
    pad = int(math.ceil((4 - 1) / 2))
    blocks = [[conv(input_nc, ndf, 4, 2, pad), nn.LeakyReLU(0.2)]]
    nf = ndf
    for n in range(1, n_layers + 1):
        nf_prev, nf = nf, min(nf * 2, 512)
        stride = 2 if n < n_layers else 1
        blocks.append([conv(nf_prev, nf, 4, stride, pad), norm_layer(norm, nf), nn.LeakyReLU(0.2)])
    last = [conv(nf, 1, 4, 1, pad)]
    if use_sigmoid:
        last.append(nn.Sigmoid())
    blocks.append(last)
    return blocks


class NLayerDiscriminator(nn.Cell):
    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        use_sigmoid: bool = False,
        intermediate: bool = True,
    ) -> None:
        super().__init__()
        blocks = _blocks(input_nc, ndf, n_layers, norm, use_sigmoid)
        self.intermediate = intermediate
        self.n_blocks = len(blocks)
        if intermediate:
            for j, b in enumerate(blocks):
                setattr(self, f"model{j}", nn.SequentialCell(b))
        else:
            self.model = nn.SequentialCell([cell for b in blocks for cell in b])

    def construct(self, x):
        if not self.intermediate:
            return (self.model(x),)
        outs = ()
        for j in range(self.n_blocks):
            x = getattr(self, "model" + str(j))(x)
            outs = outs + (x,)
        return outs


class MultiscaleDiscriminator(nn.Cell):
    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        use_sigmoid: bool = False,
        num_D: int = 2,
        intermediate: bool = True,
    ) -> None:
        super().__init__()
        self.num_D = num_D
        for i in range(num_D):
            setattr(
                self,
                f"scale{i}",
                NLayerDiscriminator(input_nc, ndf, n_layers, norm, use_sigmoid, intermediate),
            )
        self.downsample = downsample_pool()

    def construct(self, x):
        results = ()
        for i in range(self.num_D):
            results = results + (getattr(self, "scale" + str(self.num_D - 1 - i))(x),)
            if i != self.num_D - 1:
                x = self.downsample(x)
        return results
