"""The FID Inception v3 (TensorFlow's 2015-12-05 graph, as pytorch-fid ports it) up to pool3.

FID numbers are only comparable when everyone uses the same network, weights and input
handling. This is pytorch-fid's ``InceptionV3([3])`` on ``fid_inception_v3()``:

- input: float NCHW in [0, 1], resized to 299x299 bilinearly with half-pixel centres and no
  antialiasing (torch's ``F.interpolate(..., mode='bilinear', align_corners=False)``), then
  scaled to [-1, 1] (2x - 1);
- torchvision's Inception v3 trunk (convolutions without bias, BatchNorm eps 0.001, ReLU) with
  the FID variant's blocks: the A, C and first E blocks average-pool without counting the zero
  padding (TensorFlow's average pool), the last E block max-pools instead;
- output: the 2048 channels of Mixed_7c averaged over space (pool3), float32 (N, 2048).

Cell attribute names are torchvision's module names, so a parameter's MindSpore name is the
torch key with BatchNorm's weight/bias/running_mean/running_var spelled gamma/beta/moving_mean/
moving_variance (``torch_name``). Weights come from pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` via the torch-free reader (``load_inception``).
"""

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from p2phd.metrics import FID_WEIGHTS_NAME, FID_WEIGHTS_URL  # noqa: F401  (re-exported)

INPUT_SIZE = 299
FEATURES = 2048
FC_CLASSES = 1008  # the TF graph's classifier: how the FID weights differ from torchvision's 1000


