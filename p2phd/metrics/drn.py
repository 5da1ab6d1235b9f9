"""fyu/drn's DRNSeg (dilated residual network + 1x1 classifier + fixed bilinear up-sampling).

The segmenter of the SPADE-era Cityscapes score: ``DRNSeg('drn_d_105', 19)`` with the
``drn-d-105_ms_cityscapes.pth`` weights (fyu/drn, commit d75db2e: ``drn.py``, ``segment.py``).
This is the same function, in MindSpore:

- ``base``: the DRN without its last two children (average pool, fc). Arch D: ``layer0`` (7x7
  conv, BN, ReLU), ``layer1``/``layer2`` (3x3 conv-BN-ReLU stacks, layer2 strided),
  ``layer3``/``layer4`` (strided residual layers), ``layer5``/``layer6`` (residual, dilation 2 and
  4), ``layer7``/``layer8`` (conv stacks, dilation 2 and 1). Arch C: ``conv1``, ``bn1``, ``relu``,
  residual ``layer1``..``layer6`` and ``layer7``/``layer8`` as BasicBlocks without the residual
  sum. Output stride 8.
- ``seg``: 1x1 conv (with bias) to the classes; ``up``: ConvTranspose2d(classes, classes, 16,
  stride 8, padding 4, groups=classes, no bias), the fixed bilinear kernel read from the file.
  MindSpore's CPU ``Conv2dTranspose`` runs ``group=classes`` (checked against a direct sum to
  1e-6), so it is spelled as in torch.
- fyu/drn ends with LogSoftmax and takes the argmax of its output; LogSoftmax subtracts one
  number per pixel from all classes, so the argmax of the logits is the same (``Predict``).
- BatchNorm in inference mode, eps 1e-5 (torch's default). Input: float32 NCHW RGB in [0, 1],
  normalised with fyu/drn's Cityscapes ``info.json`` mean/std inside the network, as
  ``transforms.Normalize`` does (subtract, then divide, in float32).

Parameter names are the ``.pth`` keys (``base.3.0.conv1.weight``, ``seg.bias``, ``up.weight``)
with BatchNorm's weight/bias/running_mean/running_var spelled gamma/beta/moving_mean/
moving_variance (``torch_name``). ``infer_arch`` reads the variant (C/D, BasicBlock/Bottleneck,
blocks per layer, widths, classes) from the tensors' names and shapes, so DRN-D-22/38/54/105
and DRN-C-26/42/58 files all load.
"""

from dataclasses import dataclass

import mindspore as ms
import numpy as np
from mindspore import nn, ops

