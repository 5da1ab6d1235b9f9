"""Benchmark (not a test): bin/edit's latency from an edit to the new picture, 512p generator.

A feature run with the full 512p architecture (global G, ngf 64, 4 downsamplings, 9 residual
blocks, instance norm, 35 labels + edge + 3 feature channels; random weights) and hand-made
clusters; one label map of the Cityscapes sample's test split prepared at 1024x512 (the 512p
size; a generated street scene when the sample is absent). ``bin/edit`` runs as a user starts
it (``--preview_size 512``: previews at G input 512x256, then the default 256: 256x128) and is
driven over HTTP like the page does: each edit is a POST of a brush stroke followed by the GET
of the preview PNG, timed from the POST to the last byte of the PNG. Reported per size:

- open: opening the map and its first preview (includes compiling the preview graph);
- first edit and the steady state (median, min, max of --edits edits) at preview size, with the
  generator's own share (the server's X-Render-Ms);
- full size (1024x512) on demand (with the first size): first (compiles that graph), then again.

The 2 cores are shared: numbers carry +-20-30 % noise (the load average is printed).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT.parent / "shared" / "data" / "cityscapes-sample"


def make_run(folder: Path) -> tuple[Path, Path]:
    """The 512p feature run (random weights) and a cluster manifest (random centres)."""
    code = f"""
import dataclasses, json, sys
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from p2phd.core import checkpoint, manifest, runs, runtime
runtime.setup("CPU")
from p2phd.nets import build_encoder, build_generator
a = runs.ArchOptions(ngf=64, load_size=1024, instance_feat=True)
run = {str(folder / "run")!r}
runs.write_options(run, dataclasses.asdict(a), {{"path": "", "sha256": ""}})
checkpoint.save(run + "/G.ckpt", {{"netG": build_generator(a), "netE": build_encoder(a, 1)}}, {{}})
rng = np.random.default_rng(0)
with manifest.create({str(folder / "clusters.h5")!r}, "clusters", "cluster", {{}}) as f:
    f.attrs.update(feat_num=3, label_nc=35, n_clusters=10, min_area=0.0, seed=0, n_init=1,
                   features=json.dumps({{"path": "", "sha256": ""}}))
    for c in (7, 8, 11, 21, 23, 24, 26):
        g = f.create_group(f"classes/{{c}}")
        g["centers"] = rng.uniform(-1, 1, (10, 3)).astype(np.float32)
        g["counts"] = np.ones(10, np.int64)
"""
    (folder / "run").mkdir(parents=True)
    subprocess.run([sys.executable, "-c", code], check=True)
    return folder / "run", folder / "clusters.h5"


def data_root(tmp: Path) -> Path:
    """One test label map (+ instances) in the pix2pixHD layout, Cityscapes-sized (2048x1024)."""
    root = tmp / "data"
    for folder in ("test_label", "test_inst"):
        (root / folder).mkdir(parents=True)
    if (SAMPLE / "test_label").is_dir():
        name = "frankfurt_000000_000576"
        for folder, suffix in (("test_label", "labelIds"), ("test_inst", "instanceIds")):
            src = SAMPLE / folder / f"{name}_gtFine_{suffix}.png"
            os.symlink(src, root / folder / src.name)
        return root
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import generate_sample

    generate_sample(tmp / "generated", 2048, 1024)
    for folder in ("test_label", "test_inst"):
        first = sorted((tmp / "generated" / folder).iterdir())[0]
        os.symlink(first, root / folder / first.name)
    return root


def call(url: str, body: dict | None = None) -> tuple[bytes, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read(), dict(r.headers)


def timed(fn) -> tuple[float, dict]:
    t0 = time.perf_counter()
    _, headers = fn()
    return (time.perf_counter() - t0) * 1000, headers


def measure(run: Path, clusters: Path, man: Path, out: Path, preview: int, edits: int) -> dict:
    """One bin/edit server at one --preview_size: open, edits, full size (milliseconds)."""
    proc = subprocess.Popen(
        [str(ROOT / "bin" / "edit"), str(run), "--clusters", str(clusters), "--data", str(man),
         "--out", str(out), "--port", "0", "--preview_size", str(preview)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = proc.stdout.readline().strip()
        t0 = time.perf_counter()
        state = json.loads(call(f"{url}api/documents", {"sample": 0})[0])
        doc = f"{url}api/documents/{state['id']}"
        call(f"{doc}/preview.png")
        r: dict = {"open": (time.perf_counter() - t0) * 1000, "edit": [], "g": []}
        for i in range(edits + 1):
            op = {
                "op": "brush",
                "class": (8, 7)[i % 2],
                "radius": 12,
                "points": [[400 + 20 * i, 400], [460 + 20 * i, 420]],
            }

            def edit_then_preview(op=op):
                call(f"{doc}/edits", op)
                return call(f"{doc}/preview.png")

            ms, h = timed(edit_then_preview)
            r["edit"].append(ms)
            r["g"].append(float(h["X-Render-Ms"]))
        if preview == 512:  # the full size once is enough
            r["full"] = [timed(lambda: call(f"{doc}/full.png"))[0]]
            call(f"{doc}/edits", {"op": "undo"})
            r["full"].append(timed(lambda: call(f"{doc}/full.png"))[0])
        return r
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--edits", type=int, default=6, help="steady-state edits to time per size")
    ap.add_argument("--preview_sizes", default="512,256", help="--preview_size values to compare")
    args = ap.parse_args()
    sizes = [int(v) for v in args.preview_sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-edit-") as tmp_:
        tmp = Path(tmp_)
        run, clusters = make_run(tmp)
        man = tmp / "test.h5"
        subprocess.run(
            [str(ROOT / "bin" / "prepare"), "--dataroot", str(data_root(tmp)), "--phase", "test",
             "--load_size", "1024", "--jobs", "1", "--out", str(man)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        results = {p: measure(run, clusters, man, tmp / "out", p, args.edits) for p in sizes}
    print(
        f"bin/edit, 512p feature G (ngf 64, random weights), map 1024x512; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for p, r in results.items():
        steady, g = r["edit"][1:], r["g"][1:]
        print(f"  --preview_size {p} (G input {p}x{p // 2}):")
        print(f"    open + first preview (compiles the preview graph): {r['open']:7.0f} ms")
        print(f"    first edit -> preview: {r['edit'][0]:7.0f} ms (G {r['g'][0]:.0f} ms)")
        med, g_med = statistics.median(steady), statistics.median(g)
        print(
            f"    steady edit -> preview, {len(steady)} edits: median {med:.0f} ms "
            f"(min {min(steady):.0f}, max {max(steady):.0f}); G median {g_med:.0f} ms"
        )
        if "full" in r:
            print(
                f"    full size 1024x512 on demand: first {r['full'][0]:.0f} ms (compiles), "
                f"then {r['full'][1]:.0f} ms"
            )


if __name__ == "__main__":
    main()
