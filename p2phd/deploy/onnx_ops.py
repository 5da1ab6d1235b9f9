"""ONNX nodes for p2phd's generator Cells: one emitter per Cell class, by the Cell's own settings.

The ONNX file is written from the network the checkpoint loads into, never from a second
description of it: ``emit(b, cell, x)`` looks the Cell's exact class up in ``EMITTERS`` and
raises ``UnsupportedCell`` for any other class (a new layer, or a subclass with another
forward), and the structural Cells (ResnetBlock, GlobalGenerator, LocalEnhancer) check that
their children are the ones their emitter knows. A change to the networks therefore either
raises here or changes MindSpore's output, which tests/test_onnx.py compares with onnxruntime's
for every architecture.

Op mapping (opset ``OPSET``):

- Conv2d and its rewritten-backward subclasses (same forward): ``Conv`` (pads from pad_mode);
- Conv2dTranspose: ``ConvTranspose``, MindSpore's (top, bottom, left, right) crop as pads;
- Pad(REFLECT): ``Pad`` mode reflect; ReLU, Tanh: ``Relu``, ``Tanh``;
- InstanceNorm (InstanceNorm2d, affine=False, biased variance, eps): the exact spelling of
  ``instance_norm`` below, not ``InstanceNormalization`` (measured: see its doc);
- BatchNorm2d in eval mode: ``BatchNormalization`` with the moving statistics;
- AvgPool2d(count_include_pad False): ``AveragePool`` count_include_pad 0;
- SequentialCell: its cells in order; ResnetBlock: ``x + conv_block(x)``.

``half``: weights are float16 and activations flow in float16; each norm computes in float32
between two Casts (its sums run over up to 2048x1024 pixels: float16's 11-bit mantissa and
65504 maximum cannot hold them).
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from mindspore import nn
from onnx import TensorProto, helper, numpy_helper

from p2phd.deploy import sidecar
from p2phd.nets.generator import GlobalGenerator, LocalEnhancer
from p2phd.nets.layers import InstanceNorm, LowMemoryConv2d, ResnetBlock, Stride1Conv2d

OPSET = sidecar.OPSET  # one home: deploy.sidecar


class UnsupportedCell(ValueError):
    """A Cell (or a setting of one) that the ONNX writer has no emitter for."""


class Builder:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, half: bool, fused_norm: bool = False) -> None:
        self.half = half
        self.fused_norm = fused_norm  # ONNX InstanceNormalization instead (bench's comparison)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    @property
    def float_type(self) -> int:
        return TensorProto.FLOAT16 if self.half else TensorProto.FLOAT

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, hint: str, value: Any, dtype: Any = None) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def weight(self, hint: str, param: Any) -> str:
        """A Parameter as an initializer, float16 under ``half``."""
        return self.const(hint, param.asnumpy(), np.float16 if self.half else np.float32)

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attrs: Any) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


Emitter = Callable[[Builder, Any, str, str], str]
EMITTERS: dict[type, Emitter] = {}


def emitter(*classes: type) -> Callable[[Emitter], Emitter]:
    def register(fn: Emitter) -> Emitter:
        for cls in classes:
            EMITTERS[cls] = fn
        return fn

    return register


def emit(b: Builder, cell: Any, x: str, path: str = "G") -> str:
    """The nodes computing ``cell(x)``; raises UnsupportedCell for a class without an emitter."""
    fn = EMITTERS.get(type(cell))
    if fn is None:
        raise UnsupportedCell(
            f"{path}: no ONNX emitter for {type(cell).__module__}.{type(cell).__qualname__} "
            "(p2phd.deploy.onnx_ops); the exported graph would not be the network"
        )
    return fn(b, cell, x, path)


def children(cell: Any, path: str, expected: set[str]) -> dict[str, Any]:
    """A structural Cell's children by name, or UnsupportedCell when they are not ``expected``
    (a branch added to a network must not vanish from its graph)."""
    got = dict(cell.name_cells())
    if set(got) != expected:
        raise UnsupportedCell(
            f"{path}: {type(cell).__qualname__} has children {sorted(got)}, the ONNX writer "
            f"knows {sorted(expected)}"
        )
    return got


def _four(padding: Any) -> tuple[int, int, int, int]:
    """MindSpore's padding (int or (top, bottom, left, right)) as (top, bottom, left, right)."""
    if isinstance(padding, int):
        return (padding,) * 4
    return tuple(int(p) for p in padding)  # type: ignore[return-value]


