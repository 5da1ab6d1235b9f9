"""Benchmark (not a test): FID Inception features/s, the FID step, and DRN-D-105 segmentation.

The network is p2phd.metrics.inception.FIDInception with the test fixture's weights (the real
network's shapes with random values: speed does not depend on them). Cases, each after one
untimed call (graph compilation):

- 299x299 input (the network's own size; the resize is an identity), batch 1 and batch 8;
- 512x1024 input (a 512p Cityscapes render; the network resizes it to 299x299), batch 8;

then the distance between two sets of 500 random 2048-d feature vectors (Cityscapes val has
500 frames): the exact low-rank form bin/evaluate uses, and with ``--sqrtm`` also pytorch-fid's
scipy sqrtm of the 2048x2048 product. Wall and CPU seconds are printed with the load average:
the 2 cores are shared, so wall numbers carry large noise; CPU time per image is steadier.

Segmentation (``bin/evaluate --seg``): p2phd.metrics.drn.DRNSeg with DRN-D-105's shapes
(54.4 M parameters, fyu/drn's widths, 19 classes) and seeded random weights, plus the argmax,
through each ``--seg_engine`` (``ENGINES``: MindSpore, and the ONNX graph p2phd.metrics.drn_onnx
writes from the same Cells in onnxruntime and OpenVINO, with bin/evaluate's session settings):
images/s and CPU s per image at the protocol size 256x512 (batch 1 and 4) and at 512x1024
(batch 1), interleaved case by case, each engine and case in its own process so its peak RSS
(``ru_maxrss``: the MindSpore net, the graph build and the engine's session) is its own;
"setup" is the ONNX graph's build and session (MindSpore compiles in its first call). Peaks
stayed under 1.8 GB; a case of 1024x2048 pixels x batch or more takes a lock first, so two
such jobs on a shared machine do not run at once (``$HEAVY_LOCK``, default ``.heavy.lock`` in
the checkout; flock). Then the engines' agreement on the 8 Cityscapes sample photos at 256x512 (same random
weights): logits' relative L2 and the share of pixels whose class differs from MindSpore's.
"""

import argparse
import fcntl
import gzip
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from machine import header as machine_header  # CPU, ISA flags, cores, date above each table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURE = ROOT / "tests" / "fixtures" / "fid" / "fid_inception_random.pth.gz"


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def bench_net(net, h: int, w: int, batch: int, calls: int) -> None:
    import mindspore as ms

    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.uniform(0, 1, (batch, 3, h, w)).astype(np.float32))
    first, _ = timed(lambda: net(x).asnumpy())
    wall, cpu = timed(lambda: [net(x).asnumpy() for _ in range(calls)])
    n = batch * calls
    print(
        f"{h}x{w} batch {batch}: {n / wall:.2f} images/s wall ({wall / n:.3f} s/image, "
        f"CPU {cpu / n:.3f} s/image); first call {first:.1f} s (compiles)",
        flush=True,
    )


def bench_fid(with_sqrtm: bool) -> None:
    from p2phd.metrics import fid

    rng = np.random.default_rng(1)
    a = rng.gamma(1.0, 0.3, (500, 2048))
    b = rng.gamma(1.1, 0.3, (500, 2048))
    value = []
    wall, cpu = timed(lambda: value.append(fid.fid_from_features(a, b)))
    print(
        f"FID 500 vs 500, exact low-rank form: {wall:.2f} s wall, {cpu:.2f} s CPU ({value[0]:.4f})"
    )
    if with_sqrtm:
        wall, cpu = timed(
            lambda: value.append(fid.frechet_distance(fid.statistics(a), fid.statistics(b)))
        )
        print(
            f"FID 500 vs 500, scipy sqrtm (pytorch-fid): {wall:.2f} s wall, {cpu:.2f} s CPU "
            f"({value[1]:.4f})"
        )


# The segmentation engines (bin/evaluate --seg_engine): MindSpore's graph, and the ONNX graph
# drn_onnx writes from the same Cells, run by onnxruntime or OpenVINO with render's settings.
ENGINES = ("mindspore", "onnxruntime", "openvino")
SEG_CASES = ((256, 512, 1), (256, 512, 4), (512, 1024, 1))
HEAVY = 1024 * 2048  # pixels x batch from which a case takes the heavy-job lock


@contextmanager
def heavy_lock(pixels: int):
    if pixels < HEAVY:
        yield
        return
    with open(os.environ.get("HEAVY_LOCK", ROOT / ".heavy.lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def random_drn_d105():
    """DRNSeg with DRN-D-105's shapes (fyu/drn's widths, 19 classes), seeded He-normal conv
    weights, BatchNorm at its identity statistics."""
    import mindspore as ms

    from p2phd.core import runtime
    from p2phd.metrics import drn

    runtime.setup("CPU")
    kind, block, layers = drn.VARIANTS["drn_d_105"]
    net = drn.DRNSeg(drn.Arch(kind, block, layers, drn.DEFAULT_CHANNELS, 19))
    rng = np.random.default_rng(0)
    for name, p in net.parameters_and_names():
        if name.endswith("weight") and len(p.shape) == 4:
            fan_in = int(np.prod(p.shape[1:]))
            p.set_data(ms.Tensor((rng.standard_normal(p.shape) * (2 / fan_in) ** 0.5).astype("f4")))
    return net


def predictor(net, engine: str):
    """bin/evaluate's per-engine callable: NCHW float32 -> (N, H, W) int32 classes."""
    from p2phd.metrics import segmentation

    return segmentation.predictor(net, engine)


def bench_seg_case(h: int, w: int, batch: int, calls: int, engine: str) -> None:
    """One case, in this process: DRN-D-105 with random weights, then (ONNX engines) its graph
    built from the Cells and the engine's session, as bin/evaluate does; time the prediction."""
    net = random_drn_d105()
    made: list = []
    setup, setup_cpu = timed(lambda: made.append(predictor(net, engine)))
    predict = made[0]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, 3, h, w)).astype(np.float32)
    first, _ = timed(lambda: predict(x))
    wall, cpu = timed(lambda: [predict(x) for _ in range(calls)])
    n = batch * calls
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"DRN-D-105 {h}x{w} batch {batch} {engine:>11}: {n / wall:.3f} images/s wall "
        f"({wall / n:.2f} s/image, CPU {cpu / n:.2f} s/image); setup {setup:.1f} s (CPU "
        f"{setup_cpu:.1f} s), first call "
        f"{first:.1f} s; peak RSS {rss:.2f} GB; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


