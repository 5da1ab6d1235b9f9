"""Benchmark (not a test): instance norms, G inference and one G+D training step with VGG.

    .venv/bin/python bench/bench_nets.py [--configs large,small] [--variants base,...] [--runs 3]
        [--kinds norm,infer,train]

Each (config, variant, kind) is measured in a fresh subprocess so its peak RSS (ru_maxrss) is its
own. Reports the median of ``--runs`` timed runs after one warm-up (which includes the graph
compile), the median process CPU time of those runs (all threads; less sensitive to other
processes than wall time, ~2x wall when both cores are ours) and the 1-minute load average. The CPU
is shared: numbers carry +-20-30 % noise, far more under load;
compare only numbers measured close together.

Configs: large = ngf 64 at 256x512, small = ngf 32 at 128x256 (GlobalGenerator, 36 label+edge
inputs, 2-scale D, LSGAN + feature matching + VGG19 with random weights: same cost as the real
file). Variants swap one implementation choice (see VARIANTS) without touching the package.

Kind ``norm`` (issue 19; once, not per config or variant): the instance norms alone, p2phd's
(exact), the batch-norm form it replaced and ops.group_norm, forward and forward+backward
(grad of sum(norm(x) * g)) on 1x64x256x512 and 1x16x1024x2048, graph mode, all interleaved in one
process (compare within a row), plus each one's error against float64 at the larger size
(relative L2, N(1, 3) and N(100, 1) inputs). The default runs the norm A/B, then inference and
the training step with the exact norm (base), the batch-norm form and group_norm.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from machine import header as machine_header  # CPU, ISA flags, cores, date above each table

CONFIGS = {"large": (64, 256, 512), "small": (32, 128, 256)}
VARIANTS = {
    "base": "p2phd as it is: exact instance norm, nn.Pad REFLECT, GRAPH_MODE, no ms.jit",
    "bnform_norm": "instance norm as batch norm over (1, N*C, H, W) (p2phd's before issue 19)",
    "ops_groupnorm": "ops.group_norm with C groups instead (p2phd's instance norm before issue 11)",
    "nn_groupnorm": "nn.GroupNorm(C, C, affine=False) instead",
    "manual_norm": "instance norm written as (x - mean) * rsqrt(E[x^2] - mean^2 + eps)",
    "reflectionpad2d": "nn.ReflectionPad2d instead of nn.Pad(REFLECT)",
    "threads1": "CPU kernel threads 1 (device_context.cpu.op_tuning.threads_num; default 25)",
    "threads2": "CPU kernel threads 2 (= cores)",
    "jit_o2": "ms.set_context(jit_config={'jit_level': 'O2'}) (graph kernel fusion level)",
    "mem_o1": "ms.runtime.set_memory(optimize_level='O1') (memory reuse)",
    "jit_step": "each of the G and D steps wrapped in ms.jit (PyNative context)",
    "pynative": "PyNative, no jit",
    "novgg": "base without the VGG loss (what the issue's PyTorch/MindSpore reference times measured)",
}


NORM_SHAPES = ((1, 64, 256, 512), (1, 16, 1024, 2048))


def _norm_cells() -> dict:
    """name -> instance-norm Cell class (channels) of the norm A/B."""
    import mindspore as ms
    from mindspore import nn, ops

    from p2phd.nets import layers

    global GroupNormC, BatchNormForm  # noqa: PLW0603  (the variants use them too)

    class GroupNormC(nn.Cell):
        def __init__(self, c):
            super().__init__()
            self.c = c

        def construct(self, x):
            return ops.group_norm(x, self.c, None, None, 1e-5)

    class BatchNormForm(nn.Cell):
        """p2phd's InstanceNorm of issue 11: training-mode batch norm over (1, N*C, H, W)."""

        def __init__(self, c):
            super().__init__()
            self.bn = ops.BatchNorm(is_training=True, epsilon=1e-5)

        def construct(self, x):
            n, c, h, w = x.shape
            x1 = ops.reshape(x, (1, n * c, h, w))
            scratch = ops.reshape(ops.stop_gradient(x1[:, :, 0, 0]), (n * c,)) * 0.0
            one, zero = ops.ones((n * c,), ms.float32), ops.zeros((n * c,), ms.float32)
            y = self.bn(x1, one, zero, scratch, scratch)[0]
            return ops.reshape(y, (n, c, h, w))

    return {"exact": layers.InstanceNorm, "bnform": BatchNormForm, "group_norm": GroupNormC}