def _pads(cell: Any, path: str) -> list[int]:
    """ONNX pads [top, left, bottom, right] of a conv Cell."""
    if cell.pad_mode == "valid":
        return [0, 0, 0, 0]
    if cell.pad_mode != "pad":
        raise UnsupportedCell(f"{path}: pad_mode {cell.pad_mode!r} (the writer knows pad, valid)")
    top, bottom, left, right = _four(cell.padding)
    return [top, left, bottom, right]


def _conv_inputs(b: Builder, cell: Any, x: str, path: str) -> list[str]:
    if cell.data_format != "NCHW":
        raise UnsupportedCell(f"{path}: data_format {cell.data_format}")
    ins = [x, b.weight(path + ".weight", cell.weight)]
    if cell.has_bias:
        ins.append(b.weight(path + ".bias", cell.bias))
    return ins


def _conv_like(b: Builder, cell: Any, x: str, path: str, op: str, name: str) -> str:
    return b.op(
        op,
        _conv_inputs(b, cell, x, path),
        name,
        kernel_shape=list(cell.kernel_size),
        strides=list(cell.stride),
        dilations=list(cell.dilation),
        group=int(cell.group),
        pads=_pads(cell, path),
    )


@emitter(nn.Conv2d, LowMemoryConv2d, Stride1Conv2d)
def _conv(b: Builder, cell: Any, x: str, path: str) -> str:
    # LowMemoryConv2d/Stride1Conv2d only rewrite the backward: their forward is nn.Conv2d's
    return _conv_like(b, cell, x, path, "Conv", "conv")


@emitter(nn.Conv2dTranspose)
def _conv_transpose(b: Builder, cell: Any, x: str, path: str) -> str:
    # MindSpore's 'pad' mode crops (top, bottom, left, right) off the full transposed output,
    # which is what ONNX's pads do (output = s*(in-1) + k - begin - end, output_padding 0).
    if getattr(cell, "output_padding", 0):
        raise UnsupportedCell(f"{path}: output_padding {cell.output_padding}")
    return _conv_like(b, cell, x, path, "ConvTranspose", "deconv")


@emitter(nn.Pad)
def _pad(b: Builder, cell: Any, x: str, path: str) -> str:
    if cell.mode != "REFLECT":
        raise UnsupportedCell(f"{path}: Pad mode {cell.mode} (the writer knows REFLECT)")
    p = np.asarray(cell.paddings.asnumpy(), np.int64)  # (rank, 2): (before, after) per axis
    pads = b.const("pads", np.concatenate([p[:, 0], p[:, 1]]), np.int64)
    return b.op("Pad", [x, pads], "reflect_pad", mode="reflect")


@emitter(nn.ReLU)
def _relu(b: Builder, cell: Any, x: str, path: str) -> str:
    return b.op("Relu", [x])


@emitter(nn.Tanh)
def _tanh(b: Builder, cell: Any, x: str, path: str) -> str:
    return b.op("Tanh", [x])


def instance_norm(b: Builder, x: str, eps: float) -> str:
    """(x - mean) / sqrt(var + eps) per (sample, channel) plane, biased variance, in float32.

    Why not ONNX's InstanceNormalization: onnxruntime 1.32's CPU kernel (and a one-step
    ReduceMean over H and W) sums a whole plane in one float32 accumulator. Measured at one
    2048x1024 plane against float64: up to 4.5e-4 relative error (ReLU-like inputs, 3.2e-3
    absolute), worse than the 8e-5 that cost MindSpore's batch-norm form 2-3 levels of 255 in a
    full 1024p G. Averaging each row first and then the row means (two ReduceMeans, each over at
    most 2048 values) gives 8e-7, float32's own rounding of (x - mean) (test_onnx.py checks it
    at that size). Cost: ~2-4x the fused kernel's time for the norm itself (bench-vs-nvidia).
    """
    f32 = x
    if b.half:
        f32 = b.op("Cast", [x], "norm_in", to=TensorProto.FLOAT)
    if b.fused_norm:  # bench-vs-nvidia's speed comparison only: not exact (see above)
        y = b.op("InstanceNormalization", [f32, *_unit_affine(b, x)], epsilon=eps)
        return b.op("Cast", [y], "norm_out", to=TensorProto.FLOAT16) if b.half else y
    mean = b.op("ReduceMean", [b.op("ReduceMean", [f32], axes=[3])], "mean", axes=[2])
    d = b.op("Sub", [f32, mean], "centred")
    sq = b.op("Mul", [d, d], "sq")
    var = b.op("ReduceMean", [b.op("ReduceMean", [sq], axes=[3])], "var", axes=[2])
    std = b.op("Sqrt", [b.op("Add", [var, b.const("eps", eps, np.float32)])], "std")
    y = b.op("Div", [d, std], "inorm")
    if b.half:
        y = b.op("Cast", [y], "norm_out", to=TensorProto.FLOAT16)
    return y


