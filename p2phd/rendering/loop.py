"""The inference loop of ``render``: read + preprocess ahead, run G in graph mode, write behind.

Three stages overlap: a reader thread prepares the next samples (HDF5 read, the run's
preprocessing, style feature maps, label/real pictures), the main thread runs the generator on
batches of same-size inputs, and ``render_files.Writer`` threads convert, resize and encode the
PNGs. So the generator, which is nearly all of the cost, never waits for the disk.
"""

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from p2phd.rendering import files as rf

_BICUBIC = Image.Resampling.BICUBIC
_NEAREST = Image.Resampling.NEAREST


@dataclass
class Prepared:
    """One sample ready for G: inputs at G's size (one feature map per variant)."""

    row: int
    name: str
    label: np.ndarray  # (H,W) int32 ids or (C,H,W) float32 RGB input
    index: np.ndarray  # (H,W) int32 dense instance index (edge map)
    pool: np.ndarray  # (H,W) int32 encoder pooling ids
    photo: np.ndarray | None  # (3,H,W) float32, for --use_encoded_image
    feats: list[np.ndarray | None]  # per variant (feat_num,H,W) float32, or [None]
    styles: list[str]
    label_picture: np.ndarray  # HxWx3 uint8 at the output size
    real_picture: np.ndarray | None

    @property
    def g_size(self) -> tuple[int, int]:
        return tuple(self.label.shape[-2:])  # type: ignore[return-value]


def resize_picture(img: np.ndarray, size_hw: tuple[int, int], resample) -> np.ndarray:
    if img.shape[:2] == tuple(size_hw):
        return img
    return np.asarray(Image.fromarray(img).resize((size_hw[1], size_hw[0]), resample))


