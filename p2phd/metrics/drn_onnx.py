"""fyu/drn's DRNSeg as ONNX, written from p2phd's own DRN Cells, and run by onnxruntime or OpenVINO.

``bin/evaluate --seg_engine onnxruntime|openvino`` segments through this graph. It is built
from the loaded ``drn.DRNSeg`` by ``deploy.onnx_ops``' Cell walk (exact class match, children
checked), so there is no second model to drift: the emitters below add DRN's structural Cells
to ``onnx_ops.EMITTERS`` (registered when this module is imported), and the leaves are the ones
the generator export already has:

- Conv2d with dilation (``Conv`` ``dilations``), BatchNorm2d with moving statistics
  (``BatchNormalization``), ReLU, SequentialCell;
- the up-sampling ``Conv2dTranspose(classes, classes, 16, stride 8, padding 4, group=classes)``
  (``ConvTranspose`` ``group``, MindSpore's crop as pads);
- ``BasicBlock`` / ``Bottleneck``: their ``construct`` (a residual sum through ``downsample``
  when the block has one; arch C's last two BasicBlocks have no sum and leave their
  ``downsample`` unused, as fyu/drn does);
- ``DRNSeg``: ``(images - mean) / std`` (Sub, then Div: transforms.Normalize's order), base,
  seg, up; ``Predict``: ``ArgMax`` over the classes (first index on ties, as MindSpore's),
  int32.

Input ``images`` (N, 3, H, W) float32 RGB in [0, 1], N, H, W dynamic (H, W multiples of 8);
output ``classes`` (N, H, W) int32 or, ``logits=True``, ``logits`` (N, classes, H, W).
"""

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from p2phd.deploy.onnx_ops import OPSET, Builder, UnsupportedCell, children, emit, emitter
from p2phd.metrics import drn

ENGINES = ("onnxruntime", "openvino")


def _chain(b: Builder, kids: dict[str, Any], names: tuple[str, ...], x: str, path: str) -> str:
    for name in names:
        x = emit(b, kids[name], x, f"{path}.{name}")
    return x


def _block(b: Builder, cell: Any, x: str, path: str, stages: tuple, residual: bool) -> str:
    """A residual block's construct: (conv, bn) stages with the block's ReLU between them, the
    shortcut (``downsample`` when the block has one) added when ``residual``, a last ReLU."""
    has_down = cell.downsample is not None
    names = {n for stage in stages for n in stage} | {"relu"}
    kids = children(cell, path, names | ({"downsample"} if has_down else set()))
    out = x
    for i, stage in enumerate(stages):
        out = _chain(b, kids, stage, out, path)
        if i < len(stages) - 1:
            out = emit(b, kids["relu"], out, path + ".relu")
    if residual:
        short = emit(b, kids["downsample"], x, path + ".downsample") if has_down else x
        out = b.op("Add", [out, short], "residual")
    return emit(b, kids["relu"], out, path + ".relu")


@emitter(drn.BasicBlock)
def _basic_block(b: Builder, cell: Any, x: str, path: str) -> str:
    if not isinstance(cell.residual, bool):
        raise UnsupportedCell(f"{path}: BasicBlock.residual must be a bool")
    return _block(b, cell, x, path, (("conv1", "bn1"), ("conv2", "bn2")), cell.residual)


@emitter(drn.Bottleneck)
def _bottleneck(b: Builder, cell: Any, x: str, path: str) -> str:
    stages = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))
    return _block(b, cell, x, path, stages, residual=True)


@emitter(drn.DRNSeg)
def _drn_seg(b: Builder, cell: Any, x: str, path: str) -> str:
    kids = children(cell, path, {"base", "seg", "up"})
    mean = b.const("mean", cell.mean.asnumpy(), np.float32)
    std = b.const("std", cell.std.asnumpy(), np.float32)
    x = b.op("Div", [b.op("Sub", [x, mean], "centred"), std], "normalised")
    return _chain(b, kids, ("base", "seg", "up"), x, path)


@emitter(drn.Predict)
def _predict(b: Builder, cell: Any, x: str, path: str) -> str:
    logits = emit(b, children(cell, path, {"net"})["net"], x, path + ".net")
    classes = b.op("ArgMax", [logits], "argmax", axis=1, keepdims=0, select_last_index=0)
    return b.op("Cast", [classes], "classes", to=TensorProto.INT32)


def build(net: Any, logits: bool = False) -> onnx.ModelProto:
    """The ModelProto of ``net`` (a loaded drn.DRNSeg, eval mode) with the argmax, or without
    it (``logits``); UnsupportedCell if a Cell in it has no emitter."""
    b = Builder(half=False)
    cell, out = (net, "logits") if logits else (drn.Predict(net), "classes")
    y = emit(b, cell, "images", "DRNSeg" if logits else "Predict")
    b.nodes.append(helper.make_node("Identity", [y], [out], name=out))
    if logits:
        output = helper.make_tensor_value_info(
            out, TensorProto.FLOAT, ["N", net.arch.classes, "H", "W"]
        )
    else:
        output = helper.make_tensor_value_info(out, TensorProto.INT32, ["N", "H", "W"])
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = helper.make_graph(b.nodes, "p2phd_drnseg", [images], [output], b.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="p2phd"
    )
    model.ir_version = 8  # opset 17's IR, as bin/export's files
    return model


class Segmenter:
    """``net``'s prediction through an ONNX engine: call(images (N, 3, H, W) float32) ->
    classes (N, H, W) int32 (or the logits with ``logits``). The graph is built in memory from
    the loaded Cells each time (seconds against the minutes it then runs: no cached file to
    go stale when p2phd's network or writer changes)."""

    def __init__(self, net: Any, engine: str = "onnxruntime", threads: int = 0, logits=False):
        from p2phd.deploy import onnx_run

        if engine not in ENGINES:
            raise ValueError(f"engine {engine!r}: the ONNX engines are {', '.join(ENGINES)}")
        data = build(net, logits).SerializeToString()
        self.output = "logits" if logits else "classes"
        if engine == "openvino":
            self.session: Any = onnx_run.OpenVINOSession(data, threads)
        else:
            import onnxruntime as ort

            self.session = ort.InferenceSession(
                data,
                onnx_run.session_options(threads, spin=False),
                providers=["CPUExecutionProvider"],
            )

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {"images": images})[0]
