"""Audit (not a test): every reduction over a whole image against float64, at 2048x1024.

    .venv/bin/python bench/bench_reductions.py

Prints the relative L2 error (max relative error for a scalar) of p2phd's float32 result against
the same computation in float64 on the same float32 inputs, for the reductions whose length
grows with the image (issue 19): the instance norm at the plane sizes of G and E (2048x1024)
and of D's largest scale (512x256), forward and backward, with the batch-norm form it replaced
beside it; E's instance pooling on a real instance map of the Cityscapes sample (a road covers
~0.8 M pixels), forward and backward; the L1 means of feature matching and VGG and the MSE mean
of the GAN loss at their largest 1024p sizes. (FID's statistics are float64 over images in
p2phd.metrics.fid, and Inception's pooling averages 8x8 values: nothing grows with the image.)
Graph mode, CPU; a few planes or channels each (the error depends on the plane size, not on the
number of planes).
"""

import sys
from pathlib import Path

import numpy as np
from machine import header as machine_header  # CPU, ISA flags, cores, date above each table

REPO = Path(__file__).resolve().parents[1]
SAMPLE = (REPO / ".." / "shared" / "data" / "cityscapes-sample").resolve()
FRAME = "aachen_000000_000019"


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def _sum_product(cell):
    """d/dx of sum(cell(x, *rest) * g): the backward applied to g."""
    import mindspore as ms
    from mindspore import nn

    class Apply(nn.Cell):
        def __init__(self):
            super().__init__()
            self.cell = cell

        def construct(self, x, g, *rest):
            return (self.cell(x, *rest) * g).sum()

    return ms.grad(Apply(), grad_position=0)


def norms(rng: np.random.Generator) -> None:
    from bench_nets import _norm_cells
    from mindspore import Tensor

    cells = _norm_cells()
    for where, h, w in (("G, E", 1024, 2048), ("D scale 0", 256, 512)):
        for label, mean, std in (("N(1,3)", 1.0, 3.0), ("N(100,1)", 100.0, 1.0)):
            x = (rng.standard_normal((1, 2, h, w)) * std + mean).astype(np.float32)
            g = (rng.standard_normal(x.shape) + 0.5).astype(np.float32)
            xd, gd = x.astype(np.float64), g.astype(np.float64)
            m, v = xd.mean((2, 3), keepdims=True), xd.var((2, 3), keepdims=True)
            rstd = 1 / np.sqrt(v + 1e-5)
            y = (xd - m) * rstd
            mg, mgy = gd.mean((2, 3), keepdims=True), (gd * y).mean((2, 3), keepdims=True)
            dx = rstd * (gd - mg - y * mgy)
            for name in ("exact", "bnform"):
                norm = cells[name](2)
                fwd = rel(norm(Tensor(x)).asnumpy(), y)
                bwd = rel(_sum_product(norm)(Tensor(x), Tensor(g)).asnumpy(), dx)
                print(
                    f"instance norm {name:7} {where:10} {h}x{w} {label:9} fwd {fwd:.1e} bwd {bwd:.1e}"
                )


def pooling(rng: np.random.Generator) -> None:
    from mindspore import Tensor
    from PIL import Image

    from p2phd.nets.encoder import InstancePool
    from p2phd.nets.encoding import dense_index

    path = next((SAMPLE / "train_inst").glob(f"{FRAME}_*"))
    index, ids = dense_index(np.array(Image.open(path)).astype(np.int32))
    x = np.tanh(rng.standard_normal((1, 3, *index.shape)) * 0.3 + 0.5).astype(np.float32)
    g = (rng.standard_normal(x.shape) + 0.3).astype(np.float32)
    pool = InstancePool(len(ids))
    idx = Tensor(index[None])
    out = pool(Tensor(x), idx).asnumpy()
    gx = _sum_product(pool)(Tensor(x), Tensor(g), idx).asnumpy()
    count = np.bincount(index.ravel(), minlength=len(ids))
    want, want_g = np.zeros(x.shape), np.zeros(x.shape)
    for c in range(3):
        for arr, dst in ((x, want), (g, want_g)):
            sums = np.bincount(index.ravel(), arr[0, c].astype(np.float64).ravel(), len(ids))
            dst[0, c] = (sums / count)[index]
    print(
        f"instance pooling {len(ids)} instances, largest {count.max()} px: "
        f"fwd {rel(out, want):.1e} bwd {rel(gx, want_g):.1e}"
    )


def means(rng: np.random.Generator) -> None:
    from mindspore import Tensor

    from p2phd.nets import losses

    cases = (  # what, shape at 1024p (batch 1)
        ("feature matching L1 (D scale 0, layer 0)", (1, 64, 512, 1024)),
        ("VGG L1 (relu1_1)", (1, 64, 1024, 2048)),
        ("GAN MSE (D scale 0 patch map)", (1, 1, 130, 258)),
    )
    for what, shape in cases:
        a = rng.standard_normal(shape, dtype=np.float32) * 0.5 + 0.2
        b = rng.standard_normal(shape, dtype=np.float32) * 0.5
        if what.startswith("GAN"):
            got = float(losses.gan_loss(((Tensor(a),),), True).asnumpy())
            want = float(np.mean(np.square(a.astype(np.float64) - 1.0)))
        else:
            got = float(losses.feature_matching_loss(((Tensor(a), Tensor(a)),),
                                                     ((Tensor(b), Tensor(b)),), 3, 1, 1.0).asnumpy())  # fmt: skip
            want = float(np.abs(a.astype(np.float64) - b).mean())
        print(f"{what} {'x'.join(map(str, shape))}: {abs(got - want) / want:.1e}")
        del a, b


def main() -> int:
    import p2phd  # noqa: F401, I001  (env fixes before MindSpore)
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    sys.path.insert(0, str(Path(__file__).parent))
    rng = np.random.default_rng(0)
    print(machine_header(), flush=True)
    norms(rng)
    if SAMPLE.is_dir():
        pooling(rng)
    else:
        print(f"instance pooling: skipped (no sample at {SAMPLE})")
    means(rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
