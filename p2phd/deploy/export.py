"""bin/export: a trained (or imported) run's generator as a deployable MindIR or ONNX file.

``bin/export --run RUN [--size HxW] [--batch_size N] [--format MINDIR|ONNX] [--uint8] [--half]
[--out FILE]``

- The graph holds the condition encoding and G (``p2phd.deploy.graph``): inputs are the label-id
  map, the instance-id map (unless --no_instance) and, for feature runs, the feature map, at one
  fixed size and batch; the output is the image in [-1, 1], or uint8 RGB with ``--uint8``.
- ``--size`` defaults to the size render feeds G for the run's training manifest (options.json:
  resize_or_crop and load_size applied to the manifest's image size); H and W must be multiples
  of the generator's stride (2**n_downsample_global, x2**n_local_enhancers for netG local).
- Output (default ``<run>/<run-name>-<H>x<W>[-b<N>][-uint8].mindir``) and its sidecar
  ``<file>.json`` (``p2phd.deploy.sidecar``). Both are written under temporary names and renamed,
  the model last, so a model file that exists is complete and has its sidecar.
- ``--format ONNX`` (opset 17): the same function written with the ``onnx`` library from the
  loaded Cells (``p2phd.deploy.onnx_graph``/``onnx_ops``; MindSpore 2.10's own ONNX exporter has
  no converter for PadV3, MirrorPad, the norm or AvgPool3D). Batch, height and width are dynamic
  (H, W multiples of the stride); ``--size`` is then the size the sidecar records as the run's,
  and without it on a run whose training manifest is not here (one made by bin/import) the
  sidecar's size is null and the default name has no HxW.
  ``--half``: float16 weights and activations, norms in float32. The file passes onnx's full
  checker and strict shape inference before it is renamed into place.
"""

import datetime as _dt
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from p2phd.core import extras, manifest, runs
from p2phd.core.cli import (
    UsageError,
    emit,
    log,
    log_dry_run,
    options_dict,
    parse_options,
    write_json,
)
from p2phd.core.options import RuntimeOptions, flat_options, opt
from p2phd.deploy import sidecar

FORMATS = ("MINDIR", "ONNX")
SUFFIX = {"MINDIR": ".mindir", "ONNX": ".onnx"}


@flat_options
class ExportOptions(RuntimeOptions):
    run: str = opt(
        "", "run folder (bin/train or bin/import): options.json and G.ckpt", metavar="RUN"
    )
    size: str = opt(
        "",
        "H x W of the exported inputs; '' = the run's training size (ONNX: any, when the run's "
        "training manifest is not here, as for imported runs)",
        metavar="HxW",
    )
    batch_size: int = opt(1, "samples per call (the graph's fixed batch dimension N)")
    format: str = opt("MINDIR", "file format", choices=FORMATS)
    uint8: bool = opt(False, "output uint8 RGB (N,H,W,3) instead of float32 in [-1,1]")
    half: bool = opt(
        False,
        "ONNX only: float16 weights and activations (norms float32); inputs and output as "
        "without it. docs/benchmarks.md: its measured pixel error",
    )
    out: str = opt(
        "",
        "output file; '' = <run>/<run-name>-<H>x<W>[-b<N>][-uint8][-half].<format>",
        metavar="FILE",
    )

    def validate(self) -> None:
        if not self.run:
            raise UsageError("--run RUN is required (the run folder written by bin/train)")
        if self.batch_size < 1:
            raise UsageError(f"--batch_size must be at least 1, got {self.batch_size}")
        if self.half and self.format != "ONNX":
            raise UsageError("--half applies to --format ONNX (a MindIR keeps float32)")


# (H, W) of the exported inputs; None: an ONNX graph for any size (the run's is not known)
Size = tuple[int, int] | None


