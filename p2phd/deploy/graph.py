"""The deployable graph: condition encoding + G in one Cell, its input/output spec, and loading.

What bin/export writes and bin/render --mindir runs. The Cell computes exactly what render's
inference net computes (``p2phd.rendering.loop.build_net``, labels and clusters modes):

    image = G([one_hot(label) | edge_map(instance)] [| features])

so a deployment feeds raw maps and gets the picture, with no p2phd on the device. Inputs, in
this order (the graph's positional arguments; names are those of the sidecar):

- ``label``: (N, H, W) int32 label ids 0..label_nc-1 (ids >= label_nc encode as all-zero
  pixels); for label_nc 0 runs (N, input_nc, H, W) float32 RGB in [-1, 1] (uint8 / 127.5 - 1);
- ``instance``: (N, H, W) int32 instance ids, unless the run has --no_instance. Only whether
  4-neighbours differ matters (the edge map), so raw Cityscapes ids (26001) or the renumbered
  map render feeds (``dense_index``) give the same image;
- ``features``: (N, feat_num, H, W) float32 for instance/label feature runs (a cluster centre
  per object, as ``bin/render --clusters`` paints them).

Output ``image``: (N, output_nc, H, W) float32 in [-1, 1], or with ``uint8`` (N, H, W, 3) uint8
RGB computed as ``palette.to_uint8``: clip(round((x + 1) * 127.5), 0, 255), grey replicated.
"""

from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from p2phd.nets import label_channels, uses_edge
from p2phd.nets.encoding import encode_condition, generator_input


class Deployable(nn.Cell):
    """label [, instance] [, features] -> image; see the module doc."""

    def __init__(self, G: nn.Cell, arch: Any, uint8: bool) -> None:
        super().__init__()
        self.G = G
        self.label_nc = arch.label_nc
        self.use_edge = uses_edge(arch)
        self.uint8 = uint8
        self.grey = arch.output_nc == 1

    def image(self, x):
        if not self.uint8:
            return x
        if self.grey:
            x = ops.tile(x, (1, 3, 1, 1))
        # the same float32 arithmetic as palette.to_uint8; Round is half-to-even like np.rint
        x = ops.clamp((x[:, :3] + 1.0) * 127.5, 0.0, 255.0)
        return ops.cast(ops.round(ops.transpose(x, (0, 2, 3, 1))), ms.uint8)


class _Labels(Deployable):
    def construct(self, label):
        return self.image(self.G(encode_condition(label, None, self.label_nc, False)))


class _LabelsEdges(Deployable):
    def construct(self, label, instance):
        return self.image(self.G(encode_condition(label, instance, self.label_nc, True)))


class _LabelsFeatures(Deployable):
    def construct(self, label, features):
        cond = encode_condition(label, None, self.label_nc, False)
        return self.image(self.G(generator_input(cond, features)))


class _LabelsEdgesFeatures(Deployable):
    def construct(self, label, instance, features):
        cond = encode_condition(label, instance, self.label_nc, True)
        return self.image(self.G(generator_input(cond, features)))


def build(G: nn.Cell, arch: Any, uint8: bool) -> Deployable:
    """The Cell whose graph is exported (one class per input signature: graph mode needs fixed
    arguments)."""
    kind = {
        (False, False): _Labels,
        (True, False): _LabelsEdges,
        (False, True): _LabelsFeatures,
        (True, True): _LabelsEdgesFeatures,
    }[(uses_edge(arch), bool(arch.use_features()))]
    net = kind(G, arch, uint8)
    net.set_train(False)
    return net


def input_spec(arch: Any, size: tuple[int, int], batch: int) -> list[dict[str, Any]]:
    """Names, dtypes, shapes and accepted values of the graph's inputs, in argument order."""
    h, w = size
    if arch.label_nc > 0:
        spec = [
            {
                "name": "label",
                "dtype": "int32",
                "shape": [batch, h, w],
                "accepts": f"label ids 0..{arch.label_nc - 1} (larger ids encode as no class)",
            }
        ]
    else:
        spec = [
            {
                "name": "label",
                "dtype": "float32",
                "shape": [batch, label_channels(arch), h, w],
                "accepts": "RGB input image in [-1, 1] (uint8 / 127.5 - 1), channels first",
            }
        ]
    if uses_edge(arch):
        spec.append(
            {
                "name": "instance",
                "dtype": "int32",
                "shape": [batch, h, w],
                "accepts": "instance ids (any integers; only where 4-neighbours differ matters: "
                "that is the edge map)",
            }
        )
    if arch.use_features():
        spec.append(
            {
                "name": "features",
                "dtype": "float32",
                "shape": [batch, arch.feat_num, h, w],
                "accepts": "per-object feature vectors (bin/cluster centres painted on each "
                "object's pixels, as bin/render --clusters does)",
            }
        )
    return spec


def output_spec(arch: Any, size: tuple[int, int], batch: int, uint8: bool) -> dict[str, Any]:
    h, w = size
    if uint8:
        return {
            "name": "image",
            "dtype": "uint8",
            "shape": [batch, h, w, 3],
            "values": "RGB 0..255 = clip(round((x + 1) * 127.5), 0, 255) of G's output x"
            + (" (grey replicated)" if arch.output_nc == 1 else ""),
        }
    return {
        "name": "image",
        "dtype": "float32",
        "shape": [batch, arch.output_nc, h, w],
        "values": "G's tanh output in [-1, 1]; pixel = clip(round((x + 1) * 127.5), 0, 255)",
    }


def example_inputs(spec: list[dict[str, Any]]) -> list[ms.Tensor]:
    """Zero tensors of the spec's shapes and dtypes (export traces shapes, not values)."""
    return [ms.Tensor(np.zeros(s["shape"], np.dtype(s["dtype"]))) for s in spec]


class Loaded:
    """An exported MindIR as render's generator callable: call(label, index[, feat]) -> Tensor.

    Render builds the same (label, index, features) arguments for every run; this drops what
    the graph does not take (index without edges) and keeps a grey --uint8 output one channel.
    """

    def __init__(self, path: str | Path, sidecar: dict[str, Any]) -> None:
        self.net = nn.GraphCell(ms.load(str(path)))
        self.names = [s["name"] for s in sidecar["inputs"]]
        self.grey_uint8 = bool(sidecar["uint8"]) and sidecar["output_nc"] == 1

    def __call__(self, label, index, feat=None):
        given = {"label": label, "instance": index, "features": feat}
        out = self.net(*[given[n] for n in self.names])
        return out[..., :1] if self.grey_uint8 else out
