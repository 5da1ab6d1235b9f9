"""Mixed precision for the nets (``bin/train --amp O1|O2``, ``bin/render --amp``).

- ``set_precision(cell, level)``: O0 leaves the cell in float32. O1 runs the convolutions
  (nn.Conv2d, nn.Conv2dTranspose and their subclasses) in float16; O2 runs everything in float16.
  In both, instance/batch norm cells stay float32 (their inputs are cast back), as do the losses
  (p2phd.nets.losses casts every prediction to float32). Parameters stay float32: they are cast
  on use, so optimisers and checkpoints do not change.
- ``LossScale``: a dynamic loss scale for one optimiser (mindspore.amp.DynamicLossScaler):
  starting at 2**10, the loss is multiplied by the scale, gradients divided by it, and a step whose gradients are not
  all finite is skipped and halves the scale; 1000 finite steps in a row double it.

fp16 pays on Ascend/GPU; on this CPU (oneDNN, no fp16 convolution kernels that are faster than
fp32) it is no faster (measured with MindSpore 2.10): here it is only proven correct.
"""

import mindspore as ms
from mindspore import nn
from mindspore.amp import DynamicLossScaler, all_finite

from .layers import InstanceNorm

LEVELS = ("O0", "O1", "O2")


def set_precision(cell: nn.Cell, level: str) -> nn.Cell:
    if level not in LEVELS:
        raise ValueError(f"unknown amp level {level!r} ({', '.join(LEVELS)})")
    if level == "O0":
        return cell
    if level == "O2":
        cell.to_float(ms.float16)
    for _, sub in cell.cells_and_names():
        if level == "O1" and isinstance(sub, (nn.Conv2d, nn.Conv2dTranspose)):
            sub.to_float(ms.float16)
        if isinstance(sub, (InstanceNorm, nn.BatchNorm2d)):
            sub.to_float(ms.float32)
    return cell


class LossScale:
    def __init__(self, scale: float = 2.0**10, window: int = 1000) -> None:
        self.scaler = DynamicLossScaler(scale_value=scale, scale_factor=2, scale_window=window)

    @property
    def value(self) -> ms.Parameter:
        return self.scaler.scale_value

    def unscale(self, grads: tuple) -> tuple[tuple, bool]:
        """Gradients of the scaled loss -> (true gradients, all finite?); adjusts the scale."""
        grads = self.scaler.unscale(grads)
        finite = all_finite(grads)
        self.scaler.adjust(finite)
        return grads, bool(finite.asnumpy())
