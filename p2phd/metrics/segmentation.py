"""``bin/evaluate --seg``: segment the renders (and, ``--seg_real``, the real photos) with fyu/drn's
DRNSeg and score the predictions against the label maps the renders were made from.

The protocol (SPADE-era Cityscapes tables: DRN-D-105, ``drn-d-105_ms_cityscapes.pth``):

- Size: ``--seg_size`` (default 256x512, H x W: the papers' "512x256"). Each synthesized PNG
  (and real photo) is resized to it with PIL BICUBIC, which antialiases when it shrinks a
  2048x1024 render (the filter p2phd and pix2pixHD resize photos with); each label map is the
  dataset manifest's (what G was given), resized with PIL NEAREST, so every pixel keeps a real
  label id. ``native`` segments every PNG at its own size (the label map NEAREST-resized to it).
  H and W must be multiples of 8 (the network's output stride: its up-sampling returns 8x the
  1/8-size map, so other sizes would not line up with the labels).
- Labels: Cityscapes labelIds (``label_nc`` 35) -> the 19 trainIds, other ids ignored (255);
  any other dataset (or classes) needs ``--seg_map`` (``segscore.read_seg_map``).
- Prediction: the argmax over the classes of DRNSeg's logits (``drn.Predict``), float32, batch
  ``--seg_batch_size`` (images of one size per call), by ``--seg_engine``: MindSpore, or the
  ONNX graph ``drn_onnx`` writes from the same loaded Cells in onnxruntime or OpenVINO
  (``auto``: onnxruntime on a CPU, 0.83x MindSpore's CPU time at 256x512; MindSpore on a
  GPU/Ascend, where it runs on the device; docs/evaluating.md).
- Score: one confusion matrix over all images (``segscore``): mean IoU, pixel accuracy,
  per-class IoU.
"""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from p2phd.core import extras
from p2phd.core.cli import UsageError, log
from p2phd.metrics import DRN_WEIGHTS_NAME, DRN_WEIGHTS_URL
from p2phd.metrics.segscore import (
    CITYSCAPES_LABEL_NC,
    IGNORE,
    LabelMap,
    cityscapes_map,
    confusion,
    read_seg_map,
    scores,
)

DEFAULT_SIZE = "256x512"
ENGINES = ("auto", "onnxruntime", "openvino", "mindspore")  # --seg_engine
IMAGE_RESIZE = "PIL BICUBIC to --seg_size"
LABEL_RESIZE = "PIL NEAREST to --seg_size (the dataset manifest's label map)"
STRIDE = 8
SIZE_NOTE = (
    "256x512 (H x W) is the size SPADE-era Cityscapes tables (SPADE, OASIS, CLADE: DRN-D-105) "
    "segment at: SPADE's Cityscapes resolution, renders scored at their own size, label maps "
    "NEAREST-downsampled"
)


def parse_size(spec: str) -> tuple[int, int] | None:
    """'HxW' -> (H, W), multiples of 8; 'native' -> None."""
    if spec == "native":
        return None
    try:
        h, w = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise UsageError(f"--seg_size must be HxW (e.g. 256x512) or native, got {spec!r}") from None
    if h < STRIDE or w < STRIDE or h % STRIDE or w % STRIDE:
        raise UsageError(f"--seg_size {spec}: H and W must be positive multiples of {STRIDE}")
    return h, w


def load_drn(path: str | Path) -> Any:
    """fyu/drn's DRNSeg with the weights of this .pth (any DRN variant), or UsageError."""
    from p2phd.metrics.drn import WeightsError, build_drn
    from p2phd.metrics.features import load_pth_net

    return load_pth_net(
        path,
        build_drn,
        WeightsError,
        f"the Cityscapes segmenter is fyu/drn's {DRN_WEIGHTS_NAME}: download it from "
        f"{DRN_WEIGHTS_URL} and pass --seg FILE",
        "a fyu/drn DRNSeg state dict",
    )


def check_labels(real: Any) -> None:
    if real.label_nc == 0:
        raise UsageError(
            f"{real.path}: the render's inputs are images (label_nc 0), not label maps: "
            "the segmentation score compares predictions with label maps"
        )


def label_map(real: Any, seg_map: str, classes: int, arch_name: str) -> LabelMap:
    """The label id -> class table for this dataset manifest (UsageError when there is none)."""
    check_labels(real)
    if seg_map:
        return read_seg_map(seg_map, classes)
    if real.label_nc != CITYSCAPES_LABEL_NC or classes != 19:
        raise UsageError(
            f"{real.path}: label_nc {real.label_nc} with a {classes}-class {arch_name}: only "
            f"Cityscapes labelIds (label_nc {CITYSCAPES_LABEL_NC}) with a 19-class network map "
            "by default; the score needs --seg_map FILE (JSON label id -> segmenter class)"
        )
    return cityscapes_map()


