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
(54.4 M parameters, fyu/drn's widths, 19 classes) and seeded random weights, plus the argmax
(``drn.Predict``): images/s at the protocol size 256x512 (batch 1 and 4) and at 512x1024
(batch 1), each case in its own process so its peak RSS (``ru_maxrss``) is its own. DRN-D-105
keeps 2048-channel activations at 1/8 of the input (64x128 at 512x1024), yet the three cases
peaked at 0.92, 1.12 and 1.22 GB here (MindSpore's graph reuses the buffers), far under the
~4 GB the shared machine's heavy-job lock is for; a case of 1024x2048 pixels x batch or more
takes that lock (``$HEAVY_LOCK``, default /work/heavy.lock; flock). Engine: MindSpore only;
onnxruntime is the hook to add when the ONNX export lands (``ENGINES``).
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


# The segmentation engines this benchmark can time. ONNX hook: once bin/export's ONNX work
# lands, add "onnxruntime": export DRNSeg with mindspore.export(..., file_format="ONNX") at the
# case's (N, 3, H, W) and time an onnxruntime InferenceSession on the same input.
ENGINES = ("mindspore",)
SEG_CASES = ((256, 512, 1), (256, 512, 4), (512, 1024, 1))
HEAVY = 1024 * 2048  # pixels x batch from which a case takes the heavy-job lock


@contextmanager
def heavy_lock(pixels: int):
    if pixels < HEAVY:
        yield
        return
    with open(os.environ.get("HEAVY_LOCK", "/work/heavy.lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def bench_seg_case(h: int, w: int, batch: int, calls: int) -> None:
    """One case, in this process: build DRN-D-105 with random weights, time the prediction."""
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
    predict = drn.Predict(net)
    x = ms.Tensor(rng.uniform(0, 1, (batch, 3, h, w)).astype(np.float32))
    first, _ = timed(lambda: predict(x).asnumpy())
    wall, cpu = timed(lambda: [predict(x).asnumpy() for _ in range(calls)])
    n = batch * calls
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"DRN-D-105 {h}x{w} batch {batch}: {n / wall:.3f} images/s wall ({wall / n:.2f} s/image, "
        f"CPU {cpu / n:.2f} s/image); first call {first:.1f} s (compiles); peak RSS {rss:.2f} GB",
        flush=True,
    )


def bench_seg(calls: int) -> None:
    print(f"segmentation engines: {', '.join(ENGINES)}", flush=True)
    for h, w, batch in SEG_CASES:
        with heavy_lock(h * w * batch):
            cmd = [sys.executable, __file__, "--seg-case", f"{h}x{w}x{batch}"]
            subprocess.run([*cmd, "--calls", str(calls)], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2, help="timed calls per case")
    ap.add_argument("--sqrtm", action="store_true", help="also time scipy's sqrtm (~1 min)")
    ap.add_argument("--only", choices=("fid", "seg"), help="only the FID or the segmentation part")
    ap.add_argument("--seg-case", help=argparse.SUPPRESS)  # HxWxN: one case, in this process
    args = ap.parse_args()
    if args.seg_case:
        h, w, n = (int(v) for v in args.seg_case.split("x"))
        bench_seg_case(h, w, n, args.calls)
        return 0
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    if args.only != "seg":
        bench_fid_part(args)
    if args.only != "fid":
        bench_seg(args.calls)
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
