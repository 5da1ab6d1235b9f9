"""Frozen VGG19 features up to relu5_1 for the perceptual loss, read from a MindSpore checkpoint.

The checkpoint layout is the MindSpore model zoo's VGG19 (research/cv/vgg19, the file the seed
README links): a ``layers`` SequentialCell with torchvision's feature indices, i.e. parameters
``layers.<i>.weight`` (64x3x3x3 for i=0, ...) for the convolutions at indices 0, 2, 5, 7, 10, 12,
14, 16, 19, 21, 23, 25, 28, and ``layers.<i>.bias`` only when that model was trained with biases
(the ImageNet file has none: its biases are taken as 0). Extra entries (classifier, optimizer
moments, a ``network.``-style prefix) are ignored.

Outputs are relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (torchvision slices [0,2), [2,7), [7,12),
[12,21), [21,30)); inputs in [-1, 1] go in without ImageNet normalisation (NVIDIA's choice).
"""

import os

import numpy as np
from mindspore import nn

from p2phd.core import checkpoint
from p2phd.core.cli import UsageError

from .layers import FrozenConv2d, freeze, set_parameter

VGG19_URL = (
    "https://download.mindspore.cn/model_zoo/r1.3/"
    "vgg19_ascend_v130_imagenet2012_research_cv_bs64_top1acc74__top5acc91.97/"
    "vgg19_ascend_v130_imagenet2012_research_cv_bs64_top1acc74__top5acc91.97.ckpt"
)
# torchvision vgg19.features up to relu5_1: channel counts, 'M' = 2x2 max pool.
_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]
_SLICE_ENDS = (2, 7, 12, 21, 30)


def _feature_layers() -> tuple[list[nn.Cell], dict[int, nn.Conv2d]]:
    cells: list[nn.Cell] = []
    convs: dict[int, nn.Conv2d] = {}
    cin = 3
    for v in _CFG:
        if v == "M":
            cells.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        # FrozenConv2d: VGG is never trained; its backward (through the fake) needs dx only.
        convs[len(cells)] = FrozenConv2d(cin, v, 3, pad_mode="pad", padding=1, has_bias=True)
        cells += [convs[len(cells)], nn.ReLU()]
        cin = v
    return cells, convs


class VGG19Features(nn.Cell):
    """x (N, 3, H, W) -> (relu1_1, relu2_1, relu3_1, relu4_1, relu5_1)."""

    def __init__(self) -> None:
        super().__init__()
        cells, self._convs = _feature_layers()
        starts = (0,) + _SLICE_ENDS[:-1]
        self.slice1, self.slice2, self.slice3, self.slice4, self.slice5 = (
            nn.SequentialCell(cells[a:b]) for a, b in zip(starts, _SLICE_ENDS, strict=True)
        )
        freeze(self)

    def construct(self, x):
        h1 = self.slice1(x)
        h2 = self.slice2(h1)
        h3 = self.slice3(h2)
        h4 = self.slice4(h3)
        h5 = self.slice5(h4)
        return h1, h2, h3, h4, h5

    def conv_at(self, index: int) -> nn.Conv2d:
        """The conv at torchvision/model-zoo feature index ``index``."""
        return self._convs[index]

    @property
    def conv_indices(self) -> list[int]:
        return sorted(self._convs)


def _find_prefix(params: dict) -> str | None:
    """'' for ``layers.0.weight``, 'network.' for ``network.layers.0.weight``; moments skipped."""
    for name in params:
        if name.endswith("layers.0.weight") and not name.startswith(("moment", "accum")):
            return name[: -len("layers.0.weight")]
    return None


def load_vgg19(path: str | os.PathLike) -> VGG19Features:
    """Build the frozen VGG19 feature net and load the model zoo checkpoint at ``path``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(
            f"VGG19 weights not found at {path}: download vgg19.ckpt from {VGG19_URL} "
            "and pass --vgg_pre_trained PATH, or pass --no_vgg_loss"
        )
    try:
        params = checkpoint.read(path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError for non-checkpoints
        raise UsageError(
            f"{path} is not a readable MindSpore checkpoint ({exc})".splitlines()[0]
        ) from exc
    prefix = _find_prefix(params)
    if prefix is None:
        raise UsageError(f"{path} has no layers.0.weight: not the model zoo's VGG19 checkpoint")
    net = VGG19Features()
    for i in net.conv_indices:
        conv = net.conv_at(i)
        weight = params.get(f"{prefix}layers.{i}.weight")
        if weight is None or tuple(weight.shape) != tuple(conv.weight.shape):
            got = None if weight is None else tuple(weight.shape)
            raise UsageError(
                f"{path}: layers.{i}.weight is {got}, expected "
                f"{tuple(conv.weight.shape)} (not a VGG19 checkpoint)"
            )
        set_parameter(conv.weight, weight.asnumpy())
        bias = params.get(f"{prefix}layers.{i}.bias")
        set_parameter(
            conv.bias, bias.asnumpy() if bias is not None else np.zeros(conv.bias.shape, np.float32)
        )
    return net
