"""Benchmark (not a test): bin/import of a full-size label2city_1024p generator.

    .venv/bin/python bench/bench_import.py [NVIDIA_CHECKPOINTS_FOLDER] [--runs 2]

The folder (default /tmp/nv-full/label2city_1024p) holds a latest_net_G.pth with NVIDIA's
label2city_1024p architecture (netG local, ngf 32, 182,857,059 parameters, legacy torch format,
~730 MB), e.g. NVIDIA's published model or the random one made by

    /work/torchenv/bin/python tests/fixtures/make_nvidia_fixtures.py /work/ref/pix2pixHD \\
        --full /tmp/nv-full

Each run imports in a fresh subprocess (bin/import's own code path) and reports wall time, CPU
time (user+sys of the child) and the child's peak RSS (ru_maxrss from wait4's rusage, = resource.getrusage of that child), beside the weights' own size
(4 bytes x parameters) and the RSS of a process that only imports MindSpore and p2phd (the
baseline every verb pays). When the folder has NVIDIA's output on a fixed 128x256 input
(``expected.npz``, written by the fixture script), the imported G's relative L2 error against it
is reported too. Timings on the shared 2-core machine are noisy (+-20-30 %).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARAMS = 182_857_059
DEFAULT = Path("/tmp/nv-full/label2city_1024p")
MAKE = (
    "/work/torchenv/bin/python tests/fixtures/make_nvidia_fixtures.py "
    "<NVIDIA/pix2pixHD checkout> --full /tmp/nv-full"
)


def run_child(cmd: list[str]) -> dict:
    """Run cmd in a fresh process; its own peak RSS via wait4."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "stdout": out.strip(),
    }


def check(run: str, expected: str) -> None:
    """Print the relative L2 error of the imported G against NVIDIA's stored output."""
    import numpy as np
    from mindspore import Tensor

    from p2phd.core import runs

    exp = np.load(expected)
    G = runs.load_inference(run)[0]
    out = G(Tensor(exp["G_input"])).asnumpy()
    print(float(np.linalg.norm(out - exp["G"]) / np.linalg.norm(exp["G"])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT))
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--check", nargs=2, metavar=("RUN", "NPZ"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.check:
        return check(*args.check)
    folder = Path(args.folder)
    if not (folder / "latest_net_G.pth").is_file():  # not an error: `make bench` goes on
        print(
            f"bench-import skipped: no {folder}/latest_net_G.pth; make it with:\n  {MAKE}",
            file=sys.stderr,
        )
        return
    py = str(REPO / ".venv" / "bin" / "python")
    base = run_child([py, "-c", "import p2phd, mindspore, p2phd.interop.importer"])
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        for i in range(args.runs):
            out = Path(tmp) / f"run{i}"
            cmd = [py, "-m", "p2phd.import", str(folder), "--checkpoints_dir", str(out)]
            res = run_child(cmd)
            run = Path(res.pop("stdout"))
            res["G.ckpt_mb"] = round((run / "G.ckpt").stat().st_size / 2**20)
            if i == 0 and (folder / "expected.npz").is_file():
                chk = run_child([py, __file__, "--check", str(run), str(folder / "expected.npz")])
                res["rel_l2_vs_nvidia"] = float(chk["stdout"])
            results.append(res)
            shutil.rmtree(out)
    report = {
        "file": str(folder / "latest_net_G.pth"),
        "file_mb": round((folder / "latest_net_G.pth").stat().st_size / 2**20),
        "weights_mb": round(PARAMS * 4 / 2**20),
        "baseline_rss_mb (import p2phd + mindspore)": base["peak_rss_mb"],
        "runs": results,
        "load_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
