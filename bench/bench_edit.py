"""Benchmark (not a test): bin/edit's latency from an edit to the new picture, 512p generator,
per engine: MindSpore (the run's G.ckpt), onnxruntime and OpenVINO (the run's ONNX export).

A feature run with the full 512p architecture (global G, ngf 64, 4 downsamplings, 9 residual
blocks, instance norm, 35 labels + edge + 3 feature channels; random weights), its ONNX export
(``bin/export --format ONNX`` to ``<run>/<run-name>.onnx``, where ``make export-onnx`` puts it)
and hand-made clusters; one label map of the Cityscapes sample's test split prepared at
1024x512 (the 512p size; a generated street scene when the sample is absent). ``bin/edit`` runs
as a user starts it, once per engine (``--engine mindspore|onnxruntime|openvino``) and preview
size (``--preview_size 256``, the default: G input 256x128, and 512: 512x256), engines
interleaved at each size, and is driven over HTTP like the page does: each edit is a POST of a
brush stroke followed by the GET of the preview PNG, timed from the POST to the last byte of the
PNG. Reported per engine and size:

- start: from the command to the URL on stdout (imports, checks and hashes, model loaded);
- open: opening the map and its first preview (includes compiling the preview graph);
- first edit and the steady state (median, min, max of --edits edits) at preview size, with the
  generator's own share (the server's X-Render-Ms);
- full size (1024x512) on demand (with the 512 previews): first (compiles), then again; its
  pixels against MindSpore's (share of pixels that differ, largest difference in levels);
- the server's peak RSS; ratios of each ONNX engine to MindSpore at the same size.

The 2 cores are shared: numbers carry +-20-30 % noise (the load average is printed); compare
the ratios, measured in one run. The 512p G needs ~3.3 GB with MindSpore: run it under the
machine's heavy-job lock (``flock /work/heavy.lock make bench-edit``).
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

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT.parent / "shared" / "data" / "cityscapes-sample"
ENGINES = ("mindspore", "onnxruntime", "openvino")


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


def timed(fn) -> tuple[float, bytes, dict]:
    t0 = time.perf_counter()
    body, headers = fn()
    return (time.perf_counter() - t0) * 1000, body, headers


def export_onnx(run: Path) -> tuple[Path, float]:
    """The run's ONNX export where make export-onnx writes it; (file, seconds)."""
    model = run / f"{run.name}.onnx"
    t0 = time.perf_counter()
    subprocess.run(
        [str(ROOT / "bin" / "export"), "--run", str(run), "--format", "ONNX",
         "--size", "512x1024", "--out", str(model)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return model, time.perf_counter() - t0


def peak_rss_gb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def measure(
    run: Path, clusters: Path, man: Path, out: Path, engine: str, preview: int, edits: int
) -> dict:
    """One bin/edit server, one engine and --preview_size: start, open, edits, full size (ms)."""
    t_start = time.perf_counter()
    proc = subprocess.Popen(
        [str(ROOT / "bin" / "edit"), str(run), "--clusters", str(clusters), "--data", str(man),
         "--out", str(out), "--port", "0", "--preview_size", str(preview), "--engine", engine],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = proc.stdout.readline().strip()
        r: dict = {"start": (time.perf_counter() - t_start) * 1000, "edit": [], "g": []}
        t0 = time.perf_counter()
        state = json.loads(call(f"{url}api/documents", {"sample": 0})[0])
        doc = f"{url}api/documents/{state['id']}"
        call(f"{doc}/preview.png")
        r["open"] = (time.perf_counter() - t0) * 1000
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

            ms, _, h = timed(edit_then_preview)
            r["edit"].append(ms)
            r["g"].append(float(h["X-Render-Ms"]))
        if preview == 512:  # the full size once per engine is enough
            ms, _, _ = timed(lambda: call(f"{doc}/full.png"))
            call(f"{doc}/edits", {"op": "undo"})
            ms2, png, _ = timed(lambda: call(f"{doc}/full.png"))
            r["full"], r["png"] = [ms, ms2], png
        r["rss"] = peak_rss_gb(proc.pid)
        return r
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def pixels(png: bytes) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(png))).astype(np.int16)


def report(results: dict, sizes: list[int], export_s: float) -> None:
    print(
        f"bin/edit, 512p feature G (ngf 64, random weights), map 1024x512; ONNX export "
        f"{export_s:.0f} s; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| engine | --preview_size (G input) | start | open + first preview | first edit -> "
        "preview | steady edit -> preview (median, range) | of which G | peak RSS |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in sizes:
        for engine in ENGINES:
            r = results[engine, p]
            steady = r["edit"][1:]
            med, g = statistics.median(steady), statistics.median(r["g"][1:])
            print(
                f"| {engine} | {p} ({p}x{p // 2}) | {r['start'] / 1000:.1f} s | "
                f"{r['open'] / 1000:.1f} s | {r['edit'][0] / 1000:.2f} s | {med / 1000:.2f} s "
                f"({min(steady) / 1000:.2f}-{max(steady) / 1000:.2f}) | {g / 1000:.2f} s | "
                f"{r['rss']:.2f} GB |"
            )
    print("ratios to MindSpore at the same preview size (time: lower is faster):")
    for p in sizes:
        ms = results["mindspore", p]
        for engine in ENGINES[1:]:
            r = results[engine, p]
            ratio = {
                "start": r["start"] / ms["start"],
                "open": r["open"] / ms["open"],
                "first edit": r["edit"][0] / ms["edit"][0],
                "steady": statistics.median(r["edit"][1:]) / statistics.median(ms["edit"][1:]),
                "RSS": r["rss"] / ms["rss"],
            }
            print(f"  {p} {engine}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items()))
    if 512 in sizes:
        ms = results["mindspore", 512]
        print("full size 1024x512 on demand: first (compiles), again; pixels vs MindSpore:")
        for engine in ENGINES:
            r = results[engine, 512]
            diff = np.abs(pixels(r["png"]) - pixels(ms["png"]))
            print(
                f"  {engine}: {r['full'][0] / 1000:.1f} s, {r['full'][1] / 1000:.1f} s "
                f"({r['full'][1] / ms['full'][1]:.2f}x); {(diff > 0).mean() * 100:.3f} % of "
                f"pixels differ, largest {int(diff.max())} levels"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--edits", type=int, default=6, help="steady-state edits to time per row")
    ap.add_argument("--preview_sizes", default="256,512", help="--preview_size values to compare")
    args = ap.parse_args()
    sizes = [int(v) for v in args.preview_sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-edit-") as tmp_:
        tmp = Path(tmp_)
        run, clusters = make_run(tmp)
        _, export_s = export_onnx(run)
        man = tmp / "test.h5"
        subprocess.run(
            [str(ROOT / "bin" / "prepare"), "--dataroot", str(data_root(tmp)), "--phase", "test",
             "--load_size", "1024", "--jobs", "1", "--out", str(man)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        results = {
            (e, p): measure(run, clusters, man, tmp / "out", e, p, args.edits)
            for p in sizes
            for e in ENGINES
        }
    report(results, sizes, export_s)


if __name__ == "__main__":
    main()
