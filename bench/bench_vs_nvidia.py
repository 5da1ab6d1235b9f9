"""Benchmark (not a test): p2phd against NVIDIA's own PyTorch networks, same shapes, one run.

    .venv/bin/python bench/bench_vs_nvidia.py --nvidia /path/to/pix2pixHD \
        --torch-python /path/to/python [--big] [--only NAME,...] [--runs 3] [--amp O0]

For every row of WORK, one fresh process measures p2phd (this venv, the real
p2phd.training.trainer.Trainer step or the generator's inference) and one fresh process measures
NVIDIA's ``models/networks.py`` from the checkout given (bench/nvidia_side.py, run with the
torch Python), interleaved: p2phd, NVIDIA, next row. Each process runs one warm-up step (graph
compile included) and ``--runs`` timed steps and reports the median wall time, the median process
CPU time (all threads) and its own peak RSS (ru_maxrss). Peak memory does not depend on load;
times do (+-20-30 % on a quiet machine, more under load): read the CPU column too.

Inference rows also measure p2phd's ONNX export (bin/export --format ONNX, written once per row
by a separate process) in onnxruntime with render --onnx's session settings
(p2phd.deploy.onnx_run.session_options, --ort-threads intra-op threads): fp32 and --half, and
the fp32 file in OpenVINO (render --engine openvino), each in its own process that imports the
engine and NumPy only. Its inputs are raw label and instance
ids (the graph encodes them), the others' the encoded condition. ``--ort-arena`` and
``--ort-fused-norm`` (InstanceNormalization instead of the exact norm) add comparison rows.

Render rows (bench/render_rows.py: ``render-g64-512x1024``, ``render-1024p-2048x1024``, NVIDIA's
label2city_512p and label2city_1024p generators): NVIDIA-shaped random weights made by NVIDIA's
code, imported with bin/import, and the sample's real test label maps (``--sample``, default
$P2PHD_SAMPLE or the checkout's ../shared/data/cityscapes-sample) at 512x1024 and 2048x1024:
NVIDIA's inference in fp32 (and bf16 autocast at 2048x1024) against ``bin/render --run`` by its
default path and by each engine, per frame, peak memory of the process tree, minutes for the 500
frames of Cityscapes val. ``--lock FILE`` (or $BENCH_LOCK) makes every measured process hold an
exclusive flock on FILE while it runs, so no two large jobs share the machine.

Shapes: batch 1, 35 labels + edge map, 2-scale D (3 scales for the local enhancer, as the 1024p
mode), LSGAN + feature matching (+ VGG19 with random weights on both sides). ``--big`` adds the
512x1024 training rows (21 GB for p2phd before issue 11, 8 GB for NVIDIA): run it alone.
Exit 2 with one line if the checkout or torch is absent.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # render_rows and machine beside this file, also when imported
import render_rows  # noqa: E402
from machine import header as machine_header  # noqa: E402  (CPU, ISA flags, cores, date)

# name: (kind, netG, ngf, H, W, vgg, num_D, big)
WORK = {
    "train-g64-256x512": ("train", "global", 64, 256, 512, 1, 2, False),
    "train-g64-256x512-novgg": ("train", "global", 64, 256, 512, 0, 2, False),
    "train-g32-128x256": ("train", "global", 32, 128, 256, 1, 2, False),
    "train-g32-128x256-novgg": ("train", "global", 32, 128, 256, 0, 2, False),
    "train-local32-256x512": ("train", "local", 32, 256, 512, 1, 3, False),
    "infer-g64-512x1024": ("infer", "global", 64, 512, 1024, 0, 2, False),
    "infer-local32-1024x2048": ("infer", "local", 32, 1024, 2048, 0, 3, False),
    "infer-g32-128x256": ("infer", "global", 32, 128, 256, 0, 2, False),
    "train-g64-512x1024": ("train", "global", 64, 512, 1024, 1, 2, True),
    "train-local32-512x1024": ("train", "local", 32, 512, 1024, 1, 3, True),
}


# every row in the order they run: the 512x1024 render row right after its in-process G row
ROWS = [*WORK]
ROWS[ROWS.index("infer-g64-512x1024") + 1 : 0] = ["render-g64-512x1024"]
ROWS.insert(ROWS.index("infer-local32-1024x2048") + 1, "render-1024p-2048x1024")
SAMPLE = os.environ.get(
    "P2PHD_SAMPLE", str(HERE.parent.parent / "shared" / "data" / "cityscapes-sample")
)


def measure(step, runs: int) -> dict:
    """One warm-up call (the compile), then the median wall and CPU time of `runs` calls and the
    process's peak RSS. Used by both sides (nvidia_side.py imports it: stdlib only here)."""
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {
        "wall_ms": round(statistics.median(wall) * 1000),
        "cpu_ms": round(statistics.median(cpu) * 1000),
        "first_s": round(first, 2),
        "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }


def p2phd_child(name: str, runs: int, amp: str) -> dict:
    """One measurement of p2phd (this process): the Trainer's step or G's inference."""
    sys.path.insert(0, str(HERE.parent))
    import p2phd  # noqa: F401, I001  (env fixes before MindSpore)
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor

    from p2phd.core import runtime
    from p2phd.training.train import TrainOptions

    kind, netg, ngf, h, w, use_vgg, num_d, _ = WORK[name]
    runtime.setup("CPU", False, 0)
    o = TrainOptions(
        name="bench", netG=netg, ngf=ngf, num_D=num_d, no_vgg_loss=not use_vgg, amp=amp
    )
    rng = np.random.default_rng(0)
    inst = rng.integers(0, 8, (1, h, w)).astype(np.int32)
    batch = {
        "label": rng.integers(0, 35, (1, h, w)).astype(np.int32),
        "inst": inst,
        "pool": inst,
        "photo": rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32),
        "feat": None,
    }
    if kind == "infer":
        from p2phd.nets import build_generator
        from p2phd.nets.encoding import encode_condition

        G = build_generator(o)
        G.set_train(False)
        if amp != "O0":
            G = ms.amp.auto_mixed_precision(G, amp)
        cond = encode_condition(Tensor(batch["label"]), Tensor(inst), 35, True)

        def step():
            return G(cond).asnumpy()
    else:
        from p2phd.nets.vgg import VGG19Features
        from p2phd.training.trainer import Trainer

        trainer = Trainer(o, 8, 1, VGG19Features() if use_vgg else None)
        trainer.set_phase(False)
        counter = iter(range(1, 1 << 30))

        def step():
            return trainer.step(batch, next(counter))

    return measure(step, runs)