def _norm_grad(norm):
    """d/dx of sum(norm(x) * g): the norm's backward applied to g."""
    import mindspore as ms
    from mindspore import nn

    class Apply(nn.Cell):
        def __init__(self):
            super().__init__()
            self.norm = norm

        def construct(self, x, g):
            return (self.norm(x) * g).sum()

    return ms.grad(Apply(), grad_position=0)


def norm_child(runs: int) -> list[dict]:
    """The norm A/B (see the module doc): one row per (shape, norm, pass)."""
    import p2phd  # noqa: F401, I001  (env fixes before MindSpore)
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    cells = _norm_cells()

    rows = []
    for shape in NORM_SHAPES:
        rng = np.random.default_rng(0)
        g = Tensor(rng.standard_normal(shape).astype(np.float32))
        x = Tensor((rng.standard_normal(shape) * 3 + 1).astype(np.float32))
        calls = {}
        for name, cls in cells.items():
            norm = cls(shape[1])
            grad = _norm_grad(norm)
            calls[(name, "fwd")] = lambda norm=norm, x=x: norm(x).asnumpy()
            calls[(name, "fwd+bwd")] = lambda grad=grad, x=x, g=g: grad(x, g).asnumpy()
        wall = {k: [] for k in calls}
        cpu = {k: [] for k in calls}
        for call in calls.values():
            call()  # compile
        for _ in range(runs):  # interleaved
            for key, call in calls.items():
                t0, c0 = time.perf_counter(), time.process_time()
                call()
                wall[key].append(time.perf_counter() - t0)
                cpu[key].append(time.process_time() - c0)
        errors = _norm_errors(cells, shape) if shape == NORM_SHAPES[-1] else {}
        for name, kind in calls:
            rows.append(
                {
                    "shape": "x".join(map(str, shape)),
                    "norm": name,
                    "pass": kind,
                    "median_ms": round(statistics.median(wall[(name, kind)]) * 1000, 1),
                    "cpu_ms": round(statistics.median(cpu[(name, kind)]) * 1000, 1),
                    **errors.get((name, kind), {}),
                }
            )
    return rows


def _norm_errors(cells: dict, shape: tuple) -> dict:
    """Relative L2 error of each norm's output and input gradient against float64."""
    import numpy as np
    from mindspore import Tensor

    shape = (1, 2, *shape[2:])  # two planes of the full size are enough for the statistics
    rng = np.random.default_rng(1)
    gn = (rng.standard_normal(shape) + 0.5).astype(np.float32)
    out: dict = {}
    for label, mean, std in (("N(1,3)", 1.0, 3.0), ("N(100,1)", 100.0, 1.0)):
        x = (rng.standard_normal(shape) * std + mean).astype(np.float32)
        xd, gd = x.astype(np.float64), gn.astype(np.float64)
        m, v = xd.mean((2, 3), keepdims=True), xd.var((2, 3), keepdims=True)
        rstd = 1 / np.sqrt(v + 1e-5)
        y = (xd - m) * rstd
        dx = rstd * (gd - gd.mean((2, 3), keepdims=True) - y * (gd * y).mean((2, 3), keepdims=True))
        for name, cls in cells.items():
            norm = cls(shape[1])
            got_y = norm(Tensor(x)).asnumpy()
            got_dx = _norm_grad(norm)(Tensor(x), Tensor(gn)).asnumpy()
            for kind, got, want in (("fwd", got_y, y), ("fwd+bwd", got_dx, dx)):
                err = float(np.linalg.norm(got - want) / np.linalg.norm(want))
                out.setdefault((name, kind), {})[f"err {label}"] = f"{err:.1e}"
    return out


