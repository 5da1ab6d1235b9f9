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
- the server's CPU seconds per steady edit (all its threads, /proc: what load changes least)
  and its peak RSS; ratios of each ONNX engine to MindSpore at the same size.

The three servers of a size run side by side and take their edits in turn (MindSpore,
onnxruntime, OpenVINO, MindSpore, ...), so the shared machine's load falls on all of them
alike; still, compare the ratios and the CPU column, measured in one run (the load average is
printed). Three 512p servers at once take ~7 GB: on a shared machine, run it when no other large job
runs (e.g. ``flock "${HEAVY_LOCK:-.heavy.lock}" make bench-edit``, the lock bench_evaluate
takes).
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
from machine import header as machine_header  # CPU, ISA flags, cores, date above each table
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT.parent / "shared" / "data" / "cityscapes-sample"
ENGINES = ("mindspore", "onnxruntime", "openvino")


def make_run(folder: Path, ngf: int) -> tuple[Path, Path]:
    """The 512p feature run (random weights) and a cluster manifest (random centres)."""
    code = f"""
import dataclasses, json, sys
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from p2phd.core import checkpoint, manifest, runs, runtime
runtime.setup("CPU")
from p2phd.nets import build_encoder, build_generator
a = runs.ArchOptions(ngf={ngf}, load_size=1024, instance_feat=True)
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


def call(url: str, path: str, body: dict | None = None) -> tuple[bytes, dict]:
    """``path`` on the server that printed ``url``, as a script asks: its token (from that URL)
    in the Authorization header, JSON."""
    base, _, token = url.partition("?token=")
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "Authorization": f"token {token}"}
    req = urllib.request.Request(base + path, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read(), dict(r.headers)


def timed(fn) -> tuple[float, bytes, dict]:
    """(milliseconds, body, headers) of one call."""
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


def proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds of all the process's threads so far, peak RSS in GB)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    rss = float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) / 2**20
    return cpu, rss


class Server:
    """One bin/edit server (one engine, one --preview_size) with the map open; the results."""

    def __init__(self, args: list[str], engine: str, preview: int) -> None:
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(ROOT / "bin" / "edit"), *args, "--port", "0", "--preview_size", str(preview),
             "--engine", engine],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.url = self.proc.stdout.readline().strip()
        self.r: dict = {"start": time.perf_counter() - t0, "edit": [], "g": [], "cpu": []}
        t0 = time.perf_counter()
        state = json.loads(call(self.url, "api/documents", {"sample": 0})[0])
        self.doc = f"api/documents/{state['id']}"
        call(self.url, f"{self.doc}/preview.png")
        self.r["open"] = time.perf_counter() - t0

    def edit(self, i: int) -> None:
        """A brush stroke (alternately sidewalk and road), then the new preview."""
        op = {
            "op": "brush",
            "class": (8, 7)[i % 2],
            "radius": 12,
            "points": [[400 + 20 * i, 400], [460 + 20 * i, 420]],
        }
        cpu0 = proc_stat(self.proc.pid)[0]

        def edit_then_preview():
            call(self.url, f"{self.doc}/edits", op)
            return call(self.url, f"{self.doc}/preview.png")

        ms, _, h = timed(edit_then_preview)
        self.r["edit"].append(ms / 1000)
        self.r["g"].append(float(h["X-Render-Ms"]) / 1000)
        self.r["cpu"].append(proc_stat(self.proc.pid)[0] - cpu0)

    def full(self, again: bool) -> None:
        if again:  # another state, so the server's render cache does not answer
            call(self.url, f"{self.doc}/edits", {"op": "undo"})
        ms, png, _ = timed(lambda: call(self.url, f"{self.doc}/full.png"))
        self.r.setdefault("full", []).append(ms / 1000)
        self.r["png"] = png

    def stop(self) -> dict:
        self.r["rss"] = proc_stat(self.proc.pid)[1]
        self.proc.terminate()
        self.proc.wait(timeout=60)
        return self.r


def measure_size(args: list[str], preview: int, edits: int, tmp: Path) -> dict[str, dict]:
    """The three engines at one --preview_size: started one after the other, then their edits
    (and full sizes) taken in turn, so that the machine's load falls on all of them alike. The
    servers stay up together (~6.7 GB at once: hence the heavy-job lock)."""
    servers: dict[str, Server] = {}
    try:
        for engine in ENGINES:  # one --out each: a folder takes one server (its lock)
            out = ["--out", str(tmp / f"out-{preview}-{engine}")]
            servers[engine] = Server([*args, *out], engine, preview)
        for i in range(edits + 1):
            for engine in ENGINES:
                servers[engine].edit(i)
        if preview == 512:  # the full size once per engine is enough
            for again in (False, True):
                for engine in ENGINES:
                    servers[engine].full(again)
    finally:
        results = {e: s.stop() for e, s in servers.items()}
    return results


def pixels(png: bytes) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(png))).astype(np.int16)


def report(results: dict, sizes: list[int], export_s: float, ngf: int) -> None:
    med = statistics.median
    print(
        f"bin/edit, 512p feature G (ngf {ngf}, random weights), map 1024x512; bin/export ONNX "
        f"{export_s:.0f} s; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| engine | --preview_size (G input) | start | open + first preview | first edit -> "
        "preview | steady edit -> preview (median, range) | of which G | CPU s per edit | "
        "peak RSS |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in sizes:
        for engine in ENGINES:
            r = results[p][engine]
            steady = r["edit"][1:]
            print(
                f"| {engine} | {p} ({p}x{p // 2}) | {r['start']:.1f} s | {r['open']:.1f} s | "
                f"{r['edit'][0]:.2f} s | {med(steady):.2f} s ({min(steady):.2f}-{max(steady):.2f})"
                f" | {med(r['g'][1:]):.2f} s | {med(r['cpu'][1:]):.2f} | {r['rss']:.2f} GB |"
            )
    print("ratios to MindSpore at the same preview size (lower is faster / smaller):")
    for p in sizes:
        ms = results[p]["mindspore"]
        for engine in ENGINES[1:]:
            r = results[p][engine]
            ratio = {
                "start": r["start"] / ms["start"],
                "open": r["open"] / ms["open"],
                "first edit": r["edit"][0] / ms["edit"][0],
                "steady": med(r["edit"][1:]) / med(ms["edit"][1:]),
                "CPU per edit": med(r["cpu"][1:]) / med(ms["cpu"][1:]),
                "RSS": r["rss"] / ms["rss"],
            }
            print(f"  {p} {engine}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items()))
    if 512 in sizes:
        ms = results[512]["mindspore"]
        print("full size 1024x512 on demand: first, again (ratio); pixels against MindSpore's:")
        for engine in ENGINES:
            r = results[512][engine]
            diff = np.abs(pixels(r["png"]) - pixels(ms["png"]))
            print(
                f"  {engine}: {r['full'][0]:.1f} s, {r['full'][1]:.1f} s "
                f"({r['full'][1] / ms['full'][1]:.2f}x); {(diff > 0).mean() * 100:.2f} % of "
                f"pixels differ, {(diff > 1).mean() * 100:.4f} % by more than one level, "
                f"largest {int(diff.max())}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--edits", type=int, default=6, help="steady-state edits to time per row")
    ap.add_argument("--preview_sizes", default="256,512", help="--preview_size values to compare")
    ap.add_argument("--ngf", type=int, default=64, help="G's width (a small one checks the bench)")
    args = ap.parse_args()
    sizes = [int(v) for v in args.preview_sizes.split(",")]
    print(machine_header(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-edit-") as tmp_:
        tmp = Path(tmp_)
        run, clusters = make_run(tmp, args.ngf)
        _, export_s = export_onnx(run)
        man = tmp / "test.h5"
        subprocess.run(
            [str(ROOT / "bin" / "prepare"), "--dataroot", str(data_root(tmp)), "--phase", "test",
             "--load_size", "1024", "--jobs", "1", "--out", str(man)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        common = [str(run), "--clusters", str(clusters), "--data", str(man)]
        results = {p: measure_size(common, p, args.edits, tmp) for p in sizes}
    report(results, sizes, export_s, args.ngf)


if __name__ == "__main__":
    main()