def write_onnx(name: str, folder: Path, half: bool, fused_norm: bool) -> Path:
    """The row's G (random weights, seed 0) with its encoding as ONNX, as bin/export writes it."""
    sys.path.insert(0, str(HERE.parent))
    import p2phd  # noqa: F401, I001  (env fixes before MindSpore)
    from p2phd.core import runtime
    from p2phd.deploy import graph, onnx_graph
    from p2phd.nets import build_generator
    from p2phd.training.train import TrainOptions

    _, netg, ngf, h, w, _, _, _ = WORK[name]
    runtime.setup("CPU", False, 0)
    o = TrainOptions(name="bench", netG=netg, ngf=ngf)
    G = build_generator(o)
    G.set_train(False)
    model = onnx_graph.build(
        G,
        o,
        graph.input_spec(o, (h, w), 1),
        graph.output_spec(o, (h, w), 1, False),
        half,
        fused_norm,
    )
    path = folder / f"{name}{'-half' if half else ''}{'-fused' if fused_norm else ''}.onnx"
    onnx_graph.save(model, path)
    return path


def onnx_child(path: str, name: str, runs: int, threads: int, arena: bool, engine: str) -> dict:
    """One measurement of the ONNX file in onnxruntime or OpenVINO (no MindSpore here), with
    render --onnx's own session (p2phd.deploy.onnx_run)."""
    sys.path.insert(0, str(HERE.parent))
    import numpy as np

    from p2phd.deploy import onnx_run

    _, _, _, h, w, _, _, _ = WORK[name]
    if engine == "openvino":
        sess = onnx_run.OpenVINOSession(path, threads)
    else:
        import onnxruntime as ort

        so = onnx_run.session_options(threads, arena)
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        "label": rng.integers(0, 35, (1, h, w)).astype(np.int32),
        "instance": rng.integers(0, 8, (1, h, w)).astype(np.int32),
    }
    return measure(lambda: sess.run(["image"], feeds), runs)


