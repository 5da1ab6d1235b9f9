"""Benchmark (not a test): bin/import of a full-size label2city_1024p generator, and how
exactly the imported G renders NVIDIA's pixels at 2048x1024.

    .venv/bin/python bench/bench_import.py [NVIDIA_CHECKPOINTS_FOLDER] [--runs 2]
        [--nvidia CHECKOUT --torch-python PYTHON] [--maps 2] [--sample DIR]

The folder (default outputs/nv-full/label2city_1024p in the checkout) holds a latest_net_G.pth with NVIDIA's
label2city_1024p architecture (netG local, ngf 32, 182,857,059 parameters, legacy torch format,
~730 MB), e.g. NVIDIA's published model or the random one made by

    TORCH_ENV/bin/python tests/fixtures/make_nvidia_fixtures.py PATH/TO/pix2pixHD \\
        --full outputs/nv-full

(TORCH_ENV: a Python environment with torch, outside the project.) ``--sample`` defaults to
``$P2PHD_SAMPLE``, else ``../shared/data/cityscapes-sample`` beside the checkout (the tests'
default).

Each run imports in a fresh subprocess (bin/import's own code path) and reports wall time, CPU
time (user+sys of the child) and the child's peak RSS (ru_maxrss from wait4's rusage, = resource.getrusage of that child), beside the weights' own size
(4 bytes x parameters) and the RSS of a process that only imports MindSpore and p2phd (the
baseline every verb pays). When the folder has NVIDIA's output on a fixed 128x256 input
(``expected.npz``, written by the fixture script), the imported G's relative L2 error against it
is reported too. Timings on the shared 2-core machine are noisy (+-20-30 %).

Fidelity (with ``--nvidia`` and ``--torch-python``): the first ``--maps`` label maps of the
Cityscapes sample's test split (2048x1024), through NVIDIA's own networks.py in the torch Python
(bench/nvidia_import_side.py) and through p2phd as a user runs it: bin/prepare of those maps at
2048, bin/render with the imported run (its PNGs), plus the imported G's float output on the same
inputs (render's preprocessing and net) for the relative L2 error. Printed per map: relative L2
of G's output, the largest difference in levels of 255, the share of PNG pixels that differ from
NVIDIA's output put through render's rule (round), and the largest difference from NVIDIA's own
PNG rule (util.tensor2im, truncation: up to one level apart by that rule alone). Run it alone
(NVIDIA's G and p2phd's at 2048x1024 take several GB each, one after the other).
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
from types import SimpleNamespace

from machine import header as machine_header  # CPU, ISA flags, cores, date above each table

REPO = Path(__file__).resolve().parents[1]
# The tests' default place of the Cityscapes sample (tests/conftest.py), overridable the same way.
SAMPLE = Path(
    os.environ.get("P2PHD_SAMPLE") or (REPO / ".." / "shared" / "data" / "cityscapes-sample")
).resolve()
PARAMS = 182_857_059
DEFAULT = REPO / "outputs" / "nv-full" / "label2city_1024p"
MAKE = (
    "<python with torch> tests/fixtures/make_nvidia_fixtures.py "
    "<NVIDIA/pix2pixHD checkout> --full outputs/nv-full"
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


def floats(run: str, manifest: str, out: str) -> None:
    """G's float output on every row of the manifest, by render's preprocessing and net."""
    import numpy as np
    from mindspore import Tensor

    from p2phd.core import runs
    from p2phd.data.dataset import Dataset
    from p2phd.data.pipeline import Preprocessor
    from p2phd.rendering.loop import build_net

    G, _, arch, _ = runs.load_inference(run)
    net = build_net(SimpleNamespace(arch=arch, mode="labels"), G, None)
    prep = Preprocessor(arch, train=False)
    result = {}
    with Dataset(manifest) as ds:
        for i in range(len(ds)):
            item = prep(ds.sample(i), i)
            y = net(Tensor(item.label[None]), Tensor(item.inst[None]))
            result[ds.names[i]] = y.asnumpy()[0]
    np.savez(out, **result)


def fidelity(args, folder: Path, run: Path, tmp: Path, py: str) -> dict:
    """NVIDIA's G vs the imported one on the sample's first test maps (see the module doc)."""
    import numpy as np
    from PIL import Image

    from p2phd.core import runs
    from p2phd.core.palette import to_uint8

    sample = Path(args.sample)
    labels = sorted((sample / "test_label").glob("*_gtFine_labelIds.png"))[: args.maps]
    data = tmp / "data"
    for folder_name in ("test_label", "test_inst"):
        (data / folder_name).mkdir(parents=True)
    pairs = []
    for lab in labels:
        inst = sample / "test_inst" / lab.name.replace("labelIds", "instanceIds")
        (data / "test_label" / lab.name).symlink_to(lab)
        (data / "test_inst" / inst.name).symlink_to(inst)
        pairs.append(f"{lab}:{inst}")
    opts = runs.read_options(run)["options"]
    keys = ("netG", "ngf", "n_downsample_global", "n_blocks_global", "n_local_enhancers")
    keys += ("n_blocks_local", "norm", "label_nc", "no_instance")
    arch = json.dumps({k: opts[k] for k in keys})
    side = str(REPO / "bench" / "nvidia_import_side.py")
    nv_npz = tmp / "nvidia.npz"
    torch_res = run_child([args.torch_python, side, args.nvidia, str(folder / "latest_net_G.pth"),
                           arch, str(nv_npz), *pairs])  # fmt: skip
    manifest = tmp / "maps.h5"
    run_child([py, "-m", "p2phd.prepare", "--dataroot", str(data), "--phase", "test",
               "--load_size", "2048", "--jobs", "1", "--out", str(manifest)])  # fmt: skip
    render = run_child([py, "-m", "p2phd.render", "--run", str(run), str(manifest),
                        "--out", str(tmp / "render")])  # fmt: skip
    ours = run_child([py, __file__, "--floats", str(run), str(manifest), str(tmp / "p2phd.npz")])
    nv, mine = np.load(nv_npz), np.load(tmp / "p2phd.npz")
    maps = []
    for i, lab in enumerate(labels):
        name = lab.name.removesuffix("_gtFine_labelIds.png")
        want, got = nv[f"out{i}"], mine[name]
        if got.shape != want.shape:  # the run's resize_or_crop/load_size resized the map
            raise SystemExit(
                f"{run}: renders {name} at {got.shape[1:]}, NVIDIA's at {want.shape[1:]}"
            )
        png = np.array(Image.open(tmp / "render" / f"{name}_synthesized.png")).astype(np.int16)
        rounded = to_uint8(want).astype(np.int16)  # NVIDIA's output by render's rule
        truncated = np.clip((want.transpose(1, 2, 0) + 1) / 2.0 * 255.0, 0, 255).astype(np.uint8)
        maps.append(
            {
                "map": name,
                "rel_l2": float(np.linalg.norm(got - want) / np.linalg.norm(want)),
                "max_levels": round(float(np.abs(got - want).max()) * 127.5, 4),
                "png_pixels_differ_pct": round(100 * float((png != rounded).any(-1).mean()), 3),
                "png_max_levels_vs_tensor2im": int(np.abs(png - truncated).max()),
            }
        )
    return {
        "maps": maps,
        "nvidia": json.loads(torch_res["stdout"].splitlines()[-1]),
        "render_wall_s": render["wall_s"],
        "render_peak_rss_mb": render["peak_rss_mb"],
        "p2phd_G_peak_rss_mb": ours["peak_rss_mb"],
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
    ap.add_argument("--nvidia", default="", help="NVIDIA/pix2pixHD checkout (fidelity)")
    ap.add_argument("--torch-python", default="", help="a Python with torch (fidelity)")
    ap.add_argument("--maps", type=int, default=2, help="test label maps of the sample (fidelity)")
    ap.add_argument("--sample", default=str(SAMPLE), help="Cityscapes sample (fidelity)")
    ap.add_argument("--check", nargs=2, metavar=("RUN", "NPZ"), help=argparse.SUPPRESS)
    ap.add_argument("--floats", nargs=3, metavar=("RUN", "MANIFEST", "NPZ"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.check:
        return check(*args.check)
    if args.floats:
        return floats(*args.floats)
    folder = Path(args.folder)
    if not (folder / "latest_net_G.pth").is_file():  # not an error: `make bench` goes on
        print(
            f"bench-import skipped: no {folder}/latest_net_G.pth; make it with:\n  {MAKE}",
            file=sys.stderr,
        )
        return
    py = str(REPO / ".venv" / "bin" / "python")
    base = run_child([py, "-c", "import p2phd, mindspore, p2phd.interop.importer"])
    results, fid = [], None
    fidelity_wanted = bool(args.nvidia and args.torch_python)
    if not fidelity_wanted:
        print("bench-import: no fidelity check (give --nvidia and --torch-python)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        for i in range(args.runs):
            out = Path(tmp) / f"run{i}"
            cmd = [py, "-m", "p2phd.import", str(folder), "--checkpoints_dir", str(out)]
            res = run_child(cmd)
            run = Path(res.pop("stdout"))
            res["G.ckpt_mb"] = round((run / "G.ckpt").stat().st_size / 2**20)
            if i == 0 and (folder / "expected.npz").is_file():
                chk = run_child([py, __file__, "--check", str(run), str(folder / "expected.npz")])
                res["rel_l2_vs_nvidia_128x256"] = float(chk["stdout"])
            results.append(res)
            if i == 0 and fidelity_wanted:
                fid = fidelity(args, folder, run, Path(tmp) / "fidelity", py)
            shutil.rmtree(out)
    report = {
        "machine": machine_header().removeprefix("# machine: "),
        "file": str(folder / "latest_net_G.pth"),
        "file_mb": round((folder / "latest_net_G.pth").stat().st_size / 2**20),
        "weights_mb": round(PARAMS * 4 / 2**20),
        "baseline_rss_mb (import p2phd + mindspore)": base["peak_rss_mb"],
        "runs": results,
        "fidelity_2048x1024": fid,
        "load_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
