"""Benchmark (not a test): bin/export of the full-size generators, and render from the MindIR.

- Export: wall time, CPU time, peak RSS and file size of ``bin/export`` (one process each) for
  the 512p generator (global, ngf 64, 512x1024) and the 1024p one (local enhancer, ngf 32,
  1024x2048), random weights, as MindIR, ONNX and ONNX --half (ONNX: writing plus onnx's full
  checker and strict shape inference, which are part of every export). Export traces the graph and serialises the weights; it runs no
  image through G, so its memory is about the weights, not the resolution.
- Render: ``bin/render --run`` (checkpoint) against ``bin/render --mindir`` (the export) with the
  512p generator at 256x512 on 4 of the 15 sample test maps (``--shard 0/4``): wall time, render's
  steady seconds per image (after the first, which includes graph compilation) and whether the
  PNGs are byte-identical.

The 2 cores are shared with other users: expect +-20-30 % noise; compare rows measured together.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import header as machine_header  # CPU, ISA flags, cores, date above each table

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "cityscapes-sample"
CASES = {  # name: (arch options, --size)
    "512p": ({"netG": "global", "ngf": 64}, "512x1024"),
    "1024p": ({"netG": "local", "ngf": 32, "resize_or_crop": "none"}, "1024x2048"),
}


def make_run(folder: Path, arch: dict, load_size: int) -> Path:
    """A run folder with a randomly initialised generator (options.json + G.ckpt)."""
    code = f"""
import dataclasses, sys
sys.path.insert(0, {str(ROOT)!r})
from p2phd.core import checkpoint, runs, runtime
runtime.setup("CPU")
from p2phd.nets import build_generator
a = runs.ArchOptions(load_size={load_size}, **{arch!r})
runs.write_options({str(folder)!r}, dataclasses.asdict(a), {{"path": "", "sha256": ""}})
checkpoint.save({str(folder / "G.ckpt")!r}, {{"netG": build_generator(a)}}, {{"epoch": 0, "step": 0}})
"""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code], check=True)
    return folder


def timed(cmd: list[str]) -> dict:
    """Run cmd; wall and CPU seconds and peak RSS of that process (os.wait4), its stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # read the pipes fully before reaping so the child never blocks on a full pipe
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_gb": usage.ru_maxrss / 2**20,
        "stdout": out.strip(),
        "stderr": err,
    }


FORMATS = {
    "MINDIR": [],
    "ONNX": ["--format", "ONNX"],
    "ONNX --half": ["--format", "ONNX", "--half"],
}


def bench_export(work: Path, names: list[str], formats: list[str]) -> None:
    print(
        f"{'generator':10} {'format':12} {'size':>10} {'params':>8} {'MiB':>7} {'wall s':>7} "
        f"{'cpu s':>7} {'RSS GB':>7}"
    )
    for name in names:
        arch, size = CASES[name]
        run = make_run(work / name, arch, int(size.split("x")[1]))
        params = (os.path.getsize(run / "G.ckpt")) / 4 / 1e6  # float32 weights, approx.
        for fmt in formats:
            r = timed(
                [str(ROOT / "bin" / "export"), "--run", str(run), "--size", size, *FORMATS[fmt]]
            )
            model = Path(r["stdout"])
            side = json.loads(model.with_name(model.name + ".json").read_text())
            print(
                f"{name:10} {fmt:12} {size:>10} {params:7.1f}M {side['bytes'] / 2**20:7.1f} "
                f"{r['wall_s']:7.1f} {r['cpu_s']:7.1f} {r['peak_rss_gb']:7.2f}   "
                f"(writing the file: {side['export_seconds']:.1f} s)",
                flush=True,
            )
            model.unlink()
        (run / "G.ckpt").unlink()


_DONE = re.compile(r"render: (\d+) images in ([\d.]+) s .*?(?:then ([\d.]+) s/image)?$", re.M)


def bench_render(work: Path) -> None:
    man = work / "test-512.h5"
    subprocess.run(
        [str(ROOT / "bin" / "prepare"), "--dataroot", str(SAMPLE), "--phase", "test"]
        + ["--load_size", "512", "--out", str(man)],
        check=True,
        capture_output=True,
    )
    run = make_run(work / "r512", {"netG": "global", "ngf": 64}, 512)
    model = timed([str(ROOT / "bin" / "export"), "--run", str(run), "--size", "256x512"])["stdout"]
    common = [str(man), "--shard", "0/4"]
    print(f"\nrender 4 maps at 256x512, ngf 64 (load average {os.getloadavg()[0]:.1f}):")
    outs = {}
    for label, src in (("--run G.ckpt", ["--run", str(run)]), ("--mindir", ["--mindir", model])):
        out = work / f"render{len(outs)}"
        r = timed([str(ROOT / "bin" / "render"), *src, *common, "--out", str(out)])
        m = _DONE.search(r["stderr"])
        steady = f"{float(m[3]):.2f} s/image after the first" if m and m[3] else "?"
        print(
            f"  {label:13} wall {r['wall_s']:6.1f} s, cpu {r['cpu_s']:6.1f} s, "
            f"RSS {r['peak_rss_gb']:.2f} GB, {steady}",
            flush=True,
        )
        outs[label] = {p.name: p.read_bytes() for p in out.glob("*_synthesized.png")}
    a, b = outs.values()
    print(f"  byte-identical PNGs: {a == b} ({len(a)} images)")


def bench_calls(work: Path, size: tuple[int, int] = (256, 512), calls: int = 3) -> None:
    """In one process: the Cell render builds vs the loaded MindIR's GraphCell, per call.

    Process CPU time per call is less disturbed by other users of the cores than wall time.
    """
    sys.path.insert(0, str(ROOT))
    import p2phd  # noqa: F401  (env fixes before MindSpore)
    from p2phd.core import runs, runtime

    runtime.setup("CPU")
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    from p2phd.deploy import graph

    run = work / "r512"
    arch = runs.arch_from_dict(runs.read_options(run)["options"])
    G = runs.load_inference(run)[0]
    cell = graph.build(G, arch, uint8=False)
    model = next(run.glob("*.mindir"))
    loaded = nn.GraphCell(ms.load(str(model)))
    rng = np.random.default_rng(0)
    label = ms.Tensor(rng.integers(0, 35, (1, *size)).astype(np.int32))
    inst = ms.Tensor(rng.integers(0, 9, (1, *size)).astype(np.int32))
    print(f"\nper call at {size[0]}x{size[1]} (after one warm-up call), {calls} calls:")
    results = {}
    for name, net in (("Cell (render --run)", cell), ("GraphCell (MindIR)", loaded)):
        results[name] = net(label, inst).asnumpy()
        wall, cpu = [], []
        for _ in range(calls):
            t, c = time.perf_counter(), time.process_time()
            net(label, inst).asnumpy()
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        print(
            f"  {name:20} median wall {np.median(wall):6.2f} s, median CPU {np.median(cpu):6.2f} s"
            f" (load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    a, b = results.values()
    print(f"  identical float outputs: {bool((a == b).all())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="512p,1024p", help="export cases (512p,1024p)")
    ap.add_argument(
        "--formats", default=",".join(FORMATS), help="export formats (" + ",".join(FORMATS) + ")"
    )
    ap.add_argument("--no_render", action="store_true", help="skip the render comparison")
    args = ap.parse_args()
    print(machine_header(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        cases = [c for c in args.cases.split(",") if c]
        bench_export(Path(tmp), cases, [f for f in args.formats.split(",") if f])
        if not args.no_render:
            bench_render(Path(tmp))
            bench_calls(Path(tmp))


if __name__ == "__main__":
    main()
