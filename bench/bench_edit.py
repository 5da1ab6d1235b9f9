"""Benchmark (not a test): bin/edit's latency from an edit to the new picture, 512p generator.

A feature run with the full 512p architecture (global G, ngf 64, 4 downsamplings, 9 residual
blocks, instance norm, 35 labels + edge + 3 feature channels; random weights) and hand-made
clusters; one label map of the Cityscapes sample's test split prepared at 1024x512 (the 512p
size; a generated street scene when the sample is absent). ``bin/edit`` runs as a user starts it
(``--preview_size 512``: previews at G input 512x256) and is driven over HTTP like the page does:
each edit is a POST of a brush stroke followed by the GET of the preview PNG, timed from the
POST to the last byte of the PNG. Reported:

- open: opening the map and its first preview (includes compiling the preview graph);
- first edit and the steady state (median, min, max of --edits edits) at preview size, with the
  generator's own share (the server's X-Render-Ms);
- full size (1024x512) on demand: first (compiles that graph) and a second render.

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--edits", type=int, default=10, help="steady-state edits to time")
    ap.add_argument("--preview_size", type=int, default=512)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-edit-") as tmp_:
        tmp = Path(tmp_)
        run, clusters = make_run(tmp)
        man = tmp / "test.h5"
        subprocess.run(
            [str(ROOT / "bin" / "prepare"), "--dataroot", str(data_root(tmp)), "--phase", "test",
             "--load_size", "1024", "--jobs", "1", "--out", str(man)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        proc = subprocess.Popen(
            [str(ROOT / "bin" / "edit"), str(run), "--clusters", str(clusters), "--data", str(man),
             "--out", str(tmp / "out"), "--port", "0", "--preview_size", str(args.preview_size)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            url = proc.stdout.readline().strip()
            t0 = time.perf_counter()
            state = json.loads(call(f"{url}api/documents", {"sample": 0})[0])
            doc = f"{url}api/documents/{state['id']}"
            _, h = call(f"{doc}/preview.png")
            open_ms = (time.perf_counter() - t0) * 1000
            times, g_ms = [], []
            for i in range(args.edits + 1):
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
                times.append(ms)
                g_ms.append(float(h["X-Render-Ms"]))
            full = [timed(lambda: call(f"{doc}/full.png"))[0]]
            call(f"{doc}/edits", {"op": "undo"})
            full.append(timed(lambda: call(f"{doc}/full.png"))[0])
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    steady, steady_g = times[1:], g_ms[1:]
    print(f"bin/edit, 512p G (ngf 64, random weights), map 1024x512, preview G input "
          f"{args.preview_size}x{args.preview_size // 2}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"  open + first preview (compiles the preview graph): {open_ms:8.0f} ms")
    print(
        f"  first edit -> preview:                             {times[0]:8.0f} ms (G {g_ms[0]:.0f} ms)"
    )
    print(
        f"  steady edit -> preview, {len(steady)} edits: median {statistics.median(steady):.0f} ms "
        f"(min {min(steady):.0f}, max {max(steady):.0f}); G median {statistics.median(steady_g):.0f} ms"
    )
    print(
        f"  full size 1024x512 on demand: first {full[0]:.0f} ms (compiles), then {full[1]:.0f} ms"
    )


if __name__ == "__main__":
    main()