def _run(cmd: list[str], env: dict, lock: str = "") -> dict:
    with render_rows.heavy(lock):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail[:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_inputs(nvidia: str, torch_python: str) -> str | None:
    if not nvidia or not (Path(nvidia) / "models" / "networks.py").is_file():
        return f"bench-vs-nvidia: no NVIDIA/pix2pixHD checkout at {nvidia!r} (models/networks.py)"
    probe = [torch_python, "-c", "import torch, torchvision"]
    try:
        ok = subprocess.run(probe, capture_output=True).returncode == 0
    except OSError:
        ok = False
    if not ok:
        return f"bench-vs-nvidia: {torch_python!r} cannot import torch and torchvision"
    return None


def _fmt(r: dict, key: str, scale: float = 1.0, digits: int = 2) -> str:
    return "fail" if "error" in r else f"{r[key] * scale:.{digits}f}"


def _ratio(a: dict, b: dict, key: str) -> str:
    if "error" in a or "error" in b or not b[key]:
        return "-"
    return f"{a[key] / b[key]:.2f}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nvidia", default=os.environ.get("NVIDIA", ""))
    ap.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON", "python3"))
    ap.add_argument("--big", action="store_true", help="add the 512x1024 training rows")
    ap.add_argument("--only", default="", help="comma list of rows: " + ", ".join(ROWS))
    ap.add_argument("--runs", type=int, default=3, help="timed steps per process (median)")
    ap.add_argument("--amp", default="O0", help="p2phd's --amp level (O0 = fp32, as NVIDIA's)")
    ap.add_argument("--ort-threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument(
        "--ort-arena", action="store_true", help="add rows with the CPU memory arena on"
    )
    ap.add_argument(
        "--ort-fused-norm", action="store_true", help="add rows with ONNX InstanceNormalization"
    )
    ap.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime rows")
    ap.add_argument("--lock", default=os.environ.get("BENCH_LOCK", ""), help="flock file")
    ap.add_argument("--sample", default=str(SAMPLE), help="Cityscapes sample (render rows)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--write-onnx", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--onnx-child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(p2phd_child(args.child, args.runs, args.amp)))
        return 0
    if args.write_onnx:
        name, folder, half, fused = args.write_onnx
        print(write_onnx(name, Path(folder), half == "1", fused == "1"))
        return 0
    if args.onnx_child:
        path, name, arena, engine = (*args.onnx_child, "onnxruntime")[:4]
        result = onnx_child(path, name, args.runs, args.ort_threads, arena == "1", engine)
        print(json.dumps(result))
        return 0
    problem = _check_inputs(args.nvidia, args.torch_python)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    names = args.only.split(",") if args.only else [n for n in ROWS if args.big or not _big(n)]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        print(
            f"bench-vs-nvidia: unknown row {unknown[0]!r} (rows: {', '.join(ROWS)})",
            file=sys.stderr,
        )
        return 2
    if (
        any(n in render_rows.ROWS for n in names)
        and not (Path(args.sample) / "test_label").is_dir()
    ):
        print(f"bench-vs-nvidia: no Cityscapes sample at {args.sample} (--sample)", file=sys.stderr)
        return 2
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    print(machine_header(), flush=True)
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}, {args.runs} timed "
        f"steps per process (median), p2phd --amp {args.amp}",
        flush=True,
    )
    head = (
        f"{'work':26} {'p2phd s':>8} {'NVIDIA s':>8} {'ratio':>6} {'p2phd cpu':>9} "
        f"{'NV cpu':>7} {'ratio':>6} {'p2phd GB':>8} {'NV GB':>6} {'ratio':>6}  load"
    )
    print(head, flush=True)
    tables = []
    with tempfile.TemporaryDirectory(prefix="bench-vs-nvidia-") as tmp:
        for name in names:
            if name in render_rows.ROWS:
                tables.append(_render_row(name, args, Path(tmp)))
            else:
                _row(name, args, env, Path(tmp))
    for t in tables:
        print(f"\n{machine_header()}\n{t}", flush=True)
    return 0


