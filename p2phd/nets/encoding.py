"""Input encoding: what G and D see, in NVIDIA's channel order.

Device side (MindSpore, graph-mode safe; use inside the training step):

- ``one_hot(label, label_nc)``: (N, H, W) int32 ids -> (N, label_nc, H, W) float32 0/1.
- ``edge_map(index)``: (N, H, W) int32 instance ids -> (N, 1, H, W) float32 0/1. A pixel is 1 when
  any of its 4 neighbours has another id (so both pixels of a differing pair are marked and
  boundaries are 2 px thick); pixels outside the image are not neighbours (borders unmarked).
  Renumbered (``dense_index``) and raw ids give the same map.
- ``encode_condition(label, index, label_nc, use_edge)``: the condition [one-hot | edge]
  (N, label_nc(+1), H, W). With ``label_nc == 0`` ``label`` is already the RGB input
  (N, input_nc, H, W) float in [-1, 1] and is used as is. With ``use_edge`` False ``index`` may be
  None. ``ConditionEncoder(label_nc, use_edge)`` is the same as a Cell.
- ``generator_input(cond, feat)``: [cond | features] (features last), the G input.
- ``discriminator_input(cond, image)``: [cond | image], the D input (features never go to D).

Host side (NumPy, in the data pipeline; defined in ``p2phd.core.instances``, which needs no
MindSpore, and re-exported here):

- ``dense_index(inst)``: (H, W) raw instance ids -> ((H, W) int32 ids renumbered 0..K-1 in
  ascending id order, the (K,) sorted original ids). The encoder's instance pooling and
  ``edge_map`` consume the renumbered map; ``ids[index]`` gives the raw ids back.
"""

import mindspore as ms
from mindspore import Tensor, nn, ops

from p2phd.core.instances import dense_index  # noqa: F401 - its home is core (no MindSpore)

_ON = Tensor(1.0, ms.float32)
_OFF = Tensor(0.0, ms.float32)


def one_hot(label, label_nc: int):
    """(N, H, W) int32 -> (N, label_nc, H, W) float32. Ids >= label_nc give all-zero pixels."""
    return ops.one_hot(label, label_nc, _ON, _OFF, 1)


def edge_map(index):
    """(N, H, W) int ids -> (N, 1, H, W) float32 4-neighbour boundary map (see module doc)."""
    horiz = ops.cast(index[:, :, 1:] != index[:, :, :-1], ms.float32)  # (N, H, W-1)
    vert = ops.cast(index[:, 1:, :] != index[:, :-1, :], ms.float32)  # (N, H-1, W)
    marks = (
        ops.pad(horiz, (1, 0))
        + ops.pad(horiz, (0, 1))
        + ops.pad(vert, (0, 0, 1, 0))
        + ops.pad(vert, (0, 0, 0, 1))
    )
    return ops.expand_dims(ops.cast(marks > 0, ms.float32), 1)


def encode_condition(label, index, label_nc: int, use_edge: bool):
    """[one-hot | edge] (or [rgb | edge] for label_nc 0): the condition both G and D get."""
    cond = one_hot(label, label_nc) if label_nc > 0 else label
    if use_edge:
        cond = ops.cat((cond, edge_map(index)), 1)
    return cond


def generator_input(cond, feat):
    return ops.cat((cond, feat), 1)


def discriminator_input(cond, image):
    return ops.cat((cond, image), 1)


class ConditionEncoder(nn.Cell):
    """Cell form of ``encode_condition``: construct(label, index) -> condition."""

    def __init__(self, label_nc: int, use_edge: bool) -> None:
        super().__init__()
        self.label_nc = label_nc
        self.use_edge = use_edge

    def construct(self, label, index=None):
        return encode_condition(label, index, self.label_nc, self.use_edge)
