"""bin/edit's options (one flat dataclass)."""

from p2phd.core.cli import UsageError
from p2phd.core.options import RuntimeOptions, flat_options, opt, positional
from p2phd.editing.engines import AUTO, ENGINES, FP32, PRECISIONS

LOCALHOST = "127.0.0.1"
MAX_UPLOAD_BYTES = 16 * 2**20  # request bodies (a Cityscapes label + instance PNG: < 1 MB)
MAX_UPLOAD_PIXELS = 8_388_608  # uploaded maps: 4 Cityscapes frames' worth of pixels


@flat_options
class EditOptions(RuntimeOptions):
    run: str = positional("run", "run folder (bin/train): options.json and G.ckpt", required=True)
    clusters: str = opt(
        "",
        "cluster manifest (bin/cluster): needed for feature runs, gives the styles",
        metavar="FILE",
    )
    data: str = opt(
        "", "dataset manifest (bin/prepare) whose label maps the page lists", metavar="MANIFEST"
    )
    out: str = opt("", "folder Save writes into; '' = <run>/edits", metavar="DIR")
    host: str = opt(
        LOCALHOST,
        "address to listen on; anything but 127.0.0.1 lets other machines read the run and "
        "write into --out (a warning is printed)",
    )
    port: int = opt(8765, "TCP port; 0 = any free port (the URL printed says which)")
    preview_size: int = opt(
        256,
        "width in pixels of G's input for the preview after each edit (rounded down to the "
        "generator's stride; raise it on a GPU/Ascend); the full size is rendered on demand "
        "and on save",
    )
    onnx: str = opt(
        AUTO,
        "ONNX export (bin/export --format ONNX) to render with: auto = <run>/<run-name>.onnx "
        "(make export-onnx) if it exists, else on the CPU the run's cached export (as bin/render "
        "--engine auto); '' = G.ckpt; it must come from the run's G.ckpt (sidecar)",
        metavar="FILE",
    )
    engine: str = opt(
        AUTO,
        "what renders: auto = an ONNX export in the engine bin/render picks for this CPU "
        "(docs/render-engines.md), MindSpore on Ascend/GPU; onnxruntime or openvino need an "
        "export; mindspore = G.ckpt",
        choices=ENGINES,
    )
    precision: str = opt(
        FP32,
        "fp32 (exact); bf16: OpenVINO in bfloat16 on CPUs with AMX-BF16 or AVX512_BF16",
        choices=PRECISIONS,
    )
    providers: str = opt(
        "CPU",
        "onnxruntime execution providers in priority order, comma-separated (as bin/render)",
        metavar="LIST",
    )
    threads: int = opt(
        0, "the ONNX engine's inference threads; 0 = its own choice (physical cores)", metavar="N"
    )
    max_upload_bytes: int = opt(
        MAX_UPLOAD_BYTES, "largest request body in bytes (uploads: 413 above)"
    )
    max_upload_pixels: int = opt(
        MAX_UPLOAD_PIXELS,
        "largest uploaded map in pixels, width x height (decompression-bomb guard)",
    )

    def validate(self) -> None:
        if not self.run:
            raise UsageError("RUN is required (the run folder written by bin/train)")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port must be 0..65535, got {self.port}")
        if self.threads < 0:
            raise UsageError(f"--threads must be 0 or more, got {self.threads}")
        for name in ("preview_size", "max_upload_bytes", "max_upload_pixels"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