def parse_size(spec: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", spec)
    if not m or int(m[1]) < 1 or int(m[2]) < 1:
        raise UsageError(f"--size must be HxW in pixels (e.g. 512x1024), got {spec!r}")
    return int(m[1]), int(m[2])


def training_size(arch: Any, doc: dict[str, Any]) -> tuple[int, int] | None:
    """The (H, W) render gives G for the run's training manifest (its most common size), or
    None when that manifest is not here (an imported run has none)."""
    from p2phd.data.pipeline import target_size

    if arch.resize_or_crop == "resize_and_crop":
        return arch.load_size, arch.load_size
    path = (doc.get("dataset") or {}).get("path", "")
    if not path or not Path(path).is_file():
        return None
    from p2phd.data.dataset import Dataset

    with Dataset(path) as ds:
        sizes = Counter(target_size(arch, int(h), int(w)) for h, w in ds.sizes)
    return sizes.most_common(1)[0][0]


def check_size(size: tuple[int, int], arch: Any) -> None:
    """Exit 2 unless G returns this size unchanged; name the nearest sizes it can take."""
    stride = arch.generator_stride()
    h, w = size
    if h % stride == 0 and w % stride == 0:
        return

    def near(n: int) -> list[int]:
        lo = max(stride, n // stride * stride)
        return sorted({lo, lo + stride} if n % stride else {n})

    options = [f"{a}x{b}" for a in near(h) for b in near(w)]
    raise UsageError(
        f"--size {h}x{w}: H and W must be multiples of {stride} (the stride of netG "
        f"{arch.netG}, n_downsample_global {arch.n_downsample_global}); nearest: "
        + ", ".join(options)
    )


def export_size(o: ExportOptions, arch: Any, doc: dict[str, Any], run_dir: Path) -> Size:
    """--size, else the training size; an ONNX graph takes any H, W (multiples of the stride),
    so it needs neither: None then."""
    size = parse_size(o.size) if o.size else training_size(arch, doc)
    if size is None and o.format != "ONNX":
        path = (doc.get("dataset") or {}).get("path") or "(none)"
        raise UsageError(
            f"{o.run}: cannot tell the training size (its dataset manifest {path} is not "
            "here); pass --size HxW (a MindIR has one fixed size; --format ONNX takes any)"
        )
    if size is not None:
        check_size(size, arch)
    return size


def describe_size(size: Size, arch: Any) -> str:
    if size is None:
        return f"any HxW (multiples of {arch.generator_stride()})"
    return f"{size[0]}x{size[1]}"


def default_out(run_dir: Path, size: Size, o: ExportOptions) -> Path:
    name = run_dir.resolve().name + (f"-{size[0]}x{size[1]}" if size else "")
    name += (f"-b{o.batch_size}" if o.batch_size > 1 else "") + ("-uint8" if o.uint8 else "")
    name += "-half" if o.half else ""
    return run_dir / (name + SUFFIX[o.format])


def check_out(out: Path, fmt: str) -> None:
    if out.suffix.lower() != SUFFIX[fmt]:
        raise UsageError(f"--out {out}: a {fmt} file must end with {SUFFIX[fmt]}")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create its folder ({exc.strerror})") from None
    if not os.access(out.parent, os.W_OK):
        raise UsageError(f"--out {out}: folder {out.parent} is not writable")


# ---------------------------------------------------------------------------------------------
# the verb


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    o = parse_options(ExportOptions, raw, "export", (__doc__ or "").split("\n")[0])
    if o.format == "ONNX":
        extras.require("onnx", "bin/export --format ONNX", ("onnx",))
    run_dir = Path(o.run)
    doc = runs.read_options(run_dir)
    arch = runs.arch_from_dict(doc["options"])
    ckpt = runs.trained_snapshot(run_dir)
    size = export_size(o, arch, doc, run_dir)
    out = Path(o.out) if o.out else default_out(run_dir, size, o)
    check_out(out, o.format)
    if o.dry_run:
        log_dry_run(
            o,
            f"would export {run_dir} ({arch.netG}, ngf {arch.ngf}) at {describe_size(size, arch)}, "
            f"batch {o.batch_size}, to {out} and {sidecar.path_for(out)}",
        )
        return 0
    export(o, run_dir, doc, arch, ckpt, size, out, ["export", *raw])
    emit(out)
    return 0


def export(
    o: ExportOptions,
    run_dir: Path,
    doc: dict[str, Any],
    arch: Any,
    ckpt: Path,
    size: Size,
    out: Path,
    argv: list[str],
) -> None:
    from p2phd.core import runtime

    runtime.setup(o.device_target, o.pynative, o.seed, o.verbose, data_parallel=False)
    from p2phd.deploy import graph

    ckpt_sha = manifest.sha256_file(ckpt)
    G, _, _, meta = runs.load_inference(run_dir)
    # ONNX without a size: any stride multiple stands in (its H and W become symbolic below)
    spec_size = size or (arch.generator_stride(),) * 2
    inputs = graph.input_spec(arch, spec_size, o.batch_size)
    output = graph.output_spec(arch, spec_size, o.batch_size, o.uint8)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{SUFFIX[o.format]}")
    side_tmp = sidecar.path_for(tmp)
    t0 = time.perf_counter()
    try:
        if o.format == "ONNX":
            from p2phd.deploy import onnx_graph

            extra = _write_onnx(G, arch, inputs, output, o.half, tmp)
            inputs, output = [onnx_graph.symbolic(s) for s in inputs], onnx_graph.symbolic(output)
        else:
            extra = _write_mindir(graph.build(G, arch, o.uint8), inputs, tmp)
        seconds = time.perf_counter() - t0
        os.chmod(tmp, 0o644)  # MindSpore leaves it read-only for the owner
        write_json(
            side_tmp,
            {
                "schema": sidecar.SCHEMA,
                "format": o.format,
                "file": out.name,
                "sha256": manifest.sha256_file(tmp),
                "bytes": tmp.stat().st_size,
                "size": list(size) if size else None,
                "batch_size": o.batch_size,
                "uint8": o.uint8,
                "label_nc": arch.label_nc,
                "output_nc": arch.output_nc,
                "feat_num": arch.feat_num if arch.use_features() else 0,
                "stride": arch.generator_stride(),
                "inputs": inputs,
                "output": output,
                **extra,
                "run": {
                    "path": str(run_dir.resolve()),
                    "name": run_dir.resolve().name,
                    "checkpoint": str(ckpt.resolve()),
                    "checkpoint_sha256": ckpt_sha,
                    "checkpoint_meta": {
                        k: int(v) for k, v in meta.items() if k in ("epoch", "step")
                    },
                    "options": doc["options"],
                    "dataset": doc.get("dataset", {}),
                },
                "options": options_dict(o),
                "argv": argv,
                "versions": runtime.versions() | _onnx_versions(o.format),
                "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "export_seconds": round(seconds, 3),
            },
        )
        os.replace(side_tmp, sidecar.path_for(out))
        os.replace(tmp, out)
    finally:
        for junk in (tmp, side_tmp):
            junk.unlink(missing_ok=True)
    log(
        f"export: {out} ({out.stat().st_size / 2**20:.1f} MiB, {o.format}"
        f"{', float16' if o.half else ''}, {describe_size(size, arch)}, batch {o.batch_size}) "
        f"in {seconds:.1f} s"
    )


def _write_mindir(net: Any, inputs: list[dict[str, Any]], tmp: Path) -> dict[str, Any]:
    import mindspore as ms

    from p2phd.deploy import graph

    base = tmp.with_suffix("")  # MindSpore appends the suffix
    ms.export(net, *graph.example_inputs(inputs), file_name=str(base), file_format="MINDIR")
    if not tmp.is_file():  # over 1 GB of weights MindSpore writes a graph + variables folder
        raise RuntimeError(f"MindSpore did not write {tmp.name} (model over 1 GB?)")
    return {}


def _write_onnx(
    G: Any,
    arch: Any,
    inputs: list[dict[str, Any]],
    output: dict[str, Any],
    half: bool,
    tmp: Path,
) -> dict[str, Any]:
    """Write and check the ONNX model; the sidecar fields only ONNX files have."""
    from p2phd.deploy import onnx_graph, onnx_ops

    try:
        model = onnx_graph.build(G, arch, inputs, output, half)
    except onnx_ops.UnsupportedCell as exc:
        raise UsageError(f"--format ONNX: {exc}") from None
    onnx_graph.save(model, tmp)
    del model
    onnx_graph.check(tmp)
    return {
        "opset": onnx_ops.OPSET,
        "half": half,
        "dynamic_axes": {
            "N": "batch (any)",
            "H": f"height: a multiple of {arch.generator_stride()}",
            "W": f"width: a multiple of {arch.generator_stride()}",
        },
    }


def _onnx_versions(fmt: str) -> dict[str, str]:
    if fmt != "ONNX":
        return {}
    import onnx

    return {"onnx": onnx.__version__}
