"""Benchmark (not a test): FID Inception pool3 features per second on this CPU, and the FID step.

The network is p2phd.metrics.inception.FIDInception with the test fixture's weights (the real
network's shapes with random values: speed does not depend on them). Cases, each after one
untimed call (graph compilation):

- 299x299 input (the network's own size; the resize is an identity), batch 1 and batch 8;
- 512x1024 input (a 512p Cityscapes render; the network resizes it to 299x299), batch 8;

then the distance between two sets of 500 random 2048-d feature vectors (Cityscapes val has
500 frames): the exact low-rank form bin/evaluate uses, and with ``--sqrtm`` also pytorch-fid's
scipy sqrtm of the 2048x2048 product. Wall and CPU seconds are printed with the load average:
the 2 cores are shared, so wall numbers carry large noise; CPU time per image is steadier.
"""

import argparse
import gzip
import os
import shutil
import sys
import tempfile
import time
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2, help="timed calls per case")
    ap.add_argument("--sqrtm", action="store_true", help="also time scipy's sqrtm (~1 min)")
    args = ap.parse_args()
    from p2phd.core import runtime
    from p2phd.metrics.features import load_inception

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
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
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
