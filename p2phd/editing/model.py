"""The generator behind the editor: full-size renders as bin/render makes them, previews, swatches.

- ``full``: the document goes through exactly what ``bin/render`` does with a prepared sample
  (``styles.choose_styles`` + ``paint``, ``data.Preprocessor(train=False)``, one sample per call,
  ``rendering.loop.to_picture``), so the saved PNG equals the batch render byte for byte.
- ``preview``: the maps resized (NEAREST) so G's input is ``preview_width`` wide, a multiple of
  the generator's stride; the styles are those of the full map (chosen by object id, painted on
  the small map). Used after every edit; the full size is rendered on demand.
- ``swatch``: what G makes of one cluster centre of a class on a small map of that class alone.

The model is one callable (``RunInfo.engine.generator``, ``p2phd.editing.engines``: (label,
index[, features]) as NumPy -> NCHW float NumPy, or NHWC uint8 from a --uint8 export), as
``rendering.loop.make_generator`` is for render: the run's G.ckpt in MindSpore, or its ONNX export
in onnxruntime or OpenVINO, which then renders swatches, previews and full sizes alike (the
feature maps are inputs of the exported graph). Every call holds ``Model.lock``: MindSpore graphs
and OpenVINO's infer request are not re-entrant and the server is threaded.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from p2phd.core import runs
from p2phd.core.cli import UsageError
from p2phd.editing.document import EditError, State
from p2phd.editing.engines import Engine

Generator = Callable[..., np.ndarray]
SWATCH_MIN = 64  # swatch side in pixels (at least 4 strides, so G sees a few bottleneck cells)


@dataclass
class RunInfo:
    """A run opened for editing: its folder, architecture, mode and clusters (checked)."""

    run_dir: Path
    arch: Any
    options: dict[str, Any]
    mode: str  # labels | clusters
    clusters: Any  # styles.Clusters or None
    seed: int
    engine: Engine = field(default_factory=Engine)  # what renders (engines.resolve)

    @property
    def style_by(self) -> str:
        return "label" if self.arch.label_feat else "instance"


def open_run(run: str, clusters: str, seed: int) -> RunInfo:
    """Read and check the run (and its clusters); UsageError naming the file on any misfit."""
    run_dir = Path(run)
    doc = runs.read_options(run_dir)
    runs.trained_snapshot(run_dir)
    arch = runs.arch_from_dict(doc["options"])
    if arch.label_nc == 0:
        raise UsageError(f"run {run_dir}: label_nc 0 (RGB inputs); bin/edit edits label maps")
    if not arch.use_features():
        if clusters:
            raise UsageError(f"run {run_dir} does not use features: --clusters does not apply")
        return RunInfo(run_dir, arch, doc["options"], "labels", None, seed)
    if not clusters:
        raise UsageError(
            f"run {run_dir} uses instance features: pass --clusters FILE (bin/cluster)"
        )
    from p2phd.features import styles

    c = styles.Clusters(clusters)
    c.check(arch.feat_num, arch.label_nc)
    return RunInfo(run_dir, arch, doc["options"], "clusters", c, seed)


def _resize(arr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    if arr.shape == tuple(size_hw):
        return arr
    mode = "I" if arr.dtype == np.int32 else "L"
    im = Image.fromarray(arr, mode=mode).resize(size_hw[::-1], Image.Resampling.NEAREST)
    return np.asarray(im, dtype=arr.dtype)


class Model:
    """Renders documents with one generator callable; every call is serialised by ``lock``."""

    def __init__(
        self, info: RunInfo, preview_width: int, generator: Generator | None = None
    ) -> None:
        self.info = info
        self.preview_width = preview_width
        self.lock = threading.Lock()
        self._generator = generator
        self._swatches: dict[tuple[int, int], np.ndarray] = {}
        self.last_ms = 0.0

    @property
    def arch(self) -> Any:
        return self.info.arch

    def check_size(self, h: int, w: int, what: str) -> None:
        """An exported graph takes H, W multiples of its stride: EditError for a map it cannot
        render at full size (bin/render --onnx refuses the same map)."""
        from p2phd.data.pipeline import target_size

        stride = self.info.engine.stride
        gh, gw = target_size(self.arch, h, w)
        if stride and (gh % stride or gw % stride):
            raise EditError(
                f"{what}: {w}x{h} gives the generator {gw}x{gh}, not a multiple of "
                f"{stride} (the stride of {self.info.engine.onnx.name}); use another size"
            )

    def clusters_k(self, c: int) -> int:
        return self.info.clusters.k(c) if self.info.clusters is not None else 0

    def _call(self, *arrays: np.ndarray) -> np.ndarray:
        with self.lock:
            if self._generator is None:  # built on first use, under the lock
                self._generator = self.info.engine.generator(self.info)
            t0 = time.perf_counter()
            out = self._generator(*arrays)
            self.last_ms = (time.perf_counter() - t0) * 1000
        if not np.isfinite(out).all():
            raise RuntimeError(f"the generator of {self.info.run_dir} gave NaN/inf")
        return out

    # -- styles -------------------------------------------------------------------------------

    def chosen(self, name: str, s: State) -> tuple[list[Any], np.ndarray]:
        """(styles.Style per object, dense index) as bin/render --styles would choose them."""
        from p2phd.features import styles

        inst = s.inst if self.arch.instance_feat else None
        return styles.choose_styles(
            s.label, inst, self.info.clusters, self.info.seed, name, {}, 0, s.styles
        )

    def effective_styles(self, name: str, s: State) -> dict[int, dict[str, Any]]:
        """Per style key: the centre in use and how it was chosen (for the page)."""
        if self.info.mode != "clusters":
            return {}
        return {
            st.instance: {"class": st.label, "center": st.center, "chosen_by": st.chosen_by}
            for st in self.chosen(name, s)[0]
        }

    # -- renders ------------------------------------------------------------------------------

    def full(self, name: str, s: State) -> np.ndarray:
        """HxWx3 uint8 at the map's size: what bin/render writes for this map once prepared."""
        from p2phd.data.dataset import Sample
        from p2phd.data.pipeline import Preprocessor
        from p2phd.features import styles
        from p2phd.rendering.loop import to_picture

        feat = None
        if self.info.mode == "clusters":
            chosen, index = self.chosen(name, s)
            feat = styles.paint(chosen, index, self.info.clusters)
        features = (lambda _name: feat) if feat is not None else None
        pre = Preprocessor(self.arch, train=False, seed=self.info.seed, features=features)
        item = pre(Sample(name, s.label, s.inst, None), 0)
        arrays = [item.label[None].astype(np.int32), item.inst[None].astype(np.int32)]
        if feat is not None:
            arrays.append(item.feat[None].astype(np.float32))
        return to_picture(self._call(*arrays)[0], s.label.shape)

    def preview_shape(self, h: int, w: int) -> tuple[int, int] | None:
        """G's input size for a preview of an HxW map, or None when the full size is as small."""
        from p2phd.data.pipeline import target_size

        gh, gw = target_size(self.arch, h, w)
        stride = self.arch.generator_stride()
        pw = max(stride, self.preview_width // stride * stride)
        if pw >= gw:
            return None
        return max(stride, int(round(gh * pw / gw / stride)) * stride), pw

    def preview(self, name: str, s: State) -> np.ndarray:
        """A smaller render for the page after each edit (the full render when that is small)."""
        from p2phd.core.instances import dense_index
        from p2phd.rendering.loop import to_picture

        shape = self.preview_shape(*s.label.shape)
        if shape is None:
            return self.full(name, s)
        label, inst = _resize(s.label, shape), _resize(s.inst, shape)
        index = dense_index(inst)[0] if not self.arch.no_instance else np.zeros(shape, np.int32)
        arrays = [label[None].astype(np.int32), index[None].astype(np.int32)]
        if self.info.mode == "clusters":
            arrays.append(self._painted(name, s, label, inst)[None])
        return to_picture(self._call(*arrays)[0], shape)

    def _painted(self, name: str, s: State, label: np.ndarray, inst: np.ndarray) -> np.ndarray:
        """The full map's style choices painted on resized maps: (feat_num, h, w) float32."""
        chosen, _ = self.chosen(name, s)
        clusters = self.info.clusters
        ids = np.array([st.instance for st in chosen], np.int64)
        table = np.zeros((len(chosen), clusters.feat_num), np.float32)
        for j, st in enumerate(chosen):
            if st.center >= 0:
                table[j] = clusters.centers(st.label)[st.center]
        segments = inst if self.arch.instance_feat else label.astype(np.int32)
        return np.ascontiguousarray(table[np.searchsorted(ids, segments)].transpose(2, 0, 1))

    def swatch(self, c: int, k: int) -> np.ndarray:
        """SxSx3 uint8: G on a map of class c alone whose one object has centre k (cached)."""
        from p2phd.rendering.loop import to_picture

        if (c, k) not in self._swatches:
            stride = self.arch.generator_stride()
            side = max(SWATCH_MIN, 4 * stride)
            label = np.full((1, side, side), c, np.int32)
            index = np.zeros((1, side, side), np.int32)
            centre = self.info.clusters.centers(c)[k].astype(np.float32)
            feat = np.broadcast_to(centre[None, :, None, None], (1, len(centre), side, side))
            out = self._call(label, index, np.ascontiguousarray(feat))
            self._swatches[(c, k)] = to_picture(out[0], (side, side))
        return self._swatches[(c, k)]
