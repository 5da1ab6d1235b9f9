"""make bench-train: seconds per training step of the four pix2pixHD modes on this CPU.

Full network widths (512p: global ngf 64, 2 D scales; 1024p: local enhancer ngf 32 over the
ngf-64 trunk, 3 D scales; E nef 16), VGG19 loss on (random weights: same cost as the real ones),
batch 1, graph mode, the exact step bin/train runs (p2phd.training.trainer.Trainer.step). Images are
reduced: 512p modes at 128x256 and 1024p modes at 256x512 (Cityscapes is 512x1024 and
1024x2048), i.e. 1/16 of the pixels. Each mode: 2 warm-up steps (compilation), then the median
of --steps timed steps. The projected full Cityscapes epoch (2975 images) scales the measured
time linearly in pixels (convolutions dominate and are linear in pixels) - a rough estimate.

The CPU is shared and noisy (mindspore-cpu.md: +-20-30 % run to run); compare numbers measured
close together only.
"""

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from machine import header as machine_header  # CPU, ISA flags, cores, date above each table

from p2phd.core import runtime  # noqa: E402  (env fixes before MindSpore)
from p2phd.training.train import TrainOptions  # noqa: E402

CITYSCAPES_TRAIN = 2975
MODES = {
    "512p": ({}, (128, 256), (512, 1024)),
    "512p-feat": ({"instance_feat": True}, (128, 256), (512, 1024)),
    "1024p": ({"netG": "local", "ngf": 32, "num_D": 3}, (256, 512), (1024, 2048)),
    "1024p-feat": (
        {
            "netG": "local",
            "ngf": 32,
            "num_D": 3,
            "instance_feat": True,
            "load_features": "precomputed.h5",
        },
        (256, 512),
        (1024, 2048),
    ),
}


def batch(o, h: int, w: int, rng: np.random.Generator) -> dict:
    """A Cityscapes-like synthetic sample: blocky labels, ~40 instances, a random photo."""
    label = np.repeat(np.repeat(rng.integers(0, 34, (1, h // 16, w // 16)), 16, 1), 16, 2).astype(
        np.int32
    )
    inst = np.repeat(np.repeat(rng.integers(0, 40, (1, h // 32, w // 32)), 32, 1), 32, 2).astype(
        np.int32
    )
    return {
        "names": ["bench"],
        "indices": [0],
        "label": label,
        "inst": inst,
        "pool": inst,
        "photo": rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32),
        "feat": rng.uniform(-1, 1, (1, o.feat_num, h, w)).astype(np.float32)
        if o.load_features
        else None,
    }


def bench_mode(name: str, steps: int) -> dict:
    from p2phd.nets import describe
    from p2phd.nets.vgg import VGG19Features
    from p2phd.training.trainer import Trainer

    overrides, (h, w), full = MODES[name]
    o = TrainOptions(manifest="-", name="bench", **overrides)
    trainer = Trainer(o, max_instances=64, world_size=1, vgg=VGG19Features())
    trainer.set_phase(False)
    rng = np.random.default_rng(0)
    b = batch(o, h, w, rng)
    t0 = time.perf_counter()
    trainer.step(b, 1)
    first = time.perf_counter() - t0
    trainer.step(b, 2)
    times = []
    for s in range(steps):
        t0 = time.perf_counter()
        trainer.step(b, 3 + s)
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    scale = (full[0] * full[1]) / (h * w)
    return {
        "mode": name,
        "size": f"{h}x{w}",
        "params": describe(o),
        "first_step_s": first,
        "sec_per_step": sec,
        "min": min(times),
        "max": max(times),
        "epoch_h_at_bench_size": sec * CITYSCAPES_TRAIN / 3600,
        "epoch_h_full_size": sec * scale * CITYSCAPES_TRAIN / 3600,
    }


def run_isolated(name: str, steps: int) -> dict | None:
    """One mode per process: memory of the previous mode is returned, and a crash (e.g. the OOM
    killer on a crowded machine) costs only that mode's line."""
    import json
    import subprocess

    p = subprocess.run(
        [sys.executable, __file__, "--one", name, "--steps", str(steps)],
        capture_output=True,
        text=True,
    )
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        print(
            f"{name:<11} failed (exit {p.returncode}): {p.stderr.strip().splitlines()[-1:]}",
            flush=True,
        )
        return None
    return json.loads(lines[-1])


def main() -> int:
    import json

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--steps", type=int, default=3, help="timed steps per mode after 2 warm-up steps"
    )
    ap.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    ap.add_argument("--one", choices=list(MODES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        runtime.setup("CPU", False, 0)
        r = bench_mode(args.one, args.steps)
        r["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(json.dumps(r), flush=True)
        return 0
    print(machine_header(), flush=True)
    print(
        f"{'mode':<11} {'size':>8} {'s/step':>7} {'min':>6} {'max':>6} {'1st(s)':>7} "
        f"{'epoch h @size':>13} {'epoch h full':>12} {'RSS GB':>6}",
        flush=True,
    )
    for name in args.modes:
        r = run_isolated(name, args.steps)
        if r is not None:
            print(
                f"{r['mode']:<11} {r['size']:>8} {r['sec_per_step']:7.2f} {r['min']:6.2f} {r['max']:6.2f} "
                f"{r['first_step_s']:7.1f} {r['epoch_h_at_bench_size']:13.2f} "
                f"{r['epoch_h_full_size']:12.1f} {r['peak_rss_gb']:6.1f}",
                flush=True,
            )
    print(
        f"full-size epoch = s/step x pixel ratio (16) x {CITYSCAPES_TRAIN} images (linear-in-pixels "
        "estimate); shared CPU: +-20-30 % noise",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