def check_sizes(p: Any, size: tuple[int, int] | None) -> None:
    """Label maps and PNGs must show the same scene: the same aspect ratio (to a pixel), and
    --seg_size too; native sizes must be multiples of 8. UsageError naming the file."""
    for i, (h, w) in enumerate(p.sizes):
        lh, lw = (int(v) for v in p.real.sizes[p.real_rows[i]])
        if abs(lh * w - h * lw) > max(lw, w):
            raise UsageError(
                f"{p.fake_files[i]}: {w}x{h} but its label map in {p.real.path} is {lw}x{lh}: "
                "not the same picture (size mismatch)"
            )
        if size is None and (h % STRIDE or w % STRIDE):
            raise UsageError(
                f"{p.fake_files[i]}: {w}x{h} is not a multiple of {STRIDE}: pass --seg_size HxW"
            )
        if size is not None and abs(size[0] * w - size[1] * h) > w:
            raise UsageError(
                f"{p.fake_files[i]}: {w}x{h} resized to --seg_size {size[0]}x{size[1]} would "
                "change its aspect ratio: pass --seg_size HxW of the same shape (or native)"
            )


def resized(img: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    from PIL import Image

    if img.shape[:2] == tuple(size):
        return img
    method = Image.NEAREST if nearest else Image.BICUBIC
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), method))


def resolve_engine(engine: str, device_target: str) -> str:
    """``auto`` -> onnxruntime on the CPU (measured faster there: bench-evaluate), MindSpore on
    a GPU or Ascend (the ONNX engines here run on the CPU only); any other name as given."""
    if engine == "auto":  # without the onnx extra: MindSpore, which gives the same classes
        cpu = device_target == "CPU" and extras.available("onnx")
        return "onnxruntime" if cpu else "mindspore"
    if engine != "mindspore":  # the graph is written with onnx, then run by the engine
        extras.require(extras.ENGINE_EXTRA[engine], f"--seg_engine {engine}", ("onnx", engine))
    return engine


def engine_record(engine: str) -> dict[str, str]:
    """What ran the network, for metrics.json."""
    if engine == "mindspore":
        import mindspore as ms

        return {"name": engine, "version": ms.__version__, "graph": "p2phd.metrics.drn.DRNSeg"}
    module = __import__(engine)
    return {
        "name": engine,
        "version": str(module.__version__),
        "graph": "ONNX written from the loaded DRNSeg Cells (p2phd.metrics.drn_onnx)",
    }