def _unit_affine(b: Builder, x: str) -> list[str]:
    """scale 1 and bias 0 of x's channel count (InstanceNormalization needs them as inputs)."""
    c = b.op("Slice", [b.op("Shape", [x]), *(b.const("i", [v], np.int64) for v in (1, 2))])
    one = b.op("Expand", [b.const("one", [1.0], np.float32), c], "scale")
    return [one, b.op("Expand", [b.const("zero", [0.0], np.float32), c], "bias")]


@emitter(InstanceNorm)
def _instance_norm(b: Builder, cell: Any, x: str, path: str) -> str:
    # p2phd's InstanceNorm is InstanceNorm2d(affine=False) by contract (channels, eps): mapped by
    # that meaning, whatever MindSpore spelling computes it inside.
    eps = getattr(cell, "eps", None)
    if not isinstance(eps, float):
        raise UnsupportedCell(f"{path}: InstanceNorm without a float eps attribute")
    return instance_norm(b, x, eps)


@emitter(nn.BatchNorm2d)
def _batch_norm(b: Builder, cell: Any, x: str, path: str) -> str:
    if cell.use_batch_statistics or cell.format != "NCHW":
        raise UnsupportedCell(f"{path}: BatchNorm2d must be NCHW with moving statistics")
    xs = b.op("Cast", [x], "bn_in", to=TensorProto.FLOAT) if b.half else x
    params = [
        b.const(path + "." + n, getattr(cell, n).asnumpy(), np.float32)
        for n in ("gamma", "beta", "moving_mean", "moving_variance")
    ]
    y = b.op("BatchNormalization", [xs, *params], "bnorm", epsilon=float(cell.eps))
    return b.op("Cast", [y], "bn_out", to=TensorProto.FLOAT16) if b.half else y


@emitter(nn.AvgPool2d)
def _avg_pool(b: Builder, cell: Any, x: str, path: str) -> str:
    a = cell.avg_pool.attrs  # MindSpore keeps the settings on its (3-D) primitive
    k, s = list(a["kernel_size"])[-2:], list(a["strides"])[-2:]
    pad = list(a.get("pad_list") or a["pad"])[-4:]  # (top, bottom, left, right)
    if a.get("ceil_mode") or a.get("divisor_override") or cell.format != "NCHW":
        raise UnsupportedCell(f"{path}: AvgPool2d with ceil_mode/divisor_override/NHWC")
    return b.op(
        "AveragePool",
        [x],
        "avgpool",
        kernel_shape=k,
        strides=s,
        pads=[pad[0], pad[2], pad[1], pad[3]],
        count_include_pad=int(bool(a["count_include_pad"])),
    )


@emitter(nn.SequentialCell)
def _sequential(b: Builder, cell: Any, x: str, path: str) -> str:
    for name, child in cell.name_cells().items():
        x = emit(b, child, x, f"{path}.{name}")
    return x


@emitter(ResnetBlock)
def _resnet_block(b: Builder, cell: Any, x: str, path: str) -> str:
    kids = children(cell, path, {"conv_block"})
    return b.op("Add", [x, emit(b, kids["conv_block"], x, path + ".conv_block")], "residual")


@emitter(GlobalGenerator)
def _global(b: Builder, cell: Any, x: str, path: str) -> str:
    return emit(b, children(cell, path, {"model"})["model"], x, path + ".model")


@emitter(LocalEnhancer)
def _local(b: Builder, cell: Any, x: str, path: str) -> str:
    """LocalEnhancer.construct: an image pyramid by the pooling, the global trunk on the
    coarsest level, then per enhancer n: model{n}_2(model{n}_1(level) + out)."""
    n_local = int(cell.n_local_enhancers)
    names = {"model", "downsample"}
    names |= {f"model{n}_{i}" for n in range(1, n_local + 1) for i in (1, 2)}
    kids = children(cell, path, names)
    pyramid = [x]
    for _ in range(n_local):
        pyramid.append(emit(b, kids["downsample"], pyramid[-1], path + ".downsample"))
    out = emit(b, kids["model"], pyramid[-1], path + ".model")
    for n in range(1, n_local + 1):
        front = emit(b, kids[f"model{n}_1"], pyramid[n_local - n], f"{path}.model{n}_1")
        out = emit(b, kids[f"model{n}_2"], b.op("Add", [front, out]), f"{path}.model{n}_2")
    return out
