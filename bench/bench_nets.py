"""Benchmark (not a test): G inference and one G+D training step with VGG, on this machine.

    .venv/bin/python bench/bench_nets.py [--configs large,small] [--variants base,...] [--runs 3]

Each (config, variant, kind) is measured in a fresh subprocess so its peak RSS (ru_maxrss) is its
own. Reports the median of ``--runs`` timed runs after one warm-up (which includes the graph
compile), the median process CPU time of those runs (all threads; less sensitive to other
processes than wall time, ~2x wall when both cores are ours) and the 1-minute load average. The CPU
is shared: numbers carry +-20-30 % noise, far more under load (../shared/research/mindspore-cpu.md);
compare only numbers measured close together.

Configs: large = ngf 64 at 256x512, small = ngf 32 at 128x256 (GlobalGenerator, 36 label+edge
inputs, 2-scale D, LSGAN + feature matching + VGG19 with random weights: same cost as the real
file). Variants swap one implementation choice (see VARIANTS) without touching the package.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {"large": (64, 256, 512), "small": (32, 128, 256)}
VARIANTS = {
    "base": "instance norm as batch norm over (1, N*C, H, W), nn.Pad REFLECT, GRAPH_MODE, no ms.jit",
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


def _apply_variant(variant: str) -> None:
    import mindspore as ms
    from mindspore import nn, ops

    from p2phd.nets import encoder, generator, layers

    if variant == "ops_groupnorm":

        class GroupNormC(nn.Cell):
            def __init__(self, c):
                super().__init__()
                self.c = c

            def construct(self, x):
                return ops.group_norm(x, self.c, None, None, 1e-5)

        layers.InstanceNorm = GroupNormC
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="large,small")
    ap.add_argument("--variants", default="base", help="comma list of: " + ", ".join(VARIANTS))
    ap.add_argument("--kinds", default="infer,train")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--child", nargs=3, metavar=("CONFIG", "VARIANT", "KIND"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.runs)))
        return 0
    print(
        f"{'config':7} {'variant':16} {'kind':6} {'median ms':>10} {'cpu ms':>8} {'first s':>8} "
        f"{'peak RSS GB':>11}  runs ms  (load {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    for config in args.configs.split(","):
        for variant in args.variants.split(","):
            for kind in args.kinds.split(","):
                cmd = [
                    sys.executable,
                    __file__,
                    "--runs",
                    str(args.runs),
                    "--child",
                    config,
                    variant,
                    kind,
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
                if proc.returncode != 0:
                    tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"{config:7} {variant:16} {kind:6} FAILED: {tail}", flush=True)
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                print(
                    f"{config:7} {variant:16} {kind:6} {r['median_ms']:>10} {r['cpu_ms']:>8} "
                    f"{r['first_s']:>8} {r['peak_rss_gb']:>11}  {r['runs_ms']}  "
                    f"(load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