# fyu/drn datasets/cityscapes/info.json: mean and std of the training photos (RGB in [0, 1])
CITYSCAPES_MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
CITYSCAPES_STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)
OUTPUT_STRIDE = 8  # the base's output is 1/8 of the input; up multiplies by 8
UP_KERNEL = 16
# fyu/drn's named variants: (arch, block, blocks per layer); widths are its defaults
VARIANTS = {
    "drn_c_26": ("C", "basic", (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_c_42": ("C", "basic", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_c_58": ("C", "bottleneck", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_22": ("D", "basic", (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_d_24": ("D", "basic", (1, 1, 2, 2, 2, 2, 2, 2)),
    "drn_d_38": ("D", "basic", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_40": ("D", "basic", (1, 1, 3, 4, 6, 3, 2, 2)),
    "drn_d_54": ("D", "bottleneck", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_56": ("D", "bottleneck", (1, 1, 3, 4, 6, 3, 2, 2)),
    "drn_d_105": ("D", "bottleneck", (1, 1, 3, 4, 23, 3, 1, 1)),
    "drn_d_107": ("D", "bottleneck", (1, 1, 3, 4, 23, 3, 2, 2)),
}
DEFAULT_CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
EXPANSION = {"basic": 1, "bottleneck": 4}


@dataclass(frozen=True)
class Arch:
    """One DRNSeg: arch 'C' or 'D', block 'basic' or 'bottleneck', blocks (or convs) of the
    eight layers, their widths, and the number of classes."""

    arch: str
    block: str
    layers: tuple[int, ...]
    channels: tuple[int, ...]
    classes: int

    @property
    def name(self) -> str:
        """fyu/drn's function name when the structure is one of its variants, with the widths
        when they are not its defaults."""
        for name, (a, b, layers) in VARIANTS.items():
            if (a, b, layers) == (self.arch, self.block, self.layers):
                return name if self.channels == DEFAULT_CHANNELS else f"{name}-like"
        return "drn-custom"


def _conv(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1, bias=False):
    pad = {"pad_mode": "pad", "padding": dilation * (k // 2)} if k > 1 else {"pad_mode": "valid"}
    # weights come from the .pth: skip the random initialisation
    return nn.Conv2d(
        cin, cout, k, stride=stride, dilation=dilation, has_bias=bias, weight_init="zeros", **pad
    )


def _bn(c: int) -> nn.Cell:
    return nn.BatchNorm2d(c, eps=1e-5, use_batch_statistics=False)


class BasicBlock(nn.Cell):
    def __init__(self, cin, planes, stride=1, down=False, dilation=(1, 1), residual=True):
        super().__init__()
        self.conv1 = _conv(cin, planes, 3, stride, dilation[0])
        self.bn1 = _bn(planes)
        self.conv2 = _conv(planes, planes, 3, 1, dilation[1])
        self.bn2 = _bn(planes)
        self.relu = nn.ReLU()
        # fyu/drn builds the downsample branch of a non-residual block too (and computes it
        # without using it): its parameters are in the file, so the cell exists, unused.
        self.downsample = (
            nn.SequentialCell([_conv(cin, planes, 1, stride), _bn(planes)]) if down else None
        )
        self.residual = residual

    def construct(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (self.downsample(x) if self.downsample is not None else x)
        return self.relu(out)


class Bottleneck(nn.Cell):
    def __init__(self, cin, planes, stride=1, down=False, dilation=(1, 1), residual=True):
        super().__init__()
        self.conv1 = _conv(cin, planes, 1)
        self.bn1 = _bn(planes)
        # fyu/drn: only dilation[1] is used, and the stride sits on the 3x3 conv
        self.conv2 = _conv(planes, planes, 3, stride, dilation[1])
        self.bn2 = _bn(planes)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = _bn(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = (
            nn.SequentialCell([_conv(cin, planes * 4, 1, stride), _bn(planes * 4)])
            if down
            else None
        )

    def construct(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + (self.downsample(x) if self.downsample is not None else x)
        return self.relu(out)


class _Builder:
    """Follows fyu/drn's DRN.__init__ (its ``inplanes`` bookkeeping included)."""

    def __init__(self, inplanes: int) -> None:
        self.inplanes = inplanes

    def residual_layer(self, block, planes, blocks, stride=1, dilation=1, new_level=True, res=True):
        cls = Bottleneck if block == "bottleneck" else BasicBlock
        out = planes * EXPANSION[block]
        down = stride != 1 or self.inplanes != out
        first = (1, 1) if dilation == 1 else (dilation // 2 if new_level else dilation, dilation)
        cells = [cls(self.inplanes, planes, stride, down, first, res)]
        self.inplanes = out
        cells += [cls(out, planes, 1, False, (dilation, dilation), res) for _ in range(1, blocks)]
        return nn.SequentialCell(cells)

    def conv_layers(self, channels, convs, stride=1, dilation=1):
        cells = []
        for i in range(convs):
            cells += [
                _conv(self.inplanes, channels, 3, stride if i == 0 else 1, dilation),
                _bn(channels),
                nn.ReLU(),
            ]
            self.inplanes = channels
        return nn.SequentialCell(cells)


def build_base(a: Arch) -> list[nn.Cell]:
    """The DRN's children up to layer8, in fyu/drn's order (their index is the key prefix)."""
    c, n, b = a.channels, a.layers, _Builder(a.channels[0])
    if a.arch == "C":
        head = [_conv(3, c[0], 7), _bn(c[0]), nn.ReLU()]
        head += [b.residual_layer("basic", c[0], n[0]), b.residual_layer("basic", c[1], n[1], 2)]
    else:
        head = [nn.SequentialCell([_conv(3, c[0], 7), _bn(c[0]), nn.ReLU()])]
        head += [b.conv_layers(c[0], n[0]), b.conv_layers(c[1], n[1], stride=2)]
    body = [
        b.residual_layer(a.block, c[2], n[2], stride=2),
        b.residual_layer(a.block, c[3], n[3], stride=2),
        b.residual_layer(a.block, c[4], n[4], dilation=2, new_level=False),
        b.residual_layer(a.block, c[5], n[5], dilation=4, new_level=False),
    ]
    if a.arch == "C":
        body += [
            b.residual_layer("basic", c[6], n[6], dilation=2, new_level=False, res=False),
            b.residual_layer("basic", c[7], n[7], dilation=1, new_level=False, res=False),
        ]
    else:
        body += [b.conv_layers(c[6], n[6], dilation=2), b.conv_layers(c[7], n[7], dilation=1)]
    return head + body


class DRNSeg(nn.Cell):
    """Images (N, 3, H, W) float32 RGB in [0, 1], H and W multiples of 8 -> logits
    (N, classes, H, W) float32 (fyu/drn's output before its LogSoftmax)."""

    def __init__(self, a: Arch) -> None:
        super().__init__()
        self.arch = a
        self.base = nn.SequentialCell(build_base(a))
        self.seg = _conv(a.channels[-1], a.classes, 1, bias=True)
        self.up = nn.Conv2dTranspose(
            a.classes, a.classes, UP_KERNEL, stride=OUTPUT_STRIDE, pad_mode="pad",
            padding=(UP_KERNEL - OUTPUT_STRIDE) // 2, group=a.classes, has_bias=False,
            weight_init="zeros",
        )  # fmt: skip
        self.mean = ms.Tensor(np.array(CITYSCAPES_MEAN, np.float32).reshape(1, 3, 1, 1))
        self.std = ms.Tensor(np.array(CITYSCAPES_STD, np.float32).reshape(1, 3, 1, 1))
        self.set_train(False)

    def construct(self, images):
        x = (images - self.mean) / self.std
        return self.up(self.seg(self.base(x)))


class Predict(nn.Cell):
    """Images -> per-pixel class (N, H, W) int32: the argmax of the logits over the classes."""

    def __init__(self, net: DRNSeg) -> None:
        super().__init__()
        self.net = net

    def construct(self, images):
        return ops.argmax(self.net(images), dim=1).astype(ms.int32)


# ---------------------------------------------------------------------------------------------
# weights

_BN = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
_BN_BACK = {v: k for k, v in _BN.items()}


def torch_name(ms_name: str) -> str:
    """MindSpore parameter name -> the key of the same tensor in fyu/drn's state dict."""
    head, _, leaf = ms_name.rpartition(".")
    return f"{head}.{_BN_BACK.get(leaf, leaf)}"


class WeightsError(ValueError):
    """The state dict is not a DRNSeg's (one-line message)."""


def _children(shapes: dict[str, tuple[int, ...]]) -> dict[int, dict[str, tuple[int, ...]]]:
    """base.<i>.<rest> -> {i: {rest: shape}}."""
    out: dict[int, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        parts = key.split(".", 2)
        if parts[0] == "base" and len(parts) == 3 and parts[1].isdigit():
            out.setdefault(int(parts[1]), {})[parts[2]] = shape
    return out


def _layer(child: dict[str, tuple[int, ...]], where: str) -> tuple[str, int, int]:
    """(kind 'conv' | 'basic' | 'bottleneck', convs or blocks, width) of one layer's keys."""
    units = {int(k.split(".")[0]) for k in child if k.split(".")[0].isdigit()}
    if not units:
        raise WeightsError(f"{where} holds no layer of a DRN")
    u0 = min(units)
    if f"{u0}.conv1.weight" in child:
        kind = "bottleneck" if f"{u0}.conv3.weight" in child else "basic"
        return kind, len(units), child[f"{u0}.conv1.weight"][0]
    if len(child.get(f"{u0}.weight", ())) == 4:
        convs = [u for u in units if len(child.get(f"{u}.weight", ())) == 4]
        return "conv", len(convs), child[f"{u0}.weight"][0]
    raise WeightsError(f"{where} is neither a DRN conv stack nor residual blocks")


def infer_arch(shapes: dict[str, tuple[int, ...]]) -> Arch:
    """The DRNSeg variant whose state dict has these keys and shapes (WeightsError if none)."""
    for key in ("seg.weight", "up.weight"):
        if key not in shapes:
            raise WeightsError(f"missing key {key!r}: not a DRNSeg state dict (fyu/drn segment.py)")
    classes = shapes["seg.weight"][0]
    children = _children(shapes)
    if "weight" in children.get(0, {}) and len(children[0]["weight"]) == 4:
        arch, first, count = "C", 3, 11  # conv1, bn1, relu, layer1..layer8
    elif "0.weight" in children.get(0, {}):
        arch, first, count = "D", 1, 9  # layer0, layer1..layer8
    else:
        raise WeightsError(
            "no 'base.0' stem of a DRN (arch C 'base.0.weight' or D 'base.0.0.weight')"
        )
    want = set(range(count)) - ({2} if arch == "C" else set())
    if set(children) != want:
        raise WeightsError(
            f"base has children {sorted(children)}; a DRN-{arch} DRNSeg has {sorted(want)} "
            "(all eight layers)"
        )
    layers, channels, blocks = [], [], set()
    for i in range(8):
        kind, n, width = _layer(children[first + i], f"base.{first + i}")
        layers.append(n)
        channels.append(width)
        if 2 <= i <= 5:
            blocks.add(kind)
    if len(blocks) != 1 or blocks & {"conv"}:
        raise WeightsError(f"layers 3-6 mix or lack residual blocks ({sorted(blocks)})")
    return Arch(arch, blocks.pop(), tuple(layers), tuple(channels), classes)


def parameter_shapes(a: Arch) -> dict[str, tuple[int, ...]]:
    """The .pth key -> shape that p2phd's DRNSeg of this arch expects (shape-only build)."""
    from mindspore.nn.utils import no_init_parameters

    with no_init_parameters():
        net = DRNSeg(a)
    return {torch_name(n): tuple(p.shape) for n, p in net.parameters_and_names()}


def check_state_dict(net: DRNSeg, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays for ``net``'s parameters by MindSpore name, or WeightsError naming the first
    missing, mismatched or unexpected key (torch's ``num_batches_tracked`` are allowed)."""
    out: dict[str, np.ndarray] = {}
    for ms_name, p in net.parameters_and_names():
        key, shape = torch_name(ms_name), tuple(p.shape)
        if key not in state:
            raise WeightsError(f"missing key {key!r} (expected shape {shape})")
        if tuple(state[key].shape) != shape:
            raise WeightsError(f"key {key!r} has shape {tuple(state[key].shape)}, expected {shape}")
        out[ms_name] = np.asarray(state[key], np.float32)
    known = {torch_name(n) for n in out}
    extra = [k for k in state if k not in known and not k.endswith("num_batches_tracked")]
    if extra:
        raise WeightsError(f"unexpected key {extra[0]!r} ({len(extra)} keys not in the DRNSeg)")
    return out


def build_drn(state: dict[str, np.ndarray]) -> DRNSeg:
    """The DRNSeg these weights belong to, loaded (WeightsError when they fit none). A state
    dict saved through nn.DataParallel (fyu/drn's training checkpoints: every key starts with
    ``module.``) is read without that prefix, as the released files are."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    arch = infer_arch({k: tuple(v.shape) for k, v in state.items()})
    if min(arch.channels) < 1 or arch.classes < 1:
        raise WeightsError(f"empty layers in the inferred {arch}")
    net = DRNSeg(arch)
    arrays = check_state_dict(net, state)
    for name, p in net.parameters_and_names():
        p.set_data(ms.Tensor(arrays[name]))
    net.set_train(False)
    return net