def predictor(net: Any, engine: str, threads: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """``net``'s prediction by ``engine`` (mindspore, onnxruntime, openvino): images (N, 3, H,
    W) float32 in [0, 1] -> classes (N, H, W) int32. The ONNX engines run the graph drn_onnx
    writes from ``net``."""
    if engine == "mindspore":
        import mindspore as ms

        from p2phd.metrics.drn import Predict

        predict = Predict(net)
        return lambda x: predict(ms.Tensor(x)).asnumpy()
    from p2phd.metrics.drn_onnx import Segmenter

    return Segmenter(net, engine, threads)


def predict_all(
    predict: Callable[[np.ndarray], np.ndarray],
    get: Callable[[int], tuple[np.ndarray, np.ndarray]],
    count: int,
    sizes: list[tuple[int, int]],
    batch_size: int,
    classes: int,
    what: str,
) -> np.ndarray:
    """Sum of the confusion matrices of images 0..count-1; ``get(i)`` -> (uint8 HxWx3 image,
    uint8 HxW classes) at the segmentation size ``sizes[i]``. Batches hold one size; the last
    one is padded with copies of its first image (inference BatchNorm: images are independent)."""
    from p2phd.core import bars

    total = np.zeros((classes, classes), np.int64)
    by_size: dict[tuple[int, int], list[int]] = {}
    for i in range(count):
        by_size.setdefault(tuple(sizes[i]), []).append(i)
    with bars.bar(count, f"evaluate: segmenting {what}") as bar:
        for idx in by_size.values():
            n = min(batch_size, len(idx))
            for start in range(0, len(idx), n):
                chunk = idx[start : start + n]
                pairs = [get(i) for i in chunk]
                images = [im for im, _ in pairs] + [pairs[0][0]] * (n - len(chunk))
                x = np.stack(images).astype(np.float32).transpose(0, 3, 1, 2) / 255
                pred = predict(np.ascontiguousarray(x))
                for k, (_, gt) in enumerate(pairs):
                    total += confusion(pred[k], gt, classes)
                bar.update(len(chunk))
    return total


def run(o: Any, p: Any, read_fake: Callable, real_image: Callable) -> dict[str, Any]:
    """The ``segmentation`` section of metrics.json (the network is loaded here).
    ``read_fake(i)``: synthesized PNG i; ``real_image(i)``: its real photo as stored."""
    from p2phd.core import manifest

    size = parse_size(o.seg_size)
    check_labels(p.real)  # the checks that need no network first
    check_sizes(p, size)
    net = load_drn(o.seg)
    arch = net.arch
    labels = label_map(p.real, o.seg_map, arch.classes, arch.name)
    t0 = time.perf_counter()  # from here: the engine's set-up (graph build, compile) counts
    engine = resolve_engine(o.seg_engine, o.device_target)
    predict = predictor(net, engine)
    sizes = [size or tuple(s) for s in p.sizes]

    def gt(i: int) -> np.ndarray:
        label = p.real.sample(p.real_rows[i]).label
        return labels.apply(resized(label, sizes[i], nearest=True))

    def fake(i: int) -> tuple[np.ndarray, np.ndarray]:
        return resized(read_fake(i), sizes[i], nearest=False), gt(i)

    def real(i: int) -> tuple[np.ndarray, np.ndarray]:
        return resized(real_image(i), sizes[i], nearest=False), gt(i)

    n, batch = len(p.names), o.seg_batch_size
    result = scores(
        predict_all(predict, fake, n, sizes, batch, arch.classes, "renders"), labels.names
    )
    upper = None
    if o.seg_real:
        upper = scores(
            predict_all(predict, real, n, sizes, batch, arch.classes, "real photos"),
            labels.names,
        )
    seconds = time.perf_counter() - t0
    log(
        f"evaluate: {arch.name} at {o.seg_size}: mIoU {_pct(result['mean_iou'])}, pixel accuracy "
        f"{_pct(result['pixel_accuracy'])}"
        + (
            f" (real photos: {_pct(upper['mean_iou'])}, {_pct(upper['pixel_accuracy'])})"
            if upper
            else ""
        )
        + f" over {n} images ({seconds:.1f} s, {engine})"
    )
    return {
        "network": {
            "path": str(Path(o.seg).resolve()),
            "sha256": manifest.sha256_file(o.seg),
            "arch": arch.name,
            "structure": {
                "arch": arch.arch,
                "block": arch.block,
                "layers": list(arch.layers),
                "channels": list(arch.channels),
            },
            "classes": arch.classes,
        },  # fmt: skip
        "size": list(size) if size else "native",
        "size_note": SIZE_NOTE,
        "image_resize": IMAGE_RESIZE if size else "none (each PNG at its own size)",
        "label_resize": LABEL_RESIZE if size else "PIL NEAREST to the PNG's size",
        "input": "RGB / 255, normalised with fyu/drn's Cityscapes info.json mean/std",
        "prediction": "argmax over the classes of DRNSeg's logits (= of its LogSoftmax output)",
        "engine": engine_record(engine),
        "labels": {**labels.describe(), "ignore": IGNORE, "class_names": list(labels.names)},
        "values": "fractions in [0, 1] (x100 for the percentages papers print); null = "
        "undefined (a class absent from both ground truth and prediction)",
        "renders": result,
        "real": upper,
        "seconds": round(seconds, 2),
    }


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def page_items(seg: dict[str, Any], num_images: int) -> dict[str, str]:
    """Rows for the render page (rendering.page.show_metrics)."""
    size = seg["size"] if seg["size"] == "native" else "x".join(map(str, seg["size"]))
    r = seg["renders"]
    items = {
        f"mIoU ({seg['network']['arch']}, {size})": f"{_pct(r['mean_iou'])}, pixel accuracy "
        f"{_pct(r['pixel_accuracy'])} ({r['classes_scored']} classes scored, {num_images} images)"
    }
    if seg["real"]:
        items["mIoU of the real photos"] = (
            f"{_pct(seg['real']['mean_iou'])}, pixel accuracy "
            f"{_pct(seg['real']['pixel_accuracy'])} (the upper bound)"
        )
    items["per-class IoU"] = ", ".join(
        f"{name} {'-' if v is None else f'{100 * v:.1f}'}" for name, v in r["per_class_iou"].items()
    )
    return items
