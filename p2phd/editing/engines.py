"""Which engine renders for bin/edit: the run's G.ckpt in MindSpore, or an ONNX export.

``resolve(o, info)`` decides from ``--onnx``, ``--engine`` and ``--precision`` and checks before
anything loads; the engine itself is bin/render's choice (``p2phd.deploy.engines``):

- ``--onnx auto`` (default): the run's export ``<run>/<run-name>.onnx`` (what ``make
  export-onnx`` writes) when it exists, else, on the CPU, the run's cached export that bin/render
  --engine auto makes (``deploy.cache``: exported once when the model loads); ``--onnx FILE``:
  that file; ``--onnx ''``: G.ckpt. ``--engine auto`` (default) runs an export in the engine
  ``deploy.engines.choose`` picks for this CPU at the preview size, and G.ckpt in MindSpore
  (Ascend/GPU); ``onnxruntime``/``openvino`` need an export, ``mindspore`` ignores the
  automatic one. ``--precision bf16``: OpenVINO in bfloat16 (CPUs with AMX-BF16/AVX512_BF16).
- An export is used only if it is what render --onnx would accept (its sidecar's SHA-256 is the
  file's, ``deploy.sidecar.verify``) and comes from this run: its sidecar's checkpoint SHA-256 is
  the run's G.ckpt's and its architecture the run's. A stale export exits 2 naming the file,
  also when found automatically: editing with other weights than the run's would mislead.
- The choice is announced on stderr (one line), so a user sees which weights render.

Why automatic: the interaction is where speed is felt most (issue 22), onnxruntime and OpenVINO
render the editor's previews several times faster than MindSpore on a CPU (docs/editing.md), and
the checks above make using the export as safe as using G.ckpt. ``Engine.generator()`` is the
model callable of ``editing.model`` (NumPy in/out); the ONNX path imports no MindSpore.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2phd.core import extras
from p2phd.core.cli import UsageError, log
from p2phd.deploy import cache
from p2phd.deploy import engines as choice_of
from p2phd.deploy.engines import AUTO, ENGINES, FP32, PRECISIONS  # noqa: F401 (options)


@dataclass
class Engine:
    """What renders: ``name`` mindspore (the run's G.ckpt) or an ONNX engine with its file."""

    name: str = "mindspore"
    onnx: Path | None = None
    sidecar: dict[str, Any] = field(default_factory=dict)
    providers: str = "CPU"
    threads: int = 0
    precision: str = FP32
    cached: Path | None = None  # the run folder whose cached export this is (deploy.cache)
    checkpoint_sha: str = ""  # its G.ckpt's SHA-256 (names the cached export)

    @property
    def stride(self) -> int:
        """The multiple the ONNX file's H and W must be (0: any size, the checkpoint)."""
        return int(self.sidecar["stride"]) if self.onnx is not None else 0

    def render_args(self, run_dir: Path) -> list[str]:
        """bin/render's options for the same engine, so its PNGs are these byte for byte."""
        if self.onnx is None or self.cached is not None:
            args = ["--run", str(run_dir.resolve()), "--engine", self.name]
        else:
            args = ["--onnx", str(self.onnx.resolve()), "--engine", self.name]
        if self.name == "onnxruntime" and self.providers != "CPU":
            args += ["--providers", self.providers]
        args += ["--precision", self.precision] if self.precision != FP32 else []
        return args + (["--threads", str(self.threads)] if self.threads else [])

    def describe(self) -> str:
        if self.onnx is None:
            return "G.ckpt through MindSpore"
        half = ", float16" if self.sidecar.get("half") else ""
        bf16 = ", bf16" if self.precision != FP32 else ""
        return f"the ONNX export {self.onnx} through {self.name}{half}{bf16}"

    def generator(self, info: Any) -> Any:
        """The model callable: (label, index[, feat]) NumPy -> output NumPy."""
        if self.onnx is None:
            return mindspore_generator(info)
        from p2phd.deploy.onnx_run import OnnxGenerator, providers

        if self.cached is not None:  # exported now if it is not there yet
            size = tuple(self.sidecar["size"])
            self.onnx, self.sidecar = cache.ensure(
                info.run_dir, self.checkpoint_sha, size, verb="edit"
            )
        names = providers(self.providers) if self.name == "onnxruntime" else []
        return OnnxGenerator(
            self.onnx, self.sidecar, names, self.threads, self.name, self.precision
        )


def mindspore_generator(info: Any) -> Any:
    """The run's G.ckpt (+ condition encoding) in ``rendering.loop.build_net``, as one callable."""
    from types import SimpleNamespace

    from mindspore import Tensor

    from p2phd.core import runs
    from p2phd.rendering.loop import build_net

    G, E, _, _ = runs.load_inference(info.run_dir, 1)
    net = build_net(SimpleNamespace(arch=info.arch, mode=info.mode), G, E)

    def generate(*arrays: Any) -> Any:
        return net(*(Tensor(a) for a in arrays)).asnumpy()

    return generate


def default_export(run_dir: Path) -> Path:
    """Where ``make export-onnx`` writes the run's export (Makefile: onnx_file)."""
    return run_dir / f"{run_dir.resolve().name}.onnx"


def resolve(o: Any, info: Any) -> Engine:
    """The engine of ``--onnx``/``--engine``/``--precision``, its export checked (UsageError)."""
    if o.engine == "mindspore" and o.onnx not in ("", AUTO):
        raise UsageError(f"--engine mindspore renders G.ckpt; it does not run --onnx {o.onnx}")
    stride = info.arch.generator_stride()
    w = max(stride, o.preview_size // stride * stride)  # the rule's size: the previews'
    size = (max(stride, w // 2 // stride * stride), w)
    choice = choice_of.choose(
        o.engine, o.precision, o.device_target, info.arch.netG, size, "", o.providers
    )
    path = _export_path(o, info.run_dir)
    # G.ckpt's hash names the run's cached export: hashed once here (a 1024p G.ckpt is 730 MB)
    sha = _checkpoint_sha(info) if path is None and choice.onnx and o.onnx == AUTO else ""
    name = choice.engine if choice.onnx else "onnxruntime"  # a file on Ascend/GPU: onnxruntime
    if path is not None:
        extras.require(
            extras.ENGINE_EXTRA[name], f"bin/edit through the ONNX export {path}", (name,)
        )
        side = check_export(path, info)
        engine = Engine(name, path, side, o.providers, o.threads, choice.precision)
    elif sha and cache.available(info.run_dir, sha):
        side = {"stride": stride, "size": list(size)}
        engine = Engine(name, cache.path_for(info.run_dir, sha), side, o.providers, o.threads)
        engine.precision, engine.cached, engine.checkpoint_sha = choice.precision, info.run_dir, sha
    elif o.engine in ("onnxruntime", "openvino") or choice.precision != FP32:
        what = f"--engine {o.engine}" if o.engine != AUTO else "--precision bf16"
        where = "--onnx ''" if o.onnx == "" else f"{info.run_dir} not writable for its export"
        raise UsageError(f"{what} runs an ONNX export ({where})")
    else:
        engine = Engine()
    if engine.name == "onnxruntime" and engine.onnx is not None:  # a provider it lacks: exit 2
        from p2phd.deploy.onnx_run import providers

        providers(o.providers)
    log(f"edit: rendering with {engine.describe()}{_hint(o, info, engine)}")
    return engine


def _checkpoint_sha(info: Any) -> str:
    from p2phd.core import manifest, runs

    return manifest.sha256_file(runs.trained_snapshot(info.run_dir))


def _export_path(o: Any, run_dir: Path) -> Path | None:
    if o.engine == "mindspore" or o.onnx == "":
        return None
    if o.onnx != AUTO:
        return Path(o.onnx)
    found = default_export(run_dir)
    if found.is_file() and not extras.available("onnx", ("onnxruntime",)):
        log(f"edit: {found} is not used: onnxruntime is not installed (pip install 'p2phd[onnx]')")
        return None
    return found if found.is_file() else None


def _hint(o: Any, info: Any, engine: Engine) -> str:
    """Why this engine, and how to get the other one (the rest of the announcement)."""
    if engine.cached is not None:
        return " (the run's cached export, made once; --engine mindspore renders G.ckpt instead)"
    if engine.onnx is not None:
        how = "found automatically" if o.onnx == AUTO else "--onnx"
        return f" ({how}; --engine mindspore renders G.ckpt instead)"
    if o.engine == "mindspore" or o.onnx == "":
        return ""
    others = sorted(p.name for p in info.run_dir.glob("*.onnx") if not p.name.startswith("."))
    found = f"; {', '.join(others)} there is used with --onnx FILE" if others else ""
    return (
        f" (no ONNX export {default_export(info.run_dir)}: bin/export --run {info.run_dir} "
        f"--format ONNX --out that file, or make export-onnx, renders previews faster{found})"
    )


def check_export(path: Path, info: Any) -> dict[str, Any]:
    """The export's sidecar, after checking the file and that it was made from this run."""
    from p2phd.core import manifest, runs
    from p2phd.deploy import sidecar

    side = sidecar.read(path, "ONNX")
    sidecar.verify(path, side)
    ckpt = runs.trained_snapshot(info.run_dir)
    made_from = side.get("run", {}).get("checkpoint_sha256", "")
    if made_from != manifest.sha256_file(ckpt):
        raise UsageError(
            f"{path}: exported from another G.ckpt than {ckpt} (stale: the run changed since); "
            f"export it again (bin/export --run {info.run_dir} --format ONNX --out {path}) "
            "or pass --engine mindspore"
        )
    if runs.arch_from_dict(side["run"]["options"]) != info.arch:
        raise UsageError(
            f"{path}: exported with other options than {info.run_dir}/options.json; export again"
        )
    return side
