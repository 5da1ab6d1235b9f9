"""bin/render's options (one flat dataclass) and the parsing of --shard and --style words."""

from p2phd.core.cli import UsageError
from p2phd.core.options import RuntimeOptions, flat_options, opt, positional
from p2phd.core.ranks import parse_shard
from p2phd.deploy.engines import AUTO, ENGINES, FP32, MINDSPORE, PRECISIONS


@flat_options
class RenderOptions(RuntimeOptions):
    manifest: str = positional(
        "manifest",
        "dataset manifest to render (bin/prepare), or - to read its path from stdin",
        required=True,
    )
    run: str = opt("", "run folder (bin/train): options.json and G.ckpt", metavar="RUN")
    mindir: str = opt(
        "",
        "render with a model exported by bin/export instead of --run (its sidecar names the run)",
        metavar="FILE",
    )
    onnx: str = opt(
        "",
        "render with an ONNX model exported by bin/export --format ONNX, through onnxruntime "
        "(no MindSpore), instead of --run",
        metavar="FILE",
    )
    providers: str = opt(
        "CPU",
        "onnxruntime: execution providers in priority order, comma-separated "
        "(CPU, CUDA, TensorRT, OpenVINO, ... or XExecutionProvider names)",
        metavar="LIST",
    )
    engine: str = opt(
        AUTO,
        "what runs G: auto = on the CPU the run's ONNX export (made once, cached in "
        "<run>/engine-cache/) in the engine measured fastest for this CPU and size, MindSpore "
        "on Ascend/GPU; mindspore = G.ckpt in MindSpore (the reference); onnxruntime, openvino "
        "(docs/render-engines.md)",
        choices=ENGINES,
    )
    precision: str = opt(
        FP32,
        "fp32 (exact); bf16: OpenVINO in bfloat16 on CPUs with AMX-BF16 or AVX512_BF16, "
        "faster, pixels a few levels off (a different render setting)",
        choices=PRECISIONS,
    )
    threads: int = opt(
        0,
        "onnxruntime, openvino: the engine's inference threads; 0 = its own choice (physical cores)",
        metavar="N",
    )
    clusters: str = opt("", "cluster manifest (bin/cluster) for feature runs", metavar="FILE")
    out: str = opt("", "output folder; '' = <run>/render-<split>", metavar="DIR")
    batch_size: int = opt(1, "samples per generator call (same-size samples are batched)")
    shard: str = opt(
        "", "render only rows I, I+N, I+2N... of the manifest (I in 0..N-1)", metavar="I/N"
    )
    merge: bool = opt(
        False,
        "render nothing: check every sample is on disk (e.g. after shards) "
        "and write index.html and render.h5",
    )
    max_samples: int = opt(0, "render only the first N samples of the manifest; 0 = all")
    seed: int = opt(0, "seed of the per-object style draws (feature runs) and of MindSpore")
    style: str = opt(
        "",
        "fix the cluster centre of classes: CLASS=K[,CLASS=K...] with a class "
        "id or Cityscapes name (car=3,person=1); the flag may repeat",
        metavar="CLASS=K",
    )
    styles: str = opt(
        "",
        "per-object styles (bin/edit saves one): a p2phd.styles/1 JSON giving, per sample "
        "name and instance id, a cluster index of the object's class or a seed; wins over --style",
        metavar="FILE",
    )
    variants: int = opt(
        1,
        "styles per label map (feature runs with --clusters): draw k uses "
        "variant k of the seeded choice",
    )
    use_encoded_image: bool = opt(
        False,
        "feature runs: encode the real photo with the run's encoder instead of using clusters",
    )
    original_size: bool = opt(False, "resize outputs (BICUBIC) back to the source images' size")
    overwrite: bool = opt(False, "discard renders of another checkpoint/options in the folder")
    amp: bool = opt(
        False,
        "float16 inference (norms float32): faster on Ascend/GPU, not on CPU; "
        "outputs within ~1e-2 of float32",
    )
    write_threads: int = opt(
        2,
        "threads encoding and writing PNGs while G runs; 0 = write in "
        "the inference loop (no overlap)",
    )

    @property
    def exported(self) -> str:
        """The exported model file (--mindir or --onnx), '' with --run."""
        return self.mindir or self.onnx

    def validate(self) -> None:
        sources = [
            f
            for f, v in (("--run", self.run), ("--mindir", self.mindir), ("--onnx", self.onnx))
            if v
        ]
        if not sources:
            raise UsageError(
                "--run RUN is required (the run folder written by bin/train), or --mindir FILE "
                "or --onnx FILE"
            )
        if len(sources) > 1:
            raise UsageError(
                f"give one of --run, --mindir, --onnx, not {' and '.join(sources)} "
                "(an export's sidecar names the run)"
            )
        if self.amp and not self.run:
            raise UsageError(
                "--amp applies to --run; an exported model keeps the precision it was exported with"
            )
        if self.mindir and self.engine not in (AUTO, MINDSPORE):
            raise UsageError(f"--engine {self.engine} runs ONNX; a --mindir file runs in MindSpore")
        if self.onnx and self.engine == MINDSPORE:
            raise UsageError(
                "--engine mindspore runs --run or --mindir; --onnx runs in an ONNX engine"
            )
        if self.amp and self.engine not in (AUTO, MINDSPORE):
            raise UsageError(f"--amp is MindSpore's float16; --engine {self.engine} has no --amp")
        if self.threads < 0:
            raise UsageError(f"--threads must be 0 or more, got {self.threads}")
        if not self.manifest:
            raise UsageError("a dataset MANIFEST (or - for stdin) is required")
        if self.max_samples < 0:
            raise UsageError(f"--max_samples must be 0 (all) or more, got {self.max_samples}")
        for name in ("batch_size", "variants"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.write_threads < 0:
            raise UsageError(f"--write_threads must be 0 or more, got {self.write_threads}")
        if self.shard:
            parse_shard(self.shard)
            if self.merge:
                raise UsageError("--merge assembles all shards: do not combine it with --shard")


def join_style_args(argv: list[str]) -> list[str]:
    """``--style car=3 person=1 --style bus=0`` -> one ``--style car=3,person=1,bus=0``.

    Lets --style take several CLASS=K words and repeat without swallowing the MANIFEST argument.
    """
    out, specs, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--style" or argv[i].startswith("--style="):
            first = argv[i].partition("=")[2] if argv[i].startswith("--style=") else None
            if first is None:
                i += 1
                first = argv[i] if i < len(argv) else ""
            specs.append(first)
            while i + 1 < len(argv) and "=" in argv[i + 1] and not argv[i + 1].startswith("-"):
                i += 1
                specs.append(argv[i])
        else:
            out.append(argv[i])
        i += 1
    return out + (["--style", ",".join(s for s in specs if s)] if specs else [])