def to_picture(out_chw: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """G output -> uint8 HxW(x3) at the output size: clip(round((x+1)/2*255)), then BICUBIC."""
    from p2phd.core.palette import to_uint8

    if out_chw.dtype == np.uint8:  # an exported --uint8 model already gives HxWx3 (or HxWx1)
        img = out_chw if out_chw.shape[-1] == 3 else np.ascontiguousarray(out_chw[..., 0])
        return resize_picture(img, size_hw, _BICUBIC)
    img = to_uint8(out_chw)
    if out_chw.shape[0] == 1:
        img = np.ascontiguousarray(img[..., 0])  # grey stays one channel
    return resize_picture(img, size_hw, _BICUBIC)


class Preparer:
    """Builds `Prepared` samples from the dataset with the run's own preprocessing."""

    def __init__(self, p: Any) -> None:
        from p2phd.data.pipeline import Preprocessor

        self.p = p
        self._feat: np.ndarray | None = None
        wants_feat = p.mode == "clusters"
        self.pre = Preprocessor(
            p.arch,
            train=False,
            seed=p.o.seed,
            features=(lambda name: self._feat) if wants_feat else None,
        )

    def __call__(self, row: int) -> Prepared:
        from p2phd.core.palette import colourise

        p = self.p
        s = p.ds.sample(row)
        feats: list[np.ndarray | None] = [None]
        styles_: list[str] = ["encoded"] if p.mode == "encoded" else [""]
        item = None
        if p.mode == "clusters":
            from p2phd.features import styles

            inst = s.inst if p.arch.instance_feat else None
            feats, styles_ = [], []
            for k in range(p.variants):
                chosen, index = p.choose_styles(s.label, inst, s.name, k)
                self._feat = styles.paint(chosen, index, p.clusters)
                item = self.pre(s, row)
                feats.append(item.feat)
                styles_.append(styles.styles_json(chosen))
        else:
            item = self.pre(s, row)
        size = p.out_size(row)
        if s.label.ndim == 2:
            label_pic = resize_picture(colourise(s.label, p.arch.label_nc), size, _NEAREST)
        else:
            label_pic = resize_picture(s.label, size, _BICUBIC)
        real_pic = resize_picture(s.photo, size, _BICUBIC) if s.photo is not None else None
        return Prepared(
            row,
            s.name,
            item.label,
            item.inst,
            item.pool,
            item.photo,
            feats,
            styles_,
            label_pic,
            real_pic,
        )


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``items`` on a thread, ``depth`` ahead; errors are re-raised in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for it in items:
                if stop.is_set():
                    return
                q.put(("ok", it))
            q.put(("ok", done))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(("err", exc))

    t = threading.Thread(target=work, name="render-reader", daemon=True)
    t.start()
    try:
        while True:
            kind, it = q.get()
            if kind == "err":
                raise it
            if it is done:
                return
            yield it
    finally:
        stop.set()
        while t.is_alive():  # unblock a reader waiting on a full queue
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass


def build_net(p: Any, G: Any, E: Any) -> Any:
    """A Cell computing G's input from label/index (+ features or encoded photo), then G."""
    from mindspore import nn

    from p2phd.nets import uses_edge
    from p2phd.nets.encoding import encode_condition, generator_input

    label_nc, use_edge = p.arch.label_nc, uses_edge(p.arch)

    class Plain(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.G = G

        def construct(self, label, index):
            return self.G(encode_condition(label, index, label_nc, use_edge))

    class WithFeatures(Plain):
        def construct(self, label, index, feat):
            return self.G(generator_input(encode_condition(label, index, label_nc, use_edge), feat))

    class Encoded(Plain):
        def __init__(self) -> None:
            super().__init__()
            self.E = E

        def construct(self, label, index, photo, pool):
            feat = self.E(photo, pool)
            return self.G(generator_input(encode_condition(label, index, label_nc, use_edge), feat))

    net = {"labels": Plain, "clusters": WithFeatures, "encoded": Encoded}[p.mode]()
    net.set_train(False)
    return net


def make_generator(p: Any) -> Callable[..., np.ndarray]:
    """What render calls on each batch, NumPy in and out, by ``p.choice`` (deploy.engines): an
    ONNX engine on the --onnx file or on the run's cached export (deploy.cache; no MindSpore
    loaded once it exists), or MindSpore on G.ckpt in build_net or (--mindir) the exported
    graph as an nn.GraphCell; all take the same inputs and compute the same."""
    if p.choice.onnx:
        from p2phd.deploy.onnx_run import OnnxGenerator, providers

        if p.deployed is not None:
            model, side = p.checkpoint, p.deployed
        else:
            from p2phd.deploy import cache

            model, side = cache.ensure(p.run_dir, p.checkpoint_sha, p.g_size, p.o.device_target)
        names = providers(p.o.providers) if p.choice.engine == "onnxruntime" else []
        return OnnxGenerator(model, side, names, p.o.threads, p.choice.engine, p.choice.precision)
    from p2phd.core import runtime

    runtime.setup(p.o.device_target, p.o.pynative, p.o.seed, p.o.verbose, data_parallel=False)
    if p.deployed is not None:
        from p2phd.deploy.graph import Loaded

        return _on_numpy(Loaded(p.checkpoint, p.deployed))
    from p2phd.core import runs

    G, E, _, _ = runs.load_inference(p.run_dir, p.ds.max_instances)
    if p.o.amp:  # float16 inference (p2phd.nets.amp): a device speed-up, none on CPU
        from p2phd.nets.amp import set_precision

        for cell in (G, E):
            if cell is not None:
                set_precision(cell, "O2")
    return _on_numpy(build_net(p, G, E))


def _on_numpy(net: Any) -> Callable[..., np.ndarray]:
    """A MindSpore callable on NumPy arrays."""
    from mindspore import Tensor

    def call(*args: np.ndarray) -> np.ndarray:
        return net(*[Tensor(a) for a in args]).asnumpy()

    return call


def _inputs(p: Any, jobs: list[tuple[Prepared, int]]) -> list[np.ndarray]:
    label = np.stack([j.label for j, _ in jobs])
    args = [
        label.astype(np.float32 if label.ndim == 4 else np.int32),
        np.stack([j.index for j, _ in jobs]).astype(np.int32),
    ]
    if p.mode == "clusters":
        args.append(np.stack([j.feats[k] for j, k in jobs]).astype(np.float32))
    elif p.mode == "encoded":
        args.append(np.stack([j.photo for j, _ in jobs]).astype(np.float32))
        args.append(np.stack([j.pool for j, _ in jobs]).astype(np.int32))
    return args


def _write_synthesized(out_chw: np.ndarray, path, size: tuple[int, int]) -> None:
    rf.save_png(to_picture(out_chw, size), path)


def _write_pictures(prep: Prepared, files: dict[str, Any], out) -> None:
    rf.save_png(prep.label_picture, out / files["label"])
    if prep.real_picture is not None and files["real"]:
        rf.save_png(prep.real_picture, out / files["real"])


def _jobs(p: Any, prepared: Iterable[Prepared]) -> Iterator[list[tuple[Prepared, int]]]:
    """Batches of (sample, variant) jobs that share G's input size, up to --batch_size."""
    batch: list[tuple[Prepared, int]] = []
    for prep in prepared:
        for k in range(len(prep.feats)):
            if batch and (len(batch) == p.o.batch_size or batch[0][0].g_size != prep.g_size):
                yield batch
                batch = []
            batch.append((prep, k))
    if batch:
        yield batch


def render_samples(p: Any, rows: list[int], style_cache: dict[int, list[str]]) -> dict[str, float]:
    """Render the given rows into p.out; returns timings: images, seconds, first batch (compile)."""
    from p2phd.core import ranks, runtime

    net = make_generator(p)
    st = p.checkpoint.stat()
    if (st.st_size, st.st_mtime_ns) != p.checkpoint_stat:
        raise RuntimeError(
            f"{p.checkpoint} changed since it was hashed (is training still writing it?); rerun"
        )
    total = len(rows) * (len(p.files(rows[0])["synthesized"]) if rows else 0)
    done, first_s, first_n, t0 = 0, 0.0, 0, time.perf_counter()
    with (
        rf.Writer(p.o.write_threads) as writer,
        ranks.progress_bar(runtime.place(), total, "render") as bar,
    ):
        for batch in _jobs(p, prefetch(map(Preparer(p), rows))):
            # Every call gets exactly --batch_size samples (the last one repeated): the result
            # of a sample then depends on nothing else (oneDNN's rounding varies with the batch
            # size only), so resumed and sharded renders are bit-identical to a single run, and
            # a short last batch does not compile a second graph.
            padded = batch + [batch[-1]] * (p.o.batch_size - len(batch))
            out = net(*_inputs(p, padded))[: len(batch)]
            if out.dtype == np.float16:  # --amp: pixels are computed from float32 as always
                out = out.astype(np.float32)
            if not np.isfinite(out).all():  # a diverged checkpoint: refuse to write garbage
                raise RuntimeError(
                    f"the generator gave NaN/inf for {batch[0][0].name}; {p.checkpoint} is broken"
                )
            for i, (prep, k) in enumerate(batch):
                files = p.files(prep.row)
                if k == 0:
                    style_cache[prep.row] = prep.styles
                    writer.submit(_write_pictures, prep, files, p.out)
                writer.submit(
                    _write_synthesized,
                    out[i],
                    p.out / files["synthesized"][k],
                    p.out_size(prep.row),
                )
            done += len(batch)
            bar.update(len(batch))
            if not first_n:  # the first call compiles the graph: reported apart
                first_s, first_n = time.perf_counter() - t0, len(batch)
    return {
        "images": done,
        "seconds": time.perf_counter() - t0,
        "first_seconds": first_s,
        "first_images": first_n,
    }