PHOTOS = ROOT.parent / "shared" / "data" / "cityscapes-sample" / "train_img"


def bench_agreement(h: int, w: int) -> None:
    """The sample photos (BICUBIC to h x w, as --seg_size does) through the same random
    DRN-D-105 in every engine: logits' relative L2 against MindSpore's, share of pixels whose
    class differs, and how many pixels have a top-two gap within that distance (could flip)."""
    import mindspore as ms
    from PIL import Image

    from p2phd.metrics.drn_onnx import Segmenter

    files = sorted(PHOTOS.glob("*.png"))
    if not files:
        print(f"engine agreement: no sample photos in {PHOTOS}; skipped", flush=True)
        return
    images = [np.asarray(Image.open(f).convert("RGB").resize((w, h), Image.BICUBIC)) for f in files]
    net = random_drn_d105()
    logits = {"mindspore": []}
    for img in images:
        x = np.ascontiguousarray(img[None].astype(np.float32).transpose(0, 3, 1, 2) / 255)
        logits["mindspore"].append(net(ms.Tensor(x)).asnumpy())
    for engine in ENGINES[1:]:
        run = Segmenter(net, engine, logits=True)
        logits[engine] = [run(np.ascontiguousarray(
            img[None].astype(np.float32).transpose(0, 3, 1, 2) / 255)) for img in images
        ]  # fmt: skip
        del run
    base = np.concatenate(logits["mindspore"])
    top2 = np.sort(base, axis=1)[:, -2:]
    gap = (top2[:, 1] - top2[:, 0]) / np.abs(base).max(axis=1)
    for engine in ENGINES[1:]:
        got = np.concatenate(logits[engine])
        rel = np.linalg.norm(got - base) / np.linalg.norm(base)
        differ = got.argmax(1) != base.argmax(1)
        close = float((gap < 10 * rel).mean())
        print(
            f"engine agreement, {len(files)} sample photos at {h}x{w}, {engine} vs mindspore: "
            f"logits {rel:.1e} relative L2, classes differ on {differ.mean():.2e} of "
            f"{differ.size} pixels ({int(differ.sum())}); top-two gap within 10x that "
            f"distance (relative to the pixel's largest logit): {close:.2e} of pixels",
            flush=True,
        )


def bench_seg(calls: int, engines: tuple[str, ...]) -> None:
    """Every case through every engine, interleaved (case by case), one process each."""
    print(f"segmentation engines: {', '.join(engines)}", flush=True)
    for h, w, batch in SEG_CASES:
        for engine in engines:
            with heavy_lock(h * w * batch):
                cmd = [sys.executable, __file__, "--seg-case", f"{h}x{w}x{batch}:{engine}"]
                subprocess.run([*cmd, "--calls", str(calls)], check=True)
    subprocess.run([sys.executable, __file__, "--agree", "256x512"], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2, help="timed calls per case")
    ap.add_argument("--sqrtm", action="store_true", help="also time scipy's sqrtm (~1 min)")
    ap.add_argument("--only", choices=("fid", "seg"), help="only the FID or the segmentation part")
    ap.add_argument("--engines", default=",".join(ENGINES), help="segmentation engines to time")
    ap.add_argument("--seg-case", help=argparse.SUPPRESS)  # HxWxN:ENGINE: one case, here
    ap.add_argument("--agree", help=argparse.SUPPRESS)  # HxW: the engines' agreement, here
    args = ap.parse_args()
    if args.agree:
        bench_agreement(*(int(v) for v in args.agree.split("x")))
        return 0
    if args.seg_case:
        shape, engine = args.seg_case.split(":")
        h, w, n = (int(v) for v in shape.split("x"))
        bench_seg_case(h, w, n, args.calls, engine)
        return 0
    print(machine_header(), flush=True)
    if args.only != "seg":
        bench_fid_part(args)
    if args.only != "fid":
        bench_seg(args.calls, tuple(args.engines.split(",")))
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return 0


def bench_fid_part(args: argparse.Namespace) -> None:
    from p2phd.core import runtime
    from p2phd.metrics.features import load_inception

    runtime.setup("CPU")
    with tempfile.TemporaryDirectory() as tmp:
        pth = Path(tmp) / "inception.pth"
        with gzip.open(FIXTURE) as src, open(pth, "wb") as dst:
            shutil.copyfileobj(src, dst)
        net = load_inception(pth)
    bench_net(net, 299, 299, 1, args.calls * 4)
    bench_net(net, 299, 299, 8, args.calls)
    bench_net(net, 512, 1024, 8, args.calls)
    bench_fid(args.sqrtm)


if __name__ == "__main__":
    sys.exit(main())