def _big(name: str) -> bool:
    return name in WORK and WORK[name][7]


def _render_row(name: str, args: argparse.Namespace, tmp: Path) -> str:
    """One render row (bench/render_rows.py); returns its markdown table."""
    print(f"{name}:", flush=True)
    ctx = render_rows.Context(
        args.nvidia, args.torch_python, Path(args.sample), tmp / name, args.runs, args.lock,
    )  # fmt: skip
    ctx.work.mkdir(parents=True)
    try:
        results = render_rows.measure_row(ctx, name)
    except RuntimeError as e:
        print(f"  {name} failed: {e}", flush=True)
        return f"{name}: failed: {e}"
    finally:
        shutil.rmtree(ctx.work, ignore_errors=True)
    return render_rows.table(name, results, args.runs)


def _print(name: str, ours: dict, theirs: dict) -> None:
    print(
        f"{name:26} {_fmt(ours, 'wall_ms', 1e-3):>8} {_fmt(theirs, 'wall_ms', 1e-3):>8} "
        f"{_ratio(ours, theirs, 'wall_ms'):>6} {_fmt(ours, 'cpu_ms', 1e-3):>9} "
        f"{_fmt(theirs, 'cpu_ms', 1e-3):>7} {_ratio(ours, theirs, 'cpu_ms'):>6} "
        f"{_fmt(ours, 'peak_gb'):>8} {_fmt(theirs, 'peak_gb'):>6} "
        f"{_ratio(ours, theirs, 'peak_gb'):>6}  {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if "error" in ours:
        print(f"  p2phd failed: {ours['error']}", flush=True)


def _onnx_variants(args: argparse.Namespace) -> list[tuple[str, bool, bool, bool, str]]:
    """(label, half, fused norm, arena, engine) of the ONNX rows measured per inference row."""
    rows = [
        ("onnx fp32", False, False, False, "onnxruntime"),
        ("onnx --half", True, False, False, "onnxruntime"),
        ("openvino fp32", False, False, False, "openvino"),
    ]
    if args.ort_arena:
        rows.append(("onnx fp32 arena", False, False, True, "onnxruntime"))
    if args.ort_fused_norm:
        rows.append(("onnx fp32 fused norm", False, True, False, "onnxruntime"))
    return rows


def _row(name: str, args: argparse.Namespace, env: dict, tmp: Path) -> None:
    """One row: p2phd (MindSpore), NVIDIA, then (inference) the onnxruntime variants, each in
    its own process, one after the other."""
    kind, netg, ngf, h, w, use_vgg, num_d, _ = WORK[name]
    ours = _run(
        [
            sys.executable,
            __file__,
            "--child",
            name,
            "--runs",
            str(args.runs),
            "--amp",
            args.amp,
        ],
        env,
        args.lock,
    )
    theirs_cmd = [args.torch_python, str(HERE / "nvidia_side.py"), args.nvidia, kind, netg]
    theirs_cmd += [str(v) for v in (ngf, h, w, use_vgg, num_d, args.runs)]
    theirs = _run(theirs_cmd, dict(os.environ), args.lock)
    _print(name, ours, theirs)
    if "error" in theirs:
        print(f"  NVIDIA failed: {theirs['error']}", flush=True)
    if kind != "infer" or args.no_onnx:
        return
    me = [
        sys.executable,
        __file__,
        "--runs",
        str(args.runs),
        "--ort-threads",
        str(args.ort_threads),
    ]
    for label, half, fused, arena, engine in _onnx_variants(args):
        made = subprocess.run(
            [*me, "--write-onnx", name, str(tmp), str(int(half)), str(int(fused))],
            capture_output=True,
            text=True,
            env=env,
        )
        if made.returncode:
            _print(f"  {label}", {"error": made.stderr.strip()[-120:]}, theirs)
            continue
        path = made.stdout.strip().splitlines()[-1]
        child = [*me, "--onnx-child", path, name, str(int(arena)), engine]
        _print(f"  {label}", _run(child, env, args.lock), theirs)
        Path(path).unlink()


if __name__ == "__main__":
    sys.exit(main())
