"""Benchmark (not a test): images per second of ``bin/render`` over the real test split.

Each case is one ``bin/render`` process on the 15 Cityscapes sample test label maps, prepared at
the case's size, with a generator of random weights (ngf 64 by default, the 512p architecture):

- 512x1024 (the 512p size): ``--shard 0/4`` (4 of the 15 maps) to keep the run bounded;
- 256x512: the whole split, comparable with NVIDIA's PyTorch generator, measured on this CPU at
  about 1.8 s per 256x512 image; target: not slower;
- 256x512+orig: the same with ``--original_size``: every output is resized (BICUBIC) to the
  sources' 1024x2048 and encoded at that size, where writing costs most;
- 64x128: the whole split at a small size;

each with PNG writing overlapped on two threads (the default) and in the inference loop
(``--write_threads 0``). Reported: the wall time of the process, render's own count of images
and the steady-state seconds per image after the first one (which includes graph
compilation). The 2 cores are shared with other users: numbers carry +-20-30 % noise
(the load average is printed); compare cases measured together.
"""

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import header as machine_header  # CPU, ISA flags, cores, date above each table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT.parent / "shared" / "data" / "cityscapes-sample"
NVIDIA_S_PER_IMAGE_256x512 = 1.8


def make_run(folder: Path, ngf: int, load_size: int) -> Path:
    """A run folder with a randomly initialised generator (what render needs: options + G.ckpt)."""
    code = f"""
import dataclasses, sys
sys.path.insert(0, {str(ROOT)!r})
from p2phd.core import checkpoint
from p2phd.core import runs
from p2phd.core import runtime
runtime.setup("CPU")
from p2phd.nets import build_generator
a = runs.ArchOptions(ngf={ngf}, load_size={load_size})
runs.write_options({str(folder)!r}, dataclasses.asdict(a), {{"path": "", "sha256": ""}})
checkpoint.save({str(folder / "G.ckpt")!r}, {{"netG": build_generator(a)}}, {{"epoch": 0, "step": 0}})
"""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code], check=True)
    return folder


def prepare(out: Path, width: int) -> Path:
    subprocess.run(
        [
            str(ROOT / "bin" / "prepare"),
            "--dataroot",
            str(SAMPLE),
            "--phase",
            "test",
            "--load_size",
            str(width),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


_DONE = re.compile(
    r"render: (\d+) images in ([\d.]+) s .*first batch of (\d+) in ([\d.]+) s"
    r"(?: .*then ([\d.]+) s/image)?"
)


def render(run: Path, manifest: Path, out: Path, threads: int, shard: str, orig: bool) -> dict:
    cmd = [
        str(ROOT / "bin" / "render"),
        "--run",
        str(run),
        str(manifest),
        "--out",
        str(out),
        "--write_threads",
        str(threads),
    ] + (["--shard", shard] if shard else [])
    cmd += ["--original_size"] if orig else []
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"render failed ({res.returncode}): {res.stderr[-1000:]}")
    m = _DONE.search(res.stderr)
    if not m:
        raise SystemExit(f"no timing line in render's log: {res.stderr[-500:]}")
    steady = float(m[5]) if m[5] else float("nan")
    return {
        "images": int(m[1]),
        "wall_s": wall,
        "first_s": float(m[4]),
        "steady_s_per_image": steady,
        "images_per_s": int(m[1]) / wall,
    }


@dataclasses.dataclass
class Case:
    height: int
    width: int
    shard: str
    orig: bool  # --original_size: BICUBIC back to 1024x2048, where writing costs most

    @property
    def label(self) -> str:
        return f"{self.height}x{self.width}" + ("+orig" if self.orig else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument(
        "--sizes",
        default="512x1024:0/4,256x512,256x512+orig,64x128",
        help="HxW[+orig][:I/N shard] cases, comma-separated (+orig: --original_size)",
    )
    ap.add_argument("--threads", default="2,0", help="--write_threads values to compare")
    a = ap.parse_args()
    if not (SAMPLE / "test_label").is_dir():
        raise SystemExit(f"needs the Cityscapes sample at {SAMPLE}")
    cases = []
    for spec in a.sizes.split(","):
        hw, _, shard = spec.partition(":")
        hw, orig = hw.removesuffix("+orig"), hw.endswith("+orig")
        h, w = (int(v) for v in hw.split("x"))
        cases.append(Case(h, w, shard, orig))
    print(machine_header(), flush=True)
    print(
        f"bench-render: ngf {a.ngf}, random weights, load average {os.getloadavg()[0]:.2f} "
        f"(2 shared cores: +-20-30 % noise)",
        flush=True,
    )
    print(
        "columns: wall = whole bin/render process; first = first image incl. graph compile; "
        "s/img = steady state after it; img/s = images / wall",
        flush=True,
    )
    print(
        f"{'size':>14} {'imgs':>4} {'threads':>7} {'wall s':>7} {'first s':>7} "
        f"{'s/img':>6} {'img/s':>6}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        tmp = Path(tmp)
        for c in cases:
            run = tmp / f"run{c.width}"
            if not (run / "G.ckpt").exists():
                make_run(run, a.ngf, c.width)
            man = tmp / f"test-{c.width}.h5"
            if not man.exists():
                prepare(man, c.width)
            for threads in (int(t) for t in a.threads.split(",")):
                r = render(run, man, tmp / f"out-{c.label}-{threads}", threads, c.shard, c.orig)
                print(
                    f"{c.label:>14} {r['images']:>4} {threads:>7} {r['wall_s']:>7.1f} "
                    f"{r['first_s']:>7.1f} {r['steady_s_per_image']:>6.3f} "
                    f"{r['images_per_s']:>6.3f}",
                    flush=True,
                )
                if c.label == "256x512" and threads == int(a.threads.split(",")[0]):
                    ratio = NVIDIA_S_PER_IMAGE_256x512 / r["steady_s_per_image"]
                    print(
                        f"          256x512 steady state vs NVIDIA PyTorch "
                        f"({NVIDIA_S_PER_IMAGE_256x512} s/img): {ratio:.2f}x",
                        flush=True,
                    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
