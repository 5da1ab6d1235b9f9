"""The ONNX model bin/export writes: condition encoding + G (+ uint8), from the loaded Cells.

The same function as the MindIR (``p2phd.deploy.graph``), with the same input and output names;
batch, height and width are dynamic axes (``N``, ``H``, ``W``; H and W multiples of the
generator's stride). Nodes, in order:

- ``label`` (N, H, W) int32 -> one-hot (N, label_nc, H, W): ``Equal`` with the class ids
  0..label_nc-1, cast to float (ids outside that range give all-zero pixels, as MindSpore's
  one_hot); label_nc 0 runs take ``label`` (N, input_nc, H, W) float32 as it is;
- ``instance`` (N, H, W) int32 -> edge map (N, 1, H, W): 4-neighbour differences by ``Slice`` +
  ``Equal``/``Not``, each padded back with a zero row/column, summed, > 0 (encoding.edge_map);
- ``features`` (N, feat_num, H, W) float32 concatenated last;
- G's Cells (``p2phd.deploy.onnx_ops``), in float16 between two Casts with ``half``;
- ``uint8``: palette.to_uint8's float32 arithmetic: clip(round((x + 1) * 127.5), 0, 255) with
  ``Round`` half-to-even as np.rint, NHWC, grey replicated to RGB.
"""

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from p2phd.deploy.onnx_ops import OPSET, Builder, emit
from p2phd.nets import uses_edge

DIMS = {"N": "batch", "H": "height", "W": "width"}
_DTYPE = {"int32": TensorProto.INT32, "float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8}
_BIG = np.iinfo(np.int64).max


def symbolic(spec: dict[str, Any]) -> dict[str, Any]:
    """An input/output spec of graph.input_spec with the dynamic dims named N, H, W."""
    shape = list(spec["shape"])
    names = ["N", "H", "W"] if len(shape) == 3 else ["N", shape[1], "H", "W"]
    if spec["name"] == "image" and spec["dtype"] == "uint8":
        names = ["N", "H", "W", 3]
    return {**spec, "shape": names}


def _one_hot(b: Builder, label: str, label_nc: int) -> str:
    ids = b.const("class_ids", np.arange(label_nc, dtype=np.int32).reshape(1, -1, 1, 1))
    lab = b.op("Unsqueeze", [label, b.const("axis1", [1], np.int64)], "label_1hw")
    return b.op("Cast", [b.op("Equal", [lab, ids])], "one_hot", to=TensorProto.FLOAT)


def _slice(b: Builder, x: str, axis: int, start: int, end: int) -> str:
    c = lambda v: b.const("i", [v], np.int64)  # noqa: E731
    return b.op("Slice", [x, c(start), c(end), c(axis)], "slice")


def _edge_map(b: Builder, inst: str) -> str:
    marks = []
    for axis in (2, 1):  # horizontal neighbours (along W), then vertical (along H)
        diff = b.op(
            "Not", [b.op("Equal", [_slice(b, inst, axis, 1, _BIG), _slice(b, inst, axis, 0, -1)])]
        )
        diff = b.op("Cast", [diff], "differs", to=TensorProto.FLOAT)
        for before in (1, 0):  # the pair marks both of its pixels
            pads = np.zeros(6, np.int64)
            pads[axis if before else axis + 3] = 1
            marks.append(b.op("Pad", [diff, b.const("pads", pads)], "mark", mode="constant"))
    total = b.op("Add", [b.op("Add", [marks[0], marks[1]]), b.op("Add", [marks[2], marks[3]])])
    edge = b.op("Greater", [total, b.const("zero", 0.0, np.float32)])
    edge = b.op("Cast", [edge], "edge", to=TensorProto.FLOAT)
    return b.op("Unsqueeze", [edge, b.const("axis1", [1], np.int64)], "edge_map")


def _to_uint8(b: Builder, x: str, grey: bool) -> str:
    if grey:
        x = b.op("Tile", [x, b.const("reps", [1, 3, 1, 1], np.int64)], "grey_rgb")
    x = _slice(b, x, 1, 0, 3)
    x = b.op(
        "Mul", [b.op("Add", [x, b.const("one", 1.0, np.float32)]), b.const("k", 127.5, np.float32)]
    )
    x = b.op("Clip", [x, b.const("lo", 0.0, np.float32), b.const("hi", 255.0, np.float32)])
    x = b.op("Transpose", [b.op("Round", [x])], "nhwc", perm=[0, 2, 3, 1])
    return b.op("Cast", [x], "image_u8", to=TensorProto.UINT8)


def build(
    G: Any,
    arch: Any,
    inputs: list[dict[str, Any]],
    output: dict[str, Any],
    half: bool,
    fused_norm: bool = False,
) -> onnx.ModelProto:
    """The ModelProto for G (loaded, eval mode) with the encoding in front; see module doc.
    ``fused_norm``: ONNX InstanceNormalization (inexact; for bench-vs-nvidia's comparison)."""
    b = Builder(half, fused_norm)
    names = [s["name"] for s in inputs]
    if arch.label_nc > 0:
        cond = [_one_hot(b, "label", arch.label_nc)]
    else:
        cond = ["label"]
    if uses_edge(arch):
        cond.append(_edge_map(b, "instance"))
    if "features" in names:
        cond.append("features")
    x = b.op("Concat", cond, "g_input", axis=1) if len(cond) > 1 else cond[0]
    if half:
        x = b.op("Cast", [x], "g_input_half", to=TensorProto.FLOAT16)
    y = emit(b, G, x)
    if half:
        y = b.op("Cast", [y], "g_output", to=TensorProto.FLOAT)
    if output["dtype"] == "uint8":
        y = _to_uint8(b, y, arch.output_nc == 1)
    b.nodes.append(helper.make_node("Identity", [y], ["image"], name="image"))
    graph = helper.make_graph(
        b.nodes,
        "p2phd_generator",
        [_value_info(s) for s in map(symbolic, inputs)],
        [_value_info(symbolic(output))],
        b.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="p2phd"
    )
    model.ir_version = 8  # opset 17's IR: readable by TensorRT 8.6+, OpenVINO, onnxruntime
    return model


def _value_info(spec: dict[str, Any]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(spec["name"], _DTYPE[spec["dtype"]], spec["shape"])


def check(path: Path) -> None:
    """The full checker and strict shape inference on the written file (raise if either fails;
    strict inference also refuses an inferred shape that contradicts the declared one)."""
    onnx.checker.check_model(str(path), full_check=True)
    inferred = path.with_name(path.name + ".inferred")
    try:
        onnx.shape_inference.infer_shapes_path(str(path), str(inferred), strict_mode=True)
    finally:
        inferred.unlink(missing_ok=True)


def save(model: onnx.ModelProto, path: Path) -> None:
    """One file, weights inside (protobuf's 2 GB limit: p2phd's largest G is ~0.7 GB)."""
    onnx.save_model(model, str(path))