class Conv(nn.Cell):
    """torchvision's BasicConv2d: conv (no bias) -> BatchNorm(eps 0.001, inference) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0) -> None:
        super().__init__()
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        pad = (
            {"pad_mode": "pad", "padding": (ph, ph, pw, pw)} if ph or pw else {"pad_mode": "valid"}
        )
        # weights come from the .pth: skip the random initialisation (2 s for 22 M values)
        self.conv = nn.Conv2d(
            cin, cout, kernel, stride=stride, has_bias=False, weight_init="zeros", **pad
        )
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, use_batch_statistics=False)
        self.relu = nn.ReLU()

    def construct(self, x):
        return self.relu(self.bn(self.conv(x)))


def _tf_avg_pool() -> nn.Cell:
    # TensorFlow's average pool ignores the zero padding: count_include_pad=False.
    return nn.AvgPool2d(3, 1, pad_mode="pad", padding=1, count_include_pad=False)


class BlockA(nn.Cell):
    """Mixed_5b/c/d (FIDInceptionA)."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = Conv(cin, 64, 1)
        self.branch5x5_1 = Conv(cin, 48, 1)
        self.branch5x5_2 = Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, padding=1)
        self.pool = _tf_avg_pool()
        self.branch_pool = Conv(cin, pool_features, 1)

    def construct(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(self.pool(x))
        return ops.cat((b1, b5, b3, bp), 1)


class BlockB(nn.Cell):
    """Mixed_6a (InceptionB): stride-2 reduction."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, stride=2)
        self.pool = nn.MaxPool2d(3, 2, pad_mode="valid")

    def construct(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return ops.cat((b3, bd, self.pool(x)), 1)


class BlockC(nn.Cell):
    """Mixed_6b..e (FIDInceptionC): factorised 7x7 convolutions."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = Conv(cin, 192, 1)
        self.branch7x7_1 = Conv(cin, c7, 1)
        self.branch7x7_2 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = Conv(cin, c7, 1)
        self.branch7x7dbl_2 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = Conv(c7, 192, (1, 7), padding=(0, 3))
        self.pool = _tf_avg_pool()
        self.branch_pool = Conv(cin, 192, 1)

    def construct(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_3(self.branch7x7dbl_2(bd))
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(bd))
        bp = self.branch_pool(self.pool(x))
        return ops.cat((b1, b7, bd, bp), 1)


class BlockD(nn.Cell):
    """Mixed_7a (InceptionD): stride-2 reduction."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = Conv(cin, 192, 1)
        self.branch3x3_2 = Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = Conv(cin, 192, 1)
        self.branch7x7x3_2 = Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = Conv(192, 192, 3, stride=2)
        self.pool = nn.MaxPool2d(3, 2, pad_mode="valid")

    def construct(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(b7))
        return ops.cat((b3, b7, self.pool(x)), 1)


class BlockE(nn.Cell):
    """Mixed_7b (FIDInceptionE_1: TF average pool) and Mixed_7c (FIDInceptionE_2: max pool)."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.branch1x1 = Conv(cin, 320, 1)
        self.branch3x3_1 = Conv(cin, 384, 1)
        self.branch3x3_2a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = Conv(cin, 448, 1)
        self.branch3x3dbl_2 = Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = Conv(384, 384, (3, 1), padding=(1, 0))
        # The FID graph max-pools in its last block (pytorch-fid: "likely an error" in the TF
        # graph, kept because the weights were trained with it).
        self.pool = nn.MaxPool2d(3, 1, pad_mode="pad", padding=1) if max_pool else _tf_avg_pool()
        self.branch_pool = Conv(cin, 192, 1)

    def construct(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = ops.cat((self.branch3x3_2a(b3), self.branch3x3_2b(b3)), 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = ops.cat((self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)), 1)
        bp = self.branch_pool(self.pool(x))
        return ops.cat((b1, b3, bd, bp), 1)


class FIDInception(nn.Cell):
    """Images (N, 3, H, W) float32 in [0, 1], any H, W -> pool3 features (N, 2048) float32."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = Conv(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, 2, pad_mode="valid")
        self.Conv2d_3b_1x1 = Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = Conv(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, 2, pad_mode="valid")
        self.Mixed_5b = BlockA(192, 32)
        self.Mixed_5c = BlockA(256, 64)
        self.Mixed_5d = BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128)
        self.Mixed_6c = BlockC(768, 160)
        self.Mixed_6d = BlockC(768, 160)
        self.Mixed_6e = BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, max_pool=False)
        self.Mixed_7c = BlockE(2048, max_pool=True)
        self.set_train(False)

    def construct(self, images):
        x = preprocess(images)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.maxpool1(x)))
        x = self.maxpool2(x)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6a(x)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return x.mean(axis=(2, 3))


def preprocess(images):
    """pytorch-fid's input handling: bilinear resize to 299x299 (half-pixel centres, no
    antialiasing), then [0, 1] -> [-1, 1]. Also a graph-mode function on its own (tests)."""
    x = ops.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2 * x - 1


class Preprocess(nn.Cell):
    def construct(self, images):
        return preprocess(images)


# ---------------------------------------------------------------------------------------------
# weights


_BN = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def torch_name(ms_name: str) -> str:
    """MindSpore parameter name -> the key of the same tensor in pytorch-fid's state dict."""
    head, _, leaf = ms_name.rpartition(".")
    if head.endswith(".bn"):
        leaf = {v: k for k, v in _BN.items()}[leaf]
    return f"{head}.{leaf}"


class WeightsError(ValueError):
    """The state dict is not the FID Inception's (one-line message)."""


def check_state_dict(net: FIDInception, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays for ``net``'s parameters by MindSpore name, or WeightsError naming the first
    missing, mismatched or unexpected key."""
    wanted = {name: tuple(p.shape) for name, p in net.parameters_and_names()}
    fc = {"fc.weight": (FC_CLASSES, FEATURES), "fc.bias": (FC_CLASSES,)}
    out: dict[str, np.ndarray] = {}
    for ms_name, shape in wanted.items():
        key = torch_name(ms_name)
        if key not in state:
            raise WeightsError(f"missing key {key!r} (expected shape {shape})")
        if tuple(state[key].shape) != shape:
            raise WeightsError(f"key {key!r} has shape {tuple(state[key].shape)}, expected {shape}")
        out[ms_name] = np.asarray(state[key], np.float32)
    for key, shape in fc.items():
        if key not in state or tuple(state[key].shape) != shape:
            got = tuple(state[key].shape) if key in state else "missing"
            raise WeightsError(
                f"{key} is {got}, expected {shape}: the FID Inception has a {FC_CLASSES}-class "
                "classifier (torchvision's ImageNet Inception has 1000; it gives other FIDs)"
            )
    known = {torch_name(n) for n in wanted} | set(fc)
    extra = [k for k in state if k not in known and not k.endswith("num_batches_tracked")]
    if extra:
        raise WeightsError(
            f"unexpected key {extra[0]!r} ({len(extra)} keys not in the FID Inception)"
        )
    return out


def build_inception(state: dict[str, np.ndarray]) -> FIDInception:
    """The network with these weights (a pytorch-fid state dict as numpy arrays)."""
    net = FIDInception()
    arrays = check_state_dict(net, state)
    for name, p in net.parameters_and_names():
        p.set_data(ms.Tensor(arrays[name]))
    net.set_train(False)
    return net
