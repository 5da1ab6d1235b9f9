"""Benchmark (not a test): what bf16 inference costs in quality against fp32, on real label maps.

    .venv/bin/python bench/bench_precision.py --nvidia CHECKOUT --torch-python PYTHON \\
        [--sample DIR] [--trained RUN] [--inception FILE] [--seg FILE] [--lock FILE]

Two models render the Cityscapes sample's test label maps (15 frames, 2048x1024 label maps) once
in fp32 and once in bf16, by the same engine (OpenVINO's CPU plugin), so the precision is the
only difference:
- imported: NVIDIA's label2city_1024p generator (local, ngf 32, 182.9 M parameters) with NVIDIA's
  random initialisation (bench/nvidia_side.py weights), through bin/import, at 2048x1024;
- trained: a p2phd run given with --trained, or by default a short training on the sample's 8
  training frames (global G, ngf 32, 256x512, --train-epochs epochs, no VGG: a few minutes),
  rendered at its own size.
The pair is ``bin/render --run RUN --engine openvino --precision fp32`` and ``... --precision
bf16`` (what ``--precision bf16`` alone runs on CPUs with AMX-BF16 or AVX512_BF16).

Printed per model: mean and largest difference in levels of 255 (over all channel values), the
share of pixels with a channel more than 1 level off and of identical pixels; with --inception
(pytorch-fid's pt_inception-2015-12-05-6726825d.pth) the FID between the fp32 and the bf16 sets
(15 images: only whether bf16 moves the set, not a population FID); with --seg (fyu/drn's
drn-d-105_ms_cityscapes.pth) bin/evaluate's segmentation score (mIoU, pixel accuracy) of each
set against the label maps and its change. Neither weights file can be downloaded here, nor does
any PyPI package ship them (pytorch-fid, torch-fidelity and clean-fid download at run time).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import render_rows
from machine import header as machine_header  # CPU, ISA flags, cores, date above each table
from PIL import Image
from render_rows import ROOT, Context, _checked, _p2phd

SAMPLE = os.environ.get("P2PHD_SAMPLE", str(ROOT.parent / "shared" / "data" / "cityscapes-sample"))
TRAINED = ["--netG", "global", "--ngf", "32", "--num_D", "2", "--no_vgg_loss", "--load_size",
           "512", "--niter_decay", "0", "--save_epoch_freq", "1000"]  # fmt: skip


def test_maps(ctx: Context, run: Path) -> Path:
    """The sample's test maps prepared at the run's load_size (its options.json)."""
    size = json.loads((run / "options.json").read_text())["options"]["load_size"]
    man = ctx.work / f"test-{size}.h5"
    _checked(_p2phd(ctx, "p2phd.prepare", "--dataroot", str(ctx.sample), "--phase", "test",
                    "--load_size", str(size), "--jobs", "1", "--out", str(man)), "bin/prepare")  # fmt: skip
    return man


def train_short(ctx: Context, epochs: int) -> tuple[Path, Path]:
    """A global G trained for `epochs` on the sample's training frames at 256x512; its test maps."""
    train, test = ctx.work / "train-512.h5", ctx.work / "test-512.h5"
    for phase, man in (("train", train), ("test", test)):
        _checked(_p2phd(ctx, "p2phd.prepare", "--dataroot", str(ctx.sample), "--phase", phase,
                        "--load_size", "512", "--jobs", "1", "--out", str(man)), "bin/prepare")  # fmt: skip
    run = _p2phd(ctx, "p2phd.train", str(train), *TRAINED, "--niter", str(epochs), "--name",
                 "trained", "--checkpoints_dir", str(ctx.work / "runs"), lock=True)  # fmt: skip
    if run["rc"]:
        raise RuntimeError(f"bin/train failed: {run['stderr'][-600:]}")
    return ctx.work / "runs" / "trained", test