def _apply_variant(variant: str) -> None:
    import mindspore as ms
    from mindspore import nn, ops

    from p2phd.nets import encoder, generator, layers

    _norm_cells()
    if variant == "ops_groupnorm":
        layers.InstanceNorm = GroupNormC
    elif variant == "bnform_norm":
        layers.InstanceNorm = BatchNormForm
    elif variant == "nn_groupnorm":
        layers.InstanceNorm = lambda c: nn.GroupNorm(c, c, eps=1e-5, affine=False)
    elif variant == "manual_norm":

        class ManualNorm(nn.Cell):
            def __init__(self, c):
                super().__init__()

            def construct(self, x):
                mean = x.mean(axis=(2, 3), keep_dims=True)
                var = (x * x).mean(axis=(2, 3), keep_dims=True) - mean * mean
                return (x - mean) * ops.rsqrt(var + 1e-5)

        layers.InstanceNorm = ManualNorm
    elif variant == "reflectionpad2d":
        for mod in (layers, generator, encoder):
            mod.reflection_pad = nn.ReflectionPad2d
    elif variant in ("threads1", "threads2"):
        ms.device_context.cpu.op_tuning.threads_num(int(variant[-1]))
    elif variant == "jit_o2":
        ms.set_context(jit_config={"jit_level": "O2"})
    elif variant == "mem_o1":
        ms.runtime.set_memory(optimize_level="O1")


def _inputs(ngf: int, h: int, w: int):
    import numpy as np
    from mindspore import Tensor

    rng = np.random.default_rng(0)
    label = Tensor(rng.integers(0, 35, (1, h, w)).astype(np.int32))
    index = Tensor(rng.integers(0, 8, (1, h, w)).astype(np.int32))
    real = Tensor(rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32))
    return label, index, real


def _build(ngf: int):
    import dataclasses

    from p2phd import nets
    from p2phd.core.options import DataOptions, ModelOptions

    @dataclasses.dataclass
    class Opts(DataOptions, ModelOptions):
        pass

    o = Opts(ngf=ngf)
    return o, nets.build_generator(o), nets.build_discriminator(o)


def _train_step(o, g, d, use_vgg: bool = True):
    import mindspore as ms
    from mindspore import nn, ops

    from p2phd.nets import encoding, losses
    from p2phd.nets.vgg import VGG19Features

    vgg = losses.VGGLoss(VGG19Features()) if use_vgg else None
    opt_g = nn.Adam(g.trainable_params(), learning_rate=2e-4, beta1=0.5, beta2=0.999)
    opt_d = nn.Adam(d.trainable_params(), learning_rate=2e-4, beta1=0.5, beta2=0.999)

    def g_forward(label, index, real):
        cond = encoding.encode_condition(label, index, o.label_nc, True)
        fake = g(cond)
        pred_fake = d(encoding.discriminator_input(cond, fake))
        pred_real = d(encoding.discriminator_input(cond, real))
        loss = losses.gan_loss(pred_fake, True) + losses.feature_matching_loss(
            pred_fake, pred_real, o.n_layers_D, o.num_D
        )
        if vgg is not None:
            loss = loss + vgg(fake, real)
        return loss, fake

    def d_forward(label, index, real, fake):
        cond = encoding.encode_condition(label, index, o.label_nc, True)
        pred_fake = d(encoding.discriminator_input(cond, ops.stop_gradient(fake)))
        pred_real = d(encoding.discriminator_input(cond, real))
        return losses.d_loss(pred_fake, pred_real)[0]

    grad_g = ms.value_and_grad(g_forward, None, opt_g.parameters, has_aux=True)
    grad_d = ms.value_and_grad(d_forward, None, opt_d.parameters)

    def g_step(label, index, real):
        (loss_g, fake), grads = grad_g(label, index, real)
        opt_g(grads)
        return loss_g, fake

    def d_step(label, index, real, fake):
        loss_d, grads = grad_d(label, index, real, fake)
        opt_d(grads)
        return loss_d

    return g_step, d_step


