"""The instance-wise feature encoder E and its instance-wise average pooling.

E(image, index): the image (N, 3, H, W) in [-1, 1] goes through NVIDIA's encoder (reflection pad,
7x7 conv, n_down stride-2 convs, n_down transposed convs, no residual blocks, 7x7 conv, tanh); then
every pixel of each instance gets that instance's mean, per batch element and channel.

``index`` is (N, H, W) int32 with the ids of each sample renumbered 0..K-1
(``encoding.dense_index``), K <= max_instances. Graph mode needs static shapes, so the pooling is
a segment sum over N*H*max_instances (sample, row, instance) segments, a sum over the rows, and a
gather back; gradients flow through the mean (all ops have exact gradients). Ids >=
max_instances would be silently dropped by the segment sum, so callers must size max_instances
from the data (the dataset manifest's ``max_instances``).
"""

from mindspore import nn, ops

from .layers import conv, conv_norm_relu, reflection_pad, up_norm_relu


class InstancePool(nn.Cell):
    """(N, C, H, W) float, (N, H, W) int32 ids in [0, max_instances) -> per-instance means.

    Sums are taken per (row, instance) first, then over the rows: one segment sum over a road
    that covers a million pixels is off by ~1e-5 relative in float32 (forward, and in the
    backward, which sums the gradient the same way), the two-level one by ~1e-7. The gather back
    goes through the per-row table too, so autodiff's backward has the same two levels.
    """

    def __init__(self, max_instances: int) -> None:
        super().__init__()
        self.max_instances = max(1, int(max_instances))

    def construct(self, x, index):
        n, c, h, w = x.shape
        k = self.max_instances
        rows = n * h * k  # one segment per (sample, row, instance)
        offset = ops.arange(n * h, dtype=index.dtype).reshape(n, h, 1) * k
        seg = (index + offset).reshape(-1)  # (N*H*W,)
        values = x.transpose(0, 2, 3, 1).reshape(-1, c)  # (N*H*W, C)
        sums = ops.unsorted_segment_sum(values, seg, rows).reshape(n, h, k, c).sum(1)
        ones = ops.ones((n * h * w, 1), x.dtype)
        counts = ops.unsorted_segment_sum(ones, seg, rows).reshape(n, h, k, 1).sum(1)
        means = sums / ops.maximum(counts, 1.0)  # (N, K, C); counts are exact integers
        per_row = ops.broadcast_to(means.reshape(n, 1, k, c), (n, h, k, c)).reshape(rows, c)
        pooled = ops.gather(per_row, seg, 0)  # (N*H*W, C)
        return pooled.reshape(n, h, w, c).transpose(0, 3, 1, 2)


class Encoder(nn.Cell):
    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        nef: int = 16,
        n_down: int = 4,
        norm: str = "instance",
        max_instances: int = 1,
    ) -> None:
        super().__init__()
        layers = [reflection_pad(3)] + conv_norm_relu(input_nc, nef, 7, 1, 0, norm)
        for i in range(n_down):
            mult = 2**i
            layers += conv_norm_relu(nef * mult, nef * mult * 2, 3, 2, 1, norm)
        for i in range(n_down):
            mult = 2 ** (n_down - i)
            layers += up_norm_relu(nef * mult, nef * mult // 2, norm)
        layers += [reflection_pad(3), conv(nef, output_nc, 7), nn.Tanh()]
        self.model = nn.SequentialCell(layers)
        self.pool = InstancePool(max_instances)

    def construct(self, image, index):
        return self.pool(self.model(image), index)