def render_pair(ctx: Context, run: Path, man: Path, maps: int) -> dict[str, Path]:
    """fp32 and bf16 renders of the manifest's first `maps` rows by the same engine (OpenVINO)."""
    outs = {p: ctx.work / f"{run.name}-{p}" for p in ("fp32", "bf16")}
    for precision, out in outs.items():
        src = ["--run", str(run), "--engine", "openvino", "--precision", precision]
        r = _p2phd(ctx, "p2phd.render", *src, str(man), "--max_samples", str(maps),
                   "--overwrite", "--out", str(out), lock=True)  # fmt: skip
        _checked(r, f"render {precision}")
    return outs


def pngs(folder: Path) -> dict[str, np.ndarray]:
    return {
        p.name: np.asarray(Image.open(p).convert("RGB")).astype(np.int16)
        for p in sorted(folder.glob("*_synthesized.png"))
    }


def level_stats(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict:
    """Differences in levels of 255 between two render sets of the same names."""
    if sorted(a) != sorted(b) or not a:
        raise RuntimeError(f"render sets differ: {len(a)} and {len(b)} images")
    d = [np.abs(a[k] - b[k]) for k in a]
    per_pixel = np.concatenate([x.max(-1).ravel() for x in d])  # a pixel's worst channel
    values = np.concatenate([x.ravel() for x in d])
    return {
        "images": len(a),
        "size": "x".join(map(str, next(iter(a.values())).shape[:2])),
        "mean_levels": float(values.mean()),
        "max_levels": int(values.max()),
        "pixels_over_1_level": float((per_pixel > 1).mean()),
        "pixels_identical": float((per_pixel == 0).mean()),
    }


def fid_main(inception: str, folder_a: str, folder_b: str) -> float:
    """FID between two folders' PNGs with p2phd's port of pytorch-fid (this process)."""
    import p2phd  # noqa: F401, I001  (env fixes before MindSpore)
    from p2phd.core import runtime
    from p2phd.metrics.features import extract, load_inception
    from p2phd.metrics.fid import fid_from_features

    runtime.setup("CPU")
    net = load_inception(inception)
    sets = []
    for folder in (folder_a, folder_b):
        ims = [np.asarray(Image.open(f).convert("RGB"))
               for f in sorted(Path(folder).glob("*_synthesized.png"))]  # fmt: skip
        sets.append(extract(net, ims, len(ims), [i.shape[:2] for i in ims]))
    return fid_from_features(*sets)


def seg_score(seg: str, out: Path) -> dict:
    """bin/evaluate --seg on one render folder: mIoU and pixel accuracy against its label maps."""
    metrics = out / "metrics-seg.json"
    cmd = [sys.executable, "-m", "p2phd.evaluate", str(out), "--seg", seg, "--out", str(metrics)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=render_rows._env())
    if r.returncode:
        raise RuntimeError(f"bin/evaluate --seg failed: {r.stderr[-400:]}")
    renders = json.loads(metrics.read_text())["segmentation"]["renders"]
    return {k: renders[k] for k in ("mean_iou", "pixel_accuracy")}


def report(results: dict, args: argparse.Namespace) -> None:
    """The markdown table, and what stayed unmeasured with the command that measures it."""
    print(f"\n{machine_header()}")
    print(
        "\n| model | images | size | mean levels | max levels | pixels > 1 level "
        "| identical pixels | FID fp32 vs bf16 | mIoU fp32 -> bf16 | pixel acc. fp32 -> bf16 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")  # fmt: skip
    for label, r in results.items():
        fid = f"{r['fid_fp32_vs_bf16']:.3f}" if "fid_fp32_vs_bf16" in r else "not measured"
        seg = r.get("seg")
        miou = acc = "not measured"
        if seg:
            miou = _change(seg["fp32"]["mean_iou"], seg["bf16"]["mean_iou"])
            acc = _change(seg["fp32"]["pixel_accuracy"], seg["bf16"]["pixel_accuracy"])
        print(
            f"| {label} | {r['images']} | {r['size']} | {r['mean_levels']:.3f} | "
            f"{r['max_levels']} | {100 * r['pixels_over_1_level']:.2f} % | "
            f"{100 * r['pixels_identical']:.2f} % | {fid} | {miou} | {acc} |"
        )
    missing = [n for n, v in (("--inception", args.inception), ("--seg", args.seg)) if not v]
    if missing:
        print(
            f"\nunmeasured: {' and '.join(m.strip('-') for m in missing)} (weights not on this "
            "machine); where they exist:\n  make bench-precision NVIDIA=<pix2pixHD checkout> "
            "TORCH_PYTHON=<python with torch> INCEPTION_BENCH=<pt_inception-2015-12-05-6726825d"
            ".pth> SEG_BENCH=<drn-d-105_ms_cityscapes.pth>"
        )


def _change(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    return f"{100 * a:.2f} -> {100 * b:.2f} ({100 * (b - a):+.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nvidia", default=os.environ.get("NVIDIA", ""))
    ap.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON", "python3"))
    ap.add_argument("--sample", default=SAMPLE, help="Cityscapes sample folder")
    ap.add_argument("--trained", default="", help="a trained p2phd run; '' = train one briefly")
    ap.add_argument("--train-epochs", type=int, default=10, help="epochs of the short training")
    ap.add_argument("--maps", type=int, default=15, help="test label maps to render")
    ap.add_argument("--inception", default="", help="pytorch-fid's FID Inception .pth")
    ap.add_argument("--seg", default="", help="fyu/drn's drn-d-105_ms_cityscapes.pth")
    ap.add_argument("--lock", default=os.environ.get("BENCH_LOCK", ""), help="flock file")
    ap.add_argument("--only", default="imported,trained", help="models: imported, trained")
    ap.add_argument("--fid", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fid:
        print(json.dumps(fid_main(*args.fid)))
        return 0
    print(machine_header(), flush=True)
    print("# bin/render --run RUN --engine openvino --precision fp32 vs bf16", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        ctx = Context(args.nvidia, args.torch_python, Path(args.sample), Path(tmp), 0,
                      args.lock)  # fmt: skip
        models = []
        if "imported" in args.only and not (Path(args.nvidia) / "models" / "networks.py").is_file():
            print("# no imported model: give --nvidia (a pix2pixHD checkout) and --torch-python")
        elif "imported" in args.only:
            run, man = render_rows.prepare_row(ctx, "render-1024p-2048x1024")
            models.append(("imported label2city_1024p (NVIDIA-shaped random weights)", run, man))
        if "trained" in args.only:
            if args.trained:
                run, man = Path(args.trained), test_maps(ctx, Path(args.trained))
                models.append((f"trained: {run.name}", run, man))
            else:
                run, man = train_short(ctx, args.train_epochs)
                label = f"trained on the sample ({args.train_epochs} epochs, global ngf 32)"
                models.append((label, run, man))
        for label, run, man in models:
            outs = render_pair(ctx, run, man, args.maps)
            a, b = pngs(outs["fp32"]), pngs(outs["bf16"])
            r = level_stats(a, b)
            if args.inception:
                r["fid_fp32_vs_bf16"] = fid_child(args.inception, outs)
            if args.seg:
                r["seg"] = {p: seg_score(args.seg, out) for p, out in outs.items()}
            results[label] = r
            print(f"{label}: {json.dumps(r)}", flush=True)
    report(results, args)
    return 0


def fid_child(inception: str, outs: dict[str, Path]) -> float:
    """FID between the fp32 and bf16 sets in a fresh process (MindSpore's Inception)."""
    cmd = [sys.executable, __file__, "--fid", inception, str(outs["fp32"]), str(outs["bf16"])]
    r = subprocess.run(cmd, capture_output=True, text=True, env=render_rows._env())
    if r.returncode:
        raise RuntimeError(f"FID failed: {r.stderr[-400:]}")
    return float(r.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