def child(config: str, variant: str, kind: str, runs: int) -> dict:
    import p2phd  # noqa: F401, I001  (env fixes before MindSpore)
    import mindspore as ms

    ngf, h, w = CONFIGS[config]
    ms.set_context(mode=ms.PYNATIVE_MODE if variant in ("pynative", "jit_step") else ms.GRAPH_MODE)
    ms.set_device("CPU")
    ms.set_seed(0)
    _apply_variant(variant)
    o, g, d = _build(ngf)
    label, index, real = _inputs(ngf, h, w)
    if kind == "infer":
        from p2phd.nets import encoding

        g.set_train(False)
        cond = encoding.encode_condition(label, index, o.label_nc, True)
        net = ms.jit(g.construct) if variant == "jit_step" else g

        def step():
            return net(cond).asnumpy()
    else:
        g_step, d_step = _train_step(o, g, d, use_vgg=variant != "novgg")
        if variant == "jit_step":
            g_step, d_step = ms.jit(g_step), ms.jit(d_step)

        def step():
            loss_g, fake = g_step(label, index, real)
            loss_d = d_step(label, index, real, fake)
            return float(loss_g.asnumpy()), float(loss_d.asnumpy())

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return {
        "config": config,
        "variant": variant,
        "kind": kind,
        "first_s": round(first, 2),
        "median_ms": round(statistics.median(times) * 1000),
        "runs_ms": [round(t * 1000) for t in times],
        "cpu_ms": round(statistics.median(cpu) * 1000),
        "peak_rss_gb": round(rss_gb, 2),
    }


def _child(args: list[str]) -> dict | list | None:
    """Run this script with args in a fresh process (its own peak RSS); its last stdout line."""
    cmd = [sys.executable, __file__, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    if proc.returncode != 0:
        print("FAILED: " + (proc.stderr.strip().splitlines() or ["?"])[-1], flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print_norms(runs: int) -> None:
    rows = _child(["--runs", str(runs), "--norm-child"])
    if not rows:
        return
    print(f"instance norms (load {os.getloadavg()[0]:.1f}); x = time / exact's time", flush=True)
    print(
        f"{'shape':16} {'pass':8} "
        + "".join(f"{n + ' ms':>14} {'cpu':>7} {'x':>5}" for n in ("exact", "bnform", "group_norm"))
    )
    for shape in dict.fromkeys(r["shape"] for r in rows):
        for kind in ("fwd", "fwd+bwd"):
            mine = {r["norm"]: r for r in rows if r["shape"] == shape and r["pass"] == kind}
            base = mine["exact"]["median_ms"]
            cells = "".join(
                f"{mine[n]['median_ms']:>14} {mine[n]['cpu_ms']:>7} {mine[n]['median_ms'] / base:>5.2f}"
                for n in ("exact", "bnform", "group_norm")
            )
            print(f"{shape:16} {kind:8} {cells}")
    errs = [r for r in rows if any(k.startswith("err") for k in r)]
    print("relative L2 error against float64 at " + errs[0]["shape"] + " (2 planes):")
    for r in errs:
        e = "  ".join(f"{k[4:]} {v}" for k, v in r.items() if k.startswith("err"))
        print(f"  {r['norm']:11} {r['pass']:8} {e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="large,small")
    ap.add_argument(
        "--variants",
        default="base,bnform_norm,ops_groupnorm",
        help="comma list of: " + ", ".join(VARIANTS),
    )
    ap.add_argument("--kinds", default="norm,infer,train", help="norm, infer, train")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="repeat the infer/train sweep")
    ap.add_argument(
        "--child", nargs=3, metavar=("CONFIG", "VARIANT", "KIND"), help=argparse.SUPPRESS
    )
    ap.add_argument("--norm-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.norm_child:
        print(json.dumps(norm_child(max(args.runs, 5))))
        return 0
    if args.child:
        print(json.dumps(child(*args.child, args.runs)))
        return 0
    kinds = args.kinds.split(",")
    print(machine_header(), flush=True)
    if "norm" in kinds:
        _print_norms(args.runs)
    kinds = [k for k in kinds if k != "norm"]
    if not kinds:
        return 0
    print(
        f"{'config':7} {'variant':16} {'kind':6} {'median ms':>10} {'cpu ms':>8} {'first s':>8} "
        f"{'peak RSS GB':>11}  runs ms  (load {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    for _ in range(args.rounds):
        for config in args.configs.split(","):
            for kind in kinds:
                for variant in args.variants.split(","):
                    r = _child(["--runs", str(args.runs), "--child", config, variant, kind])
                    if r is None:
                        continue
                    print(
                        f"{config:7} {variant:16} {kind:6} {r['median_ms']:>10} {r['cpu_ms']:>8} "
                        f"{r['first_s']:>8} {r['peak_rss_gb']:>11}  {r['runs_ms']}  "
                        f"(load {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
