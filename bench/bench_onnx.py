"""Benchmark (not a test): render --onnx (fp32 and --half) against render --run at 512x1024.

    .venv/bin/python bench/bench_onnx.py [--shard 0/1] [--inception FILE]

A 512p generator (global, ngf 64, NVIDIA's random initialisation, seed 0) renders the sample's
test label maps (``--shard`` of them) at 512x1024 three ways, one process each: ``bin/render
--run`` (MindSpore), ``--onnx`` of its fp32 export and ``--onnx`` of its ``--half`` export
(onnxruntime, CPU). Printed: render's steady seconds per image and the process's CPU seconds and
peak RSS; per pair of renders the share of identical pixels, the share within one level, the
largest and mean difference in levels of 255.

Then FID: the 8 training frames (the only ones with photos) rendered from both ONNX files and
scored by bin/evaluate against their photos. Without ``--inception`` (pytorch-fid's real
weights, which cannot be downloaded here) it uses the random-weight FID Inception of
tests/fixtures/fid: a Frechet distance between the features of a random network, not a real FID;
on 8 images it says only whether --half moves the renders as a whole.
"""

import argparse
import gzip
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_export import SAMPLE, make_run, timed  # noqa: E402
from machine import header as machine_header  # noqa: E402  (CPU, ISA flags, cores, date)

_STEADY = re.compile(r"then ([\d.]+) s/image")


def prepare(work: Path, phase: str) -> Path:
    out = work / f"{phase}-1024.h5"
    cmd = [str(ROOT / "bin" / "prepare"), "--dataroot", str(SAMPLE), "--phase", phase]
    subprocess.run(
        [*cmd, "--load_size", "1024", "--out", str(out)], check=True, capture_output=True
    )
    return out


def render(source: list[str], man: Path, out: Path, extra: list[str]) -> dict:
    r = timed([str(ROOT / "bin" / "render"), *source, str(man), "--out", str(out), *extra])
    m = _STEADY.search(r["stderr"])
    r["steady"] = float(m[1]) if m else float("nan")
    r["pngs"] = {
        p.name: np.asarray(Image.open(p)).astype(np.int16)
        for p in sorted(out.glob("*_synthesized.png"))
    }
    return r


def compare(a: dict, b: dict) -> str:
    d = np.concatenate([np.abs(a[k] - b[k]).ravel() for k in a])
    return (
        f"identical {np.mean(d == 0):.5f}, within one level {np.mean(d <= 1):.6f}, "
        f"largest {d.max()} levels, mean {d.mean():.4f} levels"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shard", default="0/1", help="render rows I, I+N, ... of the 15 test maps")
    ap.add_argument("--inception", default="", help="pytorch-fid's FID Inception .pth")
    ap.add_argument("--no_fid", action="store_true")
    args = ap.parse_args()
    print(machine_header(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        work = Path(tmp)
        test = prepare(work, "test")
        run = make_run(work / "r512", {"netG": "global", "ngf": 64}, 1024)
        export = [str(ROOT / "bin" / "export"), "--run", str(run), "--size", "512x1024"]
        fp32 = timed([*export, "--format", "ONNX"])["stdout"]
        half = timed([*export, "--format", "ONNX", "--half"])["stdout"]
        shard = ["--shard", args.shard]
        print(f"render of the sample test maps (--shard {args.shard}) at 512x1024, ngf 64:")
        results = {}
        for label, source in (
            ("--run (MindSpore)", ["--run", str(run), "--device_target", "CPU"]),
            ("--onnx fp32", ["--onnx", fp32]),
            ("--onnx --half", ["--onnx", half]),
        ):
            r = render(source, test, work / f"out{len(results)}", shard)
            results[label] = r
            print(
                f"  {label:18} {r['steady']:6.2f} s/image after the first, process CPU "
                f"{r['cpu_s']:6.1f} s, peak RSS {r['peak_rss_gb']:.2f} GB, {len(r['pngs'])} images",
                flush=True,
            )
        run_px, f32_px, half_px = (r["pngs"] for r in results.values())
        print(f"  --onnx fp32 vs --run:   {compare(f32_px, run_px)}")
        print(f"  --onnx --half vs fp32:  {compare(half_px, f32_px)}")
        print(f"  --onnx --half vs --run: {compare(half_px, run_px)}", flush=True)
        if not args.no_fid:
            fid(work, fp32, half, args.inception)


def fid(work: Path, fp32: str, half: str, inception: str) -> None:
    train = prepare(work, "train")
    if not inception:
        inception = str(work / "fid_inception_random.pth")
        with gzip.open(ROOT / "tests" / "fixtures" / "fid" / "fid_inception_random.pth.gz") as f:
            Path(inception).write_bytes(f.read())
        what = "random-weight FID Inception (tests/fixtures/fid): not a real FID"
    else:
        what = f"FID Inception {inception}"
    print(f"\nFID of the 8 training frames against their photos ({what}):")
    scores = {}
    for label, model in (("fp32", fp32), ("--half", half)):
        out = work / f"fid-{label.strip('-')}"
        timed([str(ROOT / "bin" / "render"), "--onnx", model, str(train), "--out", str(out)])
        timed([str(ROOT / "bin" / "evaluate"), str(out), "--inception", inception])
        scores[label] = json.loads((out / "metrics.json").read_text())["fid"]
        print(f"  {label:7} {scores[label]:.4f}", flush=True)
    print(f"  change  {scores['--half'] - scores['fp32']:+.4f}")
    shutil.rmtree(work / "fid-fp32", ignore_errors=True)


if __name__ == "__main__":
    main()
